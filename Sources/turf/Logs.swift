import Foundation
import Logging

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
