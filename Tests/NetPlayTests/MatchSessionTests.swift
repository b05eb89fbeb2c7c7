import Determinism
import Engine
import Foundation
import Keys
import Lobby
import NetCore
import NetMatch
import NetPlay
import Testing
import TurfRules

/// Peers' match sessions wired together in memory, in virtual time: peer i reaches peer j on link
/// `10 * i + j`. Datagrams take `latency` ns and are lost with probability `loss` (seeded);
/// control messages arrive in order.
final class SessionMesh {
    var sessions: [MatchSession<TurfController>] = []
    var now: UInt64 = 0
    let latency: UInt64
    let loss: Double
    var rng: SplitMix64
    var inFlight: [(at: UInt64, to: Int, from: Int, bytes: [UInt8], control: Bool)] = []
    var events: [[MatchSession<TurfController>.Event]]
    let start: LobbyMessage.Start

    init(peers: Int, seconds: Int, latency: UInt64 = 20_000_000, loss: Double = 0, seed: UInt64 = 1) throws {
        self.latency = latency
        self.loss = loss
        rng = SplitMix64(seed: seed)
        let keys = Fixture.keyPairs(peers)
        let settings = try Fixture.settings()
        var players = TurfMatch.players(humans: [], total: peers)
        for i in players.indices { players[i].owner = PeerKey(bytes: keys[i].publicKey) }
        let config = settings.matchConfig(seed: 42, players: players, seconds: seconds)
        start = LobbyMessage.Start(config: config, startAt: 100_000_000, reveals: [])
        events = Array(repeating: [], count: peers)
        for i in 0..<peers {
            var links: [PeerKey: LinkID] = [:]
            for j in 0..<peers where j != i { links[PeerKey(bytes: keys[j].publicKey)!] = LinkID(10 * i + j) }
            let me = PeerKey(bytes: keys[i].publicKey)!
            sessions.append(
                try MatchSession(
                    options: .init(
                        me: me,
                        identity: keys[i],
                        isHost: i == 0,
                        hostLink: i == 0 ? nil : LinkID(10 * i),
                        start: start
                    ),
                    controllers: TurfMatch.controllers(config: config, ownedBy: me),
                    links: links,
                    startLocal: start.startAt,
                    now: 0
                )
            )
        }
    }

    /// Carries every session's actions onto the wire.
    func flush() {
        for (i, s) in sessions.enumerated() {
            let (actions, es) = s.take()
            events[i] += es
            for a in actions {
                switch a {
                case .datagram(let id, let bytes):
                    if loss > 0 && Double(rng.next() % 1_000_000) / 1e6 < loss { continue }
                    inFlight.append((now + latency, Int(id) % 10, i, bytes, false))
                case .send(let id, let bytes):
                    inFlight.append((now + latency, Int(id) % 10, i, bytes, true))
                default: break
                }
            }
        }
    }

    /// Delivers what is due, in order.
    func arrive() {
        let due = inFlight.filter { $0.at <= now }
        inFlight.removeAll { $0.at <= now }
        for d in due {
            let link = LinkID(10 * d.to + d.from)
            if d.control {
                sessions[d.to].handle(.message(link, bytes: d.bytes), now: now)
            } else {
                sessions[d.to].receive(d.bytes, on: link)
            }
        }
    }

    /// Runs every session's match to its end, then settles them all (bounded in virtual time).
    func run() {
        let step: UInt64 = 5_000_000
        while sessions.contains(where: { !$0.isOver }) && now < 600_000_000_000 {
            now += step
            arrive()
            for s in sessions where !s.isOver { s.advance(now: now) }
            flush()
        }
        var settled = Array(repeating: false, count: sessions.count)
        let until = now + 30_000_000_000
        while settled.contains(false) && now < until {
            now += step
            arrive()
            for (i, s) in sessions.enumerated() { settled[i] = s.settle(now: now) }
            flush()
        }
    }
}

@Suite struct MatchSessionTests {
    @Test func threeSessionsPlayToTheEndAndRecordTheSameConvergedMatch() throws {
        let mesh = try SessionMesh(peers: 3, seconds: 3, loss: 0.2, seed: 5)
        mesh.run()
        let recordings = try mesh.sessions.map { try $0.recording() }
        #expect(recordings.allSatisfy { $0.converged })
        #expect(Set(recordings.map(\.replay.finalHash)).count == 1)
        #expect(recordings[0].replay.opCount > 0)
        // Every op is covered by its owner's signature in every recording.
        for r in recordings {
            #expect(
                OpChain.check(
                    config: mesh.start.config,
                    logs: r.replay.logs,
                    signatures: r.replay.signatures,
                    as: TurfWorld.self
                ) == nil
            )
        }
    }

    @Test func aLeaveIsHeardAndADatagramFromAStrangerIsCounted() throws {
        let mesh = try SessionMesh(peers: 2, seconds: 1)
        mesh.sessions[1].leave()
        mesh.flush()
        mesh.now += mesh.latency
        mesh.arrive()
        mesh.flush()
        #expect(mesh.events[0].contains { if case .left = $0 { true } else { false } })
        mesh.sessions[0].receive([1, 2, 3], on: 77)
        #expect(mesh.sessions[0].strayDatagrams == 1)
        mesh.sessions[0].handle(.message(1, bytes: [0xEE]), now: mesh.now)
        #expect(mesh.sessions[0].dropped == 1)
    }

    @Test func aRejoinerGetsTheRosterThenTheSnapshotAndTheStartAfterTheTick() throws {
        let keys = Fixture.keyPairs(2)
        let mesh = try SessionMesh(peers: 2, seconds: 2)
        let host = mesh.sessions[0]
        // The host's session needs the final roster to serve a rejoin.
        let roster = LobbyMessage.roster(
            .init(
                members: (0..<2).map {
                    .init(
                        key: keys[$0].publicKey,
                        name: "p\($0)",
                        commit: [UInt8](repeating: 1, count: 32),
                        path: $0 == 0 ? .local : .direct
                    )
                },
                maxPlayers: 2
            )
        )
        let withRoster = try MatchSession<TurfController>(
            options: .init(
                me: host.options.me,
                identity: keys[0],
                isHost: true,
                hostLink: nil,
                start: mesh.start,
                roster: roster
            ),
            controllers: [:],
            links: [:],
            startLocal: mesh.start.startAt,
            now: 0
        )
        let rejoiner = PeerKey(bytes: keys[1].publicKey)!
        withRoster.handle(.opened(9, key: rejoiner, address: Fixture.address(1), relayed: false), now: 0)
        let hello = LobbyMessage.hello(.init(name: "p1", key: rejoiner.bytes, commit: [UInt8](repeating: 1, count: 32)))
        withRoster.handle(.message(9, bytes: hello.encode()), now: 0)
        let sent = withRoster.take().actions.compactMap { a -> LobbyMessage? in
            if case .send(9, let b) = a { return try? LobbyMessage.decode(b) }
            return nil
        }
        guard case .roster(let r)? = sent.first else {
            Issue.record("\(sent)")
            return
        }
        #expect(r.members[1].addresses == [Fixture.address(1)])
        withRoster.advance(now: mesh.start.startAt + 40_000_000)
        let after = withRoster.take().actions.compactMap { a -> [UInt8]? in
            if case .send(9, let b) = a { return b }
            return nil
        }
        #expect(after.count == 2)
        if case .snapshot? = try? LobbyMessage.decode(after.first ?? []) {} else { Issue.record("no snapshot first") }
        #expect(after.last == LobbyMessage.start(mesh.start).encode())
        #expect(withRoster.rejoins == 1)
    }
}
