import Foundation
import Testing

/// Who may sit down (issue 17, part 6; docs/lobby.md, "Who may sit down"), with real processes on
/// loopback: a friends-only lobby (`turf host --allow FILE`) refuses a stranger with one line and
/// exit 1, and seats the friend.
@Suite(.serialized) struct LobbyAdmissionCLITests {
    @Test func aFriendsOnlyLobbyRefusesAStrangerWithOneLineAndSeatsTheFriend() throws {
        let lab = try NetPlayTests.Lab()
        let id = try run(turfBinary, ["id"], environment: lab.env("friend"))
        #expect(id.status == 0, "\(id.stderr)")
        let friendKey = id.stdout.trimmingCharacters(in: .whitespacesAndNewlines)
        #expect(friendKey.hasPrefix("turf1"))
        let allow = lab.dir.appendingPathComponent("friends.txt").path
        try "# who may sit down\n\n\(friendKey)   # bob\n".write(toFile: allow, atomically: true, encoding: .utf8)
        let host = try lab.start(
            "host",
            ["host", "--topic", "friends", "--seconds", "5", "--start-when", "2", "--allow", allow]
        )
        let lobby = try #require(lab.waitForEvent("host", "lobby"), "no lobby event")
        let key = try #require(lobby["key"] as? String)
        // A stranger (a fresh identity of its own) is told so at its hello: one line, exit 1.
        let stranger = try run(
            turfBinary,
            ["join", key, "--headless", "--bind", "127.0.0.1", "--bootstrap", lab.boot],
            environment: lab.env("stranger")
        )
        #expect(stranger.status == 1, "\(stranger.stdout) \(stranger.stderr)")
        let lines = stranger.stderr.split(separator: "\n")
        #expect(lines.count == 1 && lines[0].contains("friends only"), "\(stranger.stderr)")
        #expect(!stranger.stdout.contains("\"joined\""))
        // The friend takes the seat and they play.
        let friend = try lab.start("friend", ["join", key])
        #expect(lab.wait(host) == 0, "host: \(lab.events("host"))")
        #expect(lab.wait(friend) == 0, "friend: \(lab.events("friend"))")
        let refused = lab.events("host").filter {
            $0["event"] as? String == "peer" && $0["state"] as? String == "refused"
        }
        #expect(refused.count == 1 && refused.first?["reason"] as? String == "not_allowed", "\(refused)")
        let end = try #require(lab.event("host", "end"))
        #expect(end["joins_not_allowed"] as? Int == 1, "\(end)")
        #expect(end["joins_rate_limited"] as? Int == 0, "\(end)")
        #expect(lab.event("host", "start")?["players"] as? Int == 2)
    }

    @Test func aBadAllowListIsOneLineAndExitOne() throws {
        let lab = try NetPlayTests.Lab()
        let allow = lab.dir.appendingPathComponent("friends.txt").path
        try "# friends\nturf1notakey\n".write(toFile: allow, atomically: true, encoding: .utf8)
        let r = try run(
            turfBinary,
            ["host", "--topic", "t", "--headless", "--bind", "127.0.0.1", "--bootstrap", lab.boot, "--allow", allow],
            environment: lab.env("host")
        )
        #expect(r.status == 1)
        let lines = r.stderr.split(separator: "\n")
        #expect(lines.count == 1 && lines[0].contains("friends.txt:2: not a key"), "\(r.stderr)")
        try "# nobody yet\n".write(toFile: allow, atomically: true, encoding: .utf8)
        let empty = try run(
            turfBinary,
            ["host", "--topic", "t", "--headless", "--bind", "127.0.0.1", "--bootstrap", lab.boot, "--allow", allow],
            environment: lab.env("host")
        )
        #expect(empty.status == 1 && empty.stderr.contains("has no keys"), "\(empty.stderr)")
    }
}
