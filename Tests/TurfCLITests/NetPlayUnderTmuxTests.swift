import Foundation
import Testing

/// `turf host` and `turf join` on their screens, each in its own real terminal (tmux) with its
/// own XDG directories, through a local DHT node on loopback: the host's Enter starts, keys steer,
/// both end screens show the same final hash, and both replays are saved and verify.
@Suite(.serialized) struct NetPlayUnderTmuxTests {
    /// Bounds of the correctness waits (each returns as soon as its screen shows): generous for a
    /// loaded 2-core machine.
    static let wait: TimeInterval = 60

    func start(_ lab: NetPlayTests.Lab, _ args: String) throws -> TmuxSession {
        try TmuxSession(
            width: 100,
            height: 30,
            command: "\(turfBinary) \(args) --ascii --bind 127.0.0.1 --bootstrap \(lab.boot)",
            environment: ["NO_COLOR": "1", "TURF_PASSPHRASE": "", "TURF_DHT_BOOTSTRAP": ""]
        )
    }

    /// The hex after "final hash " on an end screen.
    static func finalHash(_ screen: String) -> String? {
        guard let r = screen.range(of: "final hash ") else { return nil }
        let hex = screen[r.upperBound...].prefix { $0.isHexDigit }
        return hex.count == 16 ? String(hex) : nil
    }

    func replays(_ t: TmuxSession) -> [String] {
        let dir = t.dir.appendingPathComponent("state/turf/replays")
        let names = (try? FileManager.default.contentsOfDirectory(atPath: dir.path)) ?? []
        return names.filter { $0.hasSuffix(".turfreplay") }.map { dir.appendingPathComponent($0).path }
    }

    @Test func aHostAndAJoinerPlayAMatchOnTheirScreens() throws {
        let lab = try NetPlayTests.Lab()
        let topic = "tmux-\(UUID().uuidString.prefix(8))"
        let host = try start(lab, "host --topic \(topic) --seconds 6 --name alice")
        defer { host.close() }
        let (lobby, shown) = host.waitFor(timeout: Self.wait) {
            $0.contains("you host") && $0.contains("Invite") && $0.contains("turf-invite1.")
                && $0.contains("alice (host, you)") && $0.contains("Enter: start")
        }
        #expect(shown != nil, "the host's lobby never showed:\n\(lobby)")
        #expect(lobby.contains("topic \(topic)") && lobby.contains("dojo") && lobby.contains("00:06"), "\(lobby)")
        // Enter alone starts nothing: a friend must be in.
        host.send("Enter")
        let (alone, refused) = host.waitFor(timeout: Self.wait) { $0.contains("once a friend has joined") }
        #expect(refused != nil, "Enter with nobody in was not refused:\n\(alone)")

        let join = try start(lab, "join --topic \(topic) --name bob")
        defer { join.close() }
        let (waiting, joined) = join.waitFor(timeout: Self.wait) {
            $0.contains("you joined") && $0.contains("Waiting for the host") && $0.contains("alice (host)")
                && $0.contains("bob (you)")
        }
        #expect(joined != nil, "the joiner's lobby never showed the roster:\n\(waiting)")
        let (roster, listed) = host.waitFor(timeout: Self.wait) {
            // Both on loopback: a private address, so the roster says `lan` (docs/nat.md, "LAN parties").
            $0.contains("Players 2/") && $0.contains(" bob ") && $0.contains("lan")
        }
        #expect(listed != nil, "bob never appeared on the host's roster:\n\(roster)")

        host.send("Enter")
        for (t, who) in [(host, "host"), (join, "joiner")] {
            let (s, playing) = t.waitFor(timeout: Self.wait) { $0.contains("tick ") && $0.contains("left") }
            #expect(playing != nil, "the \(who) never showed the match:\n\(s)")
        }
        // Keys steer each player (no pause key: the clock is shared; these only turn).
        host.send("Down")
        join.send("Up")
        host.send("l")
        join.send("h")
        // The HUD shows the other player's link (over loopback: `lan`).
        let (hud, linked) = host.waitFor(timeout: Self.wait) { $0.contains("bob") && $0.contains("ms lan") }
        #expect(linked != nil, "the host's HUD never showed bob's link:\n\(hud)")

        var hashes: [String] = []
        for (t, who) in [(host, "host"), (join, "joiner")] {
            let (s, ended) = t.waitFor(timeout: Self.wait) { Self.finalHash($0) != nil && $0.contains("q: quit") }
            #expect(ended != nil, "the \(who)'s end screen never showed:\n\(s)")
            #expect(s.contains("Round over") && s.contains("replay "), "\(who):\n\(s)")
            // The other player's link as the match ended (the headless `end` event's `links`).
            let other = who == "host" ? "bob" : "alice"
            #expect(s.contains("links: path") && s.contains(other) && s.contains("direct, "), "\(who):\n\(s)")
            if let h = Self.finalHash(s) { hashes.append(h) }
        }
        #expect(hashes.count == 2 && Set(hashes).count == 1, "final hashes differ: \(hashes)")

        for (t, who) in [(host, "host"), (join, "joiner")] {
            t.send("q")
            let (s, exited) = t.waitFor(timeout: Self.wait) { $0.contains("EXIT:") && $0.contains("icanon") }
            #expect(exited != nil, "the \(who) did not exit on q:\n\(s)")
            let report = DemoUnderTmuxTests.exitReport(s)
            #expect(report.status == 0 && report.restored, "\(who):\n\(s)")
            #expect(s.contains("final hash: \(hashes.first ?? "?")"), "\(who):\n\(s)")
            let saved = replays(t)
            #expect(saved.count == 1, "\(who) saved \(saved)")
            for path in saved {
                let v = try run(turfBinary, ["replay", "--headless", path])
                #expect(v.status == 0, "\(who): \(v.stderr)")
                #expect(v.stdout.contains("\"final_hash\":\"\(hashes.first ?? "?")\""), "\(who): \(v.stdout)")
            }
        }
    }

    @Test func aWrongPassphraseIsOneLineAndExitOneOutsideCurses() throws {
        let lab = try NetPlayTests.Lab()
        let topic = "tmux-\(UUID().uuidString.prefix(8))"
        try lab.start(
            "host",
            ["host", "--topic", topic, "--seconds", "5", "--start-when", "3"],
            extraEnv: ["TURF_PASSPHRASE": "right horse"]
        )
        _ = try #require(lab.waitForEvent("host", "lobby"), "the host did not open its lobby")
        let join = try TmuxSession(
            width: 100,
            height: 30,
            command:
                "\(turfBinary) join --topic \(topic) --ascii --bind 127.0.0.1 --bootstrap \(lab.boot)",
            environment: ["TURF_PASSPHRASE": "wrong horse", "TURF_DHT_BOOTSTRAP": ""]
        )
        defer { join.close() }
        let (s, exited) = join.waitFor(timeout: Self.wait) { $0.contains("EXIT:") && $0.contains("icanon") }
        #expect(exited != nil, "the joiner did not exit:\n\(s)")
        #expect(DemoUnderTmuxTests.exitReport(s).status == 1, "\(s)")
        #expect(s.contains("the lobby did not accept the passphrase"), "\(s)")
        // Nothing of curses was left behind: the lines above the exit are plain.
        let lines = s.split(separator: "\n").filter { !$0.isEmpty && !$0.contains("icanon") }
        #expect(lines.count <= 3, "more than the one line (and the lookup note):\n\(s)")
    }

    @Test func aJoinerPicksOneOfTwoLobbiesOnItsTopic() throws {
        let lab = try NetPlayTests.Lab()
        let topic = "tmux-\(UUID().uuidString.prefix(8))"
        var keys: [String: String] = [:]
        for name in ["alpha", "beta"] {
            try lab.start(name, ["host", "--topic", topic, "--seconds", "5", "--start-when", "3", "--name", name])
            let lobby = try #require(lab.waitForEvent(name, "lobby"), "\(name) did not open its lobby")
            keys[name] = try #require(lobby["key"] as? String)
        }
        let join = try start(lab, "join --topic \(topic) --name bob")
        defer { join.close() }
        let (list, listed) = join.waitFor(timeout: Self.wait) { $0.contains("2 lobbies share this topic") }
        #expect(listed != nil, "the joiner never listed both lobbies:\n\(list)")
        join.send("Down")
        // The highlighted row (">" in ASCII) is the second lobby: whose key it shows is whom we join.
        let (picked, moved) = join.waitFor(timeout: Self.wait) {
            $0.split(separator: "\n").contains { $0.contains("> lobby 2") }
        }
        #expect(moved != nil, "the highlight did not move:\n\(picked)")
        let row = picked.split(separator: "\n").first { $0.contains("> lobby 2") }.map(String.init) ?? ""
        let chosen = keys.first { row.contains(String($0.value.suffix(6))) }?.key
        let name = try #require(chosen, "the second row shows neither host's key:\n\(picked)")
        join.send("Enter")
        let (roster, joined) = join.waitFor(timeout: Self.wait) {
            $0.contains("\(name) (host)") && $0.contains("bob (you)") && $0.contains("Waiting for the host")
        }
        #expect(joined != nil, "the joiner did not join \(name)'s lobby:\n\(roster)")
        let peer = lab.waitForEvent(name, "peer", timeout: Self.wait)
        #expect(peer?["name"] as? String == "bob", "\(name) saw no bob: \(lab.events(name))")
        // The other host had only the probe's handshake: nobody joined it.
        let other = name == "alpha" ? "beta" : "alpha"
        #expect(!lab.events(other).contains { $0["event"] as? String == "peer" && $0["state"] as? String == "joined" })
        join.send("q")
        let (end, exited) = join.waitFor(timeout: Self.wait) { $0.contains("EXIT:") && $0.contains("icanon") }
        #expect(exited != nil && DemoUnderTmuxTests.exitReport(end).status == 0, "the joiner did not leave:\n\(end)")
    }

    /// A terminal curses cannot drive is one line saying what to set, and exit 1, before any
    /// network work (as `turf demo` does).
    @Test(arguments: ["TERM=dumb", "env -u TERM"])
    func anUnusableTerminalIsExplainedBeforeTheNetwork(prefix: String) throws {
        for command in ["host --topic t", "join --topic t"] {
            let t = try TmuxSession(
                width: 160,
                height: 24,
                command: "\(prefix) \(turfBinary) \(command) --bind 127.0.0.1 --bootstrap 127.0.0.1:9"
            )
            defer { t.close() }
            let (end, ended) = t.waitFor(timeout: Self.wait) { $0.contains("EXIT:") && $0.contains("icanon") }
            #expect(ended != nil, "\(command) did not exit:\n\(end)")
            #expect(DemoUnderTmuxTests.exitReport(end).status == 1, "\(prefix) \(command):\n\(end)")
            #expect(
                end.contains("TERM") && end.contains("export TERM=xterm-256color"),
                "\(prefix) \(command): no explanation:\n\(end)"
            )
            #expect(!end.contains("looking for the lobby"), "\(command) went to the network first:\n\(end)")
        }
    }

    /// q leaves a lobby and tells the others: a joiner's leave takes it off the host's roster; the
    /// host's leave ends the joiners' wait with one line and exit 1.
    @Test func leavingTheLobbyTellsTheOthers() throws {
        let lab = try NetPlayTests.Lab()
        let topic = "tmux-\(UUID().uuidString.prefix(8))"
        let host = try start(lab, "host --topic \(topic) --seconds 5 --name alice")
        defer { host.close() }
        let (lobby, shown) = host.waitFor(timeout: Self.wait) { $0.contains("Enter: start") }
        #expect(shown != nil, "the host's lobby never showed:\n\(lobby)")

        let bob = try start(lab, "join --topic \(topic) --name bob")
        defer { bob.close() }
        let (two, joined) = host.waitFor(timeout: Self.wait) { $0.contains("Players 2/") && $0.contains(" bob ") }
        #expect(joined != nil, "bob never joined:\n\(two)")
        let (bobWaiting, waits) = bob.waitFor(timeout: Self.wait) { $0.contains("Waiting for the host") }
        #expect(waits != nil, "bob's lobby never showed:\n\(bobWaiting)")
        bob.send("q")
        let (bobEnd, bobExited) = bob.waitFor(timeout: Self.wait) { $0.contains("EXIT:") && $0.contains("icanon") }
        #expect(bobExited != nil && DemoUnderTmuxTests.exitReport(bobEnd).status == 0, "bob:\n\(bobEnd)")
        let (one, left) = host.waitFor(timeout: Self.wait) { $0.contains("Players 1/") && $0.contains("bob left") }
        #expect(left != nil, "bob's leave did not reach the host's roster:\n\(one)")

        let carol = try start(lab, "join --topic \(topic) --name carol")
        defer { carol.close() }
        let (carolWaiting, carolIn) = carol.waitFor(timeout: Self.wait) {
            $0.contains("Waiting for the host") && $0.contains("carol (you)")
        }
        #expect(carolIn != nil, "carol's lobby never showed:\n\(carolWaiting)")
        host.send("q")
        let (hostEnd, hostExited) = host.waitFor(timeout: Self.wait) { $0.contains("EXIT:") && $0.contains("icanon") }
        #expect(hostExited != nil && DemoUnderTmuxTests.exitReport(hostEnd).status == 0, "host:\n\(hostEnd)")
        let (carolEnd, carolExited) = carol.waitFor(timeout: Self.wait) {
            $0.contains("EXIT:") && $0.contains("icanon")
        }
        #expect(carolExited != nil, "carol did not exit:\n\(carolEnd)")
        let report = DemoUnderTmuxTests.exitReport(carolEnd)
        #expect(report.status == 1 && report.restored, "carol:\n\(carolEnd)")
        #expect(carolEnd.contains("the host closed the lobby"), "carol:\n\(carolEnd)")
    }

    /// The host kicks bob from its lobby screen (↓ to his seat, k twice): bob's screen closes with
    /// one line and exit 1, and bob's key cannot come back to this lobby (issue 17, part 6).
    @Test func theHostKicksAPlayerWhoCannotComeBack() throws {
        let lab = try NetPlayTests.Lab()
        let topic = "tmux-\(UUID().uuidString.prefix(8))"
        let host = try start(lab, "host --topic \(topic) --seconds 5 --name alice")
        defer { host.close() }
        let (lobby, shown) = host.waitFor(timeout: Self.wait) { $0.contains("Enter: start") }
        #expect(shown != nil, "the host's lobby never showed:\n\(lobby)")
        let bob = try start(lab, "join --topic \(topic) --name bob")
        defer { bob.close() }
        let (two, joined) = host.waitFor(timeout: Self.wait) { $0.contains("Players 2/") && $0.contains("k: kick") }
        #expect(joined != nil, "bob never joined:\n\(two)")
        let (bobWaiting, waits) = bob.waitFor(timeout: Self.wait) { $0.contains("Waiting for the host") }
        #expect(waits != nil, "bob's lobby never showed:\n\(bobWaiting)")
        host.send("Down")
        host.send("k")
        let (asked, confirm) = host.waitFor(timeout: Self.wait) { $0.contains("k again kicks bob") }
        #expect(confirm != nil, "no confirmation asked:\n\(asked)")
        host.send("k")
        let (bobEnd, bobExited) = bob.waitFor(timeout: Self.wait) { $0.contains("EXIT:") && $0.contains("icanon") }
        #expect(bobExited != nil, "bob did not exit:\n\(bobEnd)")
        let report = DemoUnderTmuxTests.exitReport(bobEnd)
        #expect(report.status == 1 && report.restored, "bob:\n\(bobEnd)")
        #expect(bobEnd.contains("the host kicked you from the lobby"), "bob:\n\(bobEnd)")
        let (one, kicked) = host.waitFor(timeout: Self.wait) { $0.contains("Players 1/") && $0.contains("bob kicked") }
        #expect(kicked != nil, "the kick did not show on the host's roster:\n\(one)")
        // Bob again, as himself: refused at his hello, one line, exit 1.
        let again = try run(
            turfBinary,
            ["join", "--topic", topic, "--headless", "--bind", "127.0.0.1", "--bootstrap", lab.boot],
            environment: [
                "XDG_CONFIG_HOME": bob.dir.appendingPathComponent("config").path,
                "XDG_STATE_HOME": bob.dir.appendingPathComponent("state").path, "TURF_DHT_BOOTSTRAP": "",
                "TURF_PASSPHRASE": "", "HOME": bob.dir.path,
            ]
        )
        #expect(again.status == 1, "\(again.stdout) \(again.stderr)")
        let lines = again.stderr.split(separator: "\n")
        #expect(lines.count == 1 && lines[0].contains("kicked your key"), "\(again.stderr)")
    }

    /// The HUD shows a player that went silent (killed mid-match) as disconnected after 5 s.
    @Test func theHUDShowsAKilledPlayerAsDisconnected() throws {
        let lab = try NetPlayTests.Lab()
        let topic = "tmux-\(UUID().uuidString.prefix(8))"
        let host = try start(lab, "host --topic \(topic) --seconds 30 --name alice")
        defer { host.close() }
        let join = try start(lab, "join --topic \(topic) --name bob")
        defer { join.close() }
        let (two, joined) = host.waitFor(timeout: Self.wait) { $0.contains("Players 2/") && $0.contains(" bob ") }
        #expect(joined != nil, "bob never joined:\n\(two)")
        host.send("Enter")
        let (hud, linked) = host.waitFor(timeout: Self.wait) { $0.contains("bob") && $0.contains("ms lan") }
        #expect(linked != nil, "the host's HUD never showed bob's link:\n\(hud)")
        let pid = try #require(join.programPid(), "no pid for the joiner")
        kill(pid, SIGKILL)
        let (lost, shown) = host.waitFor(timeout: Self.wait) { $0.contains("bob") && $0.contains("disconnected") }
        #expect(shown != nil, "the host's HUD never showed bob as disconnected:\n\(lost)")
        // SIGTERM mid-match: the host leaves, gives the terminal back and exits 128+15 (closing tmux
        // alone would leave it waiting on its end screen for a key that never comes).
        let hostPid = try #require(host.programPid(), "no pid for the host")
        kill(hostPid, SIGTERM)
        let (end, exited) = host.waitFor(timeout: Self.wait) { $0.contains("EXIT:") && $0.contains("icanon") }
        #expect(exited != nil, "the host did not exit on SIGTERM:\n\(end)")
        let report = DemoUnderTmuxTests.exitReport(end)
        #expect(report.status == 143 && report.restored, "host:\n\(end)")
    }
}
