import Foundation
import Logging
import TurfRules

#if canImport(Glibc)
import Glibc
#endif

/// Monotonic nanoseconds: the shell's one clock, passed into the engine as a number.
func monotonicNanos() -> UInt64 {
    var ts = timespec()
    clock_gettime(CLOCK_MONOTONIC, &ts)
    return UInt64(ts.tv_sec) * 1_000_000_000 + UInt64(ts.tv_nsec)
}

/// Errors the CLI reports as one line, exit code 1 (bad input is never a crash).
struct CLIError: Error, CustomStringConvertible {
    var description: String
    init(_ d: String) { description = d }
}

/// Finds and loads maps: a path, or a name looked up in $TURF_ASSETS/maps, ./Assets/maps, and the
/// Assets/maps folder of the checkout the binary was built in.
enum MapLibrary {
    static var searchDirectories: [String] {
        var dirs: [String] = []
        if let env = ProcessInfo.processInfo.environment["TURF_ASSETS"], !env.isEmpty { dirs.append(env + "/maps") }
        dirs.append(FileManager.default.currentDirectoryPath + "/Assets/maps")
        var exe = URL(fileURLWithPath: CommandLine.arguments[0]).resolvingSymlinksInPath().deletingLastPathComponent()
        for _ in 0..<5 {
            dirs.append(exe.appendingPathComponent("Assets/maps").path)
            exe = exe.deletingLastPathComponent()
        }
        return dirs
    }

    static func path(for nameOrPath: String) throws -> String {
        if nameOrPath.contains("/") || nameOrPath.hasSuffix(".map") {
            guard FileManager.default.fileExists(atPath: nameOrPath) else { throw CLIError("map file not found: \(nameOrPath)") }
            return nameOrPath
        }
        for d in searchDirectories {
            let p = "\(d)/\(nameOrPath.lowercased()).map"
            if FileManager.default.fileExists(atPath: p) { return p }
        }
        throw CLIError("no map named '\(nameOrPath)' (looked in: \(searchDirectories.joined(separator: ", "))); set TURF_ASSETS or pass a path")
    }

    static func load(_ nameOrPath: String) throws -> ArenaMap {
        let p = try path(for: nameOrPath)
        guard let data = FileManager.default.contents(atPath: p) else { throw CLIError("cannot read map file \(p)") }
        guard let text = String(data: data, encoding: .utf8) else { throw CLIError("\(p): not UTF-8 text") }
        return try ArenaMap(parsing: text, file: p)
    }

    static func available() -> [String] {
        for d in searchDirectories {
            if let names = try? FileManager.default.contentsOfDirectory(atPath: d).filter({ $0.hasSuffix(".map") }), !names.isEmpty {
                return names.map { String($0.dropLast(4)) }.sorted()
            }
        }
        return []
    }
}

/// Where turf keeps its state: $XDG_STATE_HOME/turf (default ~/.local/state/turf).
enum StatePaths {
    static var root: String {
        let env = ProcessInfo.processInfo.environment
        if let x = env["XDG_STATE_HOME"], x.hasPrefix("/") { return x + "/turf" }
        return (env["HOME"] ?? NSHomeDirectory()) + "/.local/state/turf"
    }

    static var replays: String { root + "/replays" }

    static func ensure(_ dir: String) throws {
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true, attributes: [.posixPermissions: 0o700])
    }
}

/// Writes `bytes` to a new, uniquely named temporary file in `dir` and flushes it to disk;
/// returns its path. Nothing is left behind on failure.
private func writeFlushedTemporary(_ bytes: [UInt8], in dir: String, mode: mode_t) throws -> String {
    let tmp = "\(dir)/.new-\(getpid())-\(monotonicNanos()).tmp"
    let fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, mode)
    guard fd >= 0 else { throw CLIError("cannot write \(tmp): \(String(cString: strerror(errno)))") }
    do {
        try writeAll(fd, bytes)
        guard fsync(fd) == 0 else { throw CLIError("cannot flush \(tmp): \(String(cString: strerror(errno)))") }
    } catch {
        close(fd)
        unlink(tmp)
        throw error
    }
    close(fd)
    return tmp
}

/// Writes a file atomically and durably: to a temporary name, flushed to disk, then renamed over
/// the target and the directory flushed, so a crash leaves either the old file or the whole new one.
func writeAtomically(_ bytes: [UInt8], to path: String) throws {
    let dir = (path as NSString).deletingLastPathComponent
    let tmp = try writeFlushedTemporary(bytes, in: dir.isEmpty ? "." : dir, mode: 0o600)
    guard rename(tmp, path) == 0 else {
        unlink(tmp)
        throw CLIError("cannot rename \(tmp) to \(path): \(String(cString: strerror(errno)))")
    }
    syncDirectory(dir.isEmpty ? "." : dir)
}

/// Writes a new file durably under `<base>.<ext>` (or the first free `<base>-N.<ext>`): written
/// and flushed under a temporary name, linked in, and the directory flushed. Returns its path.
func writeNewFile(_ bytes: [UInt8], base: String, ext: String) throws -> String {
    let dir = (base as NSString).deletingLastPathComponent
    let tmp = try writeFlushedTemporary(bytes, in: dir, mode: 0o644)
    defer { unlink(tmp) }
    let path = try linkUnderFreeName(tmp, base: base, ext: ext)
    syncDirectory(dir)
    return path
}

/// Hard-links `file` as `<base>.<ext>`, or `<base>-2.<ext>`, `-3`, … if taken: never replaces
/// an existing file. Returns the name used.
func linkUnderFreeName(_ file: String, base: String, ext: String) throws -> String {
    for n in 1..<1000 {
        let candidate = n == 1 ? "\(base).\(ext)" : "\(base)-\(n).\(ext)"
        if link(file, candidate) == 0 { return candidate }
        guard errno == EEXIST else { throw CLIError("cannot create \(candidate): \(String(cString: strerror(errno)))") }
    }
    throw CLIError("no free name for \(base).\(ext)")
}

/// Flushes a directory's entries (a new or renamed file's name) to disk.
func syncDirectory(_ dir: String) {
    let fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
    guard fd >= 0 else { return }
    fsync(fd)
    close(fd)
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

func readFile(_ path: String) throws -> [UInt8] {
    guard let d = FileManager.default.contents(atPath: path) else {
        throw CLIError("cannot read \(path): \(FileManager.default.fileExists(atPath: path) ? "permission denied or not a file" : "no such file")")
    }
    return [UInt8](d)
}

/// Logs to $XDG_STATE_HOME/turf/turf.log, never to the screen (curses owns it while a match runs).
struct FileLogHandler: LogHandler {
    private static let lock = NSLock()
    nonisolated(unsafe) private static var handle: FileHandle?
    let label: String
    var metadata: Logger.Metadata = [:]
    var logLevel: Logger.Level = .info

    static func open() -> Bool {
        do {
            try StatePaths.ensure(StatePaths.root)
            let p = StatePaths.root + "/turf.log"
            if !FileManager.default.fileExists(atPath: p) { FileManager.default.createFile(atPath: p, contents: nil) }
            handle = FileHandle(forWritingAtPath: p)
            handle?.seekToEndOfFile()
            return handle != nil
        } catch { return false }
    }

    subscript(metadataKey key: String) -> Logger.Metadata.Value? {
        get { metadata[key] }
        set { metadata[key] = newValue }
    }

    func log(level: Logger.Level, message: Logger.Message, metadata: Logger.Metadata?, source: String,
             file: String, function: String, line: UInt) {
        let line = "\(Date()) \(level) \(label): \(message)\n"
        FileLogHandler.lock.lock()
        defer { FileLogHandler.lock.unlock() }
        FileLogHandler.handle?.write(line.data(using: .utf8)!)
    }
}

enum Logs {
    nonisolated(unsafe) private static var bootstrapped = false
    static func bootstrap() {
        guard !bootstrapped else { return }
        bootstrapped = true
        if FileLogHandler.open() {
            LoggingSystem.bootstrap { FileLogHandler(label: $0) }
        } else {
            LoggingSystem.bootstrap { _ in SwiftLogNoOpLogHandler() }
        }
    }
}

/// JSON output without Foundation's key reordering surprises: keys in the order given.
struct JSONObject {
    private var parts: [String] = []
    mutating func add(_ key: String, _ value: String) { parts.append("\"\(key)\":\"\(JSONObject.escape(value))\"") }
    mutating func add(_ key: String, _ value: Int) { parts.append("\"\(key)\":\(value)") }
    mutating func add(_ key: String, _ value: UInt64) { parts.append("\"\(key)\":\(value)") }
    mutating func add(_ key: String, _ value: Bool) { parts.append("\"\(key)\":\(value)") }
    mutating func add(_ key: String, _ value: Double) {
        parts.append("\"\(key)\":\(value.isFinite ? String(format: "%.6g", value) : "null")")
    }
    mutating func addRaw(_ key: String, _ json: String) { parts.append("\"\(key)\":\(json)") }
    mutating func addNull(_ key: String) { parts.append("\"\(key)\":null") }
    var text: String { "{" + parts.joined(separator: ",") + "}" }

    static func escape(_ s: String) -> String {
        var out = ""
        for u in s.unicodeScalars {
            switch u {
            case "\"": out += "\\\""
            case "\\": out += "\\\\"
            case "\n": out += "\\n"
            case _ where u.value < 0x20: out += String(format: "\\u%04x", u.value)
            default: out.unicodeScalars.append(u)
            }
        }
        return out
    }
}

func hex64(_ v: UInt64) -> String {
    let s = String(v, radix: 16)
    return String(repeating: "0", count: 16 - s.count) + s
}

func printErr(_ s: String) {
    FileHandle.standardError.write((s + "\n").data(using: .utf8)!)
}
