import Engine
import Keys
import Lobby
import NetCore
import NetPlay
import Testing
import TurfRules

/// A new contribution for match `match` of player `i`.
func contribution(_ i: Int, match: Int) -> [UInt8] { [UInt8](repeating: UInt8(16 * match + i), count: 32) }

extension LobbyRoom {
    /// Every side's match ended (nothing happened in it: the lobby machines only).
    mutating func endMatch(gone: Set<PeerKey> = []) {
        var links: [PeerKey: LinkID] = [:]
        for s in host.seats { if let l = s.link { links[s.key] = l } }
        for (k, l) in host.spectators { links[k] = l }
        host.matchEnded(links: links, gone: gone)
        for i in joiners.keys { joiners[i]!.matchEnded(direct: [:], hostGone: false) }
        deliver()
    }

    func offered(_ i: Int) -> UInt32? {
        for e in (joinerEvents[i] ?? []).reversed() { if case .rematchOffered(let n) = e { return n } }
        return nil
    }
}

@Suite struct RematchStateMachineTests {
    @Test func everyoneAcceptsAndTheSecondMatchHasANewSeedMixedFromNewContributions() throws {
        var room = try LobbyRoom(players: 3)
        room.connect(1)
        room.connect(2)
        let first = try #require(try room.start())
        room.endMatch()
        #expect(room.host.phase == .ended)
        #expect(room.host.seats.count == 3)
        room.host.offerRematch(contribution: contribution(0, match: 2), now: room.now)
        room.deliver()
        #expect(room.host.match == 2)
        for i in 1...2 {
            #expect(room.offered(i) == 2)
            room.joiners[i]!.acceptRematch(contribution: contribution(i, match: 2))
        }
        room.deliver()
        guard case .revealing = room.host.phase else {
            Issue.record("\(room.host.phase)")
            return
        }
        #expect(room.hostEvents.filter { if case .accepted = $0 { true } else { false } }.count == 2)
        // Every reveal is in: the start, as for the first match.
        let settings = try Fixture.settings()
        let started = room.host.startIfReady(now: room.now, startAt: room.now + 500_000_000) { seed, players in
            settings.matchConfig(seed: seed, players: players, seconds: 3)
        }
        room.deliver()
        let second = try #require(started)
        #expect(second.config.seed == SeedMix.seed((0...2).map { contribution($0, match: 2) }))
        #expect(second.config.seed != first.config.seed)
        #expect(second.config.players.map(\.owner) == first.config.players.map(\.owner))
        for i in 1...2 {
            guard case .start(let s, _, nil)? = room.joiners[i]!.outcome else {
                Issue.record("joiner \(i): \(String(describing: room.joiners[i]!.outcome))")
                continue
            }
            #expect(s == second)
            #expect(!room.joiners[i]!.afterMatch)
        }
        // A third: the numbers go on.
        room.endMatch()
        room.host.offerRematch(contribution: contribution(0, match: 3), now: room.now)
        room.deliver()
        #expect(room.offered(1) == 3 && room.offered(2) == 3)
    }

    @Test func aMemberThatDeclinesLeavesAndTheOthersPlayOn() throws {
        var room = try LobbyRoom(players: 3)
        room.connect(1)
        room.connect(2)
        _ = try room.start()
        room.endMatch()
        room.host.offerRematch(contribution: contribution(0, match: 2), now: room.now)
        room.deliver()
        room.joiners[2]!.declineRematch()
        #expect(room.joiners[2]!.outcome == .ended(""))
        room.deliver()
        #expect(room.hostEvents.contains(.declined(room.key(2), name: "p2")))
        #expect(room.closed.contains(2) && room.closed.contains(102))
        #expect(room.host.seats.map(\.key) == [room.key(0), room.key(1)])
        room.joiners[1]!.acceptRematch(contribution: contribution(1, match: 2))
        room.deliver()
        let settings = try Fixture.settings()
        let s = try #require(
            room.host.startIfReady(now: room.now, startAt: room.now) { seed, players in
                settings.matchConfig(seed: seed, players: players, seconds: 3)
            }
        )
        #expect(s.config.players.count == 2)
        #expect(s.config.seed == SeedMix.seed([contribution(0, match: 2), contribution(1, match: 2)]))
    }

    @Test func aMemberThatLeavesOrNeverAnswersLosesItsSeatAndNobodyLeftCancels() throws {
        var room = try LobbyRoom(players: 3, admission: LobbyAdmission())
        room.connect(1)
        room.connect(2)
        _ = try room.start()
        room.endMatch()
        room.host.offerRematch(contribution: contribution(0, match: 2), now: room.now)
        room.deliver()
        // Joiner 1 leaves (q on its end screen); joiner 2 never answers.
        room.joiners[1]!.leave()
        room.deliver()
        #expect(room.hostEvents.contains(.left(room.key(1), name: "p1")))
        #expect(room.host.awaitingAnswer == [room.key(2)])
        room.host.tick(now: room.now + 59_000_000_000)
        room.deliver()
        #expect(room.host.seats.count == 2)
        room.host.tick(now: room.now + 60_000_000_000)
        room.deliver()
        #expect(room.joiners[2]!.outcome == .ended(LobbyMessage.LeaveReason.noAnswer.joinerLine))
        #expect(room.host.seats.count == 1)
        #expect(room.host.phase == .ended)
        #expect(room.hostEvents.last == .rematchCancelled)
    }

    @Test func betweenMatchesNoStartIsTakenBeforeAcceptingAndAnOldStartNeverAfter() throws {
        var room = try LobbyRoom(players: 2)
        room.connect(1)
        let first = try #require(try room.start())
        room.endMatch()
        // The host sends the first match's start again: not a rematch anyone accepted.
        room.joiners[1]!.handle(.message(1, bytes: LobbyMessage.start(first).encode()), now: room.now)
        room.joiners[1]!.handle(.message(1, bytes: LobbyMessage.revealRequest.encode()), now: room.now)
        #expect(room.joiners[1]!.outcome == nil)
        #expect(room.joiners[1]!.dropped == 2)
        #expect(room.joiners[1]!.take().actions.isEmpty)
        // Accepted, the old start (which carries the old contribution) fails the seed check.
        room.host.offerRematch(contribution: contribution(0, match: 2), now: room.now)
        room.deliver()
        room.joiners[1]!.acceptRematch(contribution: contribution(1, match: 2))
        room.joiners[1]!.handle(.message(1, bytes: LobbyMessage.start(first).encode()), now: room.now)
        guard case .failed(let line)? = room.joiners[1]!.outcome else {
            Issue.record("\(String(describing: room.joiners[1]!.outcome))")
            return
        }
        #expect(line.contains("does not match"))
    }

    @Test func outOfPlaceAnswersAndHellosBetweenMatchesAreRefused() throws {
        var room = try LobbyRoom(players: 3)
        room.connect(1)
        _ = try room.start()
        // An answer nobody asked for.
        room.host.handle(
            .message(101, bytes: LobbyMessage.rematchAnswer(.accept(commit: contribution(1, match: 2))).encode()),
            now: room.now
        )
        #expect(room.host.dropped == 1)
        room.endMatch()
        // A newcomer between matches: told the match has started, its session closed.
        room.host.handle(.opened(102, key: room.key(2), address: Fixture.address(2), relayed: false), now: room.now)
        let hello = LobbyMessage.hello(.init(name: "p2", key: room.key(2).bytes, commit: contribution(2, match: 1)))
        room.host.handle(.message(102, bytes: hello.encode()), now: room.now)
        let actions = room.host.take().actions
        #expect(actions.contains(.send(102, LobbyMessage.leave(.started).encode())))
        #expect(actions.contains(.closeWhenFlushed(102)))
        #expect(room.host.seats.count == 2)
        // The host alone offers nothing.
        room.joiners[1]!.leave()
        room.deliver()
        room.host.offerRematch(contribution: contribution(0, match: 2), now: room.now)
        #expect(room.host.phase == .ended)
    }

    @Test func theHostLeavingOrVanishingEndsTheSeriesForAMember() throws {
        var room = try LobbyRoom(players: 2)
        room.connect(1)
        _ = try room.start()
        room.endMatch()
        room.host.leave()
        room.deliver()
        #expect(room.joiners[1]!.outcome == .ended("the host closed the lobby"))
        // A host that crashed during the match (gone): the series is over at once.
        var j = LobbyJoiner(
            config: .init(me: room.key(1), name: "p1", contribution: Fixture.contribution(1)),
            hostLink: 1,
            hostKey: room.key(0)
        )
        j.matchEnded(direct: [:], hostGone: true)
        #expect(j.outcome == .ended("the host closed the lobby"))
    }

    @Test func theTallyCountsWinsByKeyAndTiesForNobody() throws {
        let keys = Fixture.keyPairs(3).map { PeerKey(bytes: $0.publicKey)! }
        func players(_ order: [Int]) -> [PlayerInfo] {
            order.map { PlayerInfo(name: "p\($0)", kind: .human, owner: keys[$0]) }
        }
        var t = SeriesTally()
        t.record(players: players([0, 1, 2]), scores: [10, 30, 20])
        // Another seat order (a player declined in between): wins follow the key.
        t.record(players: players([1, 2]), scores: [5, 40])
        t.record(players: players([0, 1]), scores: [7, 7])
        #expect(t.matches == 3)
        #expect(t.ties == 1)
        #expect(t.entries.map(\.key) == keys)
        #expect(t.entries.map(\.wins) == [0, 1, 1])
    }
}
