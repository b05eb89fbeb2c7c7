import Foundation
import Keys
import LocalFiles
import TextOutput

/// A friend: the name you gave them (not the one they choose in a lobby) and their key.
struct Friend: Equatable, Sendable {
    var name: String
    var key: PeerKey
}

/// The names you give friends. They are typed on the command line (`turf join NAME`), shown in
/// lobby rosters beside the name a player chose, and never confused with a key or an option:
/// 1 to `maxLength` characters, each a letter or a digit (any script) or one of `-`, `_`, `.`,
/// not starting with `-`, `turf1` or `turf-invite`. No spaces, controls, marks or symbols, so a name is one word that
/// draws as it reads. Names are compared without regard to case.
enum FriendName {
    static let maxLength = 24

    /// Why `s` is not a friend's name, or nil when it is one.
    static func problem(_ s: String) -> String? {
        let scalars = s.unicodeScalars
        guard !scalars.isEmpty else { return "a friend's name cannot be empty" }
        guard scalars.count <= maxLength else { return "a friend's name has at most \(maxLength) characters" }
        guard scalars.first != "-" else { return "a friend's name cannot start with '-'" }
        // A mistyped key must never be taken for a name (`turf join turf1abc`).
        let lower = s.lowercased()
        guard !lower.hasPrefix("turf1") && !lower.hasPrefix("turf-invite") else {
            return "a friend's name cannot start with 'turf1' or 'turf-invite' (it would read as a key or an invite)"
        }
        for u in scalars where !allowed(u) {
            return
                "a friend's name is letters, digits, '-', '_' and '.' only (not '\(SafeText.display(String(u), limit: 12))')"
        }
        return nil
    }

    static func isValid(_ s: String) -> Bool { problem(s) == nil }

    /// The form two names are compared in.
    static func folded(_ s: String) -> String { s.lowercased() }

    private static func allowed(_ u: Unicode.Scalar) -> Bool {
        if u == "-" || u == "_" || u == "." { return true }
        switch u.properties.generalCategory {
        case .uppercaseLetter, .lowercaseLetter, .titlecaseLetter, .modifierLetter, .otherLetter, .decimalNumber:
            return true
        default:
            return false
        }
    }
}

/// A friends file that cannot be used: one line naming the file and the line.
struct FriendsFileError: Error, CustomStringConvertible, Equatable {
    var path: String
    var line: Int
    var reason: String
    var description: String { "\(path):\(line): \(reason)" }
}

/// A change to the friend list that cannot be made (a name or key already there, no such friend).
struct FriendsChangeError: Error, CustomStringConvertible, Equatable {
    var description: String
}

/// The friends file, `$XDG_CONFIG_HOME/turf/friends` (docs/lobby.md, "Friends"): UTF-8 text,
/// its first line (after any blank or comment lines) `turf-friends-v1`, then one friend a line,
/// `NAME turf1KEY`, separated by spaces or tabs. `#` starts a comment (a line of its own, or after
/// the key), blank lines are skipped, CRLF is fine. Comments and blank lines are kept as they are
/// when turf rewrites the file. An empty file is an empty list.
///
/// Every byte is the user's, or whoever could write the file: at most `maxBytes`, lines of at most
/// `maxLineBytes`, at most `maxFriends` friends; a bad line, a name or key given twice, or text that
/// is not UTF-8 is one error naming the line (`friends:3: …`), with the line's text escaped.
struct FriendList: Equatable, Sendable {
    enum Line: Equatable, Sendable {
        /// A blank line, a comment or the header: written back as it was.
        case text(String)
        /// A friend, and the line as it was written (nil: added by turf, written as `NAME KEY`).
        case friend(Friend, raw: String?)
    }

    static let header = "turf-friends-v1"
    /// A thousand friends of the longest names and their keys (~86 bytes a line), and comments.
    static let maxBytes = 128 * 1024
    static let maxLineBytes = 512
    static let maxFriends = 1000

    private(set) var lines: [Line] = []

    init() {}

    var friends: [Friend] {
        lines.compactMap {
            if case .friend(let f, _) = $0 { return f }
            return nil
        }
    }

    var isEmpty: Bool { friends.isEmpty }

    func friend(named name: String) -> Friend? {
        let n = FriendName.folded(name)
        return friends.first { FriendName.folded($0.name) == n }
    }

    func friend(withKey key: PeerKey) -> Friend? { friends.first { $0.key == key } }

    /// The name you gave the owner of `key`, if it is a friend's.
    func name(of key: PeerKey) -> String? { friend(withKey: key)?.name }

    /// Adds a friend at the end. A name already used (in any case) or a key already listed is refused.
    mutating func add(_ f: Friend) throws(FriendsChangeError) {
        if let other = friend(named: f.name) {
            throw FriendsChangeError(
                description: "you already have a friend named '\(other.name)' (\(other.key.text)); remove them first"
            )
        }
        if let other = friend(withKey: f.key) {
            throw FriendsChangeError(description: "\(f.key.text) is already your friend '\(other.name)'")
        }
        guard friends.count < Self.maxFriends else {
            throw FriendsChangeError(description: "you have \(Self.maxFriends) friends, the most turf keeps")
        }
        if lines.isEmpty {
            lines = Self.preamble.map(Line.text)
        } else if !lines.contains(where: { Self.isHeader($0) }) {
            lines.insert(.text(Self.header), at: 0)
        }
        lines.append(.friend(f, raw: nil))
    }

    /// Removes the friend with this name (any case) or key; returns it, or nil if there is none.
    mutating func remove(_ nameOrKey: String) -> Friend? {
        let key = PeerKey(text: nameOrKey)
        let n = FriendName.folded(nameOrKey)
        guard
            let i = lines.firstIndex(where: {
                guard case .friend(let f, _) = $0 else { return false }
                return f.key == key || FriendName.folded(f.name) == n
            }), case .friend(let f, _) = lines[i]
        else { return nil }
        lines.remove(at: i)
        return f
    }

    /// The first lines of a friends file turf creates.
    static let preamble = [
        header,
        "# Your turf friends: one a line, NAME then their key (what `turf id` prints for them).",
        "# turf friends add/remove/list change and show it; turf join NAME joins NAME's lobby;",
        "# turf host --allow friends lets only them sit down. See docs/lobby.md, \"Friends\".",
    ]

    private static func isHeader(_ l: Line) -> Bool {
        if case .text(let t) = l { return trimmed(t) == header }
        return false
    }

    /// The file's bytes.
    func encoded() -> [UInt8] {
        var out = ""
        for l in lines {
            switch l {
            case .text(let t): out += t
            case .friend(let f, let raw): out += raw ?? "\(f.name) \(f.key.text)"
            }
            out += "\n"
        }
        return Array(out.utf8)
    }

    /// Parses a friends file's bytes; `path` names it in errors.
    static func parse(_ bytes: [UInt8], path: String) throws(FriendsFileError) -> FriendList {
        func fail(_ line: Int, _ reason: String) -> FriendsFileError {
            FriendsFileError(path: path, line: line, reason: reason)
        }
        guard bytes.count <= maxBytes else {
            throw fail(1, "the file is larger than \(maxBytes) bytes, the most a friends file may be")
        }
        var list = FriendList()
        guard !bytes.isEmpty else { return list }
        var rawLines = bytes.split(separator: 0x0A, omittingEmptySubsequences: false)
        if rawLines.last?.isEmpty == true { rawLines.removeLast() }
        var sawHeader = false
        var lineOfName: [String: Int] = [:]
        var lineOfKey: [PeerKey: Int] = [:]
        for (i, raw) in rawLines.enumerated() {
            let number = i + 1
            var body = raw[...]
            if body.last == 0x0D { body = body.dropLast() }
            guard body.count <= maxLineBytes else {
                throw fail(number, "the line is longer than \(maxLineBytes) bytes")
            }
            guard let text = String(validating: body, as: UTF8.self) else {
                throw fail(number, "the line is not UTF-8 text")
            }
            let content = trimmed(
                text.split(separator: "#", maxSplits: 1, omittingEmptySubsequences: false).first ?? ""
            )
            if content.isEmpty {
                list.lines.append(.text(text))
                continue
            }
            guard sawHeader else {
                guard content == header else {
                    throw fail(
                        number,
                        "not a turf friends file: expected the line '\(header)', found '\(SafeText.display(content, limit: 60))'"
                    )
                }
                sawHeader = true
                list.lines.append(.text(text))
                continue
            }
            let fields = content.split(whereSeparator: { $0 == " " || $0 == "\t" })
            guard fields.count == 2 else {
                throw fail(
                    number,
                    "expected NAME turf1KEY, found '\(SafeText.display(content, limit: 80))'"
                )
            }
            let name = String(fields[0])
            if let problem = FriendName.problem(name) {
                throw fail(number, "'\(SafeText.display(name, limit: 40))': \(problem)")
            }
            guard let key = PeerKey(text: String(fields[1])) else {
                throw fail(
                    number,
                    "'\(SafeText.display(String(fields[1]), limit: 70))' is not a key (turf1…, as turf id prints it)"
                )
            }
            if let first = lineOfName[FriendName.folded(name)] {
                throw fail(number, "a second friend named '\(name)' (the first is on line \(first))")
            }
            if let first = lineOfKey[key] {
                throw fail(number, "the key of '\(name)' is already on line \(first)")
            }
            guard lineOfKey.count < maxFriends else {
                throw fail(number, "more than \(maxFriends) friends")
            }
            lineOfName[FriendName.folded(name)] = number
            lineOfKey[key] = number
            list.lines.append(.friend(Friend(name: name, key: key), raw: text))
        }
        return list
    }

    private static func trimmed(_ s: some StringProtocol) -> String {
        var t = Substring(s)
        while let c = t.first, c == " " || c == "\t" { t.removeFirst() }
        while let c = t.last, c == " " || c == "\t" { t.removeLast() }
        return String(t)
    }
}

/// The friends file on disk: read as untrusted (bounded, never blocking on a FIFO), rewritten
/// durably (a temporary file, flushed, renamed over it), changed under a lock so two turfs adding
/// friends at once do not lose one.
enum FriendsFile {
    static var path: String { XDGPaths().friends }

    /// The list in `path`; an empty one when there is no file. A file that cannot be read or
    /// parsed is one error naming it (and the line).
    static func load(_ path: String = FriendsFile.path) throws -> FriendList {
        let bytes: [UInt8]?
        do { bytes = try UntrustedFile.readIfPresent(path, limit: FriendList.maxBytes, what: "friends file") } catch {
            throw CLIError("\(error)")
        }
        guard let bytes else { return FriendList() }
        do { return try FriendList.parse(bytes, path: path) } catch { throw CLIError(error.description) }
    }

    /// Loads the list, lets `change` edit it, and writes it back, holding `friends.lock` beside
    /// the file throughout. Returns what `change` returned.
    static func change<T>(_ path: String = FriendsFile.path, _ change: (inout FriendList) throws -> T) throws -> T {
        let dir = DurableFile.directory(of: path)
        try DurableFile.ensureDirectory(dir)
        guard let lock = try FileLock.acquire(path + ".lock") else {
            throw CLIError("another turf is changing your friends file (\(path)); try again")
        }
        defer { close(lock) }
        var list = try load(path)
        let result = try change(&list)
        try DurableFile.write(list.encoded(), to: path, mode: 0o600, overwrite: true)
        return result
    }
}
