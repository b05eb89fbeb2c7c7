import Dispatch
import DHT
import Logging
import NetCore
import Transport

/// A `Peer` on a real UDP socket, driven from other threads: the peer and its parts live on the
/// socket's event loop, and every call here hops there (`sync`, `execute`, `waitFor`).
public final class LivePeer {
    public let udp: UDPHost
    /// Touch only on the event loop: inside `sync`, `execute` or `waitFor`.
    public let peer: Peer

    private init(udp: UDPHost, peer: Peer) {
        self.udp = udp
        self.peer = peer
    }

    /// Binds a UDP socket on `address` (port 0: any free port) and wires a peer onto it. The DHT
    /// does not start until `start` (so a caller can load saved nodes first).
    public static func bind(_ address: PeerAddress, dht: DHTConfig = DHTConfig(), identity: Identity? = nil,
                            sessions: SessionManager.Config = SessionManager.Config(),
                            logger: Logger = Logger(label: "turf.peer")) throws -> LivePeer {
        let udp = try UDPHost.bind(address)
        do {
            let peer = try udp.sync { Peer(host: udp, dht: dht, identity: identity, sessions: sessions, logger: logger) }
            return LivePeer(udp: udp, peer: peer)
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
        let p = peer
        udp.execute { p.start(savedNodes: savedNodes) }
    }

    /// Runs `body` with the peer on its event loop and waits for the result. Not from the loop.
    public func sync<T>(_ body: @escaping (Peer) throws -> T) throws -> T {
        let p = peer
        return try udp.sync { try body(p) }
    }

    /// Runs `body` with the peer on its event loop, without waiting.
    public func execute(_ body: @escaping (Peer) -> Void) {
        let p = peer
        udp.execute { body(p) }
    }

    /// Starts `work` on the event loop and waits on the calling thread until it calls back, or
    /// `timeout` seconds pass, or `interrupted` (checked every 0.1 s: a stop signal, say) returns
    /// true; nil unless it called back. Not from the loop.
    public func waitFor<T>(timeout: Double, interrupted: (() -> Bool)? = nil,
                           _ work: @escaping (Peer, @escaping (T) -> Void) -> Void) -> T? {
        let sem = DispatchSemaphore(value: 0)
        let box = Box<T>()
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
                if sem.wait(timeout: min(deadline, .now() + 0.1)) == .success || DispatchTime.now() >= deadline { break }
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

    private final class Box<T> { var value: T? }
}
