import DHT
import Logging
import NetCore
import NetPOSIX
import Sodium
import Transport

/// This process on the network: one socket, its demultiplexer, the DHT node and (with an
/// identity) the session manager, all on that one socket. So the port a DHT announce publishes
/// with `implied_port` is the port sessions reach, and a NAT mapping opened by one serves both.
///
/// The demultiplexer is the socket's only receiver; the DHT takes datagrams starting with `d`,
/// the sessions turf's packet types (docs/transport.md); hole punching and relaying will register
/// their own first bytes the same way. Works on any `NetworkHost`: `UDPHost` (see `LivePeer`) or
/// a `SimNetwork` socket. Confined to the host's thread, like its parts.
public final class Peer {
    public let host: NetworkHost
    public let demux: Demultiplexer
    public let dht: DHTNode
    /// nil for a peer without an identity (the `turf dht` commands): turf's packet types then
    /// have no receiver and are dropped and counted by the demultiplexer.
    public let sessions: SessionManager?
    /// IPv6 datagrams that came in unsolicited (`UDPHost.Stats.unsolicitedIPv6`; 0 on a simulated socket).
    public var unsolicitedIPv6: UInt64 { (host as? UDPHost)?.stats.unsolicitedIPv6 ?? 0 }
    /// Hole punching's probes (docs/nat.md), on the same socket.
    public let puncher: HolePuncher
    /// Relaying (docs/nat.md): with an identity, the client the sessions send through; without,
    /// nil until `serveRelay` makes this peer a volunteer relay.
    public let relay: RelayClient?
    public private(set) var relayServer: RelayServer?
    /// The randomness of the sessions and relaying (the DHT's is `DHTConfig.seed`): the system
    /// CSPRNG, or a seeded source in a simulation that must repeat from its seed.
    private let random: RandomSource

    /// Wires the parts onto `host`, which must have no receiver yet. Call on the host's thread.
    /// `random` defaults to the system CSPRNG; a simulation passes a seeded source (and a
    /// `dhtConfig.seed`) so that a run repeats exactly.
    public init(
        host: NetworkHost,
        dht dhtConfig: DHTConfig = DHTConfig(),
        identity: Identity? = nil,
        sessions sessionConfig: SessionManager.Config = SessionManager.Config(),
        random: RandomSource = .system(),
        logger: Logger = Logger(label: "turf.peer")
    ) {
        let demux = Demultiplexer(socket: host)
        self.host = host
        self.demux = demux
        dht = DHTNode(host: host, demux: demux, config: dhtConfig)
        puncher = HolePuncher(host: host, demux: demux)
        self.random = random
        let relay = identity.map { _ in RelayClient(host: host, demux: demux, random: random) }
        self.relay = relay
        let sessions = identity.map {
            SessionManager(
                host: relay ?? host,
                demux: demux,
                identity: $0,
                config: sessionConfig,
                random: random,
                logger: logger
            )
        }
        self.sessions = sessions
        // A probe from a peer we are handshaking with: the path through its NAT is open now.
        puncher.onProbe = { [weak sessions] source in sessions?.retryHandshakes(to: source) }
    }

    public var localAddress: PeerAddress { host.localAddress }

    /// Makes this peer (one without an identity: `turf dht serve --relay`) a volunteer relay, and
    /// announces it on the relays' info-hash so that clients find it.
    public func serveRelay(_ config: RelayServer.Config = RelayServer.Config()) {
        precondition(relay == nil && relayServer == nil, "a relay needs a peer without sessions, made once")
        relayServer = RelayServer(host: host, demux: demux, config: config, random: random)
        let port = host.localAddress.port
        dht.keepAnnouncing(RelayFrame.relayInfoHash, port: port, impliedPort: true)
        // A node that has just started knows few others: the first announce may store nowhere
        // (then it is retried after 5 s). Announce again while the routing table fills.
        for s in [1, 2, 3] {
            host.schedule(after: .seconds(s)) { [weak self] in
                self?.dht.announce(RelayFrame.relayInfoHash, port: port, impliedPort: true) { _, _ in }
            }
        }
    }

    /// Joins the DHT (seeded by `savedNodes`, then the configured bootstrap nodes) and starts its
    /// maintenance. `completion` runs when the join lookup ends.
    public func start(savedNodes: [NodeInfo] = [], completion: ((LookupResult) -> Void)? = nil) {
        dht.start(savedNodes: savedNodes, completion: completion)
    }

    /// Stops the DHT's timers and closes every session (telling established peers).
    public func stop() {
        dht.stop()
        sessions?.shutdown()
        relay?.stopRegistering()
        relayServer?.stop()
    }
}
