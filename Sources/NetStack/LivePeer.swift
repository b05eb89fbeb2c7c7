import DHT
import Dispatch
import Logging
import NIOCore
import NetCore
import NetPOSIX
import Transport

/// A `Peer` on a real UDP socket, driven from other threads: the peer and its parts live on the
/// socket's event loop, and every call here hops there (`sync`, `execute`, `waitFor`).
// Sendable without `@unchecked`: `udp`'s methods used here hop to its event loop, and the peer is
// reached only through a NIOLoopBound, which checks the loop on every access.
public final class LivePeer: Sendable {
    public let udp: UDPHost
    private let bound: NIOLoopBound<Peer>

    private init(udp: UDPHost, bound: NIOLoopBound<Peer>) {
        self.udp = udp
        self.bound = bound
    }

    /// The peer: on the event loop only (inside `sync`, `execute`, `waitFor`, or a timer).
    public var peer: Peer { bound.value }

    /// Binds a UDP socket on `address` (port 0: any free port) and wires a peer onto it. The DHT
    /// does not start until `start` (so a caller can load saved nodes first).
    public static func bind(
        _ address: PeerAddress,
        dht: DHTConfig = DHTConfig(),
        identity: Identity? = nil,
        sessions: SessionManager.Config = SessionManager.Config(),
        logger: Logger = Logger(label: "turf.peer")
    ) throws -> LivePeer {
        let udp = try UDPHost.bind(address)
        do {
            let bound = try udp.sync {
                NIOLoopBound(
                    Peer(host: udp, dht: dht, identity: identity, sessions: sessions, logger: logger),
                    eventLoop: udp.eventLoop
                )
            }
            return LivePeer(udp: udp, bound: bound)
        } catch {
            udp.close()
            throw error
        }
    }

    /// The bound address (port 0 resolved).
    public var localAddress: PeerAddress { udp.localAddress }

    /// Whether the caller is on the peer's event loop.
    public var onEventLoop: Bool { udp.eventLoop.inEventLoop }

    /// Joins the DHT from the event loop (see `Peer.start`).
    public func start(savedNodes: [NodeInfo] = []) {
        execute { $0.start(savedNodes: savedNodes) }
    }

    /// Runs `body` with the peer on its event loop and waits for the result. Not from the loop.
    public func sync<T: Sendable>(_ body: @escaping @Sendable (Peer) throws -> T) throws -> T {
        let b = bound
        return try udp.sync { try body(b.value) }
    }

    /// Runs `body` with the peer on its event loop, without waiting.
    public func execute(_ body: @escaping @Sendable (Peer) -> Void) {
        let b = bound
        udp.execute { body(b.value) }
    }

    /// Starts `work` on the event loop and waits on the calling thread until it calls back, or
    /// `timeout` seconds pass, or `interrupted` (checked every 0.1 s: a stop signal, say) returns
    /// true; nil unless it called back. Not from the loop.
    public func waitFor<T: Sendable>(
        timeout: Double,
        interrupted: (() -> Bool)? = nil,
        _ work: @escaping @Sendable (Peer, @escaping (T) -> Void) -> Void
    ) -> T? {
        let sem = DispatchSemaphore(value: 0)
        let box = NIOLoopBoundBox.makeEmptyBox(valueType: T.self, eventLoop: udp.eventLoop)
        execute { p in
            work(p) { v in
                // The first answer wins; the box is only touched on the event loop.
                guard box.value == nil else { return }
                box.value = v
                sem.signal()
            }
        }
        let deadline = DispatchTime.now() + max(0, timeout)
        if let interrupted {
            while !interrupted() {
                if sem.wait(timeout: min(deadline, .now() + 0.1)) == .success || DispatchTime.now() >= deadline {
                    break
                }
            }
        } else {
            _ = sem.wait(timeout: deadline)
        }
        return try? udp.sync { box.value }
    }

    /// Stops the peer (DHT timers, sessions) and closes the socket. Not from the event loop.
    public func close() {
        try? sync { $0.stop() }
        udp.close()
    }
}
