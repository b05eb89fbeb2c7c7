import Foundation
import Testing

/// A rematch and the chat on the screens: each player in its own terminal (tmux) with its own XDG
/// directories, through a local DHT node on loopback. Every wait is on what a screen shows.
@Suite(.serialized) struct RematchUnderTmuxTests {
    static let wait: TimeInterval = 60

    @Test func theHostOffersARematchOnTheEndScreenAndTheMemberAcceptsIt() throws {
        let lab = try NetPlayTests.Lab()
        let screens = NetPlayUnderTmuxTests()
        let topic = "tmux-\(UUID().uuidString.prefix(8))"
        let host = try screens.start(lab, "host --topic \(topic) --seconds 5 --name alice")
        defer { host.close() }
        let join = try screens.start(lab, "join --topic \(topic) --name bob")
        defer { join.close() }
        let (two, joined) = host.waitFor(timeout: Self.wait) { $0.contains("Players 2/") && $0.contains(" bob ") }
        #expect(joined != nil, "bob never joined:\n\(two)")
        // Chat in the lobby: bob says hello; the host's screen shows it with his name.
        let (waiting, inLobby) = join.waitFor(timeout: Self.wait) { $0.contains("c: chat") }
        #expect(inLobby != nil, "bob's lobby shows no chat key:\n\(waiting)")
        join.send("c")
        let (typing, opened) = join.waitFor(timeout: Self.wait) { $0.contains("say:") }
        #expect(opened != nil, "the chat input never opened:\n\(typing)")
        join.send("-l", "hi alice")
        join.send("Enter")
        let (heard, shown) = host.waitFor(timeout: Self.wait) { $0.contains("bob") && $0.contains(": hi alice") }
        #expect(shown != nil, "the host never showed bob's line:\n\(heard)")

        host.send("Enter")
        var firstHash: String?
        for (t, who) in [(host, "host"), (join, "joiner")] {
            let (s, ended) = t.waitFor(timeout: Self.wait) {
                NetPlayUnderTmuxTests.finalHash($0) != nil && $0.contains("series (1 match)")
            }
            #expect(ended != nil, "the \(who)'s first end screen never showed:\n\(s)")
            if who == "host" {
                #expect(s.contains("r: rematch"), "\(s)")
                firstHash = NetPlayUnderTmuxTests.finalHash(s)
            }
        }
        // The host offers the rematch; bob's end screen says so, and he plays again.
        host.send("r")
        let (offer, offered) = join.waitFor(timeout: Self.wait) {
            $0.contains("offers a rematch (match 2)") && $0.contains("y: play again")
        }
        #expect(offered != nil, "bob never saw the offer:\n\(offer)")
        let (hostWaits, waits) = host.waitFor(timeout: Self.wait) { $0.contains("waiting for bob") }
        #expect(waits != nil, "the host's screen does not say whom it waits for:\n\(hostWaits)")
        join.send("y")
        for (t, who) in [(host, "host"), (join, "joiner")] {
            let (s, playing) = t.waitFor(timeout: Self.wait) { $0.contains("tick ") && $0.contains("left") }
            #expect(playing != nil, "the \(who) never showed the second match:\n\(s)")
        }
        var hashes: [String] = []
        for (t, who) in [(host, "host"), (join, "joiner")] {
            let (s, ended) = t.waitFor(timeout: Self.wait) {
                NetPlayUnderTmuxTests.finalHash($0) != nil && $0.contains("series (2 matches)")
            }
            #expect(ended != nil, "the \(who)'s second end screen never showed:\n\(s)")
            #expect(s.contains("alice") && s.contains("bob"), "\(who): no tally:\n\(s)")
            if let h = NetPlayUnderTmuxTests.finalHash(s) { hashes.append(h) }
        }
        #expect(hashes.count == 2 && Set(hashes).count == 1, "final hashes differ: \(hashes)")
        #expect(hashes.first != firstHash, "the second match ended on the first's hash")

        // The host leaves; bob's screen says there is no rematch, and q closes it.
        host.send("q")
        let (hostEnd, hostExited) = host.waitFor(timeout: Self.wait) { $0.contains("EXIT:") && $0.contains("icanon") }
        #expect(hostExited != nil && DemoUnderTmuxTests.exitReport(hostEnd).status == 0, "host:\n\(hostEnd)")
        let (over, told) = join.waitFor(timeout: Self.wait) { $0.contains("the host closed the lobby: no rematch") }
        #expect(told != nil, "bob was not told the host left:\n\(over)")
        join.send("q")
        let (joinEnd, joinExited) = join.waitFor(timeout: Self.wait) { $0.contains("EXIT:") && $0.contains("icanon") }
        let report = DemoUnderTmuxTests.exitReport(joinEnd)
        #expect(joinExited != nil && report.status == 0 && report.restored, "bob:\n\(joinEnd)")
        #expect(screens.replays(host).count == 2 && screens.replays(join).count == 2)
    }
}
