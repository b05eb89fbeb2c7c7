import Foundation

#if canImport(Glibc)
    import Glibc
#elseif canImport(Darwin)
    import Darwin
#endif

/// The one way turf takes an advisory lock: an exclusive `flock`, never waited for. The kernel
/// lets it go when the descriptor is closed or the process ends (even by `kill -9`), so a crashed
/// run never leaves a stale lock behind. Used for the identity key, the DHT state files and the
/// match journals.
public enum FileLock {
    /// Takes the exclusive lock on the open file `fd` (named `path` in errors) without waiting:
    /// true if taken, false if another open file description holds it. Any other failure throws
    /// ("cannot lock PATH: …").
    public static func tryExclusive(_ fd: Int32, path: String) throws -> Bool {
        if flock(fd, LOCK_EX | LOCK_NB) == 0 { return true }
        let e = errno
        guard e == EWOULDBLOCK else { throw FileError.errno("cannot lock", path, e) }
        return false
    }

    /// Opens the lock file `path` (created with mode 0600 if missing, never through a symlink,
    /// never blocking on a FIFO) and takes its lock: the descriptor that holds it (close it to let
    /// the lock go), or nil if another process holds it. Throws "cannot open PATH: …" or
    /// "cannot lock PATH: …".
    public static func acquire(_ path: String) throws -> Int32? {
        let fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK, 0o600)
        guard fd >= 0 else { throw FileError.errno("cannot open", path) }
        do {
            if try tryExclusive(fd, path: path) { return fd }
        } catch {
            close(fd)
            throw error
        }
        close(fd)
        return nil
    }
}

extension DurableFile {
    /// A fresh name for a temporary file in `dir`, `.PREFIX-PID-RANDOM.tmp`: unique among this
    /// process's names and other processes' (the pid), and unlike a leftover of an earlier process
    /// that had the same pid (64 random bits). Create it with O_EXCL all the same.
    public static func temporaryName(in dir: String, prefix: String) -> String {
        let tag = String(UInt64.random(in: .min ... .max), radix: 16)
        return "\(dir)/.\(prefix)-\(getpid())-\(tag).tmp"
    }
}
