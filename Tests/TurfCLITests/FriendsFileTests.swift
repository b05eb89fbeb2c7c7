import Determinism
import Foundation
import Keys
import Testing

@testable import turf

/// The friends file's codec (Sources/turf/Friends.swift; docs/lobby.md, "Friends"): what it
/// accepts, what it keeps when it rewrites a file, and how it refuses hostile or corrupt bytes:
/// one error naming the line, its text escaped.
@Suite struct FriendsFileTests {
    static func key(_ n: Int) -> PeerKey {
        var bytes = [UInt8](repeating: 0x5A, count: PeerKey.length)
        bytes[0] = UInt8(n & 0xFF)
        bytes[1] = UInt8(n >> 8)
        return PeerKey(bytes: bytes)!
    }

    /// Whether `s` is safe to print: no C0/C1 controls, DEL, format (bidi) characters, separators.
    static func isClean(_ s: String) -> Bool {
        !s.unicodeScalars.contains {
            $0.value < 0x20 || (0x7F...0x9F).contains($0.value) || $0.value == 0x2028 || $0.value == 0x2029
                || $0.properties.generalCategory == .format
        }
    }
    static let bob = key(1)
    static let carol = key(2)

    func parse(_ text: String) throws(FriendsFileError) -> FriendList {
        try FriendList.parse(Array(text.utf8), path: "friends")
    }

    func problem(_ bytes: [UInt8]) -> FriendsFileError? {
        do {
            _ = try FriendList.parse(bytes, path: "friends")
            return nil
        } catch { return error }
    }

    func problem(_ text: String) -> FriendsFileError? { problem(Array(text.utf8)) }

    @Test func readsNamesKeysCommentsAndCRLF() throws {
        let text =
            "# mine\r\n\r\nturf-friends-v1\r\nBobby \(Self.bob.text)   # from school\r\n\tZoë\t\(Self.carol.text.uppercased())\r\n"
        let list = try parse(text)
        #expect(list.friends == [Friend(name: "Bobby", key: Self.bob), Friend(name: "Zoë", key: Self.carol)])
        #expect(list.friend(named: "bobby")?.key == Self.bob)
        #expect(list.friend(named: "ZOË")?.key == Self.carol)
        #expect(list.name(of: Self.carol) == "Zoë")
        // Rewritten as it was read: comments, blank lines and the friends' own lines kept.
        #expect(String(decoding: list.encoded(), as: UTF8.self) == text.replacingOccurrences(of: "\r\n", with: "\n"))
        #expect(try FriendList.parse(list.encoded(), path: "f") == list)
    }

    @Test func anEmptyFileIsNoFriends() throws {
        #expect(try parse("").isEmpty)
        #expect(try parse("turf-friends-v1\n").isEmpty)
        #expect(try parse("# nothing yet\n\n").isEmpty)
    }

    @Test func addingAndRemovingKeepsTheFileReadable() throws {
        var list = FriendList()
        try list.add(Friend(name: "Bobby", key: Self.bob))
        try list.add(Friend(name: "carol", key: Self.carol))
        let text = String(decoding: list.encoded(), as: UTF8.self)
        #expect(text.hasPrefix("turf-friends-v1\n#"), "\(text)")
        #expect(text.hasSuffix("Bobby \(Self.bob.text)\ncarol \(Self.carol.text)\n"), "\(text)")
        #expect(try FriendList.parse(list.encoded(), path: "f").friends == list.friends)
        // A second friend of one name (in any case) or one key is refused, saying who has it.
        #expect(throws: FriendsChangeError.self) { try list.add(Friend(name: "BOBBY", key: Self.key(3))) }
        #expect(throws: FriendsChangeError.self) { try list.add(Friend(name: "bob2", key: Self.bob)) }
        #expect(list.friends.count == 2)
        #expect(list.remove("CAROL")?.key == Self.carol)
        #expect(list.remove(Self.bob.text)?.name == "Bobby")
        #expect(list.remove("nobody") == nil)
        #expect(list.isEmpty)
        // A file of comments only gets its header when the first friend comes.
        var commented = try parse("# my friends\n")
        try commented.add(Friend(name: "b", key: Self.bob))
        #expect(try FriendList.parse(commented.encoded(), path: "f").friends.count == 1)
    }

    @Test func friendNames() {
        for ok in ["Bobby", "Zoë", "太郎", "a-b_c.d", "x", "R2D2", String(repeating: "n", count: 24)] {
            #expect(FriendName.problem(ok) == nil, "\(ok)")
        }
        let bad = [
            "", "-x", "a b", "a\u{1B}[31m", "a\u{202E}b", "e\u{0301}", String(repeating: "n", count: 25), "x(y)",
            "a#b", "a/b", "🎉", "a\u{200B}b", "a\nb", "turf1abc", "Turf-Invite1.x",
        ]
        for b in bad {
            let p = FriendName.problem(b)
            #expect(p != nil, "\(b)")
            #expect(p.map(Self.isClean) ?? false, "the problem quotes \(b) unescaped: \(p ?? "")")
        }
    }

    /// Each way a file can be wrong is one error naming its line.
    @Test func aCorruptFileIsOneErrorNamingTheLine() {
        let b = Self.bob.text
        let cases: [(String, Int, String)] = [
            ("Bobby \(b)\n", 1, "not a turf friends file"),
            ("turf-friends-v2\n", 1, "not a turf friends file"),
            ("turf-friends-v1\nBobby\n", 2, "expected NAME turf1KEY"),
            ("turf-friends-v1\nBobby \(b) extra\n", 2, "expected NAME turf1KEY"),
            ("turf-friends-v1\n\nBobby turf1notakey\n", 3, "is not a key"),
            ("turf-friends-v1\n-x \(b)\n", 2, "cannot start with '-'"),
            (
                "turf-friends-v1\nBobby \(b)\nbobby \(Self.carol.text)\n", 3,
                "a second friend named 'bobby' (the first is on line 2)"
            ),
            ("turf-friends-v1\nBobby \(b)\nbob2 \(b)\n", 3, "the key of 'bob2' is already on line 2"),
            ("turf-friends-v1\n" + String(repeating: "x", count: 600) + "\n", 2, "longer than 512 bytes"),
        ]
        for (text, line, says) in cases {
            let e = problem(text)
            #expect(e?.line == line, "\(text): \(String(describing: e))")
            #expect(e?.description.contains(says) ?? false, "\(text): \(String(describing: e))")
            #expect(e?.description.hasPrefix("friends:\(line): ") ?? false)
        }
        // Not UTF-8 on line 3.
        let bytes = Array("turf-friends-v1\nBobby \(b)\n".utf8) + [0x62, 0xFF, 0x20] + Array(b.utf8) + [0x0A]
        #expect(problem(bytes) == FriendsFileError(path: "friends", line: 3, reason: "the line is not UTF-8 text"))
        // Too large, whatever it holds.
        #expect(problem([UInt8](repeating: 0x23, count: FriendList.maxBytes + 1))?.reason.contains("larger") == true)
    }

    /// A name with terminal escapes, bidi overrides or a flood of combining marks is refused, and
    /// the error shows it escaped and cut: the error line never drives the terminal.
    @Test func hostileNamesAreRefusedEscaped() {
        let b = Self.bob.text
        for name in [
            "\u{1B}]0;pwned\u{07}x", "ab\u{202E}cd", "x" + String(repeating: "\u{0301}", count: 5000), "\u{9B}31m",
        ] {
            let e = problem("turf-friends-v1\n\(name) \(b)\n")
            #expect(e?.line == 2, "\(String(describing: e))")
            let d = e?.description ?? ""
            #expect(Self.isClean(d), "\(d)")
            #expect(d.count < 400, "\(d.count)")
        }
    }

    @Test func tooManyFriends() {
        var text = "turf-friends-v1\n"
        for i in 0...FriendList.maxFriends {
            text += "f\(i) \(Self.key(i).text)\n"
        }
        // 1001 lines of ~66 bytes: under the byte limit, over the count.
        #expect(text.utf8.count <= FriendList.maxBytes)
        let e = problem(text)
        #expect(e?.line == FriendList.maxFriends + 2, "\(String(describing: e))")
        #expect(e?.reason.contains("more than") == true)
    }

    /// Random bytes and mutations of a good file: the codec never crashes, and whatever it says
    /// names a line of the input and is safe to print.
    @Test func randomAndMutatedBytesNeverCrashAndErrorsAreSafe() {
        var rng = SplitMix64(seed: 21)
        let good = Array("turf-friends-v1\n# c\nBobby \(Self.bob.text)\ncarol \(Self.carol.text)\n".utf8)
        let alphabet: [UInt8] = Array("turf1-_. \t#\n\r\u{1B}abcxyz".utf8) + [0xC3, 0xA9, 0xFF, 0x00, 0xE2, 0x80, 0xAE]
        for round in 0..<3000 {
            var bytes: [UInt8]
            if round % 2 == 0 {
                bytes = good
                for _ in 0..<(1 + rng.below(4)) {
                    let i = rng.below(bytes.count)
                    switch rng.below(3) {
                    case 0: bytes[i] = alphabet[rng.below(alphabet.count)]
                    case 1: bytes.remove(at: i)
                    default: bytes.insert(UInt8(truncatingIfNeeded: rng.next()), at: i)
                    }
                }
            } else {
                bytes = (0..<rng.below(200)).map { _ in alphabet[rng.below(alphabet.count)] }
            }
            let lines = bytes.split(separator: 0x0A, omittingEmptySubsequences: false).count
            if let e = problem(bytes) {
                #expect(e.line >= 1 && e.line <= max(1, lines), "\(e)")
                #expect(Self.isClean(e.description), "\(e)")
            } else if let list = try? FriendList.parse(bytes, path: "f") {
                // What parses survives its own rewrite.
                #expect((try? FriendList.parse(list.encoded(), path: "f"))?.friends == list.friends)
            }
        }
    }
}
