import DHT
import NetCore
import NetSim
import NetStack
import Sodium
import Transport

/// One player of `bench internet`: turf's whole network stack (`Peer`: a real DHT node, real
/// Noise sessions, hole punching, the relay client and, when its NAT lets others in, a player
/// relay) on one simulated socket behind its NAT. What it does as a host or a joiner is what
/// `turf host` and `turf join` do (Sources/turf/NetHost.swift, NetRuntime+Traversal.swift,
/// NetRuntime+Relay.swift), driven by timers in virtual time instead of a thread.
final class SimPlayer {
    let index: Int
    let nat: PlayerNAT
    let peer: Peer
    let identity: Identity
    /// The socket's own address (inside its NAT).
    let inside: PeerAddress
    /// Sessions this player accepted (a host's joiners), kept alive.
    var inbound: [Session] = []
    /// Game traffic sent on relayed sessions, for `matchSeconds` after they opened.
    var trafficSeconds = 60
    /// `InternetSimulation.Parameters.relayShards` and `.relayHolders`.
    var relayShards = RelayFrame.playerRelayShardLevels
    var relayHolders = true

    init(index: Int, nat: PlayerNAT, peer: Peer, identity: Identity, inside: PeerAddress) {
        self.index = index
        self.nat = nat
        self.peer = peer
        self.identity = identity
        self.inside = inside
    }

    var now: Nanos { peer.host.now }

    /// How turf classifies this player's NAT now (the DHT's reports, against the socket's own IP).
    var natKind: NATKind {
        NATKind.classify(dht: peer.dht.natType, external: peer.dht.externalAddress, localIPs: [inside.ip])
    }

    /// Joins the DHT from `saved` (a converged table: turf starts from the nodes it saved) and,
    /// once the join lookup ends, relays for others if its NAT is open or consistent.
    /// `reachableOnly`: relay only if others can reach this player unsolicited (open, or a
    /// consistent NAT that does not filter), as a reachability check would tell it.
    func goOnline(
        saved: [NodeInfo],
        playerRelays: Bool,
        reachableOnly: Bool = false,
        reachable: Bool = true,
        onRelay: @escaping (SimPlayer) -> Void
    ) {
        peer.start(savedNodes: saved) { [weak self] _ in
            guard let self, playerRelays, reachable || !reachableOnly else { return }
            let kind = self.natKind
            if kind == .open || kind == .consistent {
                self.peer.servePlayerRelay(shards: self.relayShards)
                if !self.relayHolders { self.peer.relayServer?.onNewTag = nil }
                onRelay(self)
            }
        }
        peer.sessions?.onInbound = { [weak self] s in
            guard let self else { return }
            self.inbound.append(s)
            s.onStateChange = { [weak self, weak s] state in
                guard let self, let s, state == .established, RelayClient.isVirtual(s.peerAddress) else { return }
                self.sendTraffic(on: s)
            }
        }
    }

    /// A match's traffic on a relayed session: 10 messages a second of 300 bytes (about 3 KB/s,
    /// what a relayed match link carries: RelayServer.Config.player), for `trafficSeconds`.
    func sendTraffic(on s: Session) {
        var left = trafficSeconds * 10
        func tick() {
            guard left > 0, s.isEstablished else { return }
            left -= 1
            try? s.unreliable.send([UInt8](repeating: 0x5A, count: 300))
            peer.host.schedule(after: .milliseconds(100)) { tick() }
        }
        tick()
    }

    // MARK: relays (NetRuntime+Relay.swift)

    /// Looks relays up as turf does (`Peer.findRelays`: volunteers, the tag's shard of player
    /// relays, a sample of all of them) and orders them as turf does (`RelayFrame.order`),
    /// leaving out the lobby's host (`host`: its addresses), so that host and joiner rank the
    /// same list. `done` gets the ranked list (maybe empty).
    func findRelays(tag: NodeID, host: Set<PeerAddress>, done: @escaping ([PeerAddress]) -> Void) {
        peer.findRelays(tag: tag, shards: relayShards, holders: false) { found in
            done(
                RelayFrame.order(
                    members: [],
                    volunteers: found.volunteers,
                    players: found.players,
                    tag: tag,
                    excluding: host
                )
            )
        }
    }

    // MARK: hosting (NetHost.swift, HostTraversal, startHostRelay)

    private var watcher: KnockWatcher?
    private var listener: KnockListener?
    private var lobby: NodeID?

    /// Opens a lobby on `topic`: announces it (re-announcing, keeping the NAT mappings to the
    /// nodes that hold it alive every 20 s), polls the knocks, listens for fast knocks, and
    /// registers at the four relays it ranks first (again every 30 s; every 2 s while none).
    func host(topic: String) {
        let h = Topic.infoHash(topic)
        lobby = h
        peer.dht.keepAnnouncing(h, port: inside.port, impliedPort: true, keepAlive: .seconds(20))
        let w = KnockWatcher(peer: peer, topic: topic)
        watcher = w
        w.start()
        let keys = [try? identity.signing.x25519(), KnockSeal.topicKeys(topic: topic)].compactMap { $0 }
        let l = KnockListener(peer: peer, infoHash: h, keys: keys)
        listener = l
        l.start()
        registerAtRelays(tag: RelayFrame.tag(topic: topic))
    }

    /// The match starts: the lobby is no longer announced, knocks are no longer watched for, and
    /// no more relays are looked up (the registrations already made stay, as do the sessions).
    func closeLobby() {
        guard let h = lobby else { return }
        lobby = nil
        peer.dht.stopAnnouncing(h)
        watcher?.stop()
        listener?.stop()
        watcher = nil
        listener = nil
    }

    private func registerAtRelays(tag: NodeID) {
        let me = Set([peer.dht.externalAddress, inside].compactMap { $0 })
        findRelays(tag: tag, host: me) { [weak self] relays in
            guard let self, self.lobby != nil, let client = self.peer.relay else { return }
            // The four ranked first (RelayClient's most): a player relay may turn out unreachable
            // (a consistent NAT that filters), and the joiner walks down the same ranking.
            if !relays.isEmpty { client.register(tag: tag, at: Array(relays.prefix(RelayClient.maxRegistrations))) }
            self.peer.host.schedule(after: .seconds(relays.isEmpty ? 2 : 30)) { [weak self] in
                self?.registerAtRelays(tag: tag)
            }
        }
    }
}
