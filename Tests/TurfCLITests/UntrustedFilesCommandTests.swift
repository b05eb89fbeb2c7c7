import Determinism
import Engine
import Foundation
import Testing
import TurfRules

/// Crafted files, as a careless or hostile user would hand them to turf: each gets a one-line
/// error and an exit status in 1...127, at once, without reading more than its size limit.
@Suite struct UntrustedFilesCommandTests {
    func tempDir() throws -> String {
        let d = FileManager.default.temporaryDirectory.appendingPathComponent(
            "turf-untrusted-\(UUID().uuidString.prefix(8))"
        ).path
        try FileManager.default.createDirectory(atPath: d, withIntermediateDirectories: true)
        return d
    }

    func environment(_ dir: String) -> [String: String] {
        var env = ProcessInfo.processInfo.environment
        env["HOME"] = dir
        env["XDG_CONFIG_HOME"] = dir + "/config"
        env["XDG_STATE_HOME"] = dir + "/state"
        return env
    }

    /// One line on stderr, status 1...127 (no signal, no trap).
    func expectOneLineError(_ r: CommandResult, containing text: String, _ what: String) {
        #expect((1...127).contains(r.status), "\(what): status \(r.status), \(r.stderr)")
        let lines = r.stderr.split(separator: "\n", omittingEmptySubsequences: true)
        #expect(lines.count == 1, "\(what): \(r.stderr)")
        #expect(r.stderr.contains(text), "\(what): \(r.stderr)")
    }

    /// A sparse file of `size` bytes starting with `prefix`: costs no disk, reads as a huge file.
    func sparse(_ path: String, size: off_t, prefix: [UInt8]) throws {
        let fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0o600)
        #expect(fd >= 0)
        defer { close(fd) }
        _ = prefix.withUnsafeBytes { write(fd, $0.baseAddress, $0.count) }
        #expect(ftruncate(fd, size) == 0)
    }

    func journalFixture() throws -> [UInt8] {
        [UInt8](try Data(contentsOf: repoRoot.appendingPathComponent("Fuzz/Corpus/journal/seed-dojo-3p")))
    }

    /// Huge (sparse) replays, journals and maps are refused by their size before any is read.
    @Test func filesOverTheirSizeLimitAreRefusedBeforeReading() throws {
        let dir = try tempDir()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        try sparse("\(dir)/huge.turfreplay", size: 4 << 30, prefix: Array("TURFRPLY".utf8))
        expectOneLineError(
            try run(turfBinary, ["replay", "--headless", "\(dir)/huge.turfreplay"], timeout: 30),
            containing: "too large",
            "4 GB replay"
        )
        try sparse("\(dir)/huge.map", size: 2 << 30, prefix: Array("name: Huge\n---\n".utf8))
        expectOneLineError(
            try run(
                turfBinary,
                ["replay", "generate", "--map", "\(dir)/huge.map", "-o", "\(dir)/x.turfreplay"],
                timeout: 30
            ),
            containing: "too large",
            "2 GB map"
        )
        let journals = "\(dir)/journals"
        try FileManager.default.createDirectory(atPath: journals, withIntermediateDirectories: true)
        try sparse("\(journals)/huge.turfjournal", size: 3 << 30, prefix: Array("TURFJRNL".utf8))
        let r = try run(
            turfBinary,
            ["replay", "recover", "--dir", journals],
            environment: environment(dir),
            timeout: 30
        )
        #expect(r.status == 1, "\(r.stdout) \(r.stderr)")
        #expect(r.stdout.contains("too large"), "\(r.stdout)")
        #expect(FileManager.default.fileExists(atPath: "\(journals)/huge.turfjournal"), "evidence is never deleted")
        // A huge file that is no journal at all says so (its magic is read first) and is set aside.
        try sparse("\(journals)/junk.turfjournal", size: 3 << 30, prefix: [])
        let junk = try run(
            turfBinary,
            ["replay", "recover", "--dir", journals],
            environment: environment(dir),
            timeout: 30
        )
        #expect(junk.status == 1 && junk.stdout.contains("does not start with \"TURFJRNL\""), "\(junk.stdout)")
        #expect(FileManager.default.fileExists(atPath: "\(journals)/junk.turfjournal.damaged"))
        let plain = try sparse4GBReplayWithoutMagic(dir)
        expectOneLineError(plain, containing: "does not start with \"TURFRPLY\"", "4 GB non-replay")
    }

    func sparse4GBReplayWithoutMagic(_ dir: String) throws -> CommandResult {
        try sparse("\(dir)/zeros.turfreplay", size: 4 << 30, prefix: [])
        return try run(turfBinary, ["replay", "--headless", "\(dir)/zeros.turfreplay"], timeout: 30)
    }

    /// A FIFO where a key or a journal belongs would block an ordinary open forever.
    @Test func fifosAreRefusedAtOnce() throws {
        let dir = try tempDir()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        try FileManager.default.createDirectory(atPath: "\(dir)/config/turf", withIntermediateDirectories: true)
        #expect(mkfifo("\(dir)/config/turf/identity.key", 0o600) == 0)
        expectOneLineError(
            try run(turfBinary, ["id"], environment: environment(dir), timeout: 20),
            containing: "not a regular file (a FIFO)",
            "FIFO key"
        )

        let journals = "\(dir)/journals"
        try FileManager.default.createDirectory(atPath: journals, withIntermediateDirectories: true)
        #expect(mkfifo("\(journals)/a.turfjournal", 0o600) == 0)
        try Data(try journalFixture()).write(to: URL(fileURLWithPath: "\(journals)/b.turfjournal"))
        let r = try run(
            turfBinary,
            ["replay", "recover", "--dir", journals],
            environment: environment(dir),
            timeout: 20
        )
        #expect(r.status == 1, "\(r.stdout) \(r.stderr)")
        #expect(r.stdout.contains("a FIFO"), "\(r.stdout)")
        #expect(
            FileManager.default.fileExists(atPath: "\(journals)/b.turfreplay"),
            "the good journal is still recovered: \(r.stdout)"
        )
    }

    /// A replay or journal whose recorded map holds a digit with a combining mark (which used to
    /// trap the parser, exit 132, and so crash the viewer, --headless and every later demo).
    @Test func aPoisonedMapInAReplayOrJournalIsAnError() throws {
        let dir = try tempDir()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        var w = ByteWriter()
        w.u8(1)  // turf settings version
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
        let replay = TurfReplay(config: config, logs: [[], []], equivocations: [], checkpoints: [], finalHash: 0)
        try Data(ReplayFile.encode(replay)).write(to: URL(fileURLWithPath: "\(dir)/p.turfreplay"))
        expectOneLineError(
            try run(turfBinary, ["replay", "--headless", "\(dir)/p.turfreplay"], timeout: 30),
            containing: "<map recorded in the match>:4:3: unexpected character U+0301",
            "poisoned replay"
        )

        let journals = "\(dir)/journals"
        try FileManager.default.createDirectory(atPath: journals, withIntermediateDirectories: true)
        try Data(ReplayJournal.header(config)).write(to: URL(fileURLWithPath: "\(journals)/p.turfjournal"))
        let r = try run(
            turfBinary,
            ["replay", "recover", "--dir", journals],
            environment: environment(dir),
            timeout: 30
        )
        #expect(r.status == 1 && r.stdout.contains("U+0301"), "\(r.status) \(r.stdout) \(r.stderr)")
        #expect(FileManager.default.fileExists(atPath: "\(journals)/p.turfjournal.damaged"))
        let again = try run(
            turfBinary,
            ["replay", "recover", "--dir", journals],
            environment: environment(dir),
            timeout: 30
        )
        #expect(again.status == 0 && again.stdout.contains("no interrupted matches"), "reported once: \(again.stdout)")
    }

    /// The work bomb: a small replay whose config passes every per-field check but
    /// implies gigabytes of pickup schedule. Refused with a one-line error, quickly.
    @Test func aWorkBombReplayIsRefused() throws {
        let dir = try tempDir()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        var settings = TurfSettings(
            map: try ArenaMap(
                parsing: String(contentsOf: repoRoot.appendingPathComponent("Assets/maps/warren.map"), encoding: .utf8)
            )
        )
        settings.pickupInterval = 10
        settings.splatRadius = 8
        let config = settings.matchConfig(seed: 1, players: TurfMatch.players(humans: [], total: 2), seconds: 4 * 3600)
        let bomb = TurfReplay(config: config, logs: [[], []], equivocations: [], checkpoints: [], finalHash: 0)
        try Data(ReplayFile.encode(bomb)).write(to: URL(fileURLWithPath: "\(dir)/bomb.turfreplay"))
        expectOneLineError(
            try run(turfBinary, ["replay", "--headless", "\(dir)/bomb.turfreplay"], timeout: 30),
            containing: "pickups",
            "work bomb"
        )
    }

    /// One flipped bit in the first ops section: every other section is recovered into a replay
    /// that verifies, and the journal is kept as *.damaged and reported (exit 1), never deleted.
    @Test func aDamagedJournalIsSalvagedAndKept() throws {
        let dir = try tempDir()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        var bytes = try journalFixture()
        let whole = try ReplayJournal.recover(bytes, as: TurfWorld.self)
        // The first ops section follows the header and the config section.
        let configLength = Int(bytes[11]) | Int(bytes[12]) << 8 | Int(bytes[13]) << 16 | Int(bytes[14]) << 24
        bytes[10 + 13 + configLength + 7] ^= 0x04
        try Data(bytes).write(to: URL(fileURLWithPath: "\(dir)/m.turfjournal"))
        let r = try run(turfBinary, ["replay", "recover", "--dir", dir], environment: environment(dir), timeout: 60)
        #expect(r.status == 1, "\(r.stdout) \(r.stderr)")
        #expect(
            r.stdout.contains("recovered part of a damaged match") && r.stdout.contains("m.turfjournal.damaged"),
            "\(r.stdout)"
        )
        #expect(FileManager.default.fileExists(atPath: "\(dir)/m.turfjournal.damaged"))
        #expect(!FileManager.default.fileExists(atPath: "\(dir)/m.turfjournal"))
        let saved = try ReplayFile.decode(
            [UInt8](try Data(contentsOf: URL(fileURLWithPath: "\(dir)/m.turfreplay"))),
            as: TurfWorld.self
        )
        #expect(saved.opCount > 0 && saved.opCount < whole.replay.opCount)
        let v = try run(turfBinary, ["replay", "--headless", "\(dir)/m.turfreplay"], timeout: 60)
        #expect(v.status == 0 && v.stdout.contains("\"ok\":true"), "\(v.stdout) \(v.stderr)")
    }

    /// A map saved with CRLF line ends (a Windows editor) plays like the LF original.
    @Test func aCRLFMapIsAccepted() throws {
        let dir = try tempDir()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let text = try String(contentsOf: repoRoot.appendingPathComponent("Assets/maps/dojo.map"), encoding: .utf8)
        try text.replacingOccurrences(of: "\n", with: "\r\n").write(
            toFile: "\(dir)/dojo-crlf.map",
            atomically: true,
            encoding: .utf8
        )
        let r = try run(
            turfBinary,
            [
                "replay", "generate", "--players", "2", "--minutes", "0.1", "--map", "\(dir)/dojo-crlf.map",
                "-o", "\(dir)/c.turfreplay",
            ],
            timeout: 60
        )
        #expect(r.status == 0, "\(r.stderr)")
    }
}
