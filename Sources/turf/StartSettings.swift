import Foundation
import LocalFiles
import TerminalUI

/// The start screen's remembered choices, `$XDG_CONFIG_HOME/turf/settings.conf`: `key = value`
/// lines (name, color, ascii, bots, topic, target), `#` comments, written by turf. Read as
/// untrusted text (bounded, every value checked); a line that cannot be used is one error naming
/// it, and the start screen then shows that error and starts from the defaults.
enum StartSettings {
    static let limit = 16 << 10
    static var path: String { XDGPaths().config + "/settings.conf" }

    struct ParseError: Error, CustomStringConvertible, Equatable {
        var description: String
    }

    static func defaults(environment: [String: String] = ProcessInfo.processInfo.environment) -> StartMenu.Settings {
        StartMenu.Settings(
            name: Demo.playerName(environment["USER"].flatMap { $0.isEmpty ? nil : $0 } ?? "you"),
            color: Theme.colorWanted(environment: environment)
        )
    }

    /// Parses the file's text over `base`.
    static func parse(_ text: String, over base: StartMenu.Settings, path: String = "settings.conf") throws
        -> StartMenu.Settings
    {
        var s = base
        for (i, raw) in text.split(separator: "\n", omittingEmptySubsequences: false).enumerated() {
            let line = raw.trimmingCharacters(in: .whitespaces)
            if line.isEmpty || line.hasPrefix("#") { continue }
            func fail(_ why: String) -> ParseError {
                ParseError(description: "\(path) line \(i + 1): \(why)")
            }
            guard let eq = line.firstIndex(of: "=") else { throw fail("not 'key = value'") }
            let key = line[..<eq].trimmingCharacters(in: .whitespaces)
            let value = line[line.index(after: eq)...].trimmingCharacters(in: .whitespaces)
            guard !value.unicodeScalars.contains(where: { $0.properties.generalCategory == .control }) else {
                throw fail("control characters in '\(key)'")
            }
            func flag() throws -> Bool {
                switch value {
                case "on", "yes", "true": return true
                case "off", "no", "false": return false
                default: throw fail("'\(key)' is on or off")
                }
            }
            switch key {
            case "name":
                guard !value.isEmpty else { throw fail("an empty name") }
                s.name = Demo.playerName(value)
            case "color": s.color = try flag()
            case "ascii": s.ascii = try flag()
            case "bots":
                guard let n = Int(value), StartMenu.Settings.botRange.contains(n) else {
                    throw fail("bots is a number from 1 to 7")
                }
                s.bots = n
            case "topic":
                guard value.utf8.count <= StartMenu.Field.hostTopic.maxBytes else {
                    throw fail("the topic is too long")
                }
                s.topic = value
            case "target":
                guard value.utf8.count <= StartMenu.Field.joinTarget.maxBytes else {
                    throw fail("the target is too long")
                }
                s.target = value
            default:
                throw fail("unknown setting '\(key)'")
            }
        }
        return s
    }

    static func text(_ s: StartMenu.Settings) -> String {
        """
        # turf's start screen settings (written by turf: key = value)
        name = \(s.name)
        color = \(s.color ? "on" : "off")
        ascii = \(s.ascii ? "on" : "off")
        bots = \(s.bots)
        topic = \(s.topic)
        target = \(s.target)

        """
    }

    /// The saved settings (the defaults without a file), or the defaults and the error.
    static func load() -> (StartMenu.Settings, String?) {
        let base = defaults()
        do {
            guard let text = try UntrustedFile.readTextIfPresent(path, limit: limit, what: "settings") else {
                return (base, nil)
            }
            return (try parse(text, over: base, path: path), nil)
        } catch {
            return (base, "\(error) (defaults used)")
        }
    }

    static func save(_ s: StartMenu.Settings) throws {
        try DurableFile.ensureDirectory(XDGPaths().config)
        try DurableFile.write(Array(text(s).utf8), to: path, overwrite: true)
    }
}
