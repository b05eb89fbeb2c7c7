import Engine
import Keys
import Lobby
import NetCore
import NetPlay
import Testing
import TurfRules

/// A host and its members through a whole series in virtual time, as `turf` drives them: the
/// lobby machines until the start, a `MatchSession` per peer for the match (bots play), settling
/// (`announceSettled`, a linger), then each peer's lobby machine again on the same links, with the
/// messages its session kept for it. Peers end their matches at different moments (`linger`), so
/// chat and the rematch offer cross a peer still settling. Joiner i reaches the host on link i
/// (the host's side: 100 + i); messages and datagrams take `latency`.
final class SeriesSim {
    var room: LobbyRoom
    var sessions: [Int: MatchSession<TurfController>] = [:]
    var tallies: [Int: SeriesTally] = [:]
    /// Per peer, per match: the recording and the seed.
    var results: [Int: [(hash: UInt64, seed: UInt64, converged: Bool, ops: Int)]] = [:]
    var chats: [Int: [String]] = [:]
    var offers: [Int: [UInt32]] = [:]
    /// Datagrams that reached a peer between its matches (the shell drops them).
    var strayBetween = 0
    let peers: Int
    let latency: UInt64 = 10_000_000
    /// How long each peer lingers after it settled (the host longest, then the last joiner).
    let linger: [UInt64]
    var lingerUntil: [Int: UInt64] = [:]
    var overAt: [Int: UInt64] = [:]
    var inFlight: [(at: UInt64, to: Int, link: LinkID, bytes: [UInt8], control: Bool)] = []
    /// The virtual clock (kept apart from the room's: a class property read while the room is
    /// being modified would be an access conflict).
    var now: UInt64 = 1_000_000_000
    /// Said by joiner 1 the moment its match ended (the host is still settling then).
    var sayOnEnd: String?

    init(peers: Int) throws {
        self.peers = peers
        room = try LobbyRoom(players: peers)
        linger = (0..<peers).map { $0 == 0 ? 1_000_000_000 : $0 == peers - 1 ? 2_000_000_000 : 300_000_000 }
        for i in 1..<peers { room.connect(i) }
        room.deliver()
    }

    func send(from p: Int, _ actions: [LinkAction]) {
        for a in actions {
            switch a {
            case .send(let id, let bytes), .datagram(let id, let bytes):
                let control = if case .send = a { true } else { false }
                let to = p == 0 ? Int(id) - 100 : 0
                let link = p == 0 ? LinkID(to) : 100 + LinkID(p)
                guard !room.closed.contains(id) else { continue }
                inFlight.append((now + latency, to, link, bytes, control))
            case .close(let id), .closeWhenFlushed(let id): room.closed.insert(id)
            default: break
            }
        }
    }

    /// The lobby machines' actions and events (what `carryOut` does in turf).
    func carryOutLobby() {
        let (ha, he) = room.host.take()
        room.hostEvents += he
        send(from: 0, ha)
        for e in he { if case .chat(_, _, let t) = e { chats[0, default: []].append(t) } }
        for i in room.joiners.keys.sorted() {
            let (ja, je) = room.joiners[i]!.take()
            room.joinerEvents[i, default: []] += je
            send(from: i, ja)
            for e in je {
                switch e {
                case .chat(_, _, let t): chats[i, default: []].append(t)
                case .rematchOffered(let n):
                    offers[i, default: []].append(n)
                    // Headless: accept at once, with a new contribution.
                    room.joiners[i]!.acceptRematch(contribution: contribution(i, match: Int(n)))
                    send(from: i, room.joiners[i]!.take().actions)
                default: break
                }
            }
        }
    }

    func arrive() {
        let due = inFlight.filter { $0.at <= now }
        inFlight.removeAll { $0.at <= now }
        for d in due {
            if let s = sessions[d.to] {
                if d.control {
                    s.handle(.message(d.link, bytes: d.bytes), now: now)
                } else {
                    s.receive(d.bytes, on: d.link)
                }
            } else if !d.control {
                strayBetween += 1
            } else if d.to == 0 {
                room.host.handle(.message(d.link, bytes: d.bytes), now: now)
            } else {
                room.joiners[d.to]?.handle(.message(d.link, bytes: d.bytes), now: now)
            }
        }
    }

    /// Peer p starts the match `start` (tick 0 at its startAt: one virtual clock).
    func begin(_ p: Int, _ start: LobbyMessage.Start) throws {
        let me = room.key(p)
        var links: [PeerKey: LinkID] = [:]
        if p == 0 {
            for s in room.host.seats { if let l = s.link { links[s.key] = l } }
        } else {
            links[room.key(0)] = LinkID(p)
        }
        var controllers: [PlayerID: TurfController] = [:]
        for id in start.config.players(ownedBy: me) {
            controllers[id] = TurfController(bot: Bot(level: .hard, seed: start.config.seed, player: id))
        }
        sessions[p] = try MatchSession(
            options: .init(
                me: me,
                identity: room.keys[p],
                isHost: p == 0,
                hostLink: p == 0 ? nil : LinkID(p),
                start: start
            ),
            controllers: controllers,
            links: links,
            startLocal: start.startAt,
            now: now
        )
    }

    /// Peer p's match is over here: recorded, tallied, and its lobby machine takes over.
    func end(_ p: Int) throws {
        let s = sessions.removeValue(forKey: p)!
        overAt[p] = nil
        let r = try s.recording()
        results[p, default: []].append((r.replay.finalHash, s.config.seed, r.converged, r.replay.opCount))
        tallies[p, default: SeriesTally()].record(players: s.config.players, scores: r.replica.state.scores)
        let gone = s.quit.union(r.gone.compactMap { s.config.players[Int($0)].owner })
        if p == 0 {
            room.host.matchEnded(links: s.links, gone: gone)
        } else {
            var direct = s.links
            direct[room.key(0)] = nil
            room.joiners[p]!.matchEnded(direct: direct, hostGone: gone.contains(room.key(0)))
            if p == 1, let line = sayOnEnd { room.joiners[p]!.say(line) }
        }
        for e in s.takeLobbyMessages() {
            if p == 0 { room.host.handle(e, now: now) } else { room.joiners[p]!.handle(e, now: now) }
        }
        carryOutLobby()
        if p == 0, results[0]!.count < matchesWanted {
            room.host.offerRematch(contribution: contribution(0, match: results[0]!.count + 1), now: now)
            carryOutLobby()
        }
    }

    var matchesWanted = 1

    /// Steps time until `done`, 5 ms a step (bounded).
    func run(until done: () -> Bool) throws {
        let limit = now + 120_000_000_000
        while !done() && now < limit {
            now += 5_000_000
            room.now = now
            arrive()
            for p in 0..<peers {
                guard let s = sessions[p] else { continue }
                if s.isOver && overAt[p] == nil { overAt[p] = now }
                if !s.isOver {
                    s.advance(now: now)
                } else if let until = lingerUntil[p] {
                    s.pump(now: now)
                    if now >= until {
                        send(from: p, s.take().actions)
                        lingerUntil[p] = nil
                        try end(p)
                        continue
                    }
                } else if s.settle(now: now) || now > overAt[p, default: now] + 15_000_000_000 {
                    s.announceSettled()
                    lingerUntil[p] = now + linger[p]
                }
                send(from: p, s.take().actions)
            }
            carryOutLobby()
        }
    }

    /// The whole series: the lobby starts match 1, each rematch is offered and accepted as soon
    /// as the peers' matches end, until `matches` were played on every peer.
    func play(matches: Int) throws {
        matchesWanted = matches
        room.host.requestReveals(now: now)
        carryOutLobby()
        for m in 1...matches {
            try run {
                if case .revealing = room.host.phase { return true }
                return false
            }
            var start: LobbyMessage.Start?
            let settings = try Fixture.settings()
            try run {
                start = room.host.startIfReady(now: now, startAt: now + 500_000_000) { seed, players in
                    settings.matchConfig(seed: seed, players: players, seconds: 1)
                }
                return start != nil
            }
            let s = try #require(start, "match \(m) never started")
            try begin(0, s)
            carryOutLobby()
            var begun: Set<Int> = [0]
            try run {
                for i in 1..<peers where !begun.contains(i) {
                    if case .start(let js, _, _)? = room.joiners[i]!.outcome {
                        #expect(js == s)
                        try? begin(i, js)
                        begun.insert(i)
                    }
                }
                return (0..<peers).allSatisfy { (results[$0]?.count ?? 0) == m }
            }
        }
    }
}

@Suite struct SeriesSimTests {
    @Test func threePeersPlayASeriesOfThreeOverTheSameLinksAndAgreeOnEveryMatchAndTheTally() throws {
        let sim = try SeriesSim(peers: 3)
        sim.sayOnEnd = "gg \u{1b}[31mred"
        try sim.play(matches: 3)
        for p in 0..<3 { #expect(sim.results[p]?.count == 3, "peer \(p): \(String(describing: sim.results[p]))") }
        for m in 0..<3 {
            let hashes = Set((0..<3).compactMap { sim.results[$0]?[m].hash })
            #expect(hashes.count == 1, "match \(m + 1): \(hashes)")
            #expect((0..<3).allSatisfy { sim.results[$0]?[m].converged == true }, "match \(m + 1)")
            // The bots moved (about 8 ops each a second).
            #expect((0..<3).allSatisfy { (sim.results[$0]?[m].ops ?? 0) > 12 }, "match \(m + 1): \(sim.results)")
        }
        // A new seed each match, from new contributions.
        let seeds = (sim.results[0] ?? []).map(\.seed)
        #expect(Set(seeds).count == 3)
        #expect(seeds[1] == SeedMix.seed((0..<3).map { contribution($0, match: 2) }))
        // Every member was offered matches 2 and 3, and every peer keeps the same tally.
        for i in 1..<3 { #expect(sim.offers[i] == [2, 3]) }
        #expect(sim.tallies[0]?.matches == 3)
        #expect(sim.tallies[1] == sim.tallies[0] && sim.tallies[2] == sim.tallies[0])
        #expect((sim.tallies[0]?.entries.map(\.wins).reduce(0, +) ?? 0) + (sim.tallies[0]?.ties ?? 0) == 3)
        // Joiner 1's line, said while the host and joiner 2 still settled, reached everyone
        // (kept by their sessions for the lobby), escaped; once per match.
        for p in 0..<3 {
            #expect(sim.chats[p] == Array(repeating: "gg \\x1b[31mred", count: 3), "peer \(p)")
        }
    }

    @Test func aDatagramOfThePreviousMatchIsDroppedAndCounted() throws {
        let keys = Fixture.keyPairs(2)
        let settings = try Fixture.settings()
        var players = TurfMatch.players(humans: [], total: 2)
        for i in players.indices { players[i].owner = PeerKey(bytes: keys[i].publicKey) }
        func session(_ match: UInt32) throws -> MatchSession<TurfController> {
            let start = LobbyMessage.Start(
                config: settings.matchConfig(seed: 7, players: players, seconds: 1),
                startAt: 0,
                reveals: [],
                match: match
            )
            return try MatchSession(
                options: .init(
                    me: PeerKey(bytes: keys[0].publicKey)!,
                    identity: keys[0],
                    isHost: true,
                    hostLink: nil,
                    start: start
                ),
                controllers: [:],
                links: [PeerKey(bytes: keys[1].publicKey)!: 5],
                startLocal: 0,
                now: 0
            )
        }
        let first = try session(1)
        first.advance(now: 40_000_000)
        let datagram = try #require(
            first.take().actions.compactMap { a -> [UInt8]? in if case .datagram(5, let b) = a { b } else { nil } }
                .first
        )
        #expect(datagram.first == 1)
        #expect(first.packetTick(datagram) != nil)
        let second = try session(2)
        #expect(second.packetTick(datagram) == nil)
        second.receive(datagram, on: 5)
        #expect(second.strayDatagrams == 1)
    }
}
