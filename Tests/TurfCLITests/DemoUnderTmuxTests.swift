import Foundation
import Testing

/// `turf demo` in a real terminal (tmux): it shows the arena and the scores quickly, animates,
/// answers keys, and every way out leaves the terminal restored.
@Suite(.serialized) struct DemoUnderTmuxTests {
    /// The exit line and the terminal modes printed after the demo exits.
    static func exitReport(_ screen: String) -> (status: Int?, restored: Bool) {
        guard let line = screen.split(separator: "\n").first(where: { $0.hasPrefix("EXIT:") }) else { return (nil, false) }
        let status = Int(line.dropFirst(5).trimmingCharacters(in: .whitespaces))
        let lines = screen.split(separator: "\n").map(String.init)
        let modes = lines.first { $0.contains("icanon") } ?? ""
        let restored = modes.split(separator: " ").contains("icanon") && modes.split(separator: " ").contains("echo")
        return (status, restored)
    }

    static func showsArenaAndScores(_ s: String, map: String) -> Bool {
        s.contains("turf · \(map)") && s.contains("Bix") && s.contains("tick ") && s.contains("##########")
    }

    @Test(arguments: [(80, 24, "Dojo"), (200, 60, "Warren")])
    func demoShowsArenaAnimatesAndQuitsCleanly(width: Int, height: Int, map: String) throws {
        let t = try TmuxSession(width: width, height: height, command: "\(turfBinary) demo --seconds 30 --seed 11 --ascii",
                                environment: ["NO_COLOR": "1"])
        defer { t.close() }
        let (first, took) = t.waitFor(timeout: 10) { Self.showsArenaAndScores($0, map: map) }
        #expect(took != nil, "arena and scores never appeared; screen:\n\(first)")
        if let took { print("demo \(width)x\(height): arena and scores shown after \(String(format: "%.2f", took)) s") }
        #expect(took.map { $0 <= 5 } ?? false) // the target is 2 s; the bound leaves room for a loaded CI machine
        // Every line fits the terminal and the arena has territory letters once avatars move.
        let (later, _) = t.waitFor(timeout: 5) { $0 != first && $0.contains(" a ") }
        #expect(later != first, "the screen did not animate")
        #expect(later.split(separator: "\n").allSatisfy { $0.count <= width })
        // Help overlay opens and closes.
        t.send("?")
        let (help, helpShown) = t.waitFor(timeout: 5) { $0.contains("this help") }
        #expect(helpShown != nil, "help overlay did not open:\n\(help)")
        t.send("x")
        let (_, helpGone) = t.waitFor(timeout: 5) { !$0.contains("this help") }
        #expect(helpGone != nil)
        // Steering keys are accepted (the avatar keeps moving); then q quits with status 0.
        t.send("Down")
        t.send("j")
        t.send("q")
        let (end, ended) = t.waitFor(timeout: 10) { $0.contains("EXIT:") && $0.contains("icanon") }
        #expect(ended != nil, "demo did not exit on q:\n\(end)")
        let report = Self.exitReport(end)
        #expect(report.status == 0)
        #expect(report.restored, "terminal not restored:\n\(end)")
        #expect(end.contains("replay saved:"))
    }

    @Test func resizingRedrawsForTheNewSize() throws {
        let t = try TmuxSession(width: 80, height: 24, command: "\(turfBinary) demo --seconds 30 --seed 8 --ascii --no-record --map dojo",
                                environment: ["NO_COLOR": "1"])
        defer { t.close() }
        _ = t.waitFor(timeout: 10) { Self.showsArenaAndScores($0, map: "Dojo") }
        t.resize(width: 120, height: 40)
        // The HUD is right-aligned to the new width, and the arena is centred in it.
        let (wide, ok) = t.waitFor(timeout: 5) { s in
            let first = s.split(separator: "\n").first.map(String.init) ?? ""
            return first.count > 100 && first.hasSuffix("q quit")
        }
        #expect(ok != nil, "no redraw at 120x40:\n\(wide)")
        t.resize(width: 30, height: 10)
        let (small, tooSmall) = t.waitFor(timeout: 5) { $0.contains("too small") }
        #expect(tooSmall != nil, "no message in a tiny terminal:\n\(small)")
        t.resize(width: 80, height: 24)
        let (_, back) = t.waitFor(timeout: 5) { Self.showsArenaAndScores($0, map: "Dojo") }
        #expect(back != nil)
        t.send("q")
        let (end, _) = t.waitFor(timeout: 10) { $0.contains("EXIT:") && $0.contains("icanon") }
        #expect(Self.exitReport(end).status == 0)
    }

    @Test func ctrlCRestoresTheTerminal() throws {
        let t = try TmuxSession(width: 80, height: 24, command: "\(turfBinary) demo --seconds 30 --seed 5 --ascii --no-record")
        defer { t.close() }
        _ = t.waitFor(timeout: 10) { Self.showsArenaAndScores($0, map: "Dojo") }
        t.send("C-c")
        let (end, ended) = t.waitFor(timeout: 10) { $0.contains("EXIT:") && $0.contains("icanon") }
        #expect(ended != nil, "no exit after Ctrl-C:\n\(end)")
        let r = Self.exitReport(end)
        #expect(r.status == 130)
        #expect(r.restored)
    }

    @Test func sigtermRestoresTheTerminalAndSavesTheMatch() throws {
        let t = try TmuxSession(width: 80, height: 24, command: "\(turfBinary) demo --seconds 30 --seed 6 --ascii")
        defer { t.close() }
        _ = t.waitFor(timeout: 10) { Self.showsArenaAndScores($0, map: "Dojo") }
        let pid = try #require(t.programPid())
        kill(pid, SIGTERM)
        let (end, ended) = t.waitFor(timeout: 10) { $0.contains("EXIT:") && $0.contains("icanon") }
        #expect(ended != nil, "no exit after SIGTERM:\n\(end)")
        let r = Self.exitReport(end)
        #expect(r.status == 143)
        #expect(r.restored)
        #expect(end.contains("replay saved:"))
    }

    @Test func aCrashRestoresTheTerminal() throws {
        let t = try TmuxSession(width: 80, height: 24, command: "\(turfBinary) demo --seconds 30 --seed 7 --ascii --no-record",
                                environment: ["TURF_DEBUG_CRASH_AT_TICK": "20"])
        defer { t.close() }
        let (end, ended) = t.waitFor(timeout: 15) { $0.contains("EXIT:") && $0.contains("icanon") }
        #expect(ended != nil, "no exit after the crash:\n\(end)")
        let r = Self.exitReport(end)
        #expect(r.status.map { $0 > 128 } ?? false, "expected death by signal, got \(String(describing: r.status))")
        #expect(r.restored, "terminal not restored after a crash:\n\(end)")
    }
}
