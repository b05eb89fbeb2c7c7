import Foundation
import Testing

/// `turf replay recover` against journals in the states a crash, a live match or damage leave.
@Suite struct JournalRecoveryTests {
    func journalFixture() throws -> [UInt8] {
        [UInt8](try Data(contentsOf: repoRoot.appendingPathComponent("Fuzz/Corpus/replay/seed-journal-dojo-3p")))
    }

    func tempDir() throws -> String {
        let d = FileManager.default.temporaryDirectory.appendingPathComponent(
            "turf-journal-\(UUID().uuidString.prefix(8))"
        ).path
        try FileManager.default.createDirectory(atPath: d, withIntermediateDirectories: true)
        return d
    }

    /// A journal that a live match holds (its flock) is left alone; once free, it is recovered.
    @Test func aLockedJournalIsLeftAloneUntilItsMatchEnds() throws {
        let dir = try tempDir()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let path = "\(dir)/m.turfjournal"
        try Data(try journalFixture()).write(to: URL(fileURLWithPath: path))
        let fd = open(path, O_RDONLY | O_CLOEXEC)  // no child of a parallel test may inherit the lock
        #expect(flock(fd, LOCK_EX) == 0)
        let busy = try run(turfBinary, ["replay", "recover", "--dir", dir])
        #expect(busy.status == 0 && busy.stdout.contains("no interrupted matches"), "\(busy.stdout) \(busy.stderr)")
        #expect(FileManager.default.fileExists(atPath: path))
        close(fd)
        let free = try run(turfBinary, ["replay", "recover", "--dir", dir, "--json"])
        #expect(free.status == 0, "\(free.stderr)")
        #expect(free.stdout.contains("\"replay\":\"\(dir)/m.turfreplay\""), "\(free.stdout)")
        #expect(!FileManager.default.fileExists(atPath: path))
        let v = try run(turfBinary, ["replay", "--headless", "\(dir)/m.turfreplay"])
        #expect(v.status == 0 && v.stdout.contains("\"ok\":true"), "\(v.stdout) \(v.stderr)")
    }

    /// Recovering never replaces a replay that already has the journal's name.
    @Test func recoveryNeverOverwritesAReplay() throws {
        let dir = try tempDir()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        try Data(try journalFixture()).write(to: URL(fileURLWithPath: "\(dir)/m.turfjournal"))
        try Data("keep me".utf8).write(to: URL(fileURLWithPath: "\(dir)/m.turfreplay"))
        let r = try run(turfBinary, ["replay", "recover", "--dir", dir])
        #expect(r.status == 0, "\(r.stderr)")
        #expect(try String(contentsOfFile: "\(dir)/m.turfreplay", encoding: .utf8) == "keep me")
        #expect(FileManager.default.fileExists(atPath: "\(dir)/m-2.turfreplay"), "\(r.stdout)")
    }

    /// A journal whose header is damaged is kept as *.damaged and reported (exit 1) once; a torn
    /// tail is dropped and the rest recovered.
    @Test func damageIsKeptAndReportedAndATornTailIsDropped() throws {
        let dir = try tempDir()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        var bad = try journalFixture()
        bad[12] ^= 0xFF  // inside the config section: its checksum fails
        try Data(bad).write(to: URL(fileURLWithPath: "\(dir)/bad.turfjournal"))
        let torn = try journalFixture().dropLast(5)
        try Data(torn).write(to: URL(fileURLWithPath: "\(dir)/torn.turfjournal"))
        let r = try run(turfBinary, ["replay", "recover", "--dir", dir, "--json"])
        #expect(r.status == 1)
        #expect(FileManager.default.fileExists(atPath: "\(dir)/bad.turfjournal.damaged"))
        #expect(FileManager.default.fileExists(atPath: "\(dir)/torn.turfreplay"), "\(r.stdout)")
        #expect(r.stdout.contains("\"discarded_bytes\":"), "\(r.stdout)")
        let again = try run(turfBinary, ["replay", "recover", "--dir", dir])
        #expect(again.status == 0 && again.stdout.contains("no interrupted matches"), "\(again.stdout)")
    }
}
