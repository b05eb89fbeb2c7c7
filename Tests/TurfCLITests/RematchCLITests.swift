import Foundation
import Testing

/// A series of matches in one lobby (`turf host --matches N`, rematches over the same sessions)
/// and the lobby's chat, with real processes on loopback through a local DHT node; each peer has
/// its own XDG directories (docs/lobby.md, "Rematch" and "Chat").
@Suite(.serialized) struct RematchCLITests {
    typealias Lab = NetPlayTests.Lab

    func events(_ lab: Lab, _ peer: String, _ name: String) -> [[String: Any]] {
        lab.events(peer).filter { $0["event"] as? String == name }
    }

    /// Each peer's `end` events, one per match: the same final hash on every peer, match by match,
    /// every one converged and its replay verifying with that hash.
    func expectSeriesConverged(_ lab: Lab, _ peers: [String], matches: Int) throws {
        for m in 0..<matches {
            var hashes = Set<String>()
            for p in peers {
                let ends = events(lab, p, "end")
                let end = try #require(ends.count > m ? ends[m] : nil, "\(p) has no end for match \(m + 1): \(ends)")
                #expect(end["match"] as? Int == m + 1, "\(p): \(end)")
                #expect(end["converged"] as? Bool == true, "\(p): \(end)")
                #expect(end["desyncs"] as? Int == 0 && end["rejected_ops"] as? Int == 0, "\(p): \(end)")
                #expect(end["dropped_datagrams"] as? Int == 0, "\(p): \(end)")
                let hash = try #require(end["final_hash"] as? String)
                hashes.insert(hash)
                let replay = try #require(end["replay"] as? String, "\(p) saved no replay of match \(m + 1)")
                let v = try run(turfBinary, ["replay", "--headless", replay])
                #expect(v.status == 0 && v.stdout.contains("\"final_hash\":\"\(hash)\""), "\(p): \(v.stdout)")
                #expect(v.stdout.contains("\"signatures\":\"ok\""), "\(p): \(v.stdout)")
            }
            #expect(hashes.count == 1, "match \(m + 1): final hashes differ: \(hashes)")
        }
    }

    /// `--matches` has a range and `--say` a length, checked before any work (status 64).
    @Test func badSeriesAndChatOptionsAreRefusedBeforeAnyWork() throws {
        let matches = try run(turfBinary, ["host", "--topic", "t", "--matches", "0"], timeout: 30)
        #expect(matches.status == 64 && matches.stderr.contains("'--matches <matches>': must be 1-100"), "\(matches)")
        for (command, say) in [("host", ""), ("join", String(repeating: "x", count: 201))] {
            var args = [command, "--topic", "t", "--say", say, "--headless"]
            args += ["--bind", "127.0.0.1", "--bootstrap", "127.0.0.1:9"]
            let r = try run(turfBinary, args, timeout: 30)
            #expect(r.status == 64 && r.stderr.contains("--say must be 1-200 bytes"), "\(command): \(r)")
        }
    }

    @Test func aHostAndAJoinerPlayTwoMatchesInARowAndChatBothWays() throws {
        let lab = try Lab()
        let host = try lab.start(
            "host",
            [
                "host", "--topic", "series", "--seconds", "5", "--matches", "2", "--name", "alice", "--say",
                "hello from alice",
            ]
        )
        let lobby = try #require(lab.waitForEvent("host", "lobby"), "no lobby event")
        let hostKey = try #require(lobby["key"] as? String)
        let join = try lab.start(
            "join",
            ["join", "--topic", "series", "--name", "bob", "--say", "hi \u{1b}[31mred\u{202e}gnp.exe"]
        )
        #expect(lab.wait(host) == 0, "host: \(lab.events("host"))")
        #expect(lab.wait(join) == 0, "join: \(lab.events("join"))")
        let joinKey = try #require(lab.event("join", "joined")?["key"] as? String)

        // Two matches on both sides, pairwise equal; a new seed for the second.
        try expectSeriesConverged(lab, ["host", "join"], matches: 2)
        let hostStarts = events(lab, "host", "start")
        let joinStarts = events(lab, "join", "start")
        #expect(hostStarts.count == 2 && joinStarts.count == 2)
        let seeds = hostStarts.compactMap { $0["seed"] as? String }
        #expect(seeds.count == 2 && seeds[0] != seeds[1], "\(seeds)")
        #expect(joinStarts.compactMap { $0["seed"] as? String } == seeds)
        #expect(hostStarts.last?["match"] as? Int == 2)
        #expect(hostStarts.last?["rematch_ms"] as? Double != nil, "\(hostStarts)")
        // The rematch: offered by the host, accepted by bob, over the same session (one
        // `joined`, one connect).
        let offered = events(lab, "join", "rematch").filter { $0["state"] as? String == "offered" }
        #expect(offered.count == 1 && offered.first?["match"] as? Int == 2)
        let accepted = events(lab, "host", "rematch").filter { $0["state"] as? String == "accepted" }
        #expect(accepted.count == 1 && accepted.first?["key"] as? String == joinKey)
        #expect(events(lab, "join", "connected").count == 1 && events(lab, "join", "joined").count == 1)
        // The series' tally: after match 1 one match, after match 2 two; the same on both sides.
        for p in ["host", "join"] {
            let series = events(lab, p, "end").compactMap { $0["series"] as? [String: Any] }
            #expect(series.map { $0["matches"] as? Int } == [1, 2], "\(p): \(series)")
            let wins = (series.last?["wins"] as? [[String: Any]]) ?? []
            #expect(Set(wins.compactMap { $0["key"] as? String }) == [hostKey, joinKey], "\(p): \(wins)")
            let total = wins.compactMap { $0["wins"] as? Int }.reduce(0, +) + ((series.last?["ties"] as? Int) ?? 0)
            #expect(total == 2, "\(p): \(series)")
        }
        let hostSeries = events(lab, "host", "end").last?["series"] as? [String: Any]
        let joinSeries = events(lab, "join", "end").last?["series"] as? [String: Any]
        #expect(
            (hostSeries?["wins"] as? [[String: Any]])?.map { "\($0["key"] ?? ""):\($0["wins"] ?? "")" }
                == (joinSeries?["wins"] as? [[String: Any]])?.map { "\($0["key"] ?? ""):\($0["wins"] ?? "")" }
        )

        // Chat both ways: each line on both sides, with its sender's key, escaped.
        for p in ["host", "join"] {
            let chat = events(lab, p, "chat")
            let fromAlice = chat.first { $0["key"] as? String == hostKey }
            #expect(fromAlice?["from"] as? String == "alice" && fromAlice?["text"] as? String == "hello from alice")
            let fromBob = try #require(chat.first { $0["key"] as? String == joinKey }, "\(p): \(chat)")
            #expect(fromBob["from"] as? String == "bob")
            #expect(fromBob["text"] as? String == "hi \\x1b[31mred\\u{202e}gnp.exe", "\(p): \(fromBob)")
        }
        let raw = try String(contentsOfFile: lab.outPath("host"), encoding: .utf8)
        #expect(!raw.contains("\u{1b}") && !raw.contains("\u{202e}"))
        #expect(events(lab, "host", "end").last?["chat_rate_limited"] as? Int == 0)
    }

    @Test func aJoinerThatDeclinesTheRematchLeavesCleanlyAndTheOthersPlayOn() throws {
        let lab = try Lab()
        let host = try lab.start(
            "host",
            ["host", "--topic", "decline", "--seconds", "5", "--matches", "2", "--start-when", "3"]
        )
        _ = try #require(lab.waitForEvent("host", "lobby"), "no lobby event")
        let stays = try lab.start("stays", ["join", "--topic", "decline", "--name", "carol"])
        let goes = try lab.start("goes", ["join", "--topic", "decline", "--name", "dave", "--no-rematch"])
        #expect(lab.wait(goes) == 0, "goes: \(lab.events("goes"))")
        #expect(lab.wait(stays) == 0, "stays: \(lab.events("stays"))")
        #expect(lab.wait(host) == 0, "host: \(lab.events("host"))")
        let goesKey = try #require(lab.event("goes", "joined")?["key"] as? String)
        // Dave played one match, declined the second and left.
        #expect(events(lab, "goes", "end").count == 1)
        #expect(events(lab, "goes", "rematch").map { $0["state"] as? String } == ["offered", "declined"])
        let declined = events(lab, "host", "rematch").filter { $0["state"] as? String == "declined" }
        #expect(declined.first?["key"] as? String == goesKey, "\(lab.events("host"))")
        // The others played both, the second without him.
        try expectSeriesConverged(lab, ["host", "stays"], matches: 2)
        let starts = events(lab, "host", "start")
        #expect(starts.map { $0["players"] as? Int } == [3, 2], "\(starts)")
        let firstHash = events(lab, "host", "end").first?["final_hash"] as? String
        #expect(events(lab, "goes", "end").first?["final_hash"] as? String == firstHash)
    }
}
