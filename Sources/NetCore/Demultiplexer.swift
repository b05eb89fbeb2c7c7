/// The one receiver of a socket: shares it between the DHT, sessions (and later hole punching and
/// relaying) by the first byte of each datagram.
///
/// A socket has one receive slot (`DatagramSocket.onReceive`); the demultiplexer takes it when it
/// is created and keeps it, and network components never touch it: each registers the first bytes
/// it owns with `route`. So adding a component to a socket cannot silently cut another one off.
///
/// Bencoded KRPC always starts with `d` (0x64); turf's own packets use type bytes below 0x20 (see
/// docs/transport.md). Empty datagrams and unclaimed first bytes are dropped and counted.
public final class Demultiplexer {
    public typealias Handler = (_ payload: [UInt8], _ source: PeerAddress) -> Void

    private var handlers = [Handler?](repeating: nil, count: 256)
    public private(set) var dropped: UInt64 = 0
    public private(set) var delivered: UInt64 = 0

    /// Becomes `socket`'s receiver. The socket holds the demultiplexer from then on (it lives as
    /// long as the socket does). A socket has at most one demultiplexer.
    public init(socket: DatagramSocket) {
        precondition(socket.onReceive == nil, "the socket already has a receiver: one demultiplexer per socket")
        socket.onReceive = { payload, source in self.dispatch(payload, from: source) }
    }

    /// Routes datagrams whose first byte is in `firstBytes` to `handler`. A first byte belongs to
    /// one component: claiming one twice is a programming error.
    public func route<S: Sequence>(_ firstBytes: S, to handler: @escaping Handler) where S.Element == UInt8 {
        for b in firstBytes {
            precondition(handlers[Int(b)] == nil, "first byte \(b) is already routed")
            handlers[Int(b)] = handler
        }
    }

    /// Whether datagrams starting with `firstByte` have a handler.
    public func isRouted(_ firstByte: UInt8) -> Bool { handlers[Int(firstByte)] != nil }

    public func dispatch(_ payload: [UInt8], from source: PeerAddress) {
        guard let first = payload.first, let h = handlers[Int(first)] else {
            dropped += 1
            return
        }
        delivered += 1
        h(payload, source)
    }

    /// The first byte of every bencoded KRPC message.
    public static let krpcFirstByte: UInt8 = UInt8(ascii: "d")
}
