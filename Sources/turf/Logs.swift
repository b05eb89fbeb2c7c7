import Foundation
import LocalFiles
import Logging
import TextOutput

/// Logs to $XDG_STATE_HOME/turf/turf.log, never to the screen (curses owns it while a match runs).
struct FileLogHandler: LogHandler {
    private static let lock = NSLock()
    nonisolated(unsafe) private static var handle: FileHandle?
    let label: String
    var metadata: Logger.Metadata = [:]
    var logLevel: Logger.Level = .info

    /// Opens the log file for appending; nil when it can be, else why not. A FIFO, device or
    /// symlink named turf.log is refused (`DurableFile.openForAppend`), never waited on or
    /// written through.
    static func open() -> String? {
        do {
            try StatePaths.ensure(StatePaths.root)
            let fd = try DurableFile.openForAppend(XDGPaths().log)
            handle = FileHandle(fileDescriptor: fd, closeOnDealloc: true)
            return nil
        } catch { return "\(error)" }
    }

    subscript(metadataKey key: String) -> Logger.Metadata.Value? {
        get { metadata[key] }
        set { metadata[key] = newValue }
    }

    func log(level: Logger.Level, message: Logger.Message, metadata: Logger.Metadata?, source: String,
             file: String, function: String, line: UInt) {
        // Messages quote file names, map headers and peers' text: escaped, so reading the log
        // on a terminal (cat, tail -f) cannot run escape sequences.
        let line = "\(Date()) \(level) \(label): \(SafeText.escaped("\(message)"))\n"
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
        if let problem = FileLogHandler.open() {
            printErr("turf: not logging: " + SafeText.display(problem, limit: 400))
            LoggingSystem.bootstrap { _ in SwiftLogNoOpLogHandler() }
        } else {
            LoggingSystem.bootstrap { FileLogHandler(label: $0) }
        }
    }
}
