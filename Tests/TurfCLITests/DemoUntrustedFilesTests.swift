import Determinism
import Engine
import Foundation
import Testing
import TurfRules

/// `turf demo` against crafted files in its own state: a poisoned journal never stops a later
/// demo, and a map's name never picks where files are written.
@Suite(.serialized) struct DemoUntrustedFilesTests {
    func stateDir() -> URL {
        FileManager.default.temporaryDirectory.appendingPathComponent(
            "turf-demo-untrusted-\(UUID().uuidString.prefix(8))"
        )
    }

    /// A journal whose recorded map traps the old parser (a digit with a combining mark) used to
    /// crash every later `turf demo` at startup. Now it is set aside as *.damaged, reported, and
    /// the demo plays.
    @Test func aPoisonedJournalIsSetAsideAndTheDemoStarts() throws {
        let state = stateDir()
        defer { try? FileManager.default.removeItem(at: state) }
        let replays = state.appendingPathComponent("turf/replays").path
        try FileManager.default.createDirectory(atPath: replays, withIntermediateDirectories: true)
        var w = ByteWriter()
        w.u8(1)
        w.string("name: Poison\n---\n#####\n#1\u{301}2#\n#####\n")
        w.u8(4)
        w.u32(300)
        w.u32(240)
        w.u8(2)
        let config = MatchConfig(
            gameID: TurfWorld.gameID,
            seed: 1,
            lengthTicks: 300,
            players: TurfMatch.players(humans: [], total: 2),
            settings: w.bytes
        )
        try Data(ReplayJournal.header(config)).write(to: URL(fileURLWithPath: "\(replays)/p.turfjournal"))
        let t = try TmuxSession(
            width: 80,
            height: 24,
            command: "\(turfBinary) demo --seconds 30 --seed 3 --ascii --map dojo",
            environment: ["XDG_STATE_HOME": state.path]
        )
        defer { t.close() }
        let (screen, shown) = t.waitFor(timeout: DemoUnderTmuxTests.wait) {
            DemoUnderTmuxTests.showsArenaAndScores($0, map: "Dojo")
        }
        #expect(shown != nil, "the demo did not start:\n\(screen)")
        t.send("q")
        let (end, done) = t.waitFor(timeout: DemoUnderTmuxTests.wait) { $0.contains("EXIT:") && $0.contains("icanon") }
        #expect(done != nil && DemoUnderTmuxTests.exitReport(end).status == 0, "\(end)")
        #expect(end.contains("could not recover") && end.contains("U+0301"), "\(end)")
        #expect(FileManager.default.fileExists(atPath: "\(replays)/p.turfjournal.damaged"))
    }

    /// A map named "../../escape" (text from a file) must not steer the journal or the replay out
    /// of the replays directory.
    @Test func aMapNameNeverPicksTheDirectory() throws {
        let state = stateDir()
        defer { try? FileManager.default.removeItem(at: state) }
        let replays = state.appendingPathComponent("turf/replays").path
        let dojo = try String(contentsOf: repoRoot.appendingPathComponent("Assets/maps/dojo.map"), encoding: .utf8)
        let map = state.appendingPathComponent("escape.map").path
        try FileManager.default.createDirectory(at: state, withIntermediateDirectories: true)
        try dojo.replacingOccurrences(of: "name: Dojo", with: "name: ../../../Escape").write(
            toFile: map,
            atomically: true,
            encoding: .utf8
        )
        let t = try TmuxSession(
            width: 80,
            height: 24,
            command: "\(turfBinary) demo --seconds 30 --seed 7 --ascii --map \(map)",
            environment: ["TURF_DEBUG_CRASH_AT_TICK": "45", "XDG_STATE_HOME": state.path]
        )
        defer { t.close() }
        let (end, ended) = t.waitFor(timeout: DemoUnderTmuxTests.wait) { $0.contains("EXIT:") && $0.contains("icanon") }
        #expect(ended != nil, "\(end)")
        let left = try FileManager.default.contentsOfDirectory(atPath: replays)
        #expect(left.count == 1 && left[0].hasSuffix(".turfjournal") && left[0].contains("escape"), "\(left)")
        let above = try FileManager.default.contentsOfDirectory(atPath: state.path).sorted()
        #expect(above == ["escape.map", "turf"], "\(above)")
    }
}
