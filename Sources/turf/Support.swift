import Foundation
import LocalFiles
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
        let text = try UntrustedFile.readText(p, limit: FileLimits.map, what: "map")
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

/// The size limits of the files turf reads (docs/untrusted-input.md), checked before reading,
/// chosen so that decoding and verifying a crafted file at the limit stays under 256 MB RSS.
enum FileLimits {
    /// A replay. A 60-minute 8-player match is 0.9 MB (216k ops); a crafted 3 MiB replay of
    /// the densest ops (3 bytes each, or 4-byte equivocations) with the largest config peaks at
    /// 204 MB verifying with `--delivery shuffle:` (two replicas), 125 MB in order.
    static let replay = 3 << 20
    /// A journal: ops are stored whole, ~9 bytes each, so a 60-minute 8-player demo journals
    /// ~2.1 MB. A crafted 4 MiB journal of equivocations peaks at 180 MB recovering.
    static let journal = 4 << 20
    /// A map file: the same bound as a map recorded in a match config.
    static let map = ArenaMap.maxSourceBytes
}

enum StatePaths {
    static var root: String { XDGPaths().state }
    static var replays: String { XDGPaths().replays }

    static func ensure(_ dir: String) throws { try DurableFile.ensureDirectory(dir) }
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

func hex64(_ v: UInt64) -> String {
    let s = String(v, radix: 16)
    return String(repeating: "0", count: 16 - s.count) + s
}

func printErr(_ s: String) {
    FileHandle.standardError.write((s + "\n").data(using: .utf8)!)
}
