import Engine
import Foundation
import Testing
import TurfRules

#if canImport(Glibc)
    import Glibc
#endif

/// Fair play with real processes (docs/threat-model.md): a modified client (the test-only switch
/// `TURF_TESTING_CHEAT` rewrites its own ops before they are signed and sent) joins two honest
/// peers; the honest peers name it, stop its avatar at its first illegal move, and agree on one
/// final hash; their replays find the cheat again from the file alone. And crafted replay files
/// with each cheat are flagged by `turf replay --headless`.
@Suite(.serialized) struct FairPlayCLITests {
    typealias Lab = NetPlayTests.Lab

    @Test(arguments: ["teleport", "speed", "late", "future", "lagswitch"])
    func aModifiedClientIsNamedAndTheHonestPeersAgree(cheat: String) throws {
        let rule = cheat == "lagswitch" ? "late" : cheat
        let lab = try Lab()
        let host = try lab.start("host", ["host", "--topic", "cheat-\(cheat)", "--seconds", "6", "--start-when", "3"])
        let lobby = try #require(lab.waitForEvent("host", "lobby"))
        let key = try #require(lobby["key"] as? String)
        let honest = try lab.start("honest", ["join", key])
        let cheater = try lab.start("cheater", ["join", key], extraEnv: ["TURF_TESTING_CHEAT": cheat])
        #expect(lab.wait(host) == 0, "\(lab.events("host"))")
        #expect(lab.wait(honest) == 0, "\(lab.events("honest"))")
        _ = lab.wait(cheater)
        let cheaterKey = try #require(lab.event("cheater", "joined")?["key"] as? String)
        try NetPlayTests().expectConverged(lab, ["host", "honest"], expectNoRejections: false)
        for p in ["host", "honest"] {
            // One `cheat` event naming the cheater, the rule and the tick of its first illegal op.
            let events = lab.events(p).filter { $0["event"] as? String == "cheat" }
            #expect(events.count == 1, "\(p): \(events)")
            let e = try #require(events.first)
            #expect(e["key"] as? String == cheaterKey)
            #expect(e["rule"] as? String == rule)
            #expect(e["seq"] as? Int == 20)
            // The end event lists it, and so does the replay, from the file alone.
            let end = try #require(lab.event(p, "end"))
            let cheats = try #require(end["cheats"] as? [[String: Any]])
            #expect(cheats.map { $0["key"] as? String } == [cheaterKey], "\(p): \(end)")
            let replay = try #require(end["replay"] as? String)
            let v = try run(turfBinary, ["replay", "--headless", replay])
            #expect(v.status == 0, "\(v.stderr)")
            let j = try #require(try JSONSerialization.jsonObject(with: Data(v.stdout.utf8)) as? [String: Any])
            let listed = try #require(j["cheats"] as? [[String: Any]])
            #expect(listed.map { $0["rule"] as? String } == [rule], "\(p): \(v.stdout)")
            #expect(listed.map { $0["seq"] as? Int } == [20])
        }
        // The honest peers did not flag each other.
        let hostKey = key
        let honestKey = try #require(lab.event("honest", "joined")?["key"] as? String)
        for p in ["host", "honest"] {
            for e in lab.events(p) where ["cheat", "bad_signature", "desync"].contains(e["event"] as? String ?? "") {
                #expect(e["key"] as? String != hostKey && e["key"] as? String != honestKey, "\(p): \(e)")
                #expect(e["from"] as? String != hostKey && e["from"] as? String != honestKey, "\(p): \(e)")
                #expect(e["peer"] as? String != hostKey && e["peer"] as? String != honestKey, "\(p): \(e)")
            }
        }
    }

    /// A hostile file: a verdict whose proof is garbage, or a real-looking proof for the wrong
    /// seq, is one clear line and exit 1 (the file is not what any peers agreed), never a crash;
    /// every truncation of the file is refused with its byte offset.
    @Test func aReplayWithAForgedVerdictIsRefused() throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("turf-verdict-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: dir) }
        let map = try ArenaMap(
            parsing: String(contentsOf: repoRoot.appendingPathComponent("Assets/maps/dojo.map"), encoding: .utf8),
            file: "dojo.map"
        )
        var honest = try TurfMatch.generate(settings: TurfSettings(map: map), players: 2, seconds: 5, seed: 4)
        honest.verdicts = [.init(player: 1, seq: 3, tick: 12, rule: "late", proof: Array(repeating: 0xEE, count: 40))]
        let forged = try TurfReplay(config: honest.config, logs: honest.logs, verdicts: honest.verdicts)
        let path = dir.appendingPathComponent("forged.turfreplay").path
        let bytes = ReplayFile.encode(forged)
        try Data(bytes).write(to: URL(fileURLWithPath: path))
        let v = try run(turfBinary, ["replay", "--headless", path])
        #expect(v.status == 1, "\(v.stdout) \(v.stderr)")
        #expect(v.stdout.contains("the late proof of player 1 does not verify"), "\(v.stdout)")
        #expect(v.stderr.split(separator: "\n").count == 1, "\(v.stderr)")
        // Every truncation of the file is refused with an offset, never a crash.
        for cut in stride(from: 12, to: bytes.count, by: max(1, bytes.count / 40)) {
            let t = dir.appendingPathComponent("cut.turfreplay").path
            try Data(bytes.prefix(cut)).write(to: URL(fileURLWithPath: t))
            let r = try run(turfBinary, ["replay", "--headless", t])
            #expect(r.status == 1 && r.stderr.contains("at byte"), "cut at \(cut): \(r.stderr)")
        }
    }

    /// Crafted files: an honest bot match with one player's log rewritten by each cheat. The file
    /// verifies (its checkpoints were derived from its own ops), and lists the cheat.
    @Test func craftedReplaysWithEachCheatAreFlagged() throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("turf-cheats-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: dir) }
        let map = try ArenaMap(
            parsing: String(contentsOf: repoRoot.appendingPathComponent("Assets/maps/dojo.map"), encoding: .utf8),
            file: "dojo.map"
        )
        let honest = try TurfMatch.generate(settings: TurfSettings(map: map), players: 3, seconds: 10, seed: 3)
        let far = UInt32(map.spawns[7])
        let cases: [(String, (inout [Op<TurfOp>]) -> [Op<TurfOp>])] = [
            (
                "teleport",
                { log in
                    log[25].payload = .move(cell: far)
                    return []
                }
            ),
            (
                "speed",
                { log in
                    for i in 25..<log.count { log[i].tick -= 2 }
                    return []
                }
            ),
            (
                "late",
                { log in
                    for i in 25..<log.count { log[i].tick = Tick(i - 24) }
                    return []
                }
            ),
            (
                "equivocation",
                { log in
                    var o = log[25]
                    o.tick += 1
                    return [o]
                }
            ),
        ]
        for (rule, cheat) in cases {
            var logs = honest.logs
            let equivocations = cheat(&logs[1])
            let replay = try TurfReplay(config: honest.config, logs: logs, equivocations: equivocations)
            let path = dir.appendingPathComponent("\(rule).turfreplay").path
            try Data(ReplayFile.encode(replay)).write(to: URL(fileURLWithPath: path))
            let v = try run(turfBinary, ["replay", "--headless", path])
            #expect(v.status == 0, "\(rule): \(v.stderr)")
            let j = try #require(try JSONSerialization.jsonObject(with: Data(v.stdout.utf8)) as? [String: Any])
            let cheats = try #require(j["cheats"] as? [[String: Any]])
            #expect(cheats.map { $0["rule"] as? String } == [rule], "\(rule): \(v.stdout)")
            #expect(cheats.map { $0["player"] as? Int } == [1])
            #expect(cheats.map { $0["seq"] as? Int } == [rule == "equivocation" ? 0 : 25])
        }
        // The honest file lists none.
        let path = dir.appendingPathComponent("honest.turfreplay").path
        try Data(ReplayFile.encode(honest)).write(to: URL(fileURLWithPath: path))
        let v = try run(turfBinary, ["replay", "--headless", path])
        #expect(v.stdout.contains("\"cheats\":[]"), "\(v.stdout)")
    }
}
