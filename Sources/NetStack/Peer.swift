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
    /// IPv4 datagrams that came in unsolicited (`UDPHost.Stats.unsolicitedIPv4`; 0 on a simulated
    /// socket): our NAT lets strangers reach us, so we can relay for them.
    public var unsolicitedIPv4: UInt64 { (host as? UDPHost)?.stats.unsolicitedIPv4 ?? 0 }
    /// Hole punching's probes (docs/nat.md), on the same socket.
    public let puncher: HolePuncher
    /// Relaying (docs/nat.md): with an identity, the client the sessions send through (nil
    /// without one). `serveRelay` makes this peer a relay for others as well: a volunteer
    /// (`turf dht serve --relay`) or a player whose NAT lets others reach it.
    public let relay: RelayClient?
    public private(set) var relayServer: RelayServer?
    private var relayAnnounce: [NodeID] = []
    /// Relay frames that came to a peer that neither uses relays nor is one (dropped).
    public private(set) var unhandledRelayFrames = 0
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
        let relay = identity.map { _ in RelayClient(host: host, demux: demux, random: random, claimRoute: false) }
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
        demux.route([RelayFrame.type]) { [weak self] payload, source in self?.receiveRelay(payload, from: source) }
    }

    /// Relay frames go to this peer's relay server or its relay client: requests (register,
    /// join) to the server; answers to the client; a data frame to the server when its source is
    /// an end of one of the server's channels, else to the client (which takes data only from
    /// relays it used). Whoever gets a frame it cannot use drops and counts it.
    private func receiveRelay(_ payload: [UInt8], from source: PeerAddress) {
        let op = payload.count > 1 ? payload[1] : 0
        if let server = relayServer {
            let toServer: Bool
            switch op {
            case 0x01, 0x02: toServer = true
            case 0x04:
                let channel = payload.count >= 6 ? payload[2..<6].reduce(UInt32(0)) { $0 << 8 | UInt32($1) } : 0
                toServer = server.isEnd(source, of: channel) || relay?.uses(source) != true
            default: toServer = relay == nil
            }
            if toServer {
                server.receive(payload, from: source)
                return
            }
        }
        if let relay {
            relay.receive(payload, from: source)
        } else {
            unhandledRelayFrames += 1
        }
    }

    public var localAddress: PeerAddress { host.localAddress }

    /// Makes this peer a relay for others and announces it on `infoHashes` so that clients find
    /// it: a volunteer (`turf dht serve --relay`, a peer without an identity, on
    /// `RelayFrame.relayInfoHash`) or a player (`servePlayerRelay`). Once; `stopServingRelay`
    /// ends it.
    public func serveRelay(
        _ config: RelayServer.Config = RelayServer.Config(),
        infoHashes: [NodeID] = [RelayFrame.relayInfoHash]
    ) {
        precondition(relayServer == nil, "this peer already relays")
        let server = RelayServer(host: host, config: config, random: random)
        relayServer = server
        relayAnnounce = infoHashes
        let port = host.localAddress.port
        // Tells joiners which relay holds their host (they look it up first: `findRelays`).
        server.onNewTag = { [weak self] tag in
            self?.dht.announce(RelayFrame.holderHash(tag), port: port, impliedPort: true) { _, _ in }
        }
        for h in infoHashes { dht.keepAnnouncing(h, port: port, impliedPort: true) }
        // A node that has just started knows few others: the first announce may store nowhere
        // (then it is retried after 5 s). Announce again while the routing table fills.
        for s in [1, 2, 3] {
            host.schedule(after: .seconds(s)) { [weak self] in
                guard let self, self.relayAnnounce == infoHashes else { return }
                for h in infoHashes { self.dht.announce(h, port: port, impliedPort: true) { _, _ in } }
            }
        }
    }

    /// Relays for others as a player (`RelayServer.Config.player`, or `config`): announced on
    /// `RelayFrame.playerRelayInfoHash` and on this node's shard at each level of `shards`
    /// (`RelayFrame.playerRelayShardLevels`; empty: the single info-hash alone).
    public func servePlayerRelay(
        _ config: RelayServer.Config = .player,
        shards: [Int] = RelayFrame.playerRelayShardLevels
    ) {
        let id = dht.id
        serveRelay(
            config,
            infoHashes: [RelayFrame.playerRelayInfoHash]
                + shards.filter { $0 > 1 }.map { RelayFrame.playerRelayShard(for: id, of: $0) }
        )
    }

    /// Looks the relays a pair on `tag` can use up on the DHT: the relays that hold the tag (when
    /// `holders`: a joiner's lookup; the host does not trust them), volunteers, and player relays
    /// (a sample of all of them, and the tag's shard at each level of `shards`). `done` runs once,
    /// when every lookup has ended. `onUpdate`, if given, runs each time an answer brought
    /// relays, with all found so far: a joiner acts on the first ones instead of waiting for the
    /// slowest nodes of several lookups (about a second more in `bench internet`; the nodes that
    /// answer first with values hold about all of a shard).
    public func findRelays(
        tag: NodeID,
        shards: [Int] = RelayFrame.playerRelayShardLevels,
        holders: Bool = true,
        onUpdate: ((RelaysFound) -> Void)? = nil,
        done: @escaping (RelaysFound) -> Void
    ) {
        let levels = shards.filter { $0 > 1 }
        var found = RelaysFound()
        found.players.shards = levels.map { _ in [] }
        var waiting = (holders ? 3 : 2) + levels.count
        func lookup(_ hash: NodeID, _ store: @escaping (inout RelaysFound, [PeerAddress]) -> Void) {
            dht.getPeers(
                hash,
                onPeers: { peers in
                    store(&found, peers)
                    onUpdate?(found)
                }
            ) { r in
                store(&found, r.peers)
                waiting -= 1
                if waiting == 0 { done(found) }
            }
        }
        if holders { lookup(RelayFrame.holderHash(tag)) { f, p in f.holders = Self.merged(f.holders, p) } }
        lookup(RelayFrame.relayInfoHash) { f, p in f.volunteers = Self.merged(f.volunteers, p) }
        lookup(RelayFrame.playerRelayInfoHash) { f, p in f.players.all = Self.merged(f.players.all, p) }
        for (i, n) in levels.enumerated() {
            lookup(RelayFrame.playerRelayShard(for: tag, of: n)) { f, p in
                f.players.shards[i] = Self.merged(f.players.shards[i], p)
            }
        }
    }

    private static func merged(_ a: [PeerAddress], _ b: [PeerAddress]) -> [PeerAddress] {
        var seen = Set(a)
        return a + b.filter { seen.insert($0).inserted }
    }

    /// Stops relaying for others (a player whose NAT turned out not to let others in, or who
    /// opted out): no more announces, and the relay's registrations and channels are dropped.
    public func stopServingRelay() {
        for h in relayAnnounce { dht.stopAnnouncing(h) }
        relayAnnounce = []
        relayServer?.stop()
        relayServer = nil
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
