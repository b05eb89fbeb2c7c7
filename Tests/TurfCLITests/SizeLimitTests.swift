import Engine
import Foundation
import Testing
import TurfRules

/// The size limits of docs/untrusted-input.md hold both ways: a byte over is refused before
/// reading, and a crafted file at the limit — the densest ops the format allows, the largest
/// config — is decoded and verified (or recovered) within 256 MB.
@Suite(.serialized) struct SizeLimitTests {
    static let replayLimit = 3 << 20  // FileLimits.replay
    static let journalLimit = 4 << 20  // FileLimits.journal
    static let rssBudgetKB = 256 * 1024

    func tempDir() throws -> String {
        let d = FileManager.default.temporaryDirectory.appendingPathComponent(
            "turf-limits-\(UUID().uuidString.prefix(8))"
        ).path
        try FileManager.default.createDirectory(atPath: d, withIntermediateDirectories: true)
        return d
    }

    /// The largest config the bounds allow: 4 h, a checkpoint a second, 8 players, the most pickups.
    func largestConfig() throws -> (MatchConfig, [UInt32]) {
        let map = try ArenaMap(
            parsing: String(contentsOf: repoRoot.appendingPathComponent("Assets/maps/dojo.map"), encoding: .utf8)
        )
        var settings = TurfSettings(map: map)
        settings.pickupInterval = 44
        let config = settings.matchConfig(seed: 1, players: TurfMatch.players(humans: [], total: 8), seconds: 4 * 3600)
        try config.validate()
        _ = try TurfWorld.settings(for: config)
        // Floor cells whose move op is one byte: the cheapest ops to send.
        return (config, map.floorCells.filter { $0 < 64 }.map(UInt32.init))
    }

    /// Distinct ops for as few (player, seq) pairs as possible: all but the first of each pair are
    /// equivocations, which cost a replica the most memory per byte of file.
    func equivocations(_ n: Int, cells: [UInt32]) -> [Op<TurfOp>] {
        (0..<n).map { i in
            let j = i / 8
            return Op(
                player: UInt8(i % 8),
                seq: UInt32(j % 128),
                tick: Tick((j / 128) % 128),
                payload: .move(cell: cells[(j / 16384) % cells.count])
            )
        }
    }

    /// Runs the binary and returns its exit status and peak RSS (KB), from wait4.
    func runMeasuringRSS(_ args: [String]) -> (status: Int32, maxRSSKB: Int) {
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0)
        posix_spawn_file_actions_addopen(&actions, 1, "/dev/null", O_WRONLY, 0)
        posix_spawn_file_actions_addopen(&actions, 2, "/dev/null", O_WRONLY, 0)
        let argv = ([turfBinary] + args).map { strdup($0) } + [nil]
        defer { argv.forEach { free($0) } }
        var pid: pid_t = 0
        guard posix_spawn(&pid, turfBinary, &actions, nil, argv, environ) == 0 else { return (-1, 0) }
        var status: Int32 = 0
        var usage = rusage()
        while wait4(pid, &status, 0, &usage) < 0 && errno == EINTR {}
        let exit: Int32 = (status & 0x7f) == 0 ? (status >> 8) & 0xff : 128 + (status & 0x7f)
        return (exit, Int(usage.ru_maxrss))
    }

    @Test func aReplayAtTheLimitVerifiesWithin256MBAndOneByteMoreIsRefused() throws {
        let dir = try tempDir()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let (config, cells) = try largestConfig()
        let empty = TurfReplay(
            config: config,
            logs: Array(repeating: [], count: 8),
            equivocations: [],
            checkpoints: [],
            finalHash: 0
        )
        let overhead = ReplayFile.encode(empty).count + 13 + 4 + 16  // the equivocations section: frame, count
        let replay = TurfReplay(
            config: config,
            logs: Array(repeating: [], count: 8),
            equivocations: equivocations((Self.replayLimit - overhead) / 4, cells: cells),
            checkpoints: [],
            finalHash: 0
        )
        let bytes = ReplayFile.encode(replay)
        #expect(bytes.count <= Self.replayLimit && bytes.count > Self.replayLimit - 64, "\(bytes.count) bytes")
        try Data(bytes).write(to: URL(fileURLWithPath: "\(dir)/at.turfreplay"))
        // Shuffled delivery holds two replicas: the most memory a replay can take.
        let r = runMeasuringRSS(["replay", "--headless", "--delivery", "shuffle:1", "\(dir)/at.turfreplay"])
        #expect(r.status == 1, "the recorded hashes are zero: a mismatch, after all the work")
        #expect(r.maxRSSKB > 0 && r.maxRSSKB <= Self.rssBudgetKB, "peak RSS \(r.maxRSSKB) KB")
        print(
            "SizeLimitTests: replay at the limit (\(bytes.count) bytes, \(replay.opCount) ops), shuffled: peak RSS \(r.maxRSSKB / 1024) MB"
        )

        let pad = [UInt8](repeating: 0, count: Self.replayLimit + 1 - bytes.count)
        try Data(bytes + pad).write(to: URL(fileURLWithPath: "\(dir)/over.turfreplay"))
        let over = try run(turfBinary, ["replay", "--headless", "\(dir)/over.turfreplay"])
        #expect(over.status == 1 && over.stderr.contains("too large"), "\(over.stderr)")
    }

    @Test func aJournalAtTheLimitRecoversWithin256MBAndOneByteMoreIsLeftAlone() throws {
        let dir = try tempDir()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let (config, cells) = try largestConfig()
        var journal = ReplayJournal.header(config)
        let ops = equivocations((Self.journalLimit - journal.count) / 4, cells: cells)
        var i = 0
        while i < ops.count {
            let chunk = ReplayJournal.chunk(Array(ops[i..<min(ops.count, i + 1000)]), as: TurfWorld.self)
            guard journal.count + chunk.count <= Self.journalLimit else { break }
            journal += chunk
            i += 1000
        }
        #expect(journal.count > Self.journalLimit - 8192, "\(journal.count) bytes")
        try Data(journal).write(to: URL(fileURLWithPath: "\(dir)/at.turfjournal"))
        let r = runMeasuringRSS(["replay", "recover", "--dir", dir])
        #expect(r.status == 0)
        #expect(r.maxRSSKB > 0 && r.maxRSSKB <= Self.rssBudgetKB, "peak RSS \(r.maxRSSKB) KB")
        #expect(FileManager.default.fileExists(atPath: "\(dir)/at.turfreplay"))
        print(
            "SizeLimitTests: journal at the limit (\(journal.count) bytes, \(i) ops), recovered: peak RSS \(r.maxRSSKB / 1024) MB"
        )

        let pad = [UInt8](repeating: 0xEE, count: Self.journalLimit + 1 - journal.count)
        try Data(journal + pad).write(to: URL(fileURLWithPath: "\(dir)/over.turfjournal"))
        let over = try run(turfBinary, ["replay", "recover", "--dir", dir])
        #expect(over.status == 1 && over.stdout.contains("too large"), "\(over.stdout)")
        #expect(FileManager.default.fileExists(atPath: "\(dir)/over.turfjournal"))
    }
}
