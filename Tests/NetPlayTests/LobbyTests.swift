import Engine
import Foundation
import Keys
import Lobby
import NetCore
import NetPlay
import Sodium
import Testing
import TurfRules

/// Fixtures: keys, a map, addresses.
enum Fixture {
    static let mapText: String = {
        let url = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
            .deletingLastPathComponent().appendingPathComponent("Assets/maps/dojo.map")
        return (try? String(contentsOf: url, encoding: .utf8)) ?? ""
    }()

    static func keyPairs(_ n: Int) -> [Ed25519.KeyPair] {
        (0..<n).map { i in try! Ed25519.KeyPair(seed: [UInt8](repeating: UInt8(3 + i), count: 32)) }
    }

    static func settings() throws -> TurfSettings {
        TurfSettings(map: try ArenaMap(parsing: mapText, file: "dojo.map"))
    }

    static func contribution(_ i: Int) -> [UInt8] { [UInt8](repeating: UInt8(0x40 + i), count: 32) }

    static func address(_ i: Int) -> PeerAddress { PeerAddress(10, 0, 0, UInt8(i + 1), port: 7000) }
}

/// A host and its joiners wired together in memory: each joiner `i` (1…) reaches the host on link
/// `i` (the host's side is link `100 + i`). Actions become the other side's link events.
struct LobbyRoom {
    var host: LobbyHost
    var joiners: [Int: LobbyJoiner] = [:]
    var hostEvents: [LobbyHost.Event] = []
    var joinerEvents: [Int: [LobbyJoiner.Event]] = [:]
    /// Links a side closed (by the host's link id or the joiner's).
    var closed: Set<LinkID> = []
    var dials: [(from: Int, to: PeerKey)] = []
    let keys: [Ed25519.KeyPair]
    var now: UInt64 = 1_000_000_000

    init(players: Int, maxPlayers: Int = 8, admission: LobbyAdmission = LobbyAdmission()) throws {
        keys = Fixture.keyPairs(players)
        host = LobbyHost(
            config: .init(
                me: PeerKey(bytes: keys[0].publicKey)!,
                name: "host",
                settings: .init(map: "dojo", seconds: 3),
                maxPlayers: maxPlayers
            ),
            contribution: Fixture.contribution(0),
            admission: admission
        )
    }

    func key(_ i: Int) -> PeerKey { PeerKey(bytes: keys[i].publicKey)! }

    /// Joiner `i` connects: the session opens on both sides, and the joiner says hello.
    mutating func connect(_ i: Int, spectate: Bool = false) {
        host.handle(.opened(100 + LinkID(i), key: key(i), address: Fixture.address(i), relayed: false), now: now)
        joiners[i] = LobbyJoiner(
            config: .init(me: key(i), name: "p\(i)", contribution: Fixture.contribution(i), spectate: spectate),
            hostLink: LinkID(i),
            hostKey: key(0)
        )
        deliver()
    }

    /// Moves every message until nothing more is sent.
    mutating func deliver() {
        for _ in 0..<100 {
            var moved = false
            let (ha, he) = host.take()
            hostEvents += he
            for a in ha {
                switch a {
                case .send(let id, let bytes):
                    let i = Int(id) - 100
                    guard !closed.contains(id) else { continue }
                    joiners[i]?.handle(.message(LinkID(i), bytes: bytes), now: now)
                    moved = true
                case .close(let id), .closeWhenFlushed(let id):
                    closed.insert(id)
                default: break
                }
            }
            for i in joiners.keys.sorted() {
                let (ja, je) = joiners[i]!.take()
                joinerEvents[i, default: []] += je
                for a in ja {
                    switch a {
                    case .send(_, let bytes):
                        guard !closed.contains(100 + LinkID(i)) else { continue }
                        host.handle(.message(100 + LinkID(i), bytes: bytes), now: now)
                        moved = true
                    case .dial(let k, _): dials.append((i, k))
                    case .close(let id), .closeWhenFlushed(let id): closed.insert(id)
                    default: break
                    }
                }
            }
            if !moved { return }
        }
    }

    mutating func start(after: UInt64 = 0) throws -> LobbyMessage.Start? {
        host.requestReveals(now: now)
        deliver()
        now += after
        let settings = try Fixture.settings()
        let s = host.startIfReady(now: now, startAt: now + 1_000_000_000) { seed, players in
            settings.matchConfig(seed: seed, players: players, seconds: 3)
        }
        deliver()
        return s
    }
}

@Suite struct LobbyStateMachineTests {
    @Test func threeJoinersSitDownRevealAndAllGetTheSameVerifiedStart() throws {
        var room = try LobbyRoom(players: 4)
        for i in 1...3 { room.connect(i) }
        #expect(room.host.seats.map(\.key) == (0...3).map { room.key($0) })
        // Each joiner saw itself on the roster once, and every other member.
        for i in 1...3 {
            #expect(room.joinerEvents[i]?.first == .joined(players: i + 1))
            #expect(room.joiners[i]?.settings == .init(map: "dojo", seconds: 3))
        }
        // The mesh: of each pair, the member with the greater key dials the other.
        for d in room.dials { #expect(d.to < room.key(d.from)) }
        let started = try room.start()
        let start = try #require(started)
        #expect(room.host.phase == .started)
        #expect(start.config.players.map(\.owner) == (0...3).map { room.key($0) })
        for i in 1...3 {
            guard case .start(let s, _, let snapshot)? = room.joiners[i]?.outcome else {
                Issue.record("joiner \(i): \(String(describing: room.joiners[i]?.outcome))")
                continue
            }
            #expect(s == start)
            #expect(snapshot == nil)
        }
        // The seed mixes every contribution.
        #expect(start.config.seed == SeedMix.seed((0...3).map { Fixture.contribution($0) }))
    }

    @Test func aSilentMemberIsLeftOutWhenTheRevealDeadlinePasses() throws {
        var room = try LobbyRoom(players: 3)
        room.connect(1)
        room.connect(2)
        // Joiner 2 goes silent: it never answers the reveal request.
        room.joiners[2] = nil
        room.host.requestReveals(now: room.now)
        room.deliver()
        let settings = try Fixture.settings()
        let make = { (seed: UInt64, players: [PlayerInfo]) in
            settings.matchConfig(seed: seed, players: players, seconds: 3)
        }
        // Not before the deadline…
        let early = room.host.startIfReady(now: room.now + 1, startAt: 0, makeConfig: make)
        #expect(early == nil)
        // …then without it.
        let late = room.host.startIfReady(now: room.now + 10_000_000_000, startAt: 0, makeConfig: make)
        let s = try #require(late)
        #expect(s.config.players.count == 2)
        #expect(room.host.take().actions.contains(.send(102, LobbyMessage.leave(.refused).encode())))
    }

    @Test func hostileBytesAndAForgedHelloAreDroppedAndCounted() throws {
        var room = try LobbyRoom(players: 3)
        room.host.handle(.opened(101, key: room.key(1), address: Fixture.address(1), relayed: false), now: 0)
        room.host.handle(.message(101, bytes: [0xFF, 0, 1]), now: 0)
        // A hello claiming another key than the session's.
        let forged = LobbyMessage.hello(
            .init(name: "x", key: room.key(2).bytes, commit: [UInt8](repeating: 1, count: 32))
        )
        room.host.handle(.message(101, bytes: forged.encode()), now: 0)
        #expect(room.host.dropped == 2)
        #expect(room.host.seats.count == 1)
        #expect(room.host.take().actions == [.send(101, LobbyMessage.leave(.refused).encode())])
    }

    @Test func aKickedMemberIsToldClosedAndCannotComeBack() throws {
        var room = try LobbyRoom(players: 3)
        room.connect(1)
        room.connect(2)
        room.host.kick(room.key(2))
        let (actions, events) = room.host.take()
        #expect(actions.contains(.send(102, LobbyMessage.leave(.kicked).encode())))
        #expect(actions.contains(.closeWhenFlushed(102)))
        #expect(events.contains(.kicked(room.key(2), name: "p2")))
        #expect(room.host.seats.count == 2)
        // It comes back on a new session: refused as banned.
        room.host.handle(.opened(202, key: room.key(2), address: Fixture.address(2), relayed: false), now: 0)
        let hello = LobbyMessage.hello(
            .init(name: "p2", key: room.key(2).bytes, commit: [UInt8](repeating: 1, count: 32))
        )
        room.host.handle(.message(202, bytes: hello.encode()), now: room.now)
        #expect(room.host.take().actions.contains(.send(202, LobbyMessage.leave(.banned).encode())))
        #expect(room.host.seats.count == 2)
    }

    @Test func aJoinerRefusesAStartWhoseSeedDoesNotOpenTheCommits() throws {
        var room = try LobbyRoom(players: 2)
        room.connect(1)
        let started = try room.start()
        var start = try #require(started)
        start.reveals[0] = [UInt8](repeating: 9, count: 32)
        var j = LobbyJoiner(
            config: .init(me: room.key(1), name: "p1", contribution: Fixture.contribution(1)),
            hostLink: 1,
            hostKey: room.key(0)
        )
        j.handle(.message(1, bytes: room.host.roster.encode()), now: 0)
        j.handle(.message(1, bytes: LobbyMessage.start(start).encode()), now: 0)
        guard case .failed(let line)? = j.outcome else {
            Issue.record("\(String(describing: j.outcome))")
            return
        }
        #expect(line.contains("does not match"))
        #expect(j.take().actions.last == .send(1, LobbyMessage.leave(.quit).encode()))
    }

    @Test func theHostLeavingClosesEveryLinkOnceTheLeaveIsOut() throws {
        var room = try LobbyRoom(players: 3)
        room.connect(1)
        room.connect(2)
        room.host.leave()
        let actions = room.host.take().actions
        #expect(actions.filter { if case .closeWhenFlushed = $0 { true } else { false } }.count == 2)
        room.deliver()
        _ = room.host.take()
    }

    @Test func theJoinerHoldsAStartOnlyWhenToldTo() throws {
        var room = try LobbyRoom(players: 2)
        room.connect(1)
        let started = try room.start()
        let start = try #require(started)
        var j = LobbyJoiner(
            config: .init(me: room.key(1), name: "p1", contribution: Fixture.contribution(1), holdStartNanos: 500),
            hostLink: 1,
            hostKey: room.key(0)
        )
        j.handle(.message(1, bytes: room.host.roster.encode()), now: 0)
        j.handle(.message(1, bytes: LobbyMessage.start(start).encode()), now: 0)
        #expect(j.outcome == nil)
        j.tick(now: 499)
        #expect(j.outcome == nil)
        j.tick(now: 500)
        #expect(j.outcome != nil)
    }
}
