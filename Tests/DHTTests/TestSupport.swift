import DHT
import NetCore

extension DHTNode {
    /// A node with a socket of its own: a fresh demultiplexer on `host` routes KRPC to it (the
    /// tests that share a socket build the demultiplexer themselves).
    static func alone(on host: NetworkHost, config: DHTConfig = DHTConfig()) -> DHTNode {
        DHTNode(host: host, demux: Demultiplexer(socket: host), config: config)
    }
}
