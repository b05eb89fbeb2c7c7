/// Shares one socket between the DHT, hole punching and sessions by the first byte of each datagram.
///
/// Bencoded KRPC always starts with `d` (0x64); turf's own packets use type bytes below 0x20 (see
/// docs/transport.md). Empty datagrams and unclaimed first bytes are dropped and counted.
public final class Demultiplexer {
    public typealias Handler = (_ payload: [UInt8], _ source: PeerAddress) -> Void

    private var handlers = [Handler?](repeating: nil, count: 256)
    public private(set) var dropped: UInt64 = 0
    public private(set) var delivered: UInt64 = 0

    public init(socket: DatagramSocket) {
        socket.onReceive = { [weak self] payload, source in self?.dispatch(payload, from: source) }
    }

    /// Routes datagrams whose first byte is in `firstBytes` to `handler`.
    public func route<S: Sequence>(_ firstBytes: S, to handler: @escaping Handler) where S.Element == UInt8 {
        for b in firstBytes { handlers[Int(b)] = handler }
    }

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
