import Foundation
import TerminalUI
import Testing

@testable import turf

/// `turf` alone: the start screen's settings file, and the screen itself in a real terminal
/// (tmux), waiting on what it shows.
@Suite(.serialized) struct StartScreenTests {
    static let wait: TimeInterval = 30

    @Test func settingsRoundTripAndABadLineIsOneError() throws {
        let s = StartMenu.Settings(name: "Zed", color: false, ascii: true, bots: 5, topic: "lan = party", target: "bob")
        let back = try StartSettings.parse(StartSettings.text(s), over: StartSettings.defaults())
        #expect(back == s)
        let base = StartSettings.defaults()
        for (bad, why) in [
            ("name =", "an empty name"), ("bots = 9", "bots"), ("color = maybe", "on or off"),
            ("volume = 11", "unknown"),
            ("just words", "not 'key = value'"), ("topic = a\u{1B}[2Jb", "control"),
            ("target = " + String(repeating: "x", count: 1001), "too long"),
        ] {
            #expect {
                _ = try StartSettings.parse("# fine\n\(bad)\n", over: base, path: "settings.conf")
            } throws: { e in
                "\(e)".contains("settings.conf line 2") && "\(e)".contains(why)
            }
        }
    }

    /// Without a terminal `turf` prints its help, as before.
    @Test func withoutATerminalTurfPrintsHelp() throws {
        let r = try run(turfBinary, [], timeout: 30)
        #expect(r.status == 0)
        #expect(r.stdout.contains("USAGE: turf"), "\(r.stdout)")
    }

    /// In a terminal: the menu; a name changed in the settings is remembered by the next run;
    /// "Play against bots" starts the local match with that name, and quitting it comes back to
    /// the menu; q quits with status 0 and the terminal restored.
    @Test func theMenuStartsAMatchComesBackAndRemembersTheSettings() throws {
        guard tmuxPath() != nil else {
            Issue.record("tmux is missing (scripts/install-deps.sh installs it)")
            return
        }
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("turf-start-\(UUID().uuidString)").path
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let env = ["NO_COLOR": "1", "XDG_CONFIG_HOME": dir + "/config", "XDG_STATE_HOME": dir + "/state"]
        let t = try TmuxSession(width: 80, height: 24, command: turfBinary, environment: env)
        defer { t.close() }
        let (menu, shown) = t.waitFor(timeout: Self.wait) {
            $0.contains("Play against bots") && $0.contains("Settings")
        }
        #expect(shown != nil, "no menu:\n\(menu)")
        t.send("5")
        _ = t.waitFor(timeout: Self.wait) { $0.contains("Settings (remembered)") }
        t.send("Enter")
        _ = t.waitFor(timeout: Self.wait) { $0.contains("Your name") }
        for _ in 0..<12 { t.send("BSpace") }
        t.send("Z", "e", "d", "Enter")
        let (named, ok) = t.waitFor(timeout: Self.wait) { $0.contains("Name: Zed") && $0.contains("playing as Zed") }
        #expect(ok != nil, "the name did not change:\n\(named)")
        t.send("Escape")
        _ = t.waitFor(timeout: Self.wait) { $0.contains("Play against bots") }
        t.send("1")
        let (arena, playing) = t.waitFor(timeout: Self.wait) {
            $0.contains("turf · ") && $0.contains("Zed") && $0.contains("tick ")
        }
        #expect(playing != nil, "the local match did not start:\n\(arena)")
        t.send("q")
        let (back, returned) = t.waitFor(timeout: Self.wait) {
            $0.contains("Play against bots") && $0.contains("playing as Zed")
        }
        #expect(returned != nil, "the menu did not come back:\n\(back)")
        t.send("q")
        let (end, ended) = t.waitFor(timeout: Self.wait) { $0.contains("EXIT:") && $0.contains("icanon") }
        #expect(ended != nil, "turf did not quit:\n\(end)")
        #expect(DemoUnderTmuxTests.exitReport(end).status == 0)
        #expect(DemoUnderTmuxTests.exitReport(end).restored, "terminal not restored:\n\(end)")
        let saved = try String(contentsOfFile: dir + "/config/turf/settings.conf", encoding: .utf8)
        #expect(saved.contains("name = Zed"))
        // The next run starts with it.
        let again = try TmuxSession(width: 80, height: 24, command: turfBinary, environment: env)
        defer { again.close() }
        let (second, remembered) = again.waitFor(timeout: Self.wait) { $0.contains("playing as Zed") }
        #expect(remembered != nil, "the name was not remembered:\n\(second)")
        again.send("q")
    }
}
