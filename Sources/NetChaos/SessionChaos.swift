import DHT
import Determinism
import Engine
import Keys
import Lobby
import NetCore
import NetMatch
import NetSim
import NetStack
import Sodium
import Transport
import TurfRules

/// A whole networked turf match through the real stack on the simulated network, in virtual time:
/// `Peer`s (one socket each: demultiplexer and session manager) with real Noise handshakes and
/// real reliable/unreliable channels, the lobby exchange in the real `LobbyMessage` codec (hello,
/// roster, settings, commit–reveal, start with the mixed seed), then on every peer a `MatchLoop`
/// of bots driven through `NetMatchHook`, with `NetMatch` on the sessions' unreliable channels
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

    /// One peer of the run: its stack, its sessions by remote key, what arrived on them.
    final class Node {
        let index: Int
        let identity: Identity
        let peer: Peer
        var links: [PeerKey: Session] = [:]
        var lobbyInbox: [(from: PeerKey, bytes: [UInt8])] = []
        var datagrams: [(from: PeerKey, bytes: [UInt8])] = []
        let contribution: [UInt8]
        var key: PeerKey { identity.publicKey }

        init(index: Int, identity: Identity, peer: Peer, contribution: [UInt8]) {
            self.index = index
            self.identity = identity
            self.peer = peer
            self.contribution = contribution
        }

        /// Wires a session as turf's `Links.adopt` does: lobby bytes from the reliable channel,
        /// the match's datagrams from the unreliable one (NetMatch does its own redundancy).
        func adopt(_ s: Session) {
            s.unreliable.redundancy = 0
            s.reliable.onReceive = { [weak self, weak s] bytes in
                guard let self, let k = s?.remoteKey else { return }
                self.lobbyInbox.append((k, bytes))
            }
            s.unreliable.onReceive = { [weak self, weak s] bytes in
                guard let self, let k = s?.remoteKey, let o = PeerKey(bytes: k.bytes) else { return }
                self.datagrams.append((o, bytes))
            }
            s.onStateChange = { [weak self, weak s] state in
                guard let self, let s, let k = s.remoteKey else { return }
                switch state {
                case .established: self.links[k] = s
                case .closed: if self.links[k] === s { self.links[k] = nil }
                case .connecting: break
                }
            }
            if s.isEstablished, let k = s.remoteKey { links[k] = s }
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
            for (k, d) in dials where d.session.isClosed && links[k] == nil {
                redials += 1
                dial(k, at: d.address)
            }
        }

        func send(_ m: LobbyMessage, to k: PeerKey) { try? links[k]?.reliable.send(m.encode()) }

        func takeLobby() -> [(from: PeerKey, message: LobbyMessage)] {
            let batch = lobbyInbox
            lobbyInbox.removeAll()
            // Hostile bytes are dropped (none are expected here: every peer is honest).
            return batch.compactMap { m in (try? LobbyMessage.decode(m.bytes)).map { (m.from, $0) } }
        }
    }

    /// One peer's match: its loop and hook (a class, so the driver mutates them in place), and
    /// once the loop is over, the replica that takes the ops accepted while settling.
    final class Match {
        var loop: TurfMatchLoop
        var hook: NetMatchHook<TurfController>
        var final: Replica<TurfWorld>?
        var settled = false
        init(loop: TurfMatchLoop, hook: NetMatchHook<TurfController>) {
            self.loop = loop
            self.hook = hook
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
        let members = nodes.dropFirst()

        // MARK: lobby
        // Members join the host by its key (Noise IK) and say hello with their seed commit.
        for m in members { m.dial(host.key, at: host.peer.localAddress) }
        var helloSent = Set<Int>()
        struct Seat {
            var key: PeerKey
            var name: String
            var commit: [UInt8]
            var address: PeerAddress?
            var reveal: [UInt8]?
        }
        var seats = [
            Seat(key: host.key, name: "host", commit: SeedMix.commit(host.contribution), reveal: host.contribution)
        ]
        let lobbySettings = LobbyMessage.Settings(map: settings.map.name, seconds: UInt32(seconds))
        func roster() -> LobbyMessage {
            .roster(
                .init(
                    members: seats.enumerated().map { i, s in
                        .init(
                            key: s.key.bytes,
                            name: s.name,
                            commit: s.commit,
                            path: i == 0 ? .local : .direct,
                            addresses: s.address.map { [$0] } ?? []
                        )
                    },
                    maxPlayers: UInt8(peers)
                )
            )
        }
        func broadcast(_ m: LobbyMessage) { for s in seats.dropFirst() { host.send(m, to: s.key) } }
        var rosters = [LobbyMessage.Roster?](repeating: nil, count: peers)
        var dialed = [Set<[UInt8]>](repeating: [], count: peers)
        var starts = [LobbyMessage.Start?](repeating: nil, count: peers)
        var seedOK = [Bool](repeating: true, count: peers)

        /// One step of every peer's lobby logic (run between slices of network time).
        func lobbyStep() {
            for m in members { m.redialFailed() }
            for m in members where !helloSent.contains(m.index) && m.links[host.key] != nil {
                helloSent.insert(m.index)
                m.send(
                    .hello(.init(name: "p\(m.index)", key: m.key.bytes, commit: SeedMix.commit(m.contribution))),
                    to: host.key
                )
            }
            for (from, msg) in host.takeLobby() {
                switch msg {
                case .hello(let h) where h.key == from.bytes && seats.count < peers:
                    guard !seats.contains(where: { $0.key == from }) else { continue }
                    seats.append(
                        Seat(key: from, name: h.name, commit: h.commit, address: host.links[from]?.peerAddress)
                    )
                    broadcast(roster())
                    broadcast(.settings(lobbySettings))
                case .reveal(let r):
                    guard let i = seats.firstIndex(where: { $0.key == from }), SeedMix.opens(r, seats[i].commit) else {
                        failure = failure ?? "host: a reveal that does not open its commit"
                        continue
                    }
                    seats[i].reveal = r
                default: break
                }
            }
            for m in members {
                for (from, msg) in m.takeLobby() where from == host.key {
                    switch msg {
                    case .roster(let r):
                        rosters[m.index] = r
                        // The mesh: the member with the greater key dials (each pair once), by IK.
                        for other in r.members
                        where other.path != .local && other.key != m.key.bytes
                            && other.key.lexicographicallyPrecedes(m.key.bytes) && !dialed[m.index].contains(other.key)
                        {
                            guard let k = PeerKey(bytes: other.key) else { continue }
                            dialed[m.index].insert(other.key)
                            if let a = other.addresses.first { m.dial(k, at: a) }
                        }
                    case .revealRequest: m.send(.reveal(m.contribution), to: host.key)
                    case .start(let s):
                        starts[m.index] = s
                        if let r = rosters[m.index] {
                            // As turf's joiner checks it: the start carries our own reveal (we took
                            // the seat, so a late start begins our log at seq 0, never a rejoin).
                            seedOK[m.index] = SeedMix.verify(
                                s,
                                roster: r,
                                myKey: m.key.bytes,
                                myContribution: m.contribution
                            )
                        } else {
                            seedOK[m.index] = false
                        }
                    default: break
                    }
                }
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
        drive(until: 60_000_000_000, lobbyStep) { seats.count < peers || !meshUp() }
        let sessionsAtStart = nodes.map { $0.links.count }
        if seats.count < peers { failure = failure ?? "lobby: only \(seats.count) of \(peers) seated" }
        // Commit–reveal, then the start.
        for s in seats.dropFirst() { host.send(.revealRequest, to: s.key) }
        drive(until: net.now + 30_000_000_000, lobbyStep) { seats.contains { $0.reveal == nil } }
        guard !seats.contains(where: { $0.reveal == nil }) else {
            return failed(failure ?? "lobby: reveals missing", net: net, nodes: nodes, sessions: sessionsAtStart)
        }
        let reveals = seats.map { $0.reveal! }
        let players = seats.enumerated().map { i, s in
            PlayerInfo(
                name: s.name,
                kind: .bot,
                level: (i % 2 == 0 ? Bot.Level.hard : .easy).rawValue,
                owner: PeerKey(bytes: s.key.bytes)
            )
        }
        let config = settings.matchConfig(seed: SeedMix.seed(reveals), players: players, seconds: seconds)
        let startAt = net.now + 1_000_000_000
        let start = LobbyMessage.Start(config: config, startAt: startAt, reveals: reveals)
        starts[0] = start
        broadcast(.start(start))
        drive(until: startAt, lobbyStep) { starts.contains { $0 == nil } }

        // MARK: match
        /// The partition starts `partitionAfterNanos` after tick 0 (with `partitionAfterStart`, not
        /// before the partitioned peer has its start).
        func schedulePartition(_ n: Node) {
            let ip = n.peer.localAddress.ip
            let from = max(net.now, startAt &+ conditions.partitionAfterNanos)
            net.schedule(after: from &- net.now) { net.partition([ip], into: 1) }
            net.schedule(after: from &+ conditions.partitionNanos &- net.now) { net.heal() }
        }
        if let p = conditions.partitionPeer, !conditions.partitionAfterStart { schedulePartition(nodes[p]) }
        // Each peer's loop starts when its start message is in (a member whose start the reliable
        // channel delivered after tick 0 starts late, as `turf join` does: its loop skips the ticks
        // it missed).
        var matches: [Match?] = Array(repeating: nil, count: peers)
        var lateStarts = 0
        func begin(_ n: Node) throws {
            guard matches[n.index] == nil, let s = starts[n.index] else { return }
            guard seedOK[n.index] else {
                failure = failure ?? "peer \(n.index): the start's seed does not match the commits"
                return
            }
            if net.now > s.startAt { lateStarts += 1 }
            let me = PeerKey(bytes: n.key.bytes)!
            let loop = try TurfMatchLoop(
                config: s.config,
                controllers: TurfMatch.controllers(config: s.config, ownedBy: me),
                start: s.startAt
            )
            let hook = NetMatchHook<TurfController>(
                net: try NetMatch<TurfWorld>(config: s.config, identity: n.identity.signing, now: net.now),
                now: { net.now },
                inbound: { [n] in
                    defer { n.datagrams.removeAll() }
                    return n.datagrams
                },
                outbound: { [n] out in
                    for d in out { try? n.links[PeerKey(bytes: d.to.bytes)!]?.unreliable.send(d.bytes) }
                }
            )
            matches[n.index] = Match(loop: loop, hook: hook)
            if conditions.partitionAfterStart && n.index == conditions.partitionPeer { schedulePartition(n) }
        }
        for n in nodes { try begin(n) }
        var opsHeld = 0
        let settleDeadline =
            startAt + UInt64(config.lengthTicks + 1) * 1_000_000_000 / UInt64(config.tickRate)
            + 30_000_000_000
        drive(
            until: settleDeadline,
            {
                if starts.contains(where: { $0 == nil }) {
                    lobbyStep()
                    for n in nodes { try? begin(n) }
                }
                for i in 0..<peers {
                    guard let m = matches[i] else { continue }
                    if m.final == nil {
                        m.loop.advance(now: net.now, hook: &m.hook)
                        if m.loop.isOver {
                            m.final = m.loop.replica
                            // A peer we have no session with now waits on nothing of ours.
                            for p in config.players {
                                guard let o = p.owner, o.bytes != nodes[i].key.bytes,
                                    nodes[i].links[PeerKey(bytes: o.bytes)!] == nil
                                else { continue }
                                m.hook.net.peerLeft(o)
                            }
                        }
                    } else {
                        for op in m.hook.pump() { m.final!.receive(op) }
                        m.settled = m.hook.net.isSettled
                    }
                }
            },
            while: { !matches.allSatisfy { $0?.settled == true } }
        )
        guard failure == nil, case let ms = matches.compactMap({ $0 }), ms.count == peers else {
            return failed(
                failure ?? "lobby: \(starts.filter { $0 == nil }.count) starts missing",
                net: net,
                nodes: nodes,
                sessions: sessionsAtStart
            )
        }
        let settled = ms.allSatisfy { $0.hook.net.isSettled }

        // MARK: verdict
        var hashes: [UInt64] = []
        var sigsOK = true
        for i in 0..<peers {
            let r = ms[i].final ?? ms[i].loop.replica
            hashes.append(r.hash)
            opsHeld += r.allLogs.reduce(0) { $0 + $1.count }
            if let bad = OpChain.check(
                config: config,
                logs: r.allLogs,
                signatures: ms[i].hook.net.recordedSignatures,
                as: TurfWorld.self
            ) {
                sigsOK = false
                failure = failure ?? "peer \(i): \(bad)"
            }
        }
        var union = try Replica<TurfWorld>(config: config)
        for i in 0..<peers {
            for p in config.players(ownedBy: PeerKey(bytes: nodes[i].key.bytes)) {
                for op in ms[i].loop.replica.ops(of: p, from: 0) { union.receive(op) }
            }
        }
        let converged = sigsOK && settled && hashes.allSatisfy { $0 == union.hash }
        if !converged && failure == nil {
            let unsettled = (0..<peers).filter { !ms[$0].hook.net.isSettled }.map { i in
                let h = ms[i].hook.net
                let down = nodes.filter { $0.index != i && !h.isConnected(PeerKey(bytes: $0.key.bytes)!) }.map(\.index)
                let noSession = nodes.filter { $0.index != i && nodes[i].links[$0.key] == nil }.map(\.index)
                let rx = nodes.filter { $0.index != i }.map {
                    h.stats(for: PeerKey(bytes: $0.key.bytes)!)?.datagramsReceived ?? 0
                }
                let tx = nodes.filter { $0.index != i }.map {
                    h.stats(for: PeerKey(bytes: $0.key.bytes)!)?.datagramsSent ?? 0
                }
                let uni = nodes.filter { $0.index != i }.map { nodes[i].links[$0.key]?.unreliable.delivered ?? 0 }
                return
                    "peer \(i) (final tick \(h.finalTick), down \(down), no session \(noSession), rx \(rx), tx \(tx), uni \(uni), drops \(h.drops))"
            }
            failure =
                "unsettled: \(unsettled); hashes equal \(Set(hashes).count == 1), union \(hashes.first == union.hash)"
        }
        var relayed: UInt64 = 0
        for m in ms {
            for n in nodes { relayed += m.hook.net.stats(for: PeerKey(bytes: n.key.bytes)!)?.opsForwarded ?? 0 }
        }
        return Result(
            lobbyOK: true,
            seed: config.seed,
            sessionsAtStart: sessionsAtStart,
            finalHashes: hashes,
            converged: converged,
            signaturesOK: sigsOK,
            settled: settled,
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
        nodes.reduce(0) { acc, n in acc + n.links.values.reduce(0) { $0 + $1.reliable.stats.retransmissions } }
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
