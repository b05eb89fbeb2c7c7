import Engine
import Foundation
import Logging
import TerminalUI
import TurfRules

/// The journal of a round in progress, `<replays>/<name>.turfjournal`: created exclusively with
/// mode 0600, held under an exclusive flock while the round runs (so recovery never touches a live
/// match), appended with write(2) as the demo flushes. The kernel keeps what was written when the
/// process dies, so a crash loses at most the ticks since the last flush; a saved replay deletes it.
final class JournalFile: RoundJournal {
    let path: String
    private var fd: Int32
    private var failed = false
    private let log = Logger(label: "turf.journal")

    private init(path: String, fd: Int32) {
        self.path = path
        self.fd = fd
    }

    /// Opens a new journal for `config` (nil if it cannot: logged, and the match goes on without).
    static func open(_ config: MatchConfig) -> JournalFile? {
        do {
            try StatePaths.ensure(StatePaths.replays)
            let base = "\(StatePaths.replays)/\(ReplayNames.base(config))"
            var path = base + ".turfjournal"
            var fd = Glibc.open(path, O_WRONLY | O_CREAT | O_EXCL | O_APPEND | O_CLOEXEC, 0o600)
            var n = 2
            while fd < 0 && errno == EEXIST && n < 100 { // two matches started in the same second
                path = "\(base)-\(n).turfjournal"
                fd = Glibc.open(path, O_WRONLY | O_CREAT | O_EXCL | O_APPEND | O_CLOEXEC, 0o600)
                n += 1
            }
            guard fd >= 0 else { throw CLIError("cannot create \(path): \(String(cString: strerror(errno)))") }
            guard flock(fd, LOCK_EX | LOCK_NB) == 0 else {
                Glibc.close(fd)
                throw CLIError("cannot lock \(path): \(String(cString: strerror(errno)))")
            }
            return JournalFile(path: path, fd: fd)
        } catch {
            Logger(label: "turf.journal").error("no journal for this match: \(error)")
            return nil
        }
    }

    func append(_ bytes: [UInt8]) {
        guard fd >= 0, !failed else { return }
        do { try writeAll(fd, bytes) } catch {
            failed = true
            log.error("journal \(path): \(error); the match goes on, and is saved at its end")
        }
    }

    func close(keep: Bool) {
        guard fd >= 0 else { return }
        if keep {
            fsync(fd)
            log.warning("journal kept for recovery: \(path)")
        } else {
            unlink(path)
        }
        Glibc.close(fd)
        fd = -1
    }
}

/// Turns the journals of interrupted matches into replays.
enum JournalRecovery {
    struct Result {
        var journal: String
        var replay: String?
        var ops: Int
        var lastTick: Tick
        var discardedBytes: Int
        var problem: String?
    }

    /// Recovers every journal in `dir` that no running turf holds. A journal whose header is
    /// unreadable is renamed `*.damaged` (kept, never deleted) so it is reported once.
    static func recoverAll(in dir: String = StatePaths.replays) -> [Result] {
        guard let names = try? FileManager.default.contentsOfDirectory(atPath: dir) else { return [] }
        return names.filter { $0.hasSuffix(".turfjournal") }.sorted().compactMap { recover("\(dir)/\($0)") }
    }

    /// Nil when the journal is in use by a live match.
    static func recover(_ path: String) -> Result? {
        let fd = Glibc.open(path, O_RDWR | O_CLOEXEC)
        guard fd >= 0 else { return Result(journal: path, ops: 0, lastTick: 0, discardedBytes: 0, problem: String(cString: strerror(errno))) }
        defer { Glibc.close(fd) }
        guard flock(fd, LOCK_EX | LOCK_NB) == 0 else { return nil }
        let log = Logger(label: "turf.journal")
        do {
            let bytes = try readFile(path)
            let rec = try ReplayJournal.recover(bytes, as: TurfWorld.self)
            var result = Result(journal: path, ops: rec.replay.opCount, lastTick: rec.lastTick,
                                discardedBytes: rec.discardedBytes, problem: rec.stoppedBy.map { "\($0)" })
            if rec.replay.opCount > 0 {
                let base = String(path.dropLast(".turfjournal".count))
                var target = base + ".turfreplay"
                if FileManager.default.fileExists(atPath: target) { target = base + "-recovered.turfreplay" }
                try writeAtomically(ReplayFile.encode(rec.replay), to: target)
                result.replay = target
            }
            unlink(path)
            log.notice("recovered \(path): \(result.ops) ops to tick \(result.lastTick) -> \(result.replay ?? "nothing to save")")
            return result
        } catch {
            let damaged = path + ".damaged"
            rename(path, damaged)
            log.error("journal \(path) is unreadable (\(error)); kept as \(damaged)")
            return Result(journal: damaged, ops: 0, lastTick: 0, discardedBytes: 0, problem: "\(error)")
        }
    }
}

/// File names of saved matches: `<date>-<time>-<map>-<seed>`.
enum ReplayNames {
    static func base(_ config: MatchConfig, date: Date = Date()) -> String {
        let f = DateFormatter()
        f.dateFormat = "yyyyMMdd-HHmmss"
        let map = (try? TurfWorld.settings(for: config).map.name.lowercased()) ?? "match"
        return "\(f.string(from: date))-\(map)-\(hex64(config.seed).suffix(6))"
    }
}

/// Writes every byte, retrying short writes and EINTR.
func writeAll(_ fd: Int32, _ bytes: [UInt8]) throws {
    var done = 0
    while done < bytes.count {
        let n = bytes.withUnsafeBytes { write(fd, $0.baseAddress! + done, bytes.count - done) }
        if n < 0 {
            if errno == EINTR { continue }
            throw CLIError("write failed: \(String(cString: strerror(errno)))")
        }
        done += n
    }
}
