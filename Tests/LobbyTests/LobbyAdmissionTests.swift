import Keys
import Lobby
import NetCore
import Testing
import Transport

/// Who may sit down in a host's lobby (issue 17, part 6; docs/lobby.md, "Who may sit down").
@Suite struct LobbyAdmissionTests {
    let friend = PeerKey(bytes: [UInt8](repeating: 1, count: 32))!
    let stranger = PeerKey(bytes: [UInt8](repeating: 2, count: 32))!
    let home = PeerAddress(198, 51, 100, 7, port: 7000)
    let ms: UInt64 = 1_000_000

    @Test func anOpenLobbyAdmitsAnyoneAndAKickBansTheKey() {
        var a = LobbyAdmission()
        #expect(a.hello(key: stranger.bytes, from: home, now: 0) == .admit)
        a.kick(stranger.bytes)
        a.kick(stranger.bytes)
        #expect(a.kicks == 1)
        #expect(a.hello(key: stranger.bytes, from: home, now: 10 * ms) == .refuse(.banned))
        #expect(!a.admits(stranger.bytes))
        #expect(a.hello(key: friend.bytes, from: home, now: 20 * ms) == .admit)
        #expect(a.refusedBanned == 1)
    }

    @Test func aFriendsOnlyLobbyRefusesStrangers() {
        var a = LobbyAdmission(allowed: [friend])
        #expect(a.hello(key: stranger.bytes, from: home, now: 0) == .refuse(.notAllowed))
        #expect(a.hello(key: friend.bytes, from: home, now: 0) == .admit)
        #expect(a.admits(friend.bytes) && !a.admits(stranger.bytes))
        #expect(a.notAllowed == 1)
        // A friend the host kicked is banned all the same.
        a.kick(friend.bytes)
        #expect(a.hello(key: friend.bytes, from: home, now: 0) == .refuse(.banned))
    }

    @Test func joinsAreRateLimitedPerSourceAndTheTableIsBounded() {
        var a = LobbyAdmission()
        for _ in 0..<LobbyAdmission.burst { #expect(a.hello(key: friend.bytes, from: home, now: 0) == .admit) }
        #expect(a.hello(key: friend.bytes, from: home, now: 0) == .refuse(.tooManyJoins))
        // Another port of the same IP is the same home; another IP is not.
        #expect(
            a.hello(key: friend.bytes, from: PeerAddress(198, 51, 100, 7, port: 1), now: 0) == .refuse(.tooManyJoins)
        )
        #expect(a.hello(key: friend.bytes, from: PeerAddress(203, 0, 113, 7, port: 7000), now: 0) == .admit)
        // On loopback each port is its own source (players on one machine).
        for p in 0..<LobbyAdmission.burst + 1 {
            #expect(
                a.hello(key: friend.bytes, from: PeerAddress(127, 0, 0, 1, port: UInt16(2000 + p)), now: 0) == .admit
            )
        }
        #expect(a.rateLimited == 2)
        // A second later: one more.
        #expect(a.hello(key: friend.bytes, from: home, now: 1000 * ms) == .admit)
        #expect(a.hello(key: friend.bytes, from: home, now: 1000 * ms) == .refuse(.tooManyJoins))
        // A rate-limited stranger is counted as limited, not as refused by the list.
        #expect(a.rateLimited == 3 && a.notAllowed == 0)
        // Many sources: the table never holds more than its bound.
        for i in 0..<(LobbyAdmission.maxSources + 500) {
            _ = a.hello(key: friend.bytes, from: PeerAddress(ip: 0x0A00_0000 | UInt32(i), port: 1), now: 2000 * ms)
        }
        #expect(a.sourcesRemembered == LobbyAdmission.maxSources)
    }

    @Test func allowListsParseWithCommentsAndNameTheBadLine() throws {
        let text = "# friends\n\(friend.text)   # alice\n\n  \(stranger.text.uppercased())\r\n"
        #expect(try LobbyAdmission.parseAllowList(text) == [friend, stranger])
        #expect(throws: AllowListError(line: 2, text: "turf1nope")) {
            try LobbyAdmission.parseAllowList("\(friend.text)\nturf1nope # typo\n")
        }
    }

    @Test func theNewLeaveReasonsRoundTripAndReadAsOneLine() throws {
        for r in [LobbyMessage.LeaveReason.kicked, .banned, .notAllowed, .tooManyJoins] {
            #expect(try LobbyMessage.decode(LobbyMessage.leave(r).encode()) == .leave(r))
            #expect(!r.joinerLine.contains("\n"))
        }
        #expect(LobbyMessage.LeaveReason.kicked.joinerLine == "the host kicked you from the lobby")
        #expect(LobbyMessage.LeaveReason.notAllowed.joinerLine.contains("friends only"))
        #expect(throws: (any Error).self) { try LobbyMessage.decode([1, 7, 9]) }
    }
}
