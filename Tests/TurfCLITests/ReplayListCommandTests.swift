import Engine
import Foundation
import Testing
import TurfRules

#if canImport(Glibc)
    import Glibc
#endif

/// `turf replay list` and `turf replay` with no file (docs/replay-format.md, "Listing saved
/// matches"): the saved matches newest first, what each says, unreadable files listed as such
/// without hiding the others, verification on demand; and the browser under tmux.
@Suite(.serialized) struct ReplayListCommandTests {
    /// A state directory with replays of known ages: recorded matches from Replays/, one
    /// generated now, a truncated one, one that is not a replay, a FIFO, a well-formed one whose
    /// hashes were tampered with, and files that are not listed.
    final class Saved {
        let root: URL
        var dir: URL { root.appendingPathComponent("state/turf/replays") }
        var env: [String: String] {
            var e = ProcessInfo.processInfo.environment
            e["XDG_STATE_HOME"] = root.appendingPathComponent("state").path
            e["XDG_CONFIG_HOME"] = root.appendingPathComponent("config").path
            return e
        }

        init() throws {
            root = FileManager.default.temporaryDirectory.appendingPathComponent(
                "turf-replays-\(UUID().uuidString.prefix(8))"
            )
            try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        }

        func path(_ name: String) -> String { dir.appendingPathComponent(name).path }

        /// Copies a recorded match, saved `minutesAgo`.
        func copy(_ recorded: String, as name: String? = nil, minutesAgo: Double) throws {
            let to = path(name ?? recorded)
            try FileManager.default.copyItem(
                atPath: repoRoot.appendingPathComponent("Replays/\(recorded)").path,
                toPath: to
            )
            try age(name ?? recorded, minutesAgo: minutesAgo)
        }

        func write(_ name: String, _ bytes: [UInt8], minutesAgo: Double) throws {
            let fd = open(path(name), O_WRONLY | O_CREAT | O_TRUNC, 0o600)
            guard fd >= 0 else { throw CLIFailure("cannot write \(name)") }
            _ = bytes.withUnsafeBytes { Foundation.write(fd, $0.baseAddress, $0.count) }
            close(fd)
            try age(name, minutesAgo: minutesAgo)
        }

        /// Sets the file's modification time `minutesAgo` (never following a link).
        func age(_ name: String, minutesAgo: Double) throws {
            let t = Date().timeIntervalSince1970 - minutesAgo * 60
            let spec = timespec(tv_sec: Int(t), tv_nsec: Int((t - t.rounded(.down)) * 1e9))
            let times = [spec, spec]
            guard utimensat(AT_FDCWD, path(name), times, AT_SYMLINK_NOFOLLOW) == 0 else {
                throw CLIFailure("cannot set the time of \(name)")
            }
        }

        func recorded(_ name: String) throws -> [UInt8] {
            Array(try Data(contentsOf: repoRoot.appendingPathComponent("Replays/\(name)")))
        }

        deinit { try? FileManager.default.removeItem(at: root) }
    }

    static func full() throws -> Saved {
        let s = try Saved()
        let gen = try run(
            turfBinary,
            [
                "replay", "generate", "--players", "3", "--minutes", "0.25", "--seed", "7", "--map", "dojo", "-o",
                s.path("gen.turfreplay"),
            ],
            environment: s.env
        )
        #expect(gen.status == 0, "\(gen.stderr)")
        try s.age("gen.turfreplay", minutesAgo: 1)
        try s.copy("dojo-2p-30s.turfreplay", minutesAgo: 10)
        try s.copy("dojo-human-vs-3-bots-quit-early.turfreplay", minutesAgo: 20)
        try s.write(
            "truncated.turfreplay",
            Array(try s.recorded("courtyard-4p-90s.turfreplay").prefix(3000)),
            minutesAgo: 30
        )
        try s.write("notes.turfreplay", Array("not a replay\n".utf8), minutesAgo: 40)
        // Well-formed, but one checkpoint's hash is not what the match re-derives to.
        var tampered = try ReplayFile.decode(try s.recorded("courtyard-4p-90s.turfreplay"), as: TurfWorld.self)
        tampered.checkpoints[5].hash ^= 1
        try s.write("tampered.turfreplay", ReplayFile.encode(tampered), minutesAgo: 50)
        #expect(mkfifo(s.path("fifo.turfreplay"), 0o600) == 0)
        try s.age("fifo.turfreplay", minutesAgo: 60)
        // Not listed: another kind of file, and a temporary file.
        try s.write("match.turfjournal", [1, 2, 3], minutesAgo: 0)
        try s.write(".new-1-2.tmp.turfreplay", [1], minutesAgo: 0)
        return s
    }

    func json(_ s: String) -> [String: Any]? {
        (try? JSONSerialization.jsonObject(with: Data(s.utf8))) as? [String: Any]
    }

    @Test func listJSONIsOneDocumentNewestFirst() throws {
        let s = try Self.full()
        let r = try run(turfBinary, ["replay", "list", "--json"], environment: s.env)
        #expect(r.status == 0, "\(r.stderr)")
        #expect(r.stdout.split(separator: "\n").count == 1, "one JSON document on one line")
        let doc = try #require(json(r.stdout), "\(r.stdout)")
        #expect(doc["dir"] as? String == s.dir.path)
        #expect(doc["count"] as? Int == 7 && doc["found"] as? Int == 7 && doc["truncated"] as? Bool == false)
        #expect(doc["verified"] as? Bool == false)
        let entries = try #require(doc["replays"] as? [[String: Any]])
        #expect(
            entries.map { $0["file"] as? String } == [
                "gen.turfreplay", "dojo-2p-30s.turfreplay", "dojo-human-vs-3-bots-quit-early.turfreplay",
                "truncated.turfreplay", "notes.turfreplay", "tampered.turfreplay", "fifo.turfreplay",
            ]
        )
        let byName = Dictionary(uniqueKeysWithValues: entries.map { ($0["file"] as? String ?? "", $0) })
        // A recorded match, in full.
        let dojo = try #require(byName["dojo-2p-30s.turfreplay"])
        #expect(dojo["path"] as? String == s.path("dojo-2p-30s.turfreplay"))
        #expect((dojo["date"] as? String)?.hasSuffix("Z") == true)
        #expect(dojo["bytes"] as? Int == 3160 && dojo["ok"] as? Bool == true && dojo["problem"] is NSNull)
        #expect(dojo["map"] as? String == "Dojo")
        let players = try #require(dojo["players"] as? [[String: Any]])
        #expect(players.map { $0["name"] as? String } == ["Ada", "Bix"])
        #expect(players.map { $0["cells"] as? Int } == [220, 116])
        #expect(players.allSatisfy { $0["owner"] is NSNull && $0["kind"] as? String == "bot" })
        let winner = try #require(dojo["winner"] as? [String: Any])
        #expect(winner["name"] as? String == "Ada" && winner["cells"] as? Int == 220 && winner["player"] as? Int == 0)
        #expect(dojo["tie"] as? Bool == false)
        #expect(dojo["ticks"] as? Int == 900 && dojo["tick_rate"] as? Int == 30 && dojo["seconds"] as? Double == 30)
        #expect(dojo["ops"] as? Int == 452)
        #expect(dojo["networked"] as? Bool == false && dojo["signed"] as? Bool == false)
        // Not verified unless asked: the state is unknown, not "ok".
        #expect(dojo["verified"] is NSNull && dojo["verify_problem"] is NSNull)
        // A tie has no winner.
        let tie = try #require(byName["dojo-human-vs-3-bots-quit-early.turfreplay"])
        #expect(tie["winner"] is NSNull && tie["tie"] as? Bool == true)
        #expect((tie["players"] as? [[String: Any]])?.first?["kind"] as? String == "human")
        // Unreadable files are listed with their problem, the rest of their fields null.
        for (name, says) in [
            ("truncated.turfreplay", "truncated"), ("notes.turfreplay", "does not start with \"TURFRPLY\""),
            ("fifo.turfreplay", "not a regular file (a FIFO)"),
        ] {
            let e = try #require(byName[name])
            #expect(e["ok"] as? Bool == false, "\(e)")
            #expect((e["problem"] as? String)?.contains(says) == true, "\(e)")
            #expect(e["map"] is NSNull && e["players"] is NSNull && e["verified"] is NSNull)
        }
        // The tampered file reads: what is wrong with it only verification finds.
        #expect(byName["tampered.turfreplay"]?["ok"] as? Bool == true)
    }

    @Test func verifyChecksEveryReadableReplay() throws {
        let s = try Self.full()
        let r = try run(turfBinary, ["replay", "list", "--json", "--verify"], environment: s.env)
        #expect(r.status == 0, "\(r.stderr)")
        let doc = try #require(json(r.stdout))
        #expect(doc["verified"] as? Bool == true)
        let entries = try #require(doc["replays"] as? [[String: Any]])
        let byName = Dictionary(uniqueKeysWithValues: entries.map { ($0["file"] as? String ?? "", $0) })
        for name in ["gen.turfreplay", "dojo-2p-30s.turfreplay", "dojo-human-vs-3-bots-quit-early.turfreplay"] {
            #expect(byName[name]?["verified"] as? Bool == true, "\(String(describing: byName[name]))")
        }
        let bad = try #require(byName["tampered.turfreplay"])
        #expect(bad["verified"] as? Bool == false)
        #expect((bad["verify_problem"] as? String)?.contains("state hash mismatch at tick 180") == true, "\(bad)")
        #expect(byName["truncated.turfreplay"]?["verified"] is NSNull)
    }

    /// Without a terminal, `turf replay` lists as text; --headless needs a file.
    @Test func withoutATerminalTheListIsText() throws {
        let s = try Self.full()
        let r = try run(turfBinary, ["replay"], environment: s.env)
        #expect(r.status == 0, "\(r.stderr)")
        let lines = r.stdout.split(separator: "\n").map(String.init)
        #expect(lines.first?.hasPrefix("DATE") == true, "\(r.stdout)")
        #expect(lines.count == 9, "\(r.stdout)")
        #expect(lines[1].contains("Dojo") && lines[1].contains("0:15") && lines[1].contains("local"), "\(lines[1])")
        #expect(lines[2].contains("Ada, Bix") && lines[2].contains("dojo-2p-30s.turfreplay"))
        #expect(lines[3].contains("you = Dax"), "\(lines[3])")
        #expect(lines[4].contains("unreadable: truncated.turfreplay: truncated"), "\(lines[4])")
        #expect(lines[8].contains("7 saved matches in \(s.dir.path), newest first"), "\(lines[8])")
        #expect(!r.stdout.contains("turfjournal") && !r.stdout.contains(".new-"))
        let headless = try run(turfBinary, ["replay", "--headless"], environment: s.env)
        #expect(headless.status == 64 && headless.stderr.contains("give its FILE"), "\(headless.stderr)")
        let empty = try Saved()
        let none = try run(turfBinary, ["replay", "list"], environment: empty.env)
        #expect(none.status == 0 && none.stdout.contains("no saved matches in"), "\(none.stdout)")
        let gone = try run(turfBinary, ["replay", "list", "--json", "--dir", empty.dir.path + "/missing"])
        #expect(gone.status == 0 && json(gone.stdout)?["count"] as? Int == 0, "\(gone.stdout) \(gone.stderr)")
    }

    /// Only the newest thousand are read, whatever the directory holds.
    @Test func theListIsBounded() throws {
        let s = try Saved()
        for i in 0..<1003 {
            try s.write("junk-\(i).turfreplay", Array("junk".utf8), minutesAgo: Double(i))
        }
        let r = try run(turfBinary, ["replay", "list", "--json"], environment: s.env)
        #expect(r.status == 0, "\(r.stderr)")
        let doc = try #require(json(r.stdout))
        #expect(doc["count"] as? Int == 1000 && doc["found"] as? Int == 1003 && doc["truncated"] as? Bool == true)
        let entries = try #require(doc["replays"] as? [[String: Any]])
        #expect(entries.first?["file"] as? String == "junk-0.turfreplay")
        #expect(entries.last?["file"] as? String == "junk-999.turfreplay")
    }

    /// The browser in a real 80×24 terminal, without colour, in ASCII: it lists the matches and
    /// checks them in the background, opens one in the viewer and comes back, and deletes one only
    /// once y confirms it.
    @Test func theBrowserOpensAReplayAndDeletesOneWithConfirmation() throws {
        let s = try Saved()
        try s.copy("courtyard-4p-90s.turfreplay", minutesAgo: 1)
        try s.copy("dojo-2p-30s.turfreplay", minutesAgo: 2)
        try s.copy("dojo-human-vs-3-bots-quit-early.turfreplay", minutesAgo: 3)
        try s.write(
            "truncated.turfreplay",
            Array(try s.recorded("warren-8p-5min.turfreplay").prefix(5000)),
            minutesAgo: 4
        )
        let t = try TmuxSession(
            width: 80,
            height: 24,
            command: "\(turfBinary) replay --ascii",
            environment: ["NO_COLOR": "1", "XDG_STATE_HOME": s.root.appendingPathComponent("state").path]
        )
        defer { t.close() }
        let wait = DemoUnderTmuxTests.wait
        let (list, listed) = t.waitFor(timeout: wait) {
            $0.contains("4 saved matches, newest first") && $0.contains("all 3 readable replays checked")
        }
        #expect(listed != nil, "the list never showed, checked:\n\(list)")
        #expect(list.contains("Courtyard") && list.contains("unreadable: truncated.turfreplay"), "\(list)")
        #expect(list.split(separator: "\n").allSatisfy { $0.count <= 80 && $0.allSatisfy(\.isASCII) }, "\(list)")
        // Down to the second match and open it: the viewer plays it; q comes back to the list.
        t.send("j")
        _ = t.waitFor(timeout: wait) { $0.contains("> ") && $0.contains("dojo-2p-30s.turfreplay - 3 KB") }
        t.send("Enter")
        let (viewer, opened) = t.waitFor(timeout: wait) { $0.contains("replay x1 dojo-2p-30s.turfreplay") }
        #expect(opened != nil, "the viewer never opened:\n\(viewer)")
        t.send("q")
        let (back, returned) = t.waitFor(timeout: wait) { $0.contains("4 saved matches") && $0.contains("d: delete") }
        #expect(returned != nil, "q did not return to the list:\n\(back)")
        // d asks; n keeps the file.
        t.send("d")
        let (ask, asked) = t.waitFor(timeout: wait) { $0.contains("Delete dojo-2p-30s.turfreplay? (y/n)") }
        #expect(asked != nil, "no confirmation:\n\(ask)")
        t.send("n")
        let (kept, keptShown) = t.waitFor(timeout: wait) { $0.contains("kept dojo-2p-30s.turfreplay") }
        #expect(keptShown != nil, "\(kept)")
        #expect(FileManager.default.fileExists(atPath: s.path("dojo-2p-30s.turfreplay")))
        // d, y deletes it: gone from the list and from the disk.
        t.send("d")
        _ = t.waitFor(timeout: wait) { $0.contains("(y/n)") }
        t.send("y")
        let (after, deleted) = t.waitFor(timeout: wait) {
            $0.contains("deleted dojo-2p-30s.turfreplay") && $0.contains("3 saved matches")
        }
        #expect(deleted != nil, "\(after)")
        #expect(!FileManager.default.fileExists(atPath: s.path("dojo-2p-30s.turfreplay")))
        #expect(FileManager.default.fileExists(atPath: s.path("courtyard-4p-90s.turfreplay")))
        t.send("q")
        let (end, ended) = t.waitFor(timeout: wait) { $0.contains("EXIT:") && $0.contains("icanon") }
        #expect(ended != nil, "\(end)")
        let report = DemoUnderTmuxTests.exitReport(end)
        #expect(report.status == 0 && report.restored, "\(end)")
    }
}
