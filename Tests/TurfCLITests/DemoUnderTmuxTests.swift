import Foundation
import Testing

/// `turf demo` in a real terminal (tmux): it shows the arena and the scores quickly, animates,
/// answers keys, and every way out leaves the terminal restored.
@Suite(.serialized) struct DemoUnderTmuxTests {
    /// The exit line and the terminal modes printed after the demo exits.
    static func exitReport(_ screen: String) -> (status: Int?, restored: Bool) {
        guard let line = screen.split(separator: "\n").first(where: { $0.hasPrefix("EXIT:") }) else {
            return (nil, false)
        }
        let status = Int(line.dropFirst(5).trimmingCharacters(in: .whitespaces))
        let lines = screen.split(separator: "\n").map(String.init)
        let modes = lines.first { $0.contains("icanon") } ?? ""
        let restored = modes.split(separator: " ").contains("icanon") && modes.split(separator: " ").contains("echo")
        return (status, restored)
    }

    /// How long a correctness wait may take. Generous, for a loaded 2-core CI machine: `waitFor`
    /// returns as soon as its condition holds, so passing runs stay fast.
    static let wait: TimeInterval = 30
    /// The bound on the first frame. The target is 2 s; the time is printed as a measurement, and
    /// only a start slower than this fails.
    static let firstFrameBound: TimeInterval = 20

    static func showsArenaAndScores(_ s: String, map: String) -> Bool {
        s.contains("turf · \(map)") && s.contains("Bix") && s.contains("tick ") && s.contains("##########")
    }

    @Test(arguments: [(80, 24, "Dojo"), (200, 60, "Warren")])
    func demoShowsArenaAnimatesAndQuitsCleanly(width: Int, height: Int, map: String) throws {
        let t = try TmuxSession(
            width: width,
            height: height,
            command: "\(turfBinary) demo --seconds 120 --seed 11 --ascii",
            environment: ["NO_COLOR": "1"]
        )
        defer { t.close() }
        let (first, took) = t.waitFor(timeout: Self.wait) { Self.showsArenaAndScores($0, map: map) }
        #expect(took != nil, "arena and scores never appeared; screen:\n\(first)")
        if let took { print("demo \(width)x\(height): arena and scores shown after \(String(format: "%.2f", took)) s") }
        #expect(took.map { $0 <= Self.firstFrameBound } ?? false)
        // Every line fits the terminal and the arena has territory letters once avatars move.
        let (later, _) = t.waitFor(timeout: Self.wait) { $0 != first && $0.contains(" a ") }
        #expect(later != first, "the screen did not animate")
        #expect(later.split(separator: "\n").allSatisfy { $0.count <= width })
        // Help overlay opens and closes.
        t.send("?")
        let (help, helpShown) = t.waitFor(timeout: Self.wait) { $0.contains("this help") }
        #expect(helpShown != nil, "help overlay did not open:\n\(help)")
        t.send("x")
        let (_, helpGone) = t.waitFor(timeout: Self.wait) { !$0.contains("this help") }
        #expect(helpGone != nil)
        // Steering keys are accepted (the avatar keeps moving); then q quits with status 0.
        t.send("Down")
        t.send("j")
        t.send("q")
        let (end, ended) = t.waitFor(timeout: Self.wait) { $0.contains("EXIT:") && $0.contains("icanon") }
        #expect(ended != nil, "demo did not exit on q:\n\(end)")
        let report = Self.exitReport(end)
        #expect(report.status == 0)
        #expect(report.restored, "terminal not restored:\n\(end)")
        #expect(end.contains("replay saved:"))
    }

    @Test func resizingRedrawsForTheNewSize() throws {
        let t = try TmuxSession(
            width: 80,
            height: 24,
            command: "\(turfBinary) demo --seconds 120 --seed 8 --ascii --no-record --map dojo",
            environment: ["NO_COLOR": "1"]
        )
        defer { t.close() }
        _ = t.waitFor(timeout: Self.wait) { Self.showsArenaAndScores($0, map: "Dojo") }
        t.resize(width: 120, height: 40)
        // The HUD is right-aligned to the new width, and the arena is centred in it.
        let (wide, ok) = t.waitFor(timeout: Self.wait) { s in
            let first = s.split(separator: "\n").first.map(String.init) ?? ""
            return first.count > 100 && first.hasSuffix("q quit")
        }
        #expect(ok != nil, "no redraw at 120x40:\n\(wide)")
        t.resize(width: 30, height: 10)
        let (small, tooSmall) = t.waitFor(timeout: Self.wait) { $0.contains("too small") }
        #expect(tooSmall != nil, "no message in a tiny terminal:\n\(small)")
        t.resize(width: 80, height: 24)
        let (_, back) = t.waitFor(timeout: Self.wait) { Self.showsArenaAndScores($0, map: "Dojo") }
        #expect(back != nil)
        t.send("q")
        let (end, _) = t.waitFor(timeout: Self.wait) { $0.contains("EXIT:") && $0.contains("icanon") }
        #expect(Self.exitReport(end).status == 0)
    }

    /// Ctrl-C (SIGINT) and Ctrl-\ (SIGQUIT, which by default dumps core and leaves the terminal
    /// raw) both quit with 128 + the signal and a restored terminal.
    @Test(arguments: [("C-c", 130), ("C-\\", 131)])
    func interruptKeysRestoreTheTerminal(key: String, status: Int) throws {
        let t = try TmuxSession(
            width: 80,
            height: 24,
            command: "\(turfBinary) demo --seconds 120 --seed 5 --ascii --no-record"
        )
        defer { t.close() }
        _ = t.waitFor(timeout: Self.wait) { Self.showsArenaAndScores($0, map: "Dojo") }
        t.send(key)
        let (end, ended) = t.waitFor(timeout: Self.wait) { $0.contains("EXIT:") && $0.contains("icanon") }
        #expect(ended != nil, "no exit after \(key):\n\(end)")
        let r = Self.exitReport(end)
        #expect(r.status == status)
        #expect(r.restored)
    }

    /// The replay viewer, like the demo, exits 128 + the signal when interrupted (Ctrl-C: 130).
    @Test func replayViewerExits130OnCtrlC() throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent(
            "turf-view-\(UUID().uuidString.prefix(8))"
        )
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: dir) }
        let file = dir.appendingPathComponent("viewed.turfreplay").path
        let g = try run(
            turfBinary,
            ["replay", "generate", "--players", "2", "--minutes", "0.5", "--seed", "3", "--map", "dojo", "-o", file]
        )
        #expect(g.status == 0, "\(g.stderr)")
        let t = try TmuxSession(
            width: 80,
            height: 24,
            command: "\(turfBinary) replay \(file) --ascii",
            environment: ["NO_COLOR": "1"]
        )
        defer { t.close() }
        let (shown, ok) = t.waitFor(timeout: Self.wait) {
            $0.contains("viewed.turfreplay") && $0.contains("##########")
        }
        #expect(ok != nil, "viewer never drew:\n\(shown)")
        t.send("C-c")
        let (end, ended) = t.waitFor(timeout: Self.wait) { $0.contains("EXIT:") && $0.contains("icanon") }
        #expect(ended != nil, "no exit after Ctrl-C:\n\(end)")
        let r = Self.exitReport(end)
        #expect(r.status == 130)
        #expect(r.restored)
    }

    /// A replay directory that cannot be written is refused before the match starts (before
    /// curses too), with exit 1: the match used to be played, then lost, with status 0.
    @Test func anUnwritableReplayDirectoryIsRefusedBeforeTheMatch() throws {
        let state = FileManager.default.temporaryDirectory.appendingPathComponent(
            "turf-nosave-\(UUID().uuidString.prefix(8))"
        )
        defer { try? FileManager.default.removeItem(at: state) }
        try FileManager.default.createDirectory(
            at: state.appendingPathComponent("turf"),
            withIntermediateDirectories: true
        )
        // A file where the replays directory should be: saving would fail.
        _ = FileManager.default.createFile(
            atPath: state.appendingPathComponent("turf/replays").path,
            contents: Data("x".utf8)
        )
        let t = try TmuxSession(
            width: 100,
            height: 24,
            command: "\(turfBinary) demo --seconds 120 --seed 4 --ascii",
            environment: ["XDG_STATE_HOME": state.path]
        )
        defer { t.close() }
        let (end, ended) = t.waitFor(timeout: Self.wait) { $0.contains("EXIT:") && $0.contains("icanon") }
        #expect(ended != nil, "demo did not exit:\n\(end)")
        #expect(Self.exitReport(end).status == 1)
        #expect(Self.exitReport(end).restored)
        let joined = end.replacingOccurrences(of: "\n", with: "")
        #expect(
            joined.contains("Error: cannot save replays:") && joined.contains("is not a directory")
                && joined.contains("--no-record"),
            "\(end)"
        )
        #expect(!end.contains("##########"), "the match must not start:\n\(end)")
    }

    /// A save that still fails at the end of the match (the directory went away during it) is
    /// reported after the screen is restored, and the status is 1.
    @Test func aSaveThatFailsAfterTheMatchExitsNonZero() throws {
        let state = FileManager.default.temporaryDirectory.appendingPathComponent(
            "turf-lostsave-\(UUID().uuidString.prefix(8))"
        )
        defer { try? FileManager.default.removeItem(at: state) }
        let replays = state.appendingPathComponent("turf/replays")
        let t = try TmuxSession(
            width: 100,
            height: 24,
            command: "\(turfBinary) demo --seconds 120 --seed 4 --ascii",
            environment: ["XDG_STATE_HOME": state.path]
        )
        defer { t.close() }
        _ = t.waitFor(timeout: Self.wait) { Self.showsArenaAndScores($0, map: "Dojo") && $0.contains(" a ") }
        try FileManager.default.removeItem(at: replays)
        _ = FileManager.default.createFile(atPath: replays.path, contents: Data("x".utf8))
        t.send("q")
        let (end, ended) = t.waitFor(timeout: Self.wait) { $0.contains("EXIT:") && $0.contains("icanon") }
        #expect(ended != nil, "demo did not exit on q:\n\(end)")
        #expect(Self.exitReport(end).status == 1)
        #expect(end.contains("could not save the replay"), "save failure not reported:\n\(end)")
    }

    /// With TERM unset, unknown or unable to move the cursor, the demo and the viewer say so on
    /// the terminal, and what to set, and exit 1 (they used to show nothing: curses printed its
    /// error into the captured stderr and exited).
    @Test(arguments: ["TERM=nosuchterm", "env -u TERM", "TERM=dumb"])
    func anUnusableTerminalIsExplained(prefix: String) throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent(
            "turf-term-\(UUID().uuidString.prefix(8))"
        )
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: dir) }
        let file = dir.appendingPathComponent("v.turfreplay").path
        let g = try run(
            turfBinary,
            ["replay", "generate", "--players", "2", "--minutes", "0.2", "--seed", "3", "--map", "dojo", "-o", file]
        )
        #expect(g.status == 0, "\(g.stderr)")
        for command in ["demo --no-record", "replay \(file)"] {
            let t = try TmuxSession(width: 160, height: 24, command: "\(prefix) \(turfBinary) \(command)")
            defer { t.close() }
            let (end, ended) = t.waitFor(timeout: Self.wait) { $0.contains("EXIT:") && $0.contains("icanon") }
            #expect(ended != nil, "\(command) did not exit:\n\(end)")
            #expect(Self.exitReport(end).status == 1, "\(prefix) \(command):\n\(end)")
            #expect(
                end.contains("Error: ") && end.contains("TERM") && end.contains("export TERM=xterm-256color"),
                "\(prefix) \(command): no explanation on the terminal:\n\(end)"
            )
        }
    }

    /// A stopped process (Ctrl-Z, or any stall over a second) comes back paused, with the round's
    /// time where it was, instead of finding the time run out.
    @Test func aStoppedMatchResumesPaused() throws {
        let t = try TmuxSession(
            width: 80,
            height: 24,
            command: "\(turfBinary) demo --seconds 120 --seed 4 --ascii --no-record"
        )
        defer { t.close() }
        _ = t.waitFor(timeout: Self.wait) { Self.showsArenaAndScores($0, map: "Dojo") }
        let pid = try #require(t.programPid())
        kill(pid, SIGSTOP)
        usleep(2_500_000)
        kill(pid, SIGCONT)
        let (paused, shown) = t.waitFor(timeout: Self.wait) { $0.contains("PAUSED") }
        #expect(shown != nil, "no pause after the stop:\n\(paused)")
        t.send("q")
        let (end, _) = t.waitFor(timeout: Self.wait) { $0.contains("EXIT:") && $0.contains("icanon") }
        #expect(Self.exitReport(end).status == 0)
    }

    @Test func sigtermRestoresTheTerminalAndSavesTheMatch() throws {
        let t = try TmuxSession(width: 80, height: 24, command: "\(turfBinary) demo --seconds 30 --seed 6 --ascii")
        defer { t.close() }
        _ = t.waitFor(timeout: Self.wait) { Self.showsArenaAndScores($0, map: "Dojo") }
        let pid = try #require(t.programPid())
        kill(pid, SIGTERM)
        let (end, ended) = t.waitFor(timeout: Self.wait) { $0.contains("EXIT:") && $0.contains("icanon") }
        #expect(ended != nil, "no exit after SIGTERM:\n\(end)")
        let r = Self.exitReport(end)
        #expect(r.status == 143)
        #expect(r.restored)
        #expect(end.contains("replay saved:"))
    }

    /// While the match runs stderr goes to a file without a name: a symlink or a FIFO left in
    /// the state directory under the old name (stderr-during-play.txt) used to be opened
    /// (O_TRUNC, following links: the symlink's target was emptied; a FIFO hung the demo before
    /// its first frame). And a name of 12 emoji sequences (300 bytes) is cut to what a replay
    /// holds: the saved replay used to be unreadable, the match lost.
    @Test(arguments: ["symlink", "fifo"])
    func nothingInTheStateDirectoryIsTruncatedOrWaitedOn(kind: String) throws {
        let state = FileManager.default.temporaryDirectory.appendingPathComponent(
            "turf-capture-\(UUID().uuidString.prefix(8))"
        )
        defer { try? FileManager.default.removeItem(at: state) }
        let turfState = state.appendingPathComponent("turf")
        try FileManager.default.createDirectory(at: turfState, withIntermediateDirectories: true)
        let victim = state.appendingPathComponent("victim").path
        _ = FileManager.default.createFile(atPath: victim, contents: Data("precious\n".utf8))
        let old = turfState.appendingPathComponent("stderr-during-play.txt").path
        if kind == "fifo" { #expect(mkfifo(old, 0o600) == 0) } else { #expect(symlink(victim, old) == 0) }
        let family = "\u{1F468}\u{200D}\u{1F469}\u{200D}\u{1F467}\u{200D}\u{1F466}"
        let t = try TmuxSession(
            width: 80,
            height: 24,
            command:
                "\(turfBinary) demo --seconds 120 --seed 5 --ascii --name '\(String(repeating: family, count: 12))'",
            environment: ["XDG_STATE_HOME": state.path, "LANG": "C.UTF-8"]
        )
        defer { t.close() }
        let (shown, took) = t.waitFor(timeout: Self.wait) { Self.showsArenaAndScores($0, map: "Dojo") }
        #expect(took != nil, "the match never started:\n\(shown)")
        t.send("q")
        let (end, ended) = t.waitFor(timeout: Self.wait) { $0.contains("EXIT:") && $0.contains("icanon") }
        #expect(ended != nil && Self.exitReport(end).status == 0, "\(end)")
        #expect(try String(contentsOfFile: victim, encoding: .utf8) == "precious\n")
        let replays = try FileManager.default.contentsOfDirectory(
            atPath: turfState.appendingPathComponent("replays").path
        )
        #expect(replays.count == 1, "\(replays)")
        for f in replays {
            let r = try run(
                turfBinary,
                ["replay", "--headless", turfState.appendingPathComponent("replays/\(f)").path]
            )
            #expect(r.status == 0, "the saved replay does not read back: \(r.stderr)")
        }
        // Nothing but the log, the replays and what was planted is left in the state directory.
        let left = Set(try FileManager.default.contentsOfDirectory(atPath: turfState.path))
        #expect(left == ["replays", "turf.log", "stderr-during-play.txt"], "\(left)")
    }

    /// A crash restores the terminal, and loses no more than the last few ticks of the match: the
    /// journal it leaves behind becomes a replay that verifies, when the next `turf demo` starts.
    @Test func aCrashRestoresTheTerminalAndTheNextDemoRecoversTheMatch() throws {
        let state = FileManager.default.temporaryDirectory.appendingPathComponent(
            "turf-crash-\(UUID().uuidString.prefix(8))"
        )
        defer { try? FileManager.default.removeItem(at: state) }
        let replays = state.appendingPathComponent("turf/replays").path
        let t = try TmuxSession(
            width: 80,
            height: 24,
            command: "\(turfBinary) demo --seconds 30 --seed 7 --ascii",
            environment: ["TURF_DEBUG_CRASH_AT_TICK": "45", "XDG_STATE_HOME": state.path]
        )
        defer { t.close() }
        let (end, ended) = t.waitFor(timeout: Self.wait) { $0.contains("EXIT:") && $0.contains("icanon") }
        #expect(ended != nil, "no exit after the crash:\n\(end)")
        let r = Self.exitReport(end)
        #expect(r.status.map { $0 > 128 } ?? false, "expected death by signal, got \(String(describing: r.status))")
        #expect(r.restored, "terminal not restored after a crash:\n\(end)")
        #expect(!end.contains("replay saved:"))
        // What the runtime said as it died was kept off the game's screen and shown after it.
        #expect(end.contains("deliberate crash at tick"), "the crash message was lost:\n\(end)")
        let left = try FileManager.default.contentsOfDirectory(atPath: replays)
        #expect(left.count == 1 && left[0].hasSuffix(".turfjournal"), "expected one journal, found \(left)")

        // The next demo recovers it before its own match starts, and says so when it exits.
        let next = try TmuxSession(
            width: 80,
            height: 24,
            command: "\(turfBinary) demo --seconds 30 --seed 8 --ascii",
            environment: ["XDG_STATE_HOME": state.path]
        )
        defer { next.close() }
        _ = next.waitFor(timeout: Self.wait) { Self.showsArenaAndScores($0, map: "Dojo") }
        next.send("q")
        let (after, done) = next.waitFor(timeout: Self.wait) { $0.contains("EXIT:") && $0.contains("icanon") }
        #expect(done != nil && Self.exitReport(after).status == 0, "second demo:\n\(after)")
        #expect(after.contains("recovered an interrupted match:"), "no recovery reported:\n\(after)")
        let files = try FileManager.default.contentsOfDirectory(atPath: replays).sorted()
        #expect(!files.contains { $0.hasSuffix(".turfjournal") }, "journal left behind: \(files)")
        let recovered = try #require(
            files.first { $0.hasSuffix("-000007.turfreplay") },
            "no recovered replay in \(files)"
        )
        let v = try run(turfBinary, ["replay", "--headless", "\(replays)/\(recovered)"])
        #expect(v.status == 0, "recovered replay does not verify: \(v.stdout) \(v.stderr)")
        #expect(v.stdout.contains("\"ok\":true"))
        // Bots move from tick 0, so ticks up to the last flush before the crash hold ops.
        let ops =
            v.stdout.split(separator: ",").first { $0.hasPrefix("\"ops\":") }.flatMap { Int($0.dropFirst(6)) } ?? 0
        #expect(ops >= 4, "recovered replay holds \(ops) ops: \(v.stdout)")
        let again = try run(
            turfBinary,
            ["replay", "recover"],
            environment: ["XDG_STATE_HOME": state.path, "PATH": "/usr/bin:/bin"]
        )
        #expect(again.status == 0 && again.stdout.contains("no interrupted matches"), "\(again.stdout) \(again.stderr)")
    }
}
