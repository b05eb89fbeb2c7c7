import NIOCore
import NIOPosix
import NetCore

#if canImport(Glibc)
    import Glibc
#elseif canImport(Darwin)
    import Darwin
#endif

// The C functions, where UDPHost's own `bind` and `close` hide them.
private func sysBind(_ fd: CInt, _ a: UnsafePointer<sockaddr>, _ len: socklen_t) -> CInt { bind(fd, a, len) }
private func sysClose(_ fd: CInt) { _ = close(fd) }

/// The real `NetworkHost`: one bound, unconnected IPv4 UDP socket on a SwiftNIO event loop.
///
/// Everything a component does with the host happens on `eventLoop`: `onReceive` is called there,
/// timers fire there, and `send` from another thread hops there. Sends to closed ports, non-IPv4
/// datagrams and write failures are dropped and counted; none of them stops the receive loop.
///
/// Threads: `send`, `sync`, `execute`, `close` and the `let`s may be used from any thread; everything
/// else (`onReceive`, `stats`, `schedule`, `isActive`) on `eventLoop` only. Code on another thread
/// reaches loop-confined objects through `sync`/`execute` (or a `NetworkMailbox`).
// @unchecked Sendable: mutable state is touched only on `eventLoop` (asserted in debug builds);
// the methods meant for other threads hop there first.
public final class UDPHost: NetworkHost, LoopExecutor, @unchecked Sendable {
    public struct Stats: Sendable, Equatable {
        public var received: UInt64 = 0
        public var sent: UInt64 = 0
        /// Errors raised on the channel (ICMP port unreachable and the like), swallowed.
        public var channelErrors: UInt64 = 0
        /// Sends that failed (no route, buffer full, refused), swallowed.
        public var sendFailures: UInt64 = 0
        /// Datagrams from a non-IPv4 source, dropped.
        public var unsupportedSources: UInt64 = 0
        /// Sends larger than `maxDatagram`, dropped.
        public var oversizedSends: UInt64 = 0
        /// Times the socket was closed by an error and bound again on the same address.
        public var rebinds: UInt64 = 0
        public var rebindFailures: UInt64 = 0
    }

    /// turf never sends datagrams larger than this, and the receive buffer is larger still, so
    /// nothing is silently truncated (NIO does not check MSG_TRUNC).
    public static let maxDatagram = maxUDPDatagram
    static let receiveBufferSize = 2048

    public let eventLoop: EventLoop
    public let localAddress: PeerAddress
    public var onReceive: (([UInt8], PeerAddress) -> Void)? {
        didSet { assertInLoop() }
    }
    /// Read only on the event loop.
    public internal(set) var stats = Stats()

    /// Replaced by a fresh socket on the same address if the channel ever closes under us.
    /// Internal for the rebind test.
    var channel: Channel
    private let group: EventLoopGroup
    private let ownedGroup: MultiThreadedEventLoopGroup?
    private var closing = false
    /// Destinations whose datagrams leave through an auxiliary socket instead (the birthday
    /// method's winning socket, docs/nat.md); see `route(_:via:)` in UDPHost+Auxiliary.swift.
    var routes: [PeerAddress: AuxiliarySocket] = [:]

    private init(
        channel: Channel,
        localAddress: PeerAddress,
        group: EventLoopGroup,
        ownedGroup: MultiThreadedEventLoopGroup?
    ) {
        self.channel = channel
        self.eventLoop = channel.eventLoop
        self.localAddress = localAddress
        self.group = group
        self.ownedGroup = ownedGroup
    }

    /// Binds a UDP socket on `address` (port 0 picks a free port). With no `group`, the host owns a
    /// one-thread event loop group and shuts it down in `close()`. Blocks until bound.
    ///
    /// The socket never sets IP_RECVERR: Linux then keeps ICMP errors (port unreachable after a
    /// send to a closed port) away from an unconnected socket, which is what a peer that talks to
    /// many addresses through one socket wants. With IP_RECVERR the kernel queues every ICMP error
    /// on the socket's error queue, which SwiftNIO never drains, so it closes the channel on the
    /// next poll: half of the sends to a dead peer would cost a rebind and lose queued datagrams.
    public static func bind(_ address: PeerAddress, group: EventLoopGroup? = nil) throws -> UDPHost {
        let owned: MultiThreadedEventLoopGroup?
        let g: EventLoopGroup
        if let group {
            owned = nil
            g = group
        } else {
            let own = MultiThreadedEventLoopGroup(numberOfThreads: 1)
            owned = own
            g = own
        }
        let handler = ReceiveHandler()
        do {
            let channel = try makeChannel(on: g.next(), address: address, handler: handler).wait()
            guard case .v4(let bound)? = channel.localAddress else {
                try? channel.close().wait()
                throw UDPHostError.notIPv4
            }
            let local = PeerAddress(
                ip: UInt32(bigEndian: bound.address.sin_addr.s_addr),
                port: UInt16(bigEndian: bound.address.sin_port)
            )
            let host = UDPHost(channel: channel, localAddress: local, group: g, ownedGroup: owned)
            try channel.eventLoop.submit { handler.host = host }.wait()
            return host
        } catch {
            try? owned?.syncShutdownGracefully()
            throw error
        }
    }

    private static func makeChannel(
        on loop: EventLoop,
        address: PeerAddress,
        handler: ReceiveHandler
    ) -> EventLoopFuture<Channel> {
        // No SO_REUSEADDR: on Linux it would let another process bind the same UDP port and take
        // our unicast traffic. Rebinding after our own socket closed works without it (UDP has no
        // TIME_WAIT), as long as no child process inherited the socket: hence close-on-exec.
        let fd: CInt
        do { fd = try boundSocket(address) } catch { return loop.makeFailedFuture(error) }
        return DatagramBootstrap(group: loop)
            .channelOption(
                ChannelOptions.recvAllocator,
                value: FixedSizeRecvByteBufferAllocator(capacity: receiveBufferSize)
            )
            .channelInitializer { ch in
                ch.eventLoop.makeCompletedFuture { try ch.pipeline.syncOperations.addHandler(handler) }
            }
            .withBoundSocket(fd)
    }

    /// An IPv4 UDP socket bound to `address`, close-on-exec (NIO's own sockets are not: a process
    /// the program starts would keep the port bound after we close it).
    static func boundSocket(_ address: PeerAddress) throws -> CInt {
        #if os(Linux)
            let fd = socket(AF_INET, Int32(SOCK_DGRAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        #else
            let fd = socket(AF_INET, SOCK_DGRAM, 0)
            if fd >= 0 { _ = fcntl(fd, F_SETFD, FD_CLOEXEC) }
        #endif
        guard fd >= 0 else { throw IOError(errnoCode: errno, reason: "socket") }
        var sin = sockaddr_in()
        sin.sin_family = sa_family_t(AF_INET)
        sin.sin_port = address.port.bigEndian
        sin.sin_addr.s_addr = address.ip.bigEndian
        let rc = withUnsafePointer(to: &sin) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                sysBind(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size))
            }
        }
        guard rc == 0 else {
            let e = errno
            sysClose(fd)
            throw IOError(errnoCode: e, reason: "bind \(address)")
        }
        return fd
    }

    /// The channel closed without `close()`: bind a new socket on the same address and port.
    fileprivate func channelDied(_ handler: ReceiveHandler) {
        assertInLoop()
        guard !closing else { return }
        UDPHost.makeChannel(on: eventLoop, address: localAddress, handler: handler).whenComplete { result in
            switch result {
            case .success(let ch):
                if self.closing {
                    ch.close(promise: nil)
                    return
                }
                self.channel = ch
                self.stats.rebinds += 1
            case .failure:
                self.stats.rebindFailures += 1
            }
        }
    }

    // MARK: DatagramSocket

    public func send(_ payload: [UInt8], to destination: PeerAddress) {
        guard eventLoop.inEventLoop else {
            eventLoop.execute { self.send(payload, to: destination) }
            return
        }
        assertInLoop()
        guard payload.count <= UDPHost.maxDatagram else {
            stats.oversizedSends += 1
            return
        }
        let out = routedChannel(destination) ?? channel
        var buffer = out.allocator.buffer(capacity: payload.count)
        buffer.writeBytes(payload)
        let envelope = AddressedEnvelope(remoteAddress: UDPHost.socketAddress(destination), data: buffer)
        stats.sent += 1
        let promise = eventLoop.makePromise(of: Void.self)
        promise.futureResult.whenFailure { [weak self] _ in self?.stats.sendFailures += 1 }
        out.writeAndFlush(envelope, promise: promise)
    }

    /// Whether the socket is open (on the event loop).
    public var isActive: Bool { channel.isActive }

    // MARK: Scheduler

    /// Monotonic nanoseconds (CLOCK_MONOTONIC, via NIO's deadline clock).
    public var now: Nanos { monotonicNanos() }

    public var isInLoop: Bool { eventLoop.inEventLoop }

    /// On the event loop only (a precondition, in release builds too: `action` is not Sendable).
    @discardableResult
    public func schedule(after delay: Nanos, _ action: @escaping () -> Void) -> TimerToken {
        let clamped = Int64(min(delay, Nanos(Int64.max)))
        let task = eventLoop.assumeIsolated().scheduleTask(in: .nanoseconds(clamped)) { action() }
        return TimerToken { task.cancel() }
    }

    // MARK: life cycle

    /// Runs `body` on the host's event loop and waits for its result. Must not be called from the
    /// event loop itself. Loop-confined objects travel in and out of `body` in a `NIOLoopBound`.
    public func sync<T: Sendable>(_ body: @escaping @Sendable () throws -> T) throws -> T {
        try eventLoop.submit(body).wait()
    }

    /// Runs `body` on the host's event loop without waiting, after the work posted before it.
    public func execute(_ body: @escaping @Sendable () -> Void) {
        eventLoop.execute(body)
    }

    /// Closes the socket (and the owned event loop group, if any). Not from the event loop.
    public func close() {
        let ch = try? eventLoop.submit { () -> Channel in
            self.closing = true
            for s in self.routes.values { s.close() }
            self.routes = [:]
            return self.channel
        }.wait()
        try? ch?.close().wait()
        try? ownedGroup?.syncShutdownGracefully()
    }

    static func socketAddress(_ a: PeerAddress) -> SocketAddress {
        var sin = sockaddr_in()
        sin.sin_family = sa_family_t(AF_INET)
        sin.sin_port = a.port.bigEndian
        sin.sin_addr.s_addr = a.ip.bigEndian
        return SocketAddress(sin, host: "")
    }

    fileprivate func received(_ envelope: AddressedEnvelope<ByteBuffer>) {
        assertInLoop()
        guard case .v4(let src) = envelope.remoteAddress else {
            stats.unsupportedSources += 1
            return
        }
        stats.received += 1
        let source = PeerAddress(
            ip: UInt32(bigEndian: src.address.sin_addr.s_addr),
            port: UInt16(bigEndian: src.address.sin_port)
        )
        let bytes = envelope.data.getBytes(at: envelope.data.readerIndex, length: envelope.data.readableBytes) ?? []
        onReceive?(bytes, source)
    }
}

public enum UDPHostError: Error, CustomStringConvertible {
    case notIPv4
    public var description: String { "the UDP socket is not bound to an IPv4 address" }
}

/// Hands datagrams to the host and swallows every error, so the channel is never closed by one.
/// The same instance is added to each replacement channel (all made on the host's event loop).
// @unchecked Sendable: `host` is written once on the event loop before the first read, and read only
// in the handler callbacks, which NIO runs on that loop (asserted in debug builds).
private final class ReceiveHandler: ChannelInboundHandler, @unchecked Sendable {
    typealias InboundIn = AddressedEnvelope<ByteBuffer>
    weak var host: UDPHost?

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        context.eventLoop.assertInEventLoop()
        host?.received(unwrapInboundIn(data))
    }

    func channelInactive(context: ChannelHandlerContext) {
        context.eventLoop.assertInEventLoop()
        host?.channelDied(self)
    }

    func errorCaught(context: ChannelHandlerContext, error: Error) {
        context.eventLoop.assertInEventLoop()
        host?.stats.channelErrors += 1
        // Not forwarded: the tail of the pipeline would only log it, and nothing here should close.
    }
}
