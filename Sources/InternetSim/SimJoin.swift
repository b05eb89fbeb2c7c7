import DHT
import NetCore
import NetSim
import NetStack
import Transport

/// One join of `bench internet`, as `turf join <topic>` does it (NetRuntime+LAN.swift's
/// `findByTopic`, NetRuntime+Traversal.swift's `connectToHost`, NetRuntime+Relay.swift's
/// `RelayLookup` and `JoinRelay`), in virtual time: look the topic up (up to 15 s) and, beside
/// it, the relays (`Peer.findRelays`, acting on the first answers); once the lobby is found, at
/// once knock on the slow path (announce on the knock info-hash), probe the candidates three
/// times, start a handshake to each, and knock on the fast path (through the nodes holding the
/// lobby: plain Mainline nodes answer "method unknown"); after `RelayClient.joinDelay` without a
/// session (at once when every handshake gave up), join two relays and start a handshake through
/// each. A round whose joins all came back without a channel is followed at once by the next two
/// (`RelayWalk`, as turf's: those that failed fewer times first; also when a round's channels
/// carried no session within 2.5 s), or a second later once all were tried; five rounds at
/// most. The first session up wins. The connect phase gives up after 12 s, or 10 s after the
/// first relayed handshake started if that is later.
final class SimJoin {
    enum Outcome: String, Sendable {
        case connected, notFound, timedOut
    }

    let player: SimPlayer
    let topic: String
    /// The host's LAN address when it is in the same home (what LAN discovery would find).
    let lanHost: PeerAddress?
    let began: Nanos
    private let dhtSentAtStart: UInt64
    private(set) var outcome: Outcome?
    private(set) var path: String?
    private(set) var finishedAt: Nanos = 0
    private(set) var relayUsed: PeerAddress?
    /// When the lookup found the lobby (the connect phase began).
    private(set) var foundAt: Nanos?
    private(set) var relaysFound: Int?
    /// Relay joins that gave a channel, and handshakes started through one.
    private(set) var relayChannels = 0
    var onDone: ((SimJoin) -> Void)?
    /// When relays join in (nil: turf's, `RelayClient.joinDelay`).
    var relayAfter: Nanos?

    private var pending: [Session] = []
    private var relayOf: [ObjectIdentifier: PeerAddress] = [:]
    private var roundOf: [ObjectIdentifier: Int] = [:]
    private var connectStarted: Nanos = 0
    private var relayStartAt: Nanos = 0
    /// What the relay lookups found (nil while they run); ordered on use, without the host.
    private var found: RelaysFound?
    /// Every relay lookup has ended (`found` is all they will find).
    private var relaysComplete = false
    /// The rounds of relay joins, and the relays that failed.
    private var walk = RelayWalk()
    /// Every relay found so far, in the order to try them: never the host, never this player.
    private var relays: [PeerAddress]? {
        found.map {
            walk.ordered(
                RelayFrame.order(
                    members: [],
                    holders: $0.holders,
                    volunteers: $0.volunteers,
                    players: $0.players,
                    tag: tag,
                    excluding: hostAddresses.union([player.peer.dht.externalAddress, player.inside].compactMap { $0 })
                )
            )
        }
    }
    private let tag: NodeID
    private var relayLookups = 0
    private var lastRelayLookup: Nanos = 0
    private var relayJoined = false
    private var firstRelayed: Nanos?
    private var knockSender: KnockSender?
    private var hostAddresses: Set<PeerAddress> = []

    static let findSeconds: Nanos = .seconds(15)
    static let connectSeconds: Nanos = .seconds(12)

    init(player: SimPlayer, topic: String, lanHost: PeerAddress?) {
        self.player = player
        self.topic = topic
        self.lanHost = lanHost
        began = player.now
        dhtSentAtStart = player.peer.dht.stats.sent
        tag = RelayFrame.tag(topic: topic)
    }

    var dhtMessages: UInt64 { player.peer.dht.stats.sent &- dhtSentAtStart }

    /// Why a join failed, for the report: no lobby found, no relay found, no relay gave a
    /// channel (unreachable, full, or the host not registered there), or the relayed handshake
    /// did not complete.
    var failure: String? {
        switch outcome {
        case .connected?, nil: return nil
        case .notFound?: return "lobby_not_found"
        case .timedOut?:
            if relaysFound ?? 0 == 0 { return "no_relay_found" }
            if walk.rounds == 0 { return "relay_not_tried" }
            return relayChannels == 0 ? "no_relay_channel" : "relayed_handshake_failed"
        }
    }
    var joinNanos: Nanos { finishedAt &- began }

    /// The topic lookup, and at the same time the relay lookups (turf's `RelayLookup`: the topic
    /// names the relay shard, so they need not wait for the lobby).
    func start() {
        lookup()
        lookupRelays()
    }

    // MARK: finding the lobby

    private func lookup() {
        var found = false
        player.peer.dht.getPeers(
            Topic.infoHash(topic),
            onValues: { [weak self] _, values in
                guard let self, !found, self.outcome == nil, !values.isEmpty else { return }
                found = true
                self.connect(values)
            }
        ) { [weak self] _ in
            guard let self, !found, self.outcome == nil else { return }
            if let lan = self.lanHost {
                found = true
                self.connect([lan])
            } else if self.player.now &- self.began < Self.findSeconds {
                self.lookup()
            } else {
                self.finish(.notFound)
            }
        }
    }

    // MARK: connecting

    private func connect(_ found: [PeerAddress]) {
        let peer = player.peer
        let me = peer.dht.externalAddress
        let ordered = HolePuncher.order(
            ([lanHost].compactMap { $0 } + found).filter { $0 != me && $0 != player.inside }
        )
        hostAddresses = Set(ordered)
        connectStarted = player.now
        foundAt = connectStarted
        let kind = player.natKind
        relayStartAt = connectStarted &+ (relayAfter ?? RelayClient.joinDelay)
        // The slow path's knock (the birthday method is not simulated: see docs/benchmarks.md).
        peer.dht.announce(HolePuncher.knockHash(topic: topic), port: player.inside.port, impliedPort: true) { _, _ in }
        peer.puncher.probe(ordered, times: 3)
        for a in ordered { adopt(peer.sessions?.connect(to: a, mode: .discovered), relay: nil) }
        let addresses = [me, player.inside].compactMap { $0 } + [Birthday.marker(for: kind)].compactMap { $0 }
        let blob = KnockSeal.seal(addresses, to: KnockSeal.topicKeys(topic: topic).publicKey) ?? []
        let sender = KnockSender(peer: peer)
        knockSender = sender
        sender.knock(Topic.infoHash(topic), blob: blob, hosts: Set(ordered))
        tick()
    }

    private func adopt(_ s: Session?, relay: PeerAddress?) {
        guard let s else { return }
        pending.append(s)
        if let relay {
            relayOf[ObjectIdentifier(s)] = relay
            roundOf[ObjectIdentifier(s)] = walk.rounds
        }
        s.onStateChange = { [weak self, weak s] state in
            guard let self, let s else { return }
            switch state {
            case .established: self.won(s)
            case .closed: self.pending.removeAll { $0 === s }
            case .connecting: break
            }
        }
    }

    /// The join round whose relay carried the session (1 is the first), for the report.
    private(set) var relayRound: Int?

    private func won(_ s: Session) {
        guard outcome == nil else { return }
        relayUsed = relayOf[ObjectIdentifier(s)]
        if relayUsed != nil { relayRound = roundOf[ObjectIdentifier(s)] }
        let a = s.peerAddress
        path = RelayClient.isVirtual(a) ? "relayed" : a.isPrivate ? "lan" : "direct"
        for other in pending where other !== s { other.close() }
        pending = [s]
        finish(.connected)
        if relayUsed != nil { player.sendTraffic(on: s) }
    }

    private func finish(_ o: Outcome) {
        guard outcome == nil else { return }
        outcome = o
        finishedAt = player.now
        relaysFound = relays?.count
        if o != .connected {
            for s in pending { s.close() }
            pending = []
        }
        onDone?(self)
    }

    private func lookupRelays() {
        relayLookups += 1
        lastRelayLookup = player.now
        found = nil
        relaysComplete = false
        player.peer.findRelays(
            tag: tag,
            shards: player.relayShards,
            holders: player.relayHolders,
            onUpdate: { [weak self] found in
                guard let self else { return }
                self.found = found
            }
        ) { [weak self] found in
            guard let self else { return }
            self.found = found
            self.relaysComplete = true
        }
    }

    /// Every 200 ms, as the connect loop wakes: the relay's steps, and the deadline.
    private func tick() {
        guard outcome == nil else { return }
        let now = player.now
        let force = pending.isEmpty
        if relayJoined, walk.endRound(now: now) {
            // The next ranks at once while there are untried ones (turf's `JoinRelay` does the
            // same); the same again a second later (the host had not registered yet, say).
            relayJoined = false
            relayStartAt = walk.hasUntried(relays ?? []) ? now : now &+ .seconds(1)
        }
        if !relayJoined, force || now >= relayStartAt, let relays {
            if relays.isEmpty && (!relaysComplete || relayLookups < 4) {
                // Nothing yet: wait for the lookups, and once they ended empty ask again, 2 s apart.
                if relaysComplete && now &- lastRelayLookup > .seconds(2) { lookupRelays() }
            } else {
                relayJoined = true
                // The host registered at the four it ranked first, but its view of the relays (a
                // sample, taken earlier) may differ from ours; a relay without the host answers
                // at once (noHost), and goes behind the untried ones.
                joinRelays(walk.nextRound(relays))
            }
        }
        let deadline = max(connectStarted &+ Self.connectSeconds, firstRelayed.map { $0 &+ .seconds(10) } ?? 0)
        let mayStillAdd = !relayJoined || walk.outstanding > 0
        if now >= deadline || (pending.isEmpty && !mayStillAdd && relays != nil && walk.rounds >= RelayWalk.maxRounds) {
            finish(.timedOut)
            return
        }
        player.peer.host.schedule(after: .milliseconds(200)) { [weak self] in self?.tick() }
    }

    private func joinRelays(_ list: [PeerAddress]) {
        guard let client = player.peer.relay else { return walk.begin([]) }
        walk.begin(list)
        for relay in list {
            client.join(tag: tag, relay: relay) { [weak self] virtual in
                guard let self else { return }
                self.walk.answered(relay, channel: virtual != nil, now: self.player.now)
                guard self.outcome == nil, let virtual else { return }
                self.relayChannels += 1
                if self.firstRelayed == nil { self.firstRelayed = self.player.now }
                self.adopt(self.player.peer.sessions?.connect(to: virtual, mode: .discovered), relay: relay)
            }
        }
    }
}
