import Engine
import Foundation
import LocalFiles
import Logging
import NetCore
import TerminalUI
import TurfRules

#if canImport(Glibc)
    import Glibc
#elseif canImport(Darwin)
    import Darwin
#endif

// The C calls, where JournalFile's own `open` and `close` hide them.
private func openFile(_ path: String, _ flags: Int32, _ mode: mode_t = 0) -> Int32 { open(path, flags, mode) }
private func closeFile(_ fd: Int32) { _ = close(fd) }

/// Flushes written data to the disk: fdatasync where there is one (Linux); macOS has only fsync.
private func syncData(_ fd: Int32) {
    #if os(Linux)
        _ = fdatasync(fd)
    #else
        _ = fsync(fd)
    #endif
}

/// The journal of a round in progress, `<replays>/<name>.turfjournal`. It is written under a
/// temporary name, locked (exclusive flock) and given its header before it is linked under its
/// real name, so recovery never sees a journal without its header or one that is not yet locked;
/// the lock is held while the round runs, so recovery never touches a live match. Flushes are
/// appended with write(2): the kernel keeps what was written when the process dies, so a crash
/// loses at most the ticks since the last flush. Every `syncEvery` flushes the data is also
/// flushed to disk (fdatasync), so a power cut loses at most that much more. A saved replay
/// deletes the journal, only once the replay itself is on disk.
final class JournalFile: RoundJournal {
    let path: String
    private var fd: Int32
    private var failed = false
    private var flushes = 0
    private let log = Logger(label: "turf.journal")
    /// Flushes between fdatasyncs: 30 flushes of 10 ticks, 10 s at 30 Hz.
    static let syncEvery = 30

    private init(path: String, fd: Int32) {
        self.path = path
        self.fd = fd
    }

    /// Opens a new journal for `config`, its header written (nil if it cannot: logged, and the
    /// match goes on without one).
    static func open(_ config: MatchConfig) -> JournalFile? {
        let dir = StatePaths.replays
        let tmp = DurableFile.temporaryName(in: dir, prefix: "journal")
        var fd: Int32 = -1
        do {
            try StatePaths.ensure(dir)
            fd = openFile(tmp, O_WRONLY | O_CREAT | O_EXCL | O_APPEND | O_CLOEXEC, 0o600)
            guard fd >= 0 else { throw CLIError("cannot create \(tmp): \(String(cString: strerror(errno)))") }
            // A file just made with O_EXCL: nobody else can hold its lock.
            guard try FileLock.tryExclusive(fd, path: tmp) else { throw CLIError("cannot lock \(tmp): it is in use") }
            try DurableFile.writeAll(fd, ReplayJournal.header(config))
            let path = try DurableFile.linkUnderFreeName(
                tmp,
                base: "\(dir)/\(ReplayNames.base(config))",
                ext: "turfjournal"
            )
            unlink(tmp)
            DurableFile.syncDirectory(dir)
            return JournalFile(path: path, fd: fd)
        } catch {
            if fd >= 0 { closeFile(fd) }
            unlink(tmp)
            Logger(label: "turf.journal").error("no journal for this match: \(error)")
            return nil
        }
    }

    func append(_ bytes: [UInt8]) {
        guard fd >= 0, !failed else { return }
        do {
            try DurableFile.writeAll(fd, bytes)
            flushes += 1
            if flushes % JournalFile.syncEvery == 0 { syncData(fd) }
        } catch {
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
        closeFile(fd)
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
        /// The journal was damaged but part of it recovered; it is kept as `journal` (*.damaged).
        var salvaged = false
        /// Whether this result is an error to report (damage, or a journal that cannot be read).
        var failed: Bool { salvaged || (replay == nil && ops == 0 && problem != nil) }
    }

    /// Recovers every journal in `dir` that no running turf holds. A journal with any damage (its
    /// header or config unreadable, or any section that does not verify) is renamed `*.damaged`
    /// (kept, never deleted) so it is reported once, after every section that verifies has been
    /// recovered; one that cannot be read or whose replay cannot be written stays for the next try.
    static func recoverAll(in dir: String = StatePaths.replays) -> [Result] {
        guard let names = try? FileManager.default.contentsOfDirectory(atPath: dir) else { return [] }
        return names.filter { $0.hasSuffix(".turfjournal") }.sorted().compactMap { recover("\(dir)/\($0)") }
    }

    /// Nil when the journal is in use by a live match, or gone (another recovery took it).
    /// Opened through `UntrustedFile` (a FIFO or device named like a journal is refused at once,
    /// never waited on) and read up to `FileLimits.journal` bytes.
    static func recover(_ path: String) -> Result? {
        let fd: Int32
        do {
            guard let opened = try UntrustedFile.openIfExists(path, what: "journal") else { return nil }
            fd = opened
        } catch {
            return Result(journal: path, ops: 0, lastTick: 0, discardedBytes: 0, problem: "\(error)")
        }
        defer { closeFile(fd) }
        guard (try? FileLock.tryExclusive(fd, path: path)) == true else { return nil }
        // Another recovery may have finished with this file between our open and our lock.
        var st = stat()
        guard fstat(fd, &st) == 0, st.st_nlink > 0 else { return nil }
        let log = Logger(label: "turf.journal")
        // The magic before the size: a file that is no journal is set aside whatever its size.
        do { try UntrustedFile.expectMagic(fd, ReplayJournal.magic, path: path, what: "journal") } catch let e
            as FileError
        {
            return e.code == nil
                ? markDamaged(path, problem: "\(e)")
                : Result(journal: path, ops: 0, lastTick: 0, discardedBytes: 0, problem: "\(e)")
        } catch {
            return Result(journal: path, ops: 0, lastTick: 0, discardedBytes: 0, problem: "\(error)")
        }
        let bytes: [UInt8]
        do {
            bytes = try UntrustedFile.readAll(fd, limit: FileLimits.journal, path: path, what: "journal")
        } catch {
            // Too large, or unreadable: nothing is known about it, and it is not ours to move.
            log.error("journal \(path) could not be read (\(error)); left where it is")
            return Result(journal: path, ops: 0, lastTick: 0, discardedBytes: 0, problem: "\(error)")
        }
        let rec: ReplayJournal.Recovery<TurfWorld>
        do {
            rec = try ReplayJournal.recover(bytes, as: TurfWorld.self)
        } catch let e as ReplayFormatError {
            return markDamaged(path, problem: "\(e)")
        } catch let e as ConfigError {
            return markDamaged(path, problem: "\(e)")
        } catch {
            return markDamaged(path, problem: "\(error)")
        }
        var result = Result(
            journal: path,
            ops: rec.replay.opCount,
            lastTick: rec.lastTick,
            discardedBytes: rec.discardedBytes,
            problem: rec.stoppedBy.map { "\($0)" }
        )
        if rec.replay.opCount > 0 {
            do {
                result.replay = try DurableFile.createNew(
                    ReplayFile.encode(rec.replay),
                    base: String(path.dropLast(".turfjournal".count)),
                    ext: "turfreplay"
                )
            } catch {
                log.error("recovered \(path) but could not save it (\(error)); the journal stays")
                result.problem = "could not save the recovered replay: \(error)"
                return result
            }
        }
        if rec.isDamaged {
            // Never delete evidence: what could not be read is kept beside the recovered replay.
            let ranges = rec.damaged.map { "\($0.lowerBound)..<\($0.upperBound)" }.joined(separator: ", ")
            var damaged = markDamaged(
                path,
                problem: "damaged bytes \(ranges) skipped (first: \(rec.stoppedBy.map { "\($0)" } ?? "?"))"
            )
            damaged.replay = result.replay
            damaged.ops = result.ops
            damaged.lastTick = result.lastTick
            damaged.discardedBytes = result.discardedBytes
            damaged.salvaged = true
            return damaged
        }
        unlink(path)
        log.notice(
            "recovered \(path): \(result.ops) ops to tick \(result.lastTick) -> \(result.replay ?? "nothing to save")"
        )
        return result
    }

    /// Keeps a damaged journal as `<journal>.damaged` (or `-2.damaged`, …: never replacing a file).
    private static func markDamaged(_ path: String, problem: String) -> Result {
        let log = Logger(label: "turf.journal")
        do {
            let damaged = try DurableFile.linkUnderFreeName(path, base: path, ext: "damaged")
            unlink(path)
            log.error("journal \(path) is damaged (\(problem)); kept as \(damaged)")
            return Result(journal: damaged, ops: 0, lastTick: 0, discardedBytes: 0, problem: problem)
        } catch {
            log.error("journal \(path) is damaged (\(problem)) and could not be set aside (\(error)); left where it is")
            return Result(
                journal: path,
                ops: 0,
                lastTick: 0,
                discardedBytes: 0,
                problem: "\(problem); could not keep it as .damaged: \(error)"
            )
        }
    }
}

/// File names of saved matches: `<date>-<time>-<map>-<seed>`.
enum ReplayNames {
    static func base(_ config: MatchConfig, date: Date = Date()) -> String {
        let f = DateFormatter()
        f.dateFormat = "yyyyMMdd-HHmmss"
        let name = (try? TurfWorld.settings(for: config).map.name.lowercased()) ?? "match"
        // A map's name is text from a file: only letters, digits and '-' reach a file name (a
        // name like "../x" must not pick the directory).
        var map = String(
            String.UnicodeScalarView(
                name.unicodeScalars.map {
                    ("a"..."z").contains($0) || ("0"..."9").contains($0) ? $0 : "-"
                }.prefix(40)
            )
        )
        if map.allSatisfy({ $0 == "-" }) { map = "match" }
        return "\(f.string(from: date))-\(map)-\(hex64(config.seed).suffix(6))"
    }
}
