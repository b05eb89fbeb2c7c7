import Engine
import Foundation
import Keys
import Testing
import TurfRules

/// `turf replay` on the recorded matches in Replays/, on corrupted copies, and on generated ones.
@Suite struct ReplayCommandTests {
    static var recorded: [String] {
        let dir = repoRoot.appendingPathComponent("Replays").path
        return ((try? FileManager.default.contentsOfDirectory(atPath: dir)) ?? [])
            .filter { $0.hasSuffix(".turfreplay") }.sorted().map { "\(dir)/\($0)" }
    }

    static func tempPath(_ name: String) -> String {
        FileManager.default.temporaryDirectory.appendingPathComponent("turf-\(UUID().uuidString.prefix(8))-\(name)")
            .path
    }

    @Test func thereAreRecordedMatches() {
        #expect(Self.recorded.count >= 3)
    }

    @Test(arguments: recorded)
    func everyRecordedMatchVerifiesInOrderAndShuffled(path: String) throws {
        let bytes = [UInt8](try Data(contentsOf: URL(fileURLWithPath: path)))
        let replay = try ReplayFile.decode(bytes, as: TurfWorld.self)
        let player = try ReplayPlayer(replay)
        let (v, _) = try player.verify()
        #expect(v.ok, "\(path): first bad tick \(String(describing: v.firstBadTick))")
        #expect(v.checkpointsChecked == Int(replay.config.lengthTicks / replay.config.checkpointInterval))
        let (s, _) = try player.verify(shuffleSeed: 12345)
        #expect(s.ok)

        let r = try run(turfBinary, ["replay", "--headless", path])
        #expect(r.status == 0, "\(r.stderr)")
        #expect(r.stdout.contains("\"ok\":true"))
        #expect(r.stdout.contains("\"final_hash\":\"\(String(format: "%016llx", replay.finalHash))\""))
        let shuffled = try run(turfBinary, ["replay", "--headless", path, "--delivery", "shuffle:7"])
        #expect(shuffled.status == 0)
        #expect(shuffled.stdout.contains("\"final_hash\":\"\(String(format: "%016llx", replay.finalHash))\""))
    }

    @Test func corruptedAndTruncatedCopiesAreRejectedWithAByteOffset() throws {
        let source = try #require(Self.recorded.first { $0.contains("courtyard") } ?? Self.recorded.first)
        var bytes = [UInt8](try Data(contentsOf: URL(fileURLWithPath: source)))
        let flipped = Self.tempPath("flipped.turfreplay")
        let truncated = Self.tempPath("truncated.turfreplay")
        defer {
            unlink(flipped)
            unlink(truncated)
        }
        let at = bytes.count / 2
        bytes[at] ^= 0x40
        try Data(bytes).write(to: URL(fileURLWithPath: flipped))
        try Data(bytes[0..<(bytes.count * 2 / 3)]).write(to: URL(fileURLWithPath: truncated))
        bytes[at] ^= 0x40

        for file in [flipped, truncated] {
            let r = try run(turfBinary, ["replay", "--headless", file])
            #expect(r.status != 0)
            let lines = r.stderr.split(separator: "\n")
            #expect(lines.count == 1, "expected a one-line error, got: \(r.stderr)")
            #expect(r.stderr.contains("at byte"))
            #expect(r.stdout.isEmpty)
        }
        let missing = try run(turfBinary, ["replay", "--headless", "/nonexistent/x.turfreplay"])
        #expect(missing.status != 0)
        #expect(missing.stderr.lowercased().contains("no such file"))
    }

    @Test func aDesyncIsReportedWithTheFirstBadTick() throws {
        let source = try #require(Self.recorded.first { $0.contains("dojo-2p") } ?? Self.recorded.first)
        var replay = try ReplayFile.decode(
            [UInt8](try Data(contentsOf: URL(fileURLWithPath: source))),
            as: TurfWorld.self
        )
        // A well-formed file whose recorded hash at the 10th checkpoint is wrong.
        replay.checkpoints[9].hash ^= 1
        let path = Self.tempPath("desync.turfreplay")
        defer { unlink(path) }
        try Data(ReplayFile.encode(replay)).write(to: URL(fileURLWithPath: path))
        let r = try run(turfBinary, ["replay", "--headless", path])
        #expect(r.status == 1)
        #expect(r.stdout.contains("\"ok\":false"))
        #expect(r.stdout.contains("\"first_bad_tick\":\(replay.checkpoints[9].tick)"))
        #expect(r.stderr.contains("mismatch at tick \(replay.checkpoints[9].tick)"))
    }

    /// A replay says who played: `--headless` prints each player's owner key as `turf id` would
    /// (`turf1…`), or null for a player nobody owns (a local bot).
    @Test func headlessOutputNamesEachPlayersOwner() throws {
        let source = try #require(Self.recorded.first { $0.contains("dojo-2p") } ?? Self.recorded.first)
        var replay = try ReplayFile.decode(
            [UInt8](try Data(contentsOf: URL(fileURLWithPath: source))),
            as: TurfWorld.self
        )
        replay.config.players[0].owner = PeerKey(bytes: [UInt8](repeating: 7, count: 32))
        let path = Self.tempPath("owned.turfreplay")
        defer { unlink(path) }
        try Data(ReplayFile.encode(replay)).write(to: URL(fileURLWithPath: path))
        let r = try run(turfBinary, ["replay", "--headless", path])
        #expect(r.status == 0, "\(r.stderr)")
        let owners = r.stdout.components(separatedBy: "\"owner\":").dropFirst().map { $0.prefix { $0 != "," } }
        #expect(owners.count == 2)
        #expect(owners.first?.hasPrefix("\"turf1") == true && owners.first?.count == 62)
        #expect(owners.last == "null")
    }

    @Test func generateThenVerify() throws {
        let path = Self.tempPath("gen.turfreplay")
        defer { unlink(path) }
        let g = try run(
            turfBinary,
            ["replay", "generate", "--players", "3", "--minutes", "0.25", "--seed", "9", "--map", "dojo", "-o", path]
        )
        #expect(g.status == 0, "\(g.stderr)")
        let v = try run(turfBinary, ["replay", "--headless", path, "--delivery", "shuffle:3"])
        #expect(v.status == 0)
        #expect(v.stdout.contains("\"ticks\":450"))
        let bad = try run(turfBinary, ["replay", "generate", "--players", "9", "-o", path])
        #expect(bad.status != 0)
    }

    @Test func aBadMapNamesFileLineAndColumn() throws {
        let path = Self.tempPath("bad.map")
        defer { unlink(path) }
        try "name: Broken\n---\n#####\n#1.2#\n#.x.#\n#####\n".write(toFile: path, atomically: true, encoding: .utf8)
        let r = try run(
            turfBinary,
            ["replay", "generate", "--players", "2", "--map", path, "-o", Self.tempPath("never.turfreplay")]
        )
        #expect(r.status != 0)
        #expect(r.stderr.contains("\(path):5:3: unexpected character 'x'"))
    }
}
