// Every file turf reads or writes goes through this module: bounded reads of untrusted paths that
// cannot block, durable writes that never replace anything but a regular file, and the XDG paths.
import Foundation

#if canImport(Glibc)
    import Glibc
#elseif canImport(Darwin)
    import Darwin
#endif

/// A file operation that failed: one line, naming the path.
public struct FileError: Error, CustomStringConvertible, Equatable {
    public var description: String
    /// The errno behind the error, when a system call failed.
    public var code: Int32?
    public init(_ description: String, code: Int32? = nil) {
        self.description = description
        self.code = code
    }

    static func errno(_ what: String, _ path: String, _ code: Int32 = Foundation.errno) -> FileError {
        FileError("\(what) \(path): \(String(cString: strerror(code)))", code: code)
    }
}

/// Reading files that a user, a download or a peer may have crafted: a FIFO, a device, a 4 GB
/// sparse file or a directory gets a one-line error at once, never a hang and never more memory
/// than `limit` bytes.
public enum UntrustedFile {
    /// Reads a whole regular file of at most `limit` bytes. `what` names the kind of file in errors
    /// ("replay", "map"). Symlinks are followed (a user may link a map), but the file they reach
    /// must be regular. Opened with O_NONBLOCK, so a FIFO cannot block the open.
    /// With `magic`, the file's first bytes are checked before its size, and before anything
    /// else is read: a file that is not of this kind says so, however large it is.
    public static func read(_ path: String, limit: Int, what: String, magic: [UInt8]? = nil) throws -> [UInt8] {
        let fd = try open(path, what: what)
        defer { close(fd) }
        if let magic { try expectMagic(fd, magic, path: path, what: what) }
        return try readAll(fd, limit: limit, path: path, what: what)
    }

    /// Reads the first `magic.count` bytes of an open file and checks them.
    public static func expectMagic(_ fd: Int32, _ magic: [UInt8], path: String, what: String) throws {
        var head = [UInt8](repeating: 0, count: magic.count)
        var got = 0
        while got < magic.count {
            let n = head.withUnsafeMutableBytes { pread(fd, $0.baseAddress! + got, magic.count - got, off_t(got)) }
            if n < 0 {
                if errno == EINTR { continue }
                throw FileError.errno("cannot read \(what)", path)
            }
            if n == 0 { break }
            got += n
        }
        guard got == magic.count, head == magic else {
            let expected = String(decoding: magic, as: UTF8.self)
            throw FileError("\(path) is not a turf \(what): it does not start with \"\(expected)\"")
        }
    }

    /// Reads a whole file as UTF-8 text (strict: invalid UTF-8 is an error, not replaced).
    public static func readText(_ path: String, limit: Int, what: String) throws -> String {
        let bytes = try read(path, limit: limit, what: what)
        guard let text = String(validating: bytes, as: UTF8.self) else {
            throw FileError("\(what) \(path) is not UTF-8 text")
        }
        return text
    }

    /// `read`, or nil when there is no such file (ENOENT): for optional files (settings, saved
    /// state), whose absence is normal but whose unreadability is an error.
    public static func readIfPresent(_ path: String, limit: Int, what: String) throws -> [UInt8]? {
        var st = stat()
        if stat(path, &st) != 0 && errno == ENOENT { return nil }
        return try read(path, limit: limit, what: what)
    }

    /// `readText`, or nil when there is no such file.
    public static func readTextIfPresent(_ path: String, limit: Int, what: String) throws -> String? {
        guard let bytes = try readIfPresent(path, limit: limit, what: what) else { return nil }
        guard let text = String(validating: bytes, as: UTF8.self) else {
            throw FileError("\(what) \(path) is not UTF-8 text")
        }
        return text
    }

    /// Opens `path` read-only without blocking and checks that it is a regular file. The caller
    /// closes the descriptor. `extraFlags` adds flags such as O_NOFOLLOW.
    public static func open(_ path: String, what: String, extraFlags: Int32 = 0) throws -> Int32 {
        let fd = Foundation.open(path, O_RDONLY | O_NONBLOCK | O_CLOEXEC | extraFlags)
        guard fd >= 0 else {
            if errno == ELOOP { throw FileError("\(what) \(path) is a symbolic link; refusing it") }
            throw FileError.errno("cannot open \(what)", path)
        }
        _ = try regularFileStatus(fd, path: path, what: what) { "\(what) \(path) is not a regular file (\($0))" }
        return fd
    }

    /// The status of an open descriptor that must be a regular file. Otherwise `fd` is closed and
    /// the error says why (`refusal` gets what the file is, e.g. "a FIFO").
    static func regularFileStatus(_ fd: Int32, path: String, what: String, refusal: (String) -> String) throws -> stat {
        var st = stat()
        guard fstat(fd, &st) == 0 else {
            let e = errno
            close(fd)
            throw FileError.errno(what.isEmpty ? "cannot stat" : "cannot stat \(what)", path, e)
        }
        guard (st.st_mode & S_IFMT) == S_IFREG else {
            close(fd)
            throw FileError(refusal(fileKind(st.st_mode)))
        }
        return st
    }

    /// `open`, but nil when `path` does not exist (a key not yet created, a journal another
    /// recovery has just taken).
    public static func openIfExists(_ path: String, what: String, extraFlags: Int32 = 0) throws -> Int32? {
        do { return try open(path, what: what, extraFlags: extraFlags) } catch let e as FileError {
            if e.code == ENOENT { return nil }
            throw e
        }
    }

    /// Reads an open regular file from its start, refusing it once it is over `limit` bytes (the
    /// size is checked before reading, and again while reading, in case the file grows).
    public static func readAll(_ fd: Int32, limit: Int, path: String, what: String) throws -> [UInt8] {
        var st = stat()
        guard fstat(fd, &st) == 0 else { throw FileError.errno("cannot stat \(what)", path) }
        if Int64(st.st_size) > Int64(limit) { throw tooLarge(path, what: what, size: Int64(st.st_size), limit: limit) }
        var out: [UInt8] = []
        out.reserveCapacity(Int(st.st_size))
        var chunk = [UInt8](repeating: 0, count: 1 << 16)
        var offset: off_t = 0
        while true {
            // `!`: 64 KiB, not empty
            let n = chunk.withUnsafeMutableBytes { pread(fd, $0.baseAddress!, $0.count, offset) }
            if n < 0 {
                if errno == EINTR { continue }
                throw FileError.errno("cannot read \(what)", path)
            }
            if n == 0 { return out }
            if out.count + n > limit { throw tooLarge(path, what: what, size: Int64(out.count + n), limit: limit) }
            out += chunk[0..<n]
            offset += off_t(n)
        }
    }

    static func tooLarge(_ path: String, what: String, size: Int64, limit: Int) -> FileError {
        FileError("\(what) \(path) is too large (\(size) bytes; the limit for a \(what) is \(limit) bytes)")
    }

    static func fileKind(_ mode: mode_t) -> String {
        switch mode & S_IFMT {
        case S_IFREG: return "a regular file"
        case S_IFDIR: return "a directory"
        case S_IFIFO: return "a FIFO"
        case S_IFCHR: return "a character device"
        case S_IFBLK: return "a block device"
        case S_IFSOCK: return "a socket"
        case S_IFLNK: return "a symbolic link"
        default: return "not a regular file"
        }
    }
}

/// Writing files so that a crash leaves either the old file or the whole new one, and so that
/// nothing but a regular file is ever replaced.
public enum DurableFile {
    /// Writes `bytes` to `path` atomically and durably: to a temporary file in the same directory,
    /// flushed, renamed over `path`, and the directory flushed. An existing `path` must be a
    /// regular file (never a symlink, device, FIFO or directory), and is replaced only when
    /// `overwrite` is true.
    public static func write(_ bytes: [UInt8], to path: String, mode: mode_t = 0o600, overwrite: Bool) throws {
        try checkTarget(path, overwrite: overwrite)
        let dir = directory(of: path)
        let tmp = try writeFlushedTemporary(bytes, in: dir, mode: mode)
        guard rename(tmp, path) == 0 else {
            let e = errno
            unlink(tmp)
            throw FileError.errno("cannot rename \(tmp) to", path, e)
        }
        syncDirectory(dir)
    }

    /// Refuses a target that exists and is not a regular file, or that exists when `overwrite` is
    /// false. Checked before any work, so a bad `-o` fails at once.
    public static func checkTarget(_ path: String, overwrite: Bool) throws {
        var st = stat()
        if lstat(path, &st) != 0 {
            guard errno == ENOENT else { throw FileError.errno("cannot write", path) }
            let dir = directory(of: path)
            var dst = stat()
            guard stat(dir, &dst) == 0 else { throw FileError.errno("cannot write into directory", dir) }
            guard (dst.st_mode & S_IFMT) == S_IFDIR else {
                throw FileError("cannot write \(path): \(dir) is not a directory")
            }
            guard access(dir, W_OK) == 0 else { throw FileError.errno("cannot write into directory", dir) }
            return
        }
        guard (st.st_mode & S_IFMT) == S_IFREG else {
            throw FileError(
                "refusing to replace \(path): it is \(UntrustedFile.fileKind(st.st_mode)), not a regular file"
            )
        }
        guard overwrite else { throw FileError("\(path) already exists (pass --force to replace it)") }
    }

    /// Opens `path` for appending (a log), creating it with `mode` if missing. Never blocks and
    /// never writes through anything but a regular file this user owns: a symlink, FIFO, device,
    /// socket or directory there, or another user's file, is refused with one line.
    public static func openForAppend(_ path: String, mode: mode_t = 0o600) throws -> Int32 {
        let fd = open(path, O_WRONLY | O_APPEND | O_CREAT | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC, mode)
        guard fd >= 0 else {
            let e = errno
            if e == ELOOP { throw FileError("refusing to write \(path): it is a symbolic link") }
            // A FIFO without a reader fails with ENXIO: name what is there, not the errno.
            var st = stat()
            if lstat(path, &st) == 0 && (st.st_mode & S_IFMT) != S_IFREG {
                throw FileError(
                    "refusing to write \(path): it is \(UntrustedFile.fileKind(st.st_mode)), not a regular file"
                )
            }
            throw FileError.errno("cannot open", path, e)
        }
        let st = try UntrustedFile.regularFileStatus(fd, path: path, what: "") {
            "refusing to write \(path): it is \($0), not a regular file"
        }
        guard st.st_uid == geteuid() else {
            close(fd)
            throw FileError("refusing to write \(path): it belongs to another user")
        }
        return fd
    }

    /// Writes a new file durably under `<base>.<ext>` (or the first free `<base>-N.<ext>`):
    /// written and flushed under a temporary name, linked in, and the directory flushed. Never
    /// replaces an existing file. Returns the path used.
    public static func createNew(_ bytes: [UInt8], base: String, ext: String, mode: mode_t = 0o644) throws -> String {
        let dir = directory(of: base)
        let tmp = try writeFlushedTemporary(bytes, in: dir, mode: mode)
        defer { unlink(tmp) }
        let path = try linkUnderFreeName(tmp, base: base, ext: ext)
        syncDirectory(dir)
        return path
    }

    /// Hard-links `file` as `<base>.<ext>`, or `<base>-2.<ext>`, `-3`, … if taken: never replaces
    /// an existing file. Returns the name used.
    public static func linkUnderFreeName(_ file: String, base: String, ext: String) throws -> String {
        for n in 1..<1000 {
            let candidate = n == 1 ? "\(base).\(ext)" : "\(base)-\(n).\(ext)"
            if link(file, candidate) == 0 { return candidate }
            guard errno == EEXIST else { throw FileError.errno("cannot create", candidate) }
        }
        throw FileError("no free name for \(base).\(ext)")
    }

    /// Removes the file `path` names (a symlink itself, never what it points to) and flushes its
    /// directory, so the removal survives a crash. A directory is refused; a file already gone is
    /// an error (the caller said which file it meant).
    public static func remove(_ path: String) throws {
        var st = stat()
        guard lstat(path, &st) == 0 else { throw FileError.errno("cannot remove", path) }
        guard (st.st_mode & S_IFMT) != S_IFDIR else { throw FileError("refusing to remove \(path): it is a directory") }
        guard unlink(path) == 0 else { throw FileError.errno("cannot remove", path) }
        syncDirectory(directory(of: path))
    }

    /// Flushes a directory's entries (a new or renamed file's name) to disk.
    public static func syncDirectory(_ dir: String) {
        let fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
        guard fd >= 0 else { return }
        fsync(fd)
        close(fd)
    }

    /// Writes every byte, retrying short writes and EINTR.
    public static func writeAll(_ fd: Int32, _ bytes: [UInt8]) throws {
        var done = 0
        while done < bytes.count {
            // `!`: done < count, so not empty
            let n = bytes.withUnsafeBytes { Foundation.write(fd, $0.baseAddress! + done, bytes.count - done) }
            if n < 0 {
                if errno == EINTR { continue }
                throw FileError("write failed: \(String(cString: strerror(errno)))")
            }
            done += n
        }
    }

    /// Creates `dir` if missing and proves a file can be written in it (a small file is written,
    /// flushed and removed): checked before work whose result would otherwise be lost, such as a
    /// match that is saved at its end. Throws a one-line reason.
    public static func checkWritableDirectory(_ dir: String) throws {
        try ensureDirectory(dir)
        let probe = try writeFlushedTemporary(Array("turf".utf8), in: dir, mode: 0o600)
        unlink(probe)
    }

    /// Creates `dir` and its missing parents, mode 0700. Throws one line naming the real reason
    /// (a file in the way, permission, a missing parent that cannot be made).
    public static func ensureDirectory(_ dir: String) throws {
        var st = stat()
        if stat(dir, &st) == 0 {
            guard (st.st_mode & S_IFMT) == S_IFDIR else {
                throw FileError("\(dir) is not a directory (it is \(UntrustedFile.fileKind(st.st_mode)))")
            }
            return
        }
        let parent = directory(of: dir)
        if parent != dir && parent != "." && parent != "/" { try ensureDirectory(parent) }
        if mkdir(dir, 0o700) != 0 && errno != EEXIST { throw FileError.errno("cannot create directory", dir) }
    }

    /// The directory a path's file is in ("." for a bare name).
    public static func directory(of path: String) -> String {
        let dir = (path as NSString).deletingLastPathComponent
        return dir.isEmpty ? "." : dir
    }

    /// Writes `bytes` to a new, uniquely named temporary file in `dir` and flushes it to disk;
    /// returns its path. Nothing is left behind on failure.
    private static func writeFlushedTemporary(_ bytes: [UInt8], in dir: String, mode: mode_t) throws -> String {
        let tmp = temporaryName(in: dir, prefix: "new")
        let fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, mode)
        guard fd >= 0 else { throw FileError.errno("cannot write", tmp) }
        do {
            try writeAll(fd, bytes)
            guard fsync(fd) == 0 else { throw FileError.errno("cannot flush", tmp) }
        } catch {
            close(fd)
            unlink(tmp)
            throw error
        }
        close(fd)
        return tmp
    }
}

/// turf's directories, after the XDG Base Directory specification: `$XDG_CONFIG_HOME/turf`
/// (default `~/.config/turf`) for keys and settings, `$XDG_STATE_HOME/turf` (default
/// `~/.local/state/turf`) for replays, journals, logs and DHT state. A relative XDG value is
/// ignored, as the specification says.
public struct XDGPaths: Sendable {
    public let config: String
    public let state: String

    public init(environment: [String: String] = ProcessInfo.processInfo.environment) {
        let home = environment["HOME"].flatMap { $0.isEmpty ? nil : $0 } ?? NSHomeDirectory()
        func base(_ key: String, _ fallback: String) -> String {
            if let v = environment[key], v.hasPrefix("/") { return v }
            return home + fallback
        }
        config = base("XDG_CONFIG_HOME", "/.config") + "/turf"
        state = base("XDG_STATE_HOME", "/.local/state") + "/turf"
    }

    public var replays: String { state + "/replays" }
    public var log: String { state + "/turf.log" }
    /// The DHT's bootstrap settings (docs/dht.md).
    public var dhtConfig: String { config + "/dht.conf" }
    /// Your friends: names and keys (`turf friends`; docs/lobby.md, "Friends").
    public var friends: String { config + "/friends" }
    /// The DHT routing table of a node on `port`: a fixed port keeps its own table; runs on an
    /// ephemeral port (port 0: lookups) share `dht.state`.
    public func dhtState(port: UInt16) -> String { state + (port == 0 ? "/dht.state" : "/dht-\(port).state") }
}

/// Listing a directory that anyone (a user, a script, a download) may have filled: the work is
/// bounded whatever it holds, and nothing in it is opened.
public enum UntrustedDirectory {
    /// A file found: its name, its path, and what `stat` says (following a symlink); `modified`
    /// and `size` are nil when it cannot be stat'ed (a dangling link).
    public struct Entry: Sendable, Equatable {
        public var name: String
        public var path: String
        public var modified: Date?
        public var size: Int64?
    }

    public struct Listing: Sendable, Equatable {
        /// The newest entries, newest first (by modification time, then name; unknown times last).
        public var entries: [Entry]
        /// How many names matched (`entries` keeps at most `keep` of them).
        public var matched: Int
        /// The scan stopped at `scanLimit` names, so older files may not have been seen.
        public var scanStopped: Bool
    }

    /// The `keep` newest files in `dir` whose names end in `suffix`, after looking at no more than
    /// `scanLimit` names. Names starting with a dot (temporary files) and names that are not UTF-8
    /// are skipped. A directory that does not exist is an empty listing; one that cannot be read
    /// throws one line.
    public static func newest(in dir: String, suffix: String, keep: Int, scanLimit: Int = 100_000) throws -> Listing {
        guard let d = opendir(dir) else {
            if errno == ENOENT { return Listing(entries: [], matched: 0, scanStopped: false) }
            throw FileError.errno("cannot list", dir)
        }
        defer { closedir(d) }
        let fd = dirfd(d)
        var found: [Entry] = []
        var scanned = 0
        var stopped = false
        while let e = readdir(d) {
            scanned += 1
            if scanned > scanLimit {
                stopped = true
                break
            }
            let name = withUnsafePointer(to: &e.pointee.d_name) {
                $0.withMemoryRebound(to: CChar.self, capacity: Int(NAME_MAX) + 1) { String(validatingCString: $0) }
            }
            guard let name, !name.hasPrefix("."), name.hasSuffix(suffix) else { continue }
            var st = stat()
            let known = fstatat(fd, name, &st, 0) == 0
            var modified: Date?
            if known {
                #if os(Linux)
                    let t = st.st_mtim
                #else
                    let t = st.st_mtimespec
                #endif
                modified = Date(timeIntervalSince1970: Double(t.tv_sec) + Double(t.tv_nsec) / 1e9)
            }
            found.append(
                Entry(
                    name: name,
                    path: dir.hasSuffix("/") ? dir + name : dir + "/" + name,
                    modified: modified,
                    size: known ? Int64(st.st_size) : nil
                )
            )
        }
        found.sort { a, b in
            switch (a.modified, b.modified) {
            case (let x?, let y?) where x != y: return x > y
            case (.some, nil): return true
            case (nil, .some): return false
            default: return a.name > b.name
            }
        }
        return Listing(entries: Array(found.prefix(max(0, keep))), matched: found.count, scanStopped: stopped)
    }
}
