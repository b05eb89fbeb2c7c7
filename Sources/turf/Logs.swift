import Foundation
import LocalFiles
import Logging
import NIOConcurrencyHelpers
import TextOutput

/// Logs to $XDG_STATE_HOME/turf/turf.log, never to the screen (curses owns it while a match runs).
struct FileLogHandler: LogHandler {
    /// The log file, shared by every handler (one per logger label) and every thread.
    private static let handle = NIOLockedValueBox<FileHandle?>(nil)
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
            handle.withLockedValue { $0 = FileHandle(fileDescriptor: fd, closeOnDealloc: true) }
            return nil
        } catch { return "\(error)" }
    }

    subscript(metadataKey key: String) -> Logger.Metadata.Value? {
        get { metadata[key] }
        set { metadata[key] = newValue }
    }

    func log(event: LogEvent) {
        // Messages quote file names, map headers and peers' text: escaped, so reading the log
        // on a terminal (cat, tail -f) cannot run escape sequences.
        let line = "\(Date()) \(event.level) \(label): \(SafeText.escaped("\(event.message)"))\n"
        FileLogHandler.handle.withLockedValue { $0?.write(Data(line.utf8)) }
    }
}

enum Logs {
    private static let bootstrapped = NIOLockedValueBox(false)
    static func bootstrap() {
        let first = bootstrapped.withLockedValue { done in
            defer { done = true }
            return !done
        }
        guard first else { return }
        if let problem = FileLogHandler.open() {
            printErr("turf: not logging: " + SafeText.display(problem, limit: 400))
            LoggingSystem.bootstrap { _ in SwiftLogNoOpLogHandler() }
        } else {
            LoggingSystem.bootstrap { FileLogHandler(label: $0) }
        }
    }
}
