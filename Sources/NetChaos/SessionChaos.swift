import DHT
import Determinism
import Engine
import Keys
import Lobby
import NetCore
import NetMatch
import NetPlay
import NetSim
import NetStack
import Sodium
import Transport
import TurfRules

/// A whole networked turf match through the real stack on the simulated network, in virtual time:
/// `Peer`s (one socket each: demultiplexer and session manager) with real Noise handshakes and
/// real reliable/unreliable channels, the lobby as `turf` runs it (NetPlay's `LobbyHost` and
/// `LobbyJoiner`: hello, roster, settings, commit–reveal, start with the mixed seed), then on every
/// peer NetPlay's `MatchSession` of bots, with `NetMatch` on the sessions' unreliable channels
/// (redundancy 0), settled and checked: every peer's final replica hash, and its recorded replay
/// signatures verified against its own logs.
///
/// What is simulated: the network (`SimNetwork`'s seeded conditioner: loss, duplicates,
/// reordering, jitter, one peer's partition) and the clock (every peer reads the network's virtual
/// time, so they share one clock: the real members' clock-offset estimation is not exercised).
/// Discovery is skipped (members dial the host's address by its key, as with an invite).
///
/// Everything is seeded: the conditioner, the match, the identities, the DHT, and the transport's
/// own randomness (ephemeral keys, session indices, cookie secrets, path challenges,
/// handshake-retry jitter: each peer's `RandomSource` is seeded from the run's seed). So a run
/// repeats exactly from its seed (final hashes, network stats, end time), and a failing seed can
/// be replayed; production peers draw from the system CSPRNG instead.
package struct SessionChaos {
    package struct Conditions: Sendable {
        package var link = LinkConditions(
            loss: 0.3,
            duplicate: 0.1,
            reorder: 0.1,
            latency: .milliseconds(40),
            jitter: .milliseconds(60),
            reorderDelay: .milliseconds(100)
        )
        /// This peer (by index; 0 is the host) is cut off from everyone for `partitionNanos`,
        /// starting `partitionAfterNanos` after tick 0. nil: no partition.
        package var partitionPeer: Int? = 1
        package var partitionAfterNanos: UInt64 = 500_000_000
        /// Start the partition no earlier than the partitioned peer's start: cut off earlier, a peer
        /// whose start the reliable channel was still retransmitting never begins, and the run
        /// measures the lobby, not the match (a run that must get past the lobby sets this).
        package var partitionAfterStart = false
        package var partitionNanos: UInt64 = 5_000_000_000
        package init() {}
    }

    package struct Result: Sendable {
        /// The lobby finished: every member got a start whose seed it verified against the roster's
        /// commits (and the host checked every reveal against its member's hello).
        package var lobbyOK: Bool
        package var seed: UInt64
        /// Established sessions per peer when the match started (a full mesh: peers − 1 each).
        package var sessionsAtStart: [Int]
        package var finalHashes: [UInt64]
        /// Every peer's hash equals the union of every owner's own log, and every peer's replay
        /// signatures verify over every op it holds.
        package var converged: Bool
        package var signaturesOK: Bool
        package var settled: Bool
        package var network: SimNetwork.Stats
        /// Datagrams eaten by the partition while it was up.
        package var partitionedDatagrams: UInt64
        /// Ops sent by a peer other than their owner (relays).
        package var relayed: UInt64
        package var handshakesCompleted: UInt64
        package var reliableRetransmissions: UInt64
        /// Ops in the final replicas, summed over peers.
        package var opsHeld: Int
        /// Members whose start message arrived after tick 0: as with `turf join`, they start the
        /// match late (no snapshot: the ticks they missed are skipped, in which their own player
        /// made no ops; their log begins at seq 0; others' ops reach them by NetMatch's redundancy).
        package var lateStarts: Int
        /// Dials tried again in the lobby after every handshake attempt was lost.
        package var redials: Int
        /// Virtual time at the end (ns).
        package var endNanos: UInt64
        /// What failed, if something did (for a test's message).
        package var failure: String?
    }

    package let settings: TurfSettings
    package let peers: Int
    package let seconds: Int
    package let seed: UInt64
    package var conditions: Conditions

    package init(
        settings: TurfSettings,
        peers: Int = 8,
        seconds: Int,
        seed: UInt64,
        conditions: Conditions = Conditions()
    ) {
        precondition((2...8).contains(peers) && seconds > 0)
        self.settings = settings
        self.peers = peers
        self.seconds = seconds
        self.seed = seed
        self.conditions = conditions
    }

    /// One peer of the run: its stack, its sessions by link, what arrived on them (as turf's
    /// `Links` posts it: link events, and the match's datagrams apart).
    final class Node {
        let index: Int
        let identity: Identity
        let peer: Peer
        var sessions: [LinkID: Session] = [:]
        var inbox: [LinkEvent] = []
        var datagrams: [(link: LinkID, bytes: [UInt8])] = []
        let contribution: [UInt8]
        var key: PeerKey { identity.publicKey }
        /// Established sessions by the peer's key (the mesh as the run checks it).
        var links: [PeerKey: Session] {
            var out: [PeerKey: Session] = [:]
            for s in sessions.values where s.isEstablished { if let k = s.remoteKey { out[k] = s } }
            return out
        }

        init(index: Int, identity: Identity, peer: Peer, contribution: [UInt8]) {
            self.index = index
            self.identity = identity
            self.peer = peer
            self.contribution = contribution
        }

        /// Wires a session as turf's `Links.adopt` does: lobby bytes from the reliable channel,
        /// the match's datagrams from the unreliable one (NetMatch does its own redundancy).
        func adopt(_ s: Session) {
            let id = s.localIndex
            sessions[id] = s
            s.unreliable.redundancy = 0
            s.reliable.onReceive = { [weak self] bytes in self?.inbox.append(.message(id, bytes: bytes)) }
            s.unreliable.onReceive = { [weak self] bytes in self?.datagrams.append((id, bytes)) }
            s.onStateChange = { [weak self, weak s] state in
                guard let self, let s else { return }
                switch state {
                case .established:
                    if let k = s.remoteKey { inbox.append(.opened(id, key: k, address: s.peerAddress, relayed: false)) }
                case .closed(let reason):
                    sessions[id] = nil
                    inbox.append(.closed(id, reason: "\(reason)"))
                case .connecting: break
                }
            }
            if s.isEstablished, let k = s.remoteKey {
                inbox.append(.opened(id, key: k, address: s.peerAddress, relayed: false))
            }
        }

        /// Sessions this peer dialed, by the key dialed, and how many times it dialed again.
        var dials: [PeerKey: (address: PeerAddress, session: Session)] = [:]
        var redials = 0

        /// Dials `k` at `address` by its key (Noise IK), as a joiner does the host and a member
        /// the members with smaller keys.
        func dial(_ k: PeerKey, at address: PeerAddress) {
            let s = peer.sessions!.connect(to: address, mode: .knownKey(k))
            dials[k] = (address, s)
            adopt(s)
        }

        /// A dial whose handshake gave up (every attempt lost) is tried again, as a person would
        /// join again: the lobby waits for the whole room.
        func redialFailed() {
            for (k, d) in dials.sorted(by: { $0.key < $1.key }) where d.session.isClosed && links[k] == nil {
                redials += 1
                dial(k, at: d.address)
            }
        }

        /// Carries out a state machine's actions, as turf's `NetRuntime.perform` does.
        func perform(_ actions: [LinkAction]) {
            for a in actions {
                switch a {
                case .send(let id, let bytes): try? sessions[id]?.reliable.send(bytes)
                case .datagram(let id, let bytes): try? sessions[id]?.unreliable.send(bytes)
                case .close(let id), .closeWhenFlushed(let id): sessions.removeValue(forKey: id)?.close()
                case .dial(let k, let addresses): if let a = addresses.first { dial(k, at: a) }
                case .probe(let addresses): peer.puncher.probe(addresses, times: 3)
                }
            }
        }

        func takeInbox() -> [LinkEvent] {
            defer { inbox.removeAll() }
            return inbox
        }
    }

    package func run() throws -> Result {
        let net = SimNetwork(seed: seed, conditions: conditions.link)
        net.maxDatagram = 1200  // turf's session budget: a larger datagram would be a lost one
        var rng = SplitMix64(seed: seed, stream: 0xC4A0)
        func bytes32() -> [UInt8] { (0..<4).flatMap { _ in withUnsafeBytes(of: rng.next().littleEndian, Array.init) } }
        var nodes: [Node] = []
        for i in 0..<peers {
            let identity = try Identity(signing: try Ed25519.KeyPair(seed: bytes32()))
            var dht = DHTConfig()
            dht.seed = seed &+ UInt64(i)
            dht.bootstrap = []
            let peer = Peer(
                host: net.bind(PeerAddress(10, 0, 0, UInt8(i + 1), port: 7000)),
                dht: dht,
                identity: identity,
                random: .seeded(StableHash.of(seed, 0x7A5E_5E55, UInt64(i)))
            )
            nodes.append(Node(index: i, identity: identity, peer: peer, contribution: bytes32()))
        }
        for n in nodes { n.peer.sessions?.onInbound = { [weak n] s in n?.adopt(s) } }
        var failure: String?
        let host = nodes[0]
        let members = Array(nodes.dropFirst())

        // MARK: lobby (NetPlay's LobbyHost and LobbyJoiner, as `turf host` and `turf join` drive them)
        var lobby = LobbyHost(
            config: .init(
                me: host.key,
                name: "host",
                settings: .init(map: settings.map.name, seconds: UInt32(seconds)),
                maxPlayers: peers
            ),
            contribution: host.contribution
        )
        // Members join the host by its key (Noise IK); once the session is up, they say hello.
        for m in members { m.dial(host.key, at: host.peer.localAddress) }
        var joiners = [LobbyJoiner?](repeating: nil, count: peers)
        // Each peer's match session, once it has its start (a peer with one no longer takes part
        // in the lobby: its events are the session's).
        var matches = [MatchSession<TurfController>?](repeating: nil, count: peers)
        /// Events that came before a member's joiner existed (the mesh's sessions), handed to it.
        var early = [[LinkEvent]](repeating: [], count: peers)

        /// One step of every peer's lobby (run between slices of network time).
        func lobbyStep() {
            for m in members where matches[m.index] == nil { m.redialFailed() }
            if matches[0] == nil {
                for e in host.takeInbox() { lobby.handle(e, now: net.now) }
                host.perform(lobby.take().actions)
            }
            for m in members where matches[m.index] == nil {
                for e in m.takeInbox() {
                    if joiners[m.index] == nil, case .opened(let id, let key, _, _) = e, key == host.key {
                        joiners[m.index] = LobbyJoiner(
                            config: .init(me: m.key, name: "p\(m.index)", contribution: m.contribution),
                            hostLink: id,
                            hostKey: host.key
                        )
                        for earlier in early[m.index] { joiners[m.index]!.handle(earlier, now: net.now) }
                        continue
                    }
                    if joiners[m.index] == nil {
                        early[m.index].append(e)
                    } else {
                        joiners[m.index]!.handle(e, now: net.now)
                    }
                }
                if joiners[m.index] != nil { m.perform(joiners[m.index]!.take().actions) }
            }
        }
        let step: Nanos = .milliseconds(20)
        func drive(until deadline: Nanos, _ body: () -> Void, while going: () -> Bool) {
            while going() && net.now < deadline {
                net.run(until: net.now + step)
                body()
            }
        }
        // Everyone seated and (as a player waiting for the room before pressing Enter) the mesh up.
        let meshUp = { nodes.allSatisfy { $0.links.count == peers - 1 } }
        drive(until: 60_000_000_000, lobbyStep) { lobby.seats.count < peers || !meshUp() }
        let sessionsAtStart = nodes.map { $0.links.count }
        if lobby.seats.count < peers { failure = failure ?? "lobby: only \(lobby.seats.count) of \(peers) seated" }
        // Commit–reveal, then the start: bots of alternating strength play.
        lobby.requestReveals(now: net.now)
        var start: LobbyMessage.Start?
        drive(
            until: net.now + 30_000_000_000,
            {
                lobbyStep()
                start = lobby.startIfReady(now: net.now, startAt: net.now + 1_000_000_000) { seed, players in
                    let bots = players.enumerated().map { i, p in
                        PlayerInfo(
                            name: p.name,
                            kind: .bot,
                            level: (i % 2 == 0 ? Bot.Level.hard : .easy).rawValue,
                            owner: p.owner
                        )
                    }
                    return settings.matchConfig(seed: seed, players: bots, seconds: seconds)
                }
                host.perform(lobby.take().actions)
            },
            while: { start == nil }
        )
        guard let start, start.config.players.count == peers else {
            return failed(failure ?? "lobby: reveals missing", net: net, nodes: nodes, sessions: sessionsAtStart)
        }
        let config = start.config
        let startAt = start.startAt

        // MARK: match (NetPlay's MatchSession on every peer)
        /// The partition starts `partitionAfterNanos` after tick 0 (with `partitionAfterStart`, not
        /// before the partitioned peer has its start).
        func schedulePartition(_ n: Node) {
            let ip = n.peer.localAddress.ip
            let from = max(net.now, startAt &+ conditions.partitionAfterNanos)
            net.schedule(after: from &- net.now) { net.partition([ip], into: 1) }
            net.schedule(after: from &+ conditions.partitionNanos &- net.now) { net.heal() }
        }
        if let p = conditions.partitionPeer, !conditions.partitionAfterStart { schedulePartition(nodes[p]) }
        // Each peer's session starts when its start is in (a member whose start the reliable
        // channel delivered after tick 0 starts late, as `turf join` does: its loop skips the ticks
        // it missed).
        var settled = [Bool](repeating: false, count: peers)
        var lateStarts = 0
        func begin(_ n: Node) throws {
            guard matches[n.index] == nil else { return }
            var links: [PeerKey: LinkID] = [:]
            var hostLink: LinkID?
            if n.index == 0 {
                for s in lobby.seats { if let l = s.link { links[s.key] = l } }
            } else {
                guard let j = joiners[n.index], let outcome = j.outcome else { return }
                guard case .start(let s, _, _) = outcome else {
                    failure = failure ?? "peer \(n.index): \(outcome)"
                    return
                }
                guard s == start else {
                    failure = failure ?? "peer \(n.index): another start than the host's"
                    return
                }
                links = j.direct
                links[host.key] = j.hostLink
                hostLink = j.hostLink
                if net.now > startAt { lateStarts += 1 }
            }
            matches[n.index] = try MatchSession(
                options: .init(
                    me: n.key,
                    identity: n.identity.signing,
                    isHost: n.index == 0,
                    hostLink: hostLink,
                    start: start
                ),
                controllers: TurfMatch.controllers(config: config, ownedBy: n.key),
                links: links,
                startLocal: startAt,
                now: net.now
            )
            if conditions.partitionAfterStart && n.index == conditions.partitionPeer { schedulePartition(n) }
        }
        for n in nodes { try begin(n) }
        let settleDeadline =
            startAt + UInt64(config.lengthTicks + 1) * 1_000_000_000 / UInt64(config.tickRate) + 30_000_000_000
        drive(
            until: settleDeadline,
            {
                if matches.contains(where: { $0 == nil }) {
                    lobbyStep()
                    for n in nodes { try? begin(n) }
                }
                for n in nodes {
                    guard let m = matches[n.index] else { continue }
                    for e in n.takeInbox() { m.handle(e, now: net.now) }
                    for d in n.datagrams { m.receive(d.bytes, on: d.link) }
                    n.datagrams.removeAll()
                    if !m.isOver {
                        m.advance(now: net.now)
                    } else {
                        settled[n.index] = m.settle(now: net.now)
                    }
                    n.perform(m.take().actions)
                }
            },
            while: { !settled.allSatisfy { $0 } }
        )
        guard failure == nil, case let ms = matches.compactMap({ $0 }), ms.count == peers else {
            return failed(
                failure ?? "lobby: \(matches.filter { $0 == nil }.count) starts missing",
                net: net,
                nodes: nodes,
                sessions: sessionsAtStart
            )
        }
        let allSettled = ms.allSatisfy { $0.net.isSettled }

        // MARK: verdict
        var hashes: [UInt64] = []
        var sigsOK = true
        var opsHeld = 0
        for i in 0..<peers {
            let r = ms[i].final ?? ms[i].loop.replica
            hashes.append(r.hash)
            opsHeld += r.allLogs.reduce(0) { $0 + $1.count }
            if let bad = OpChain.check(
                config: config,
                logs: r.allLogs,
                signatures: ms[i].net.recordedSignatures,
                as: TurfWorld.self
            ) {
                sigsOK = false
                failure = failure ?? "peer \(i): \(bad)"
            }
        }
        var union = try Replica<TurfWorld>(config: config)
        for i in 0..<peers {
            for p in config.players(ownedBy: nodes[i].key) {
                for op in ms[i].loop.replica.ops(of: p, from: 0) { union.receive(op) }
            }
        }
        let converged = sigsOK && allSettled && hashes.allSatisfy { $0 == union.hash }
        if !converged && failure == nil {
            let unsettled = (0..<peers).filter { !ms[$0].net.isSettled }.map { i in
                let h = ms[i].net
                let down = nodes.filter { $0.index != i && !h.isConnected($0.key) }.map(\.index)
                let noSession = nodes.filter { $0.index != i && nodes[i].links[$0.key] == nil }.map(\.index)
                let rx = nodes.filter { $0.index != i }.map { h.stats(for: $0.key)?.datagramsReceived ?? 0 }
                let tx = nodes.filter { $0.index != i }.map { h.stats(for: $0.key)?.datagramsSent ?? 0 }
                return
                    "peer \(i) (final tick \(h.finalTick), down \(down), no session \(noSession), rx \(rx), tx \(tx), drops \(h.drops))"
            }
            failure =
                "unsettled: \(unsettled); hashes equal \(Set(hashes).count == 1), union \(hashes.first == union.hash)"
        }
        var relayed: UInt64 = 0
        for m in ms {
            for n in nodes { relayed += m.net.stats(for: n.key)?.opsForwarded ?? 0 }
        }
        return Result(
            lobbyOK: true,
            seed: config.seed,
            sessionsAtStart: sessionsAtStart,
            finalHashes: hashes,
            converged: converged,
            signaturesOK: sigsOK,
            settled: allSettled,
            network: net.stats,
            partitionedDatagrams: net.stats.partitioned,
            relayed: relayed,
            handshakesCompleted: nodes.reduce(0) { $0 + ($1.peer.sessions?.stats.handshakesCompleted ?? 0) },
            reliableRetransmissions: Self.retransmissions(nodes),
            opsHeld: opsHeld,
            lateStarts: lateStarts,
            redials: nodes.reduce(0) { $0 + $1.redials },
            endNanos: net.now,
            failure: failure
        )
    }

    static func retransmissions(_ nodes: [Node]) -> UInt64 {
        nodes.reduce(0) { acc, n in acc + n.sessions.values.reduce(0) { $0 + $1.reliable.stats.retransmissions } }
    }

    private func failed(_ why: String, net: SimNetwork, nodes: [Node], sessions: [Int]) -> Result {
        Result(
            lobbyOK: false,
            seed: 0,
            sessionsAtStart: sessions,
            finalHashes: [],
            converged: false,
            signaturesOK: false,
            settled: false,
            network: net.stats,
            partitionedDatagrams: net.stats.partitioned,
            relayed: 0,
            handshakesCompleted: nodes.reduce(0) { $0 + ($1.peer.sessions?.stats.handshakesCompleted ?? 0) },
            reliableRetransmissions: Self.retransmissions(nodes),
            opsHeld: 0,
            lateStarts: 0,
            redials: nodes.reduce(0) { $0 + $1.redials },
            endNanos: net.now,
            failure: why
        )
    }
}
