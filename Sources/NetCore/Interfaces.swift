/// The two things every network component needs from its host: a datagram socket and timers.
///
/// Components (DHT node, secure sessions, hole punching) are written against these protocols only,
/// and are confined to the host's single thread: the NIO event loop for real UDP, or the caller's
/// thread for the simulated network. Two implementations exist: `UDPHost` (the NetPOSIX target, real
/// sockets on SwiftNIO) and `SimNetwork` (the NetSim target, a testing double: in-memory, virtual
/// time, seeded link conditioner). NetCore itself has no SwiftNIO dependency.

/// Nanoseconds on a monotonic clock (virtual on the simulated network).
public typealias Nanos = UInt64

extension Nanos {
    public static func milliseconds(_ ms: Int) -> Nanos { Nanos(ms) * 1_000_000 }
    public static func seconds(_ s: Int) -> Nanos { Nanos(s) * 1_000_000_000 }
}

/// The largest datagram turf sends: one unfragmented IPv4 UDP datagram on a 1500-byte MTU (1500
/// less 20 bytes of IP header and 8 of UDP). `UDPHost` drops larger sends, and `SimNetwork` does
/// the same by default.
public let maxUDPDatagram = 1472

/// One bound, unconnected UDP socket (or its simulation).
public protocol DatagramSocket: AnyObject {
    /// The address this socket is bound to, as seen locally.
    var localAddress: PeerAddress { get }
    /// Sends one datagram. Never blocks; failures are counted, not thrown (UDP is best effort).
    func send(_ payload: [UInt8], to destination: PeerAddress)
    /// Called on the host's thread for every datagram received: the socket's one receive slot.
    /// A `Demultiplexer` takes it and shares the socket by first byte; network components
    /// register with the demultiplexer and never set this (only a raw test probe does).
    var onReceive: ((_ payload: [UInt8], _ source: PeerAddress) -> Void)? { get set }
}

/// A handle that cancels a scheduled timer.
public final class TimerToken {
    public private(set) var isCancelled = false
    let cancelAction: (() -> Void)?
    public init(cancel: (() -> Void)? = nil) { cancelAction = cancel }
    public func cancel() {
        guard !isCancelled else { return }
        isCancelled = true
        cancelAction?()
    }
}

/// The thread a host confines its components to: the NIO event loop for `UDPHost`, the thread
/// running the simulation for `SimNetwork`. Components (sessions, the DHT node, the demultiplexer)
/// call `assertInLoop()` at their entry points, so a debug build traps at the first call from the
/// wrong thread instead of racing silently (as NIO's `EventLoop.assertInEventLoop`).
public protocol LoopConfinement: AnyObject {
    /// Whether the calling thread may touch this host's components now. Safe to read from any thread.
    var isInLoop: Bool { get }
}

extension LoopConfinement {
    /// Traps in debug builds when called off the loop; compiled out of release builds.
    @inlinable
    public func assertInLoop(file: StaticString = #fileID, line: UInt = #line) {
        assert(isInLoop, "called off the network loop this component is confined to", file: file, line: line)
    }
}

/// Time and timers, injected: real on the event loop, virtual in simulation. Timers fire on the
/// loop, and `schedule` is called on it.
public protocol Scheduler: LoopConfinement {
    var now: Nanos { get }
    @discardableResult
    func schedule(after delay: Nanos, _ action: @escaping () -> Void) -> TimerToken
}

/// A socket plus its scheduler: what a network component is constructed with.
public protocol NetworkHost: DatagramSocket, Scheduler {}
