import Foundation
import Testing

/// `turf friends`, `turf join NAME`, `turf host --allow friends` and the roster's friend labels
/// (docs/lobby.md, "Friends"), as real processes; the match on loopback through a local DHT node
/// (NetPlayTests.Lab), each peer with its own XDG directories.
@Suite(.serialized) struct FriendsCLITests {
    /// A scratch XDG_CONFIG_HOME / XDG_STATE_HOME of one's own.
    final class Home {
        let dir: URL
        init() throws {
            dir = FileManager.default.temporaryDirectory.appendingPathComponent(
                "turf-friends-\(UUID().uuidString.prefix(8))"
            )
            try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        }
        var env: [String: String] { NetPlayTests.Lab.env(dir, "me") }
        var friendsFile: String { dir.appendingPathComponent("me/config/turf/friends").path }
        func turf(_ args: String...) throws -> CommandResult { try run(turfBinary, args, environment: env) }
        /// A key of a fresh identity of its own (what a friend's `turf id` prints).
        func someoneElsesKey(_ who: String) throws -> String {
            let r = try run(turfBinary, ["id"], environment: NetPlayTests.Lab.env(dir, who))
            return r.stdout.trimmingCharacters(in: .whitespacesAndNewlines)
        }
        deinit { try? FileManager.default.removeItem(at: dir) }
    }

    func json(_ s: String) -> [String: Any]? {
        (try? JSONSerialization.jsonObject(with: Data(s.utf8))) as? [String: Any]
    }

    @Test func addListRemoveAndJSON() throws {
        let home = try Home()
        let bob = try home.someoneElsesKey("bob")
        let carol = try home.someoneElsesKey("carol")
        #expect(try home.turf("friends").stdout.contains("no friends yet"))
        let add = try home.turf("friends", "add", "Bobby", bob)
        #expect(add.status == 0, "\(add.stderr)")
        #expect(add.stdout.contains("added Bobby"))
        #expect(try home.turf("friends", "add", "Zoë", carol).status == 0)
        let list = try home.turf("friends", "list")
        #expect(list.stdout == "Bobby  \(bob)\nZoë    \(carol)\n", "\(list.stdout)")
        let j = try #require(json(try home.turf("friends", "list", "--json").stdout))
        #expect(j["file"] as? String == home.friendsFile)
        let friends = try #require(j["friends"] as? [[String: Any]])
        #expect(friends.map { $0["name"] as? String } == ["Bobby", "Zoë"])
        #expect(friends.map { $0["key"] as? String } == [bob, carol])
        // The file is private, and what turf wrote reads back.
        let mode = try FileManager.default.attributesOfItem(atPath: home.friendsFile)[.posixPermissions] as? Int
        #expect(mode == 0o600)
        let text = try String(contentsOfFile: home.friendsFile, encoding: .utf8)
        #expect(text.hasPrefix("turf-friends-v1\n") && text.hasSuffix("Bobby \(bob)\nZoë \(carol)\n"), "\(text)")
        // Remove by name in any case, or by key.
        #expect(try home.turf("friends", "remove", "BOBBY").stdout.contains("removed Bobby"))
        #expect(try home.turf("friends", "remove", carol).stdout.contains("removed Zoë"))
        #expect(try home.turf("friends").stdout.contains("no friends yet"))
    }

    /// Each mistake is one line: a bad name or key is a bad argument (64); a name or key already
    /// there, a friend that is not there, your own key, a corrupt file are exit 1.
    @Test func mistakesAreOneLine() throws {
        let home = try Home()
        let bob = try home.someoneElsesKey("bob")
        #expect(try home.turf("friends", "add", "Bobby", bob).status == 0)
        func expectOneLine(
            _ r: CommandResult,
            _ status: Int32,
            _ says: String,
            sourceLocation: SourceLocation = #_sourceLocation
        ) {
            #expect(r.status == status, "\(r.stderr)", sourceLocation: sourceLocation)
            let lines = r.stderr.split(separator: "\n")
            #expect(lines.count == 1 && r.stderr.contains(says), "\(r.stderr)", sourceLocation: sourceLocation)
            #expect(!r.stderr.contains("\u{1B}"), sourceLocation: sourceLocation)
        }
        expectOneLine(
            try home.turf("friends", "add", "bobby", try home.someoneElsesKey("x")),
            1,
            "already have a friend named 'Bobby'"
        )
        expectOneLine(try home.turf("friends", "add", "Bob2", bob), 1, "is already your friend 'Bobby'")
        expectOneLine(try home.turf("friends", "add", "bad name", bob), 64, "letters, digits")
        expectOneLine(try home.turf("friends", "add", "x\u{1B}[31m", bob), 64, "letters, digits")
        expectOneLine(try home.turf("friends", "add", "carol", "turf1nope"), 64, "is not a key")
        let mine = try home.turf("id").stdout.trimmingCharacters(in: .whitespacesAndNewlines)
        expectOneLine(try home.turf("friends", "add", "me", mine), 1, "your own key")
        expectOneLine(try home.turf("friends", "remove", "nobody"), 1, "no friend named 'nobody'")
        // A corrupt file: one line naming the file and the line, for every command that reads it.
        try "turf-friends-v1\nBobby \(bob)\ncarol \u{1B}]0;x\u{07}\n".write(
            toFile: home.friendsFile,
            atomically: true,
            encoding: .utf8
        )
        expectOneLine(try home.turf("friends", "list"), 1, "\(home.friendsFile):3: '\\x1b]0;x\\x07' is not a key")
        expectOneLine(try home.turf("friends", "add", "dave", try home.someoneElsesKey("d")), 1, "friends:3:")
        expectOneLine(try home.turf("join", "Bobby", "--headless"), 1, "friends:3:")
        expectOneLine(
            try home.turf("host", "--topic", "t", "--headless", "--bootstrap", "none", "--allow", "friends"),
            1,
            "friends:3:"
        )
    }

    /// `turf join NAME`: a name that is no friend is one line before anything touches the network;
    /// a word that is neither a name, a key nor an invite is a bad argument. `--allow friends`
    /// with no friends is refused before the lobby opens.
    @Test func joiningByANameThatIsNoFriendAndAllowingNoFriends() throws {
        let home = try Home()
        let nobody = try home.turf("join", "nobody", "--headless", "--bootstrap", "192.0.2.1:6881")
        #expect(nobody.status == 1)
        #expect(nobody.stderr.split(separator: "\n").count == 1 && nobody.stderr.contains("not one of your friends"))
        let lobby = try home.turf("join", "--topic", "t", "--lobby", "nobody", "--headless", "--bootstrap", "none")
        #expect(lobby.status == 1 && lobby.stderr.contains("not one of your friends"), "\(lobby.stderr)")
        let garbage = try home.turf("join", "not a name!", "--headless")
        #expect(garbage.status == 64 && garbage.stderr.contains("friend's name"), "\(garbage.stderr)")
        // A key cut short is a bad argument, not a friend who is not there.
        let cut = try home.turf("join", "turf1abcdef", "--headless")
        #expect(cut.status == 64 && cut.stderr.contains("is not an invite"), "\(cut.stderr)")
        let allow = try home.turf("host", "--topic", "t", "--headless", "--bootstrap", "none", "--allow", "friends")
        #expect(allow.status == 1 && allow.stderr.contains("has no friends yet"), "\(allow.stderr)")
    }

    /// The whole story on loopback: Alice names Bob's key `Bobby` and hosts for her friends only;
    /// Bob names Alice's key `alice` and joins her by that name. A stranger is refused. Each sees
    /// the other labelled in `peer` events; the match converges, and both replays list as
    /// networked, signed and verified.
    @Test func aFriendJoinsByNameAndOnlyFriendsSitDown() throws {
        let lab = try NetPlayTests.Lab()
        func key(_ peer: String) throws -> String {
            try run(turfBinary, ["id"], environment: lab.env(peer)).stdout.trimmingCharacters(
                in: .whitespacesAndNewlines
            )
        }
        let hostKey = try key("host")
        let bobKey = try key("bob")
        #expect(try run(turfBinary, ["friends", "add", "Bobby", bobKey], environment: lab.env("host")).status == 0)
        #expect(try run(turfBinary, ["friends", "add", "alice", hostKey], environment: lab.env("bob")).status == 0)
        let host = try lab.start(
            "host",
            [
                "host", "--topic", "by-name", "--seconds", "5", "--start-when", "2", "--allow", "friends", "--name",
                "Alice",
            ]
        )
        let lobby = try #require(lab.waitForEvent("host", "lobby"), "no lobby event")
        #expect(lobby["key"] as? String == hostKey)
        // A stranger who found the lobby's key is refused at his hello: one line, exit 1.
        let stranger = try run(
            turfBinary,
            ["join", hostKey, "--headless", "--bind", "127.0.0.1", "--bootstrap", lab.boot],
            environment: lab.env("stranger")
        )
        #expect(stranger.status == 1 && stranger.stderr.contains("friends only"), "\(stranger.stderr)")
        // Bob joins by the name he gave Alice's key.
        let bob = try lab.start("bob", ["join", "alice", "--name", "bob (friend: Carol)"])
        #expect(lab.wait(host) == 0, "host: \(lab.events("host"))")
        #expect(lab.wait(bob) == 0, "bob: \(lab.events("bob"))")
        let joined = try #require(
            lab.events("host").first { $0["event"] as? String == "peer" && $0["state"] as? String == "joined" }
        )
        #expect(joined["key"] as? String == bobKey)
        #expect(joined["friend"] as? String == "Bobby", "\(joined)")
        // His chosen name is his; the label is a field of its own.
        #expect(joined["name"] as? String == "bob (friend: Carol)", "\(joined)")
        let refused = try #require(
            lab.events("host").first { $0["event"] as? String == "peer" && $0["state"] as? String == "refused" }
        )
        #expect(refused["friend"] is NSNull, "\(refused)")
        let member = try #require(
            lab.events("bob").first { $0["event"] as? String == "peer" && $0["key"] as? String == hostKey },
            "\(lab.events("bob"))"
        )
        #expect(member["friend"] as? String == "alice" && member["name"] as? String == "Alice", "\(member)")
        #expect(lab.event("bob", "joined")?["host"] as? String == hostKey)
        try NetPlayTests().expectConverged(lab, ["host", "bob"])
        // The saved match lists as networked and signed, and verifies.
        let list = try run(turfBinary, ["replay", "list", "--json", "--verify"], environment: lab.env("bob"))
        #expect(list.status == 0, "\(list.stderr)")
        let doc = try #require(json(list.stdout), "\(list.stdout)")
        let entry = try #require((doc["replays"] as? [[String: Any]])?.first, "\(list.stdout)")
        #expect(entry["networked"] as? Bool == true && entry["signed"] as? Bool == true, "\(entry)")
        #expect(entry["verified"] as? Bool == true, "\(entry)")
        let owners = (entry["players"] as? [[String: Any]])?.compactMap { $0["owner"] as? String }
        #expect(Set(owners ?? []) == [hostKey, bobKey], "\(entry)")
    }

    /// The host's lobby screen at 80×24, without colour, in ASCII: a friend's row reads
    /// `bob (friend: Bobby)`; a stranger who calls himself `mal (friend: Bobby)` gets no label and
    /// his parentheses show as brackets.
    @Test func theLobbyScreenLabelsAFriendAndNotAnImpostor() throws {
        let lab = try NetPlayTests.Lab()
        let bobKey = try run(turfBinary, ["id"], environment: lab.env("bob")).stdout
            .trimmingCharacters(in: .whitespacesAndNewlines)
        #expect(try run(turfBinary, ["friends", "add", "Bobby", bobKey], environment: lab.env("host")).status == 0)
        let topic = "label-\(UUID().uuidString.prefix(8))"
        let hostEnv = lab.env("host")
        let host = try TmuxSession(
            width: 80,
            height: 24,
            command:
                "\(turfBinary) host --topic \(topic) --seconds 5 --name alice --ascii --bind 127.0.0.1 --bootstrap \(lab.boot)",
            environment: [
                "NO_COLOR": "1", "TURF_PASSPHRASE": "", "TURF_DHT_BOOTSTRAP": "",
                "XDG_CONFIG_HOME": hostEnv["XDG_CONFIG_HOME"] ?? "", "XDG_STATE_HOME": hostEnv["XDG_STATE_HOME"] ?? "",
            ]
        )
        defer { host.close() }
        let wait = NetPlayUnderTmuxTests.wait
        let (lobby, shown) = host.waitFor(timeout: wait) { $0.contains("Enter: start") }
        #expect(shown != nil, "the host's lobby never showed:\n\(lobby)")
        let bob = try lab.start("bob", ["join", "--topic", topic, "--name", "bob"])
        let mal = try lab.start("mal", ["join", "--topic", topic, "--name", "mal (friend: Bobby)"])
        let (roster, labelled) = host.waitFor(timeout: wait) {
            // The impostor's chosen name is fitted to the name column (its end may be cut).
            $0.contains("Players 3/") && $0.contains("bob (friend: Bobby)") && $0.contains("mal [friend: Bobb")
        }
        #expect(labelled != nil, "no friend label, or an impostor's:\n\(roster)")
        #expect(!roster.contains("mal (friend"), "\(roster)")
        let rows = roster.split(separator: "\n").filter { $0.contains("connected") && !$0.contains("alice") }
        #expect(rows.count == 2 && rows.allSatisfy { $0.count <= 80 && $0.allSatisfy(\.isASCII) }, "\(roster)")
        // q leaves: the others are told the lobby closed.
        host.send("q")
        #expect(lab.wait(bob) == 1 && lab.wait(mal) == 1)
        let (end, ended) = host.waitFor(timeout: wait) { $0.contains("EXIT:") }
        #expect(ended != nil && DemoUnderTmuxTests.exitReport(end).status == 0, "\(end)")
    }
}
