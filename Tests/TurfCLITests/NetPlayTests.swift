import Foundation
import Testing

#if canImport(Glibc)
    import Glibc
#endif

/// `turf host` / `turf join` as real processes on loopback, through a local DHT of one
/// `turf dht serve` node (never the public routers); each peer has its own XDG directories, so
/// its own identity and replays. Matches are a few seconds long.
@Suite(.serialized) struct NetPlayTests {
    /// The test-only switch that prints a `progress` event once a peer has run tick 30 (one
    /// second into the match): what a test waits for to act mid-match (docs/lobby.md).
    static let progress = ["TURF_TESTING_PROGRESS_TICK": "30"]

    /// A scratch directory with a DHT node; peers get sub-directories.
    final class Lab {
        let dir: URL
        let boot: String
        private var pids: [pid_t] = []

        init() throws {
            dir = FileManager.default.temporaryDirectory.appendingPathComponent(
                "turf-net-\(UUID().uuidString.prefix(8))"
            )
            try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
            let out = dir.appendingPathComponent("dht.out").path
            let pid = try spawnBackground(
                turfBinary,
                [
                    "dht", "serve", "--bind", "127.0.0.1", "--bootstrap", "none", "--no-state",
                    "--duration", "300", "--status-every", "0",
                ],
                environment: Lab.env(dir, "dht"),
                stdout: out
            )
            pids.append(pid)
            let line = try #require(
                waitForLine(out, containing: "listening on", timeout: 60),
                "the DHT node did not start"
            )
            boot = String(try #require(line.split(separator: " ").first { $0.hasPrefix("127.0.0.1:") }))
        }

        func env(_ peer: String) -> [String: String] { Lab.env(dir, peer) }

        static func env(_ dir: URL, _ peer: String) -> [String: String] {
            var e = ProcessInfo.processInfo.environment
            e["XDG_CONFIG_HOME"] = dir.appendingPathComponent("\(peer)/config").path
            e["XDG_STATE_HOME"] = dir.appendingPathComponent("\(peer)/state").path
            e["TURF_DHT_BOOTSTRAP"] = nil
            e["TURF_PASSPHRASE"] = nil
            return e
        }

        func outPath(_ peer: String) -> String { dir.appendingPathComponent("\(peer).out").path }

        /// Starts `turf ARGS --headless --bind 127.0.0.1 --bootstrap BOOT` as `peer`.
        @discardableResult
        func start(_ peer: String, _ args: [String], extraEnv: [String: String] = [:]) throws -> pid_t {
            var e = env(peer)
            for (k, v) in extraEnv { e[k] = v }
            let pid = try spawnBackground(
                turfBinary,
                args + ["--headless", "--bind", "127.0.0.1", "--bootstrap", boot],
                environment: e,
                stdout: outPath(peer)
            )
            pids.append(pid)
            return pid
        }

        /// Waits for a process (bounded); its exit status.
        func wait(_ pid: pid_t, timeout: Double = 90) -> Int32 {
            let status = waitForExit(pid, timeout: timeout)
            pids.removeAll { $0 == pid }
            return status
        }

        /// The JSON events a peer printed.
        func events(_ peer: String) -> [[String: Any]] {
            let text = (try? String(contentsOfFile: outPath(peer), encoding: .utf8)) ?? ""
            return text.split(separator: "\n").compactMap {
                (try? JSONSerialization.jsonObject(with: Data($0.utf8))) as? [String: Any]
            }
        }

        func event(_ peer: String, _ name: String) -> [String: Any]? {
            events(peer).last { $0["event"] as? String == name }
        }

        func waitForEvent(_ peer: String, _ name: String, timeout: Double = 60) -> [String: Any]? {
            _ = waitForLine(outPath(peer), containing: "\"event\":\"\(name)\"", timeout: timeout)
            return event(peer, name)
        }

        deinit {
            for p in pids {
                kill(p, SIGKILL)
                var st: Int32 = 0
                waitpid(p, &st, 0)
            }
            try? FileManager.default.removeItem(at: dir)
        }
    }

    /// Every peer's end event has the same final hash, and its replay verifies with that hash.
    func expectConverged(
        _ lab: Lab,
        _ peers: [String],
        expectNoRejections: Bool = true,
        gone: [String] = []
    ) throws {
        var hashes = Set<String>()
        for p in peers {
            let end = try #require(lab.event(p, "end"), "\(p) printed no end event: \(lab.events(p))")
            #expect(end["converged"] as? Bool == true, "\(p): \(end)")
            #expect(end["gone"] as? [String] == gone, "\(p): \(end)")
            if expectNoRejections { #expect(end["rejected_ops"] as? Int == 0, "\(p): \(end)") }
            let hash = try #require(end["final_hash"] as? String)
            hashes.insert(hash)
            let replay = try #require(end["replay"] as? String, "\(p) saved no replay")
            #expect(
                replay.hasPrefix(lab.dir.appendingPathComponent(p).path),
                "\(p)'s replay is outside its XDG dirs: \(replay)"
            )
            let v = try run(turfBinary, ["replay", "--headless", replay])
            #expect(v.status == 0, "\(p): \(v.stderr)")
            #expect(v.stdout.contains("\"final_hash\":\"\(hash)\""), "\(p): \(v.stdout)")
            // Every op is covered by its owner's signed statements, relayed ones included.
            #expect(v.stdout.contains("\"signatures\":\"ok\""), "\(p): \(v.stdout)")
            #expect(end["desyncs"] as? Int == 0, "\(p): \(end)")
        }
        #expect(hashes.count == 1, "final hashes differ: \(hashes)")
    }

    @Test func fourPlayersJoinByTopicKeyAndInvite() throws {
        let lab = try Lab()
        let host = try lab.start(
            "host",
            [
                "host", "--topic", "quad", "--seconds", "5", "--start-when", "4", "--bot", "hard",
                "--name", "Alice",
            ]
        )
        let lobby = try #require(lab.waitForEvent("host", "lobby"), "no lobby event")
        let key = try #require(lobby["key"] as? String)
        let invite = try #require(lobby["invite"] as? String)
        #expect(key.hasPrefix("turf1"))
        let a = try lab.start("topic", ["join", "--topic", "quad", "--name", "Bob\u{1b}[31m"])
        // 120 bytes: cut to fit
        let b = try lab.start("key", ["join", key, "--name", String(repeating: "🎉", count: 30)])
        let c = try lab.start("invite", ["join", invite, "--name", "Dan", "--bot", "hard"])
        for (pid, name) in [(host, "host"), (a, "topic"), (b, "key"), (c, "invite")] {
            #expect(lab.wait(pid) == 0, "\(name) failed: \(lab.events(name))")
        }
        let start = try #require(lab.event("host", "start"))
        #expect(start["players"] as? Int == 4)
        for p in ["topic", "key", "invite"] {
            let joined = try #require(lab.event(p, "joined"), "\(p) never joined")
            #expect(joined["join_ms"] as? Double != nil)
            #expect(lab.event(p, "start")?["seed"] as? String == start["seed"] as? String)
        }
        // The escape sequence in Bob's name reached nobody's output raw.
        let hostOut = try String(contentsOfFile: lab.outPath("host"), encoding: .utf8)
        #expect(!hostOut.contains("\u{1b}"))
        try expectConverged(lab, ["host", "topic", "key", "invite"])
        // The mesh: on loopback every member reaches the host and the two others directly.
        for p in ["topic", "key", "invite"] {
            let links = try #require(lab.event(p, "end")?["links"] as? [[String: Any]])
            #expect(links.count == 3 && links.allSatisfy { $0["path"] as? String == "direct" }, "\(p): \(links)")
        }
        // The tick skew measured from NetMatch's packets: the clocks are aligned within a tick.
        for p in ["host", "topic", "key", "invite"] {
            let skew = try #require(lab.event(p, "end")?["tick_skew_ms_max"] as? Double, "\(p): no tick skew")
            #expect(skew < 1000.0 / 30, "\(p): \(skew) ms")
        }
    }

    @Test func aWrongPassphraseIsOneLineAndExitOneAndASpectatorWatches() throws {
        let lab = try Lab()
        let pass = lab.dir.appendingPathComponent("right.pass").path
        let wrong = lab.dir.appendingPathComponent("wrong.pass").path
        try "open sesame\n".write(toFile: pass, atomically: true, encoding: .utf8)
        try "open says me\n".write(toFile: wrong, atomically: true, encoding: .utf8)
        let host = try lab.start(
            "host",
            ["host", "--topic", "secret", "--seconds", "5", "--start-when", "2", "--passphrase-file", pass]
        )
        _ = try #require(lab.waitForEvent("host", "lobby"))
        // The wrong passphrase first: it must not take a seat.
        let bad = try run(
            turfBinary,
            [
                "join", "--topic", "secret", "--headless", "--bind", "127.0.0.1", "--bootstrap", lab.boot,
                "--passphrase-file", wrong,
            ],
            environment: lab.env("wrong")
        )
        #expect(bad.status == 1)
        #expect(bad.stdout.isEmpty || !bad.stdout.contains("\"joined\""))
        let lines = bad.stderr.split(separator: "\n")
        #expect(lines.count == 1 && lines[0].contains("passphrase"), "\(bad.stderr)")
        // A spectator (it knows the passphrase) watches: no seat, every op, the same replay.
        let watcher = try lab.start(
            "spectator",
            ["join", "--topic", "secret", "--passphrase-file", pass, "--spectate"]
        )
        _ = try #require(lab.waitForEvent("spectator", "joined"), "the spectator never got in")
        let good = try lab.start("good", ["join", "--topic", "secret", "--passphrase-file", pass])
        #expect(lab.wait(good) == 0, "\(lab.events("good"))")
        #expect(lab.wait(watcher) == 0, "\(lab.events("spectator"))")
        #expect(lab.event("spectator", "start")?["players"] as? Int == 2)
        #expect(lab.wait(host) == 0, "\(lab.events("host"))")
        let end = try #require(lab.event("host", "end"))
        #expect((end["passphrase_rejected"] as? Int ?? 0) >= 1, "\(end)")
        try expectConverged(lab, ["host", "good", "spectator"])
    }

    @Test func aPeerKilledMidMatchRejoinsAndTheMatchConverges() throws {
        let lab = try Lab()
        let host = try lab.start("host", ["host", "--topic", "phoenix", "--seconds", "12", "--start-when", "3"])
        let lobby = try #require(lab.waitForEvent("host", "lobby"))
        let key = try #require(lobby["key"] as? String)
        let first = try lab.start("joiner", ["join", key], extraEnv: Self.progress)
        let witness = try lab.start("witness", ["join", key])
        _ = try #require(lab.waitForEvent("joiner", "start"), "the match did not start")
        let joinerKey = try #require(lab.event("joiner", "joined")?["key"] as? String)
        // Mid-match: the joiner has played a second (tick 30) and sent its ops.
        _ = try #require(lab.waitForEvent("joiner", "progress"), "the joiner never reached tick 30")
        kill(first, SIGKILL)
        _ = lab.wait(first)
        // Silent for 5 s: every peer shows it disconnected (NetMatch's liveness; its avatar stays).
        for p in ["host", "witness"] {
            _ = waitForLine(lab.outPath(p), containing: "\"state\":\"disconnected\"", timeout: 30)
            #expect(
                lab.events(p).contains {
                    $0["event"] as? String == "peer" && $0["state"] as? String == "disconnected"
                        && $0["key"] as? String == joinerKey
                },
                "\(p): \(lab.events(p))"
            )
        }
        // The same identity (same XDG dirs) joins again and resumes its own op log.
        let again = try lab.start("joiner", ["join", key])
        #expect(lab.wait(again) == 0, "\(lab.events("joiner"))")
        #expect(lab.wait(host) == 0, "\(lab.events("host"))")
        #expect(lab.wait(witness) == 0, "\(lab.events("witness"))")
        let start = try #require(lab.event("joiner", "start"))
        #expect((start["late_ms"] as? Double ?? 0) > 0, "\(start)")
        #expect((start["resumed_seq"] as? Int ?? 0) > 0, "the rejoiner did not resume its log: \(start)")
        #expect(start["playing_ms"] as? Double != nil, "\(start)")
        #expect(lab.event("host", "end")?["rejoins"] as? Int == 1)
        // Plays on within 2 s of being back on the roster (the key lookup in the DHT comes before).
        let rejoined = try #require(lab.event("joiner", "joined"))
        let playing = try #require(start["playing_ms"] as? Double)
        #expect(playing - (rejoined["join_ms"] as? Double ?? 0) < 2_000, "\(rejoined) \(start)")
        try expectConverged(lab, ["host", "joiner", "witness"])
        // The mesh is whole again whichever key is greater: the rejoiner ends with a direct session
        // to the witness, and the witness heard it again (`connected` after `disconnected`).
        let witnessKey = try #require(lab.event("witness", "joined")?["key"] as? String)
        let links = try #require(lab.event("joiner", "end")?["links"] as? [[String: Any]])
        #expect(
            links.first { $0["key"] as? String == witnessKey }?["path"] as? String == "direct",
            "\(links)"
        )
        let states = lab.events("witness").filter {
            $0["event"] as? String == "peer" && $0["key"] as? String == joinerKey
        }
        .compactMap { $0["state"] as? String }
        #expect(states.last == "connected", "\(states)")
    }

    /// A member whose `start` arrives after tick 0 (held back 2.5 s by a test-only switch, as a
    /// lossy link's reliable channel delivers it late) is a first-time member, not a rejoiner: no
    /// snapshot is waited for; it starts at the current tick (the ticks it missed skipped, its op
    /// log from seq 0), gets the others' ops by NetMatch's redundancy, and ends with the same final
    /// hash as everyone and a replay whose signatures verify.
    @Test func aMemberWhoseStartComesLateJoinsTheRunningMatch() throws {
        let lab = try Lab()
        let host = try lab.start("host", ["host", "--topic", "tardy", "--seconds", "6", "--start-when", "3"])
        let invite = try #require(lab.waitForEvent("host", "lobby")?["invite"] as? String)
        let late = try lab.start("late", ["join", invite], extraEnv: ["TURF_TESTING_LATE_START_MS": "2500"])
        let prompt = try lab.start("prompt", ["join", invite])
        for (pid, name) in [(host, "host"), (late, "late"), (prompt, "prompt")] {
            #expect(lab.wait(pid) == 0, "\(name) failed: \(lab.events(name))")
        }
        let start = try #require(lab.event("late", "start"), "\(lab.events("late"))")
        #expect((start["late_ms"] as? Double ?? 0) > 1_000, "\(start)")
        #expect(start["resumed_seq"] as? Int == 0, "\(start)")
        #expect(lab.event("host", "end")?["rejoins"] as? Int == 0)
        try expectConverged(lab, ["host", "late", "prompt"])
    }

    /// A spectator that arrives a second or more into the match gets what a rejoiner gets (the
    /// host's snapshot of every op, then the start), follows the match live as the host's
    /// watcher, sends no ops, and ends with the players' final hash and a replay whose signatures
    /// verify.
    @Test func aSpectatorArrivingMidMatchWatchesItLive() throws {
        let lab = try Lab()
        let host = try lab.start(
            "host",
            ["host", "--topic", "stage", "--seconds", "8", "--start-when", "2"],
            extraEnv: Self.progress
        )
        let invite = try #require(lab.waitForEvent("host", "lobby")?["invite"] as? String)
        let player = try lab.start("player", ["join", invite])
        _ = try #require(lab.waitForEvent("player", "start"), "the match did not start")
        // The spectator comes a second or more into the match: once the host has run tick 30.
        _ = try #require(lab.waitForEvent("host", "progress"), "the host never reached tick 30")
        let watcher = try lab.start("spectator", ["join", invite, "--spectate"])
        for (pid, name) in [(host, "host"), (player, "player"), (watcher, "spectator")] {
            #expect(lab.wait(pid) == 0, "\(name) failed: \(lab.events(name))")
        }
        #expect(lab.event("spectator", "joined")?["spectating"] as? Bool == true)
        let start = try #require(lab.event("spectator", "start"), "\(lab.events("spectator"))")
        #expect((start["late_ms"] as? Double ?? 0) > 500, "\(start)")
        #expect(start["you"] == nil || start["you"] is NSNull, "\(start)")
        let spectatorKey = try #require(lab.event("spectator", "joined")?["key"] as? String)
        #expect(
            lab.events("host").contains {
                $0["event"] as? String == "peer" && $0["state"] as? String == "spectating"
                    && $0["key"] as? String == spectatorKey
            },
            "\(lab.events("host"))"
        )
        try expectConverged(lab, ["host", "player", "spectator"])
        // Every op of the match, those from before it came included.
        let ops = lab.event("host", "end")?["ops"] as? Int
        #expect(ops != nil && ops! > 0 && lab.event("spectator", "end")?["ops"] as? Int == ops)
    }

    /// A member is killed mid-match and never comes back: the two survivors settle it gone
    /// (docs/netmatch.md, "A peer that never comes back"), exit 0 with equal final hashes and
    /// replays that verify (the gone player's ops up to its best signed statement), and name it
    /// in the end event's `gone`.
    @Test func aPeerKilledForGoodLeavesTheSurvivorsConverged() throws {
        let lab = try Lab()
        let host = try lab.start("host", ["host", "--topic", "gone", "--seconds", "8", "--start-when", "3"])
        let lobby = try #require(lab.waitForEvent("host", "lobby"))
        let key = try #require(lobby["key"] as? String)
        let victim = try lab.start("victim", ["join", key], extraEnv: Self.progress)
        let witness = try lab.start("witness", ["join", key])
        _ = try #require(lab.waitForEvent("victim", "start"), "the match did not start")
        let victimKey = try #require(lab.event("victim", "joined")?["key"] as? String)
        // Mid-match: the victim has played a second (tick 30) and sent its ops.
        _ = try #require(lab.waitForEvent("victim", "progress"), "the victim never reached tick 30")
        kill(victim, SIGKILL)
        _ = lab.wait(victim)
        #expect(lab.wait(host) == 0, "\(lab.events("host"))")
        #expect(lab.wait(witness) == 0, "\(lab.events("witness"))")
        try expectConverged(lab, ["host", "witness"], gone: [victimKey])
        for p in ["host", "witness"] {
            let end = try #require(lab.event(p, "end"))
            // The victim's ops up to its last signed statement are kept, signatures included.
            #expect((end["signatures"] as? Int ?? 0) == 3, "\(p): \(end)")
        }
    }

    /// The host is killed mid-match and never comes back: the two members (linked directly)
    /// settle it gone and finish the match as above.
    @Test func aHostKilledForGoodLeavesTheMembersConverged() throws {
        let lab = try Lab()
        let host = try lab.start(
            "host",
            ["host", "--topic", "crown", "--seconds", "8", "--start-when", "3"],
            extraEnv: Self.progress
        )
        let lobby = try #require(lab.waitForEvent("host", "lobby"))
        let key = try #require(lobby["key"] as? String)
        let a = try lab.start("a", ["join", key])
        let b = try lab.start("b", ["join", key])
        _ = try #require(lab.waitForEvent("a", "start"), "the match did not start")
        _ = try #require(lab.waitForEvent("b", "start"), "the match did not start")
        // Mid-match: the host has played a second (tick 30) and sent its ops.
        _ = try #require(lab.waitForEvent("host", "progress"), "the host never reached tick 30")
        kill(host, SIGKILL)
        _ = lab.wait(host)
        #expect(lab.wait(a) == 0, "\(lab.events("a"))")
        #expect(lab.wait(b) == 0, "\(lab.events("b"))")
        try expectConverged(lab, ["a", "b"], gone: [key])
    }

    @Test func eightPlayersConvergeAndEveryReplayVerifies() throws {
        let lab = try Lab()
        let host = try lab.start(
            "host",
            ["host", "--topic", "octet", "--seconds", "5", "--start-when", "8", "--max-players", "8"]
        )
        let lobby = try #require(lab.waitForEvent("host", "lobby"), "no lobby event")
        let key = try #require(lobby["key"] as? String)
        let invite = try #require(lobby["invite"] as? String)
        var pids: [(pid_t, String)] = [(host, "host")]
        for i in 1...7 {
            let how = i % 3 == 0 ? ["--topic", "octet"] : i % 3 == 1 ? [key] : [invite]
            pids.append((try lab.start("p\(i)", ["join"] + how + ["--name", "P\(i)", "--bot", "hard"]), "p\(i)"))
        }
        for (pid, name) in pids { #expect(lab.wait(pid, timeout: 120) == 0, "\(name) failed: \(lab.events(name))") }
        #expect(lab.event("host", "start")?["players"] as? Int == 8)
        try expectConverged(lab, pids.map { $0.1 })
        for (_, p) in pids {
            let links = try #require(lab.event(p, "end")?["links"] as? [[String: Any]])
            #expect(links.count == 7, "\(p): \(links)")
            for l in links where l["path"] as? String == "direct" {
                // Every datagram counted, headers included: a 5 s match moves kilobytes each way.
                #expect(
                    (l["bytes_sent"] as? Int ?? 0) > 1_000 && (l["bytes_received"] as? Int ?? 0) > 1_000,
                    "\(p): \(l)"
                )
                #expect(l["rtt_ms_p50"] as? Double != nil, "\(p): \(l)")
            }
        }
    }

    /// A member with no direct session to the other member (a test-only switch): their ops travel
    /// through the host, which forges the first op it relays on each link (another test-only
    /// switch). Both members reject the forged op by its owner's signature, count it, and still
    /// converge on the honest copies; every replay verifies with signatures ok.
    @Test func aRelayedPairConvergesAndAForgedRelayedOpIsRejected() throws {
        let lab = try Lab()
        let host = try lab.start(
            "host",
            ["host", "--topic", "relay", "--seconds", "5", "--start-when", "3", "--bot", "hard"],
            extraEnv: ["TURF_TESTING_FORGE_RELAY": "1"]
        )
        let lobby = try #require(lab.waitForEvent("host", "lobby"))
        let key = try #require(lobby["key"] as? String)
        let a = try lab.start("a", ["join", key, "--bot", "hard"], extraEnv: ["TURF_TESTING_NO_MESH": "1"])
        let b = try lab.start("b", ["join", key, "--bot", "hard"])
        for (pid, name) in [(host, "host"), (a, "a"), (b, "b")] {
            #expect(lab.wait(pid) == 0, "\(name) failed: \(lab.events(name))")
        }
        try expectConverged(lab, ["host", "a", "b"], expectNoRejections: false)
        let hostKey = key
        var rejected = 0
        for p in ["a", "b"] {
            let end = try #require(lab.event(p, "end"))
            rejected += end["rejected_ops"] as? Int ?? 0
            let links = try #require(end["links"] as? [[String: Any]])
            #expect(links.count == 2, "\(p): \(links)")
            for l in links {
                let expected = l["key"] as? String == hostKey ? "direct" : "relayed"
                #expect(l["path"] as? String == expected, "\(p): \(links)")
            }
        }
        #expect(
            rejected >= 1,
            "no forged op was rejected: \(lab.event("a", "end") ?? [:]) \(lab.event("b", "end") ?? [:])"
        )
        #expect(lab.event("host", "end")?["rejected_ops"] as? Int == 0)
        let forwarded = (lab.event("host", "end")?["links"] as? [[String: Any]] ?? []).reduce(0) {
            $0 + ($1["ops_forwarded"] as? Int ?? 0)
        }
        #expect(forwarded > 0, "the host relayed nothing")
    }

    /// Of four players, members A and B keep no session to each other (a test-only switch naming
    /// B's key, learnt with `turf id`): their ops reach each other through the host and through
    /// member C, which is linked to both and forwards them too; everyone converges, signed.
    @Test func aPairWithoutASessionConvergesThroughAMemberLinkedToBoth() throws {
        let lab = try Lab()
        let id = try run(turfBinary, ["id"], environment: lab.env("b"))
        #expect(id.status == 0, "\(id.stderr)")
        let bKey = id.stdout.trimmingCharacters(in: .whitespacesAndNewlines)
        #expect(bKey.hasPrefix("turf1"))
        let host = try lab.start("host", ["host", "--topic", "detour", "--seconds", "5", "--start-when", "4"])
        let lobby = try #require(lab.waitForEvent("host", "lobby"))
        let key = try #require(lobby["key"] as? String)
        let a = try lab.start("a", ["join", key], extraEnv: ["TURF_TESTING_NO_MESH": bKey])
        let b = try lab.start("b", ["join", key])
        let c = try lab.start("c", ["join", key])
        for (pid, name) in [(host, "host"), (a, "a"), (b, "b"), (c, "c")] {
            #expect(lab.wait(pid) == 0, "\(name) failed: \(lab.events(name))")
        }
        try expectConverged(lab, ["host", "a", "b", "c"])
        let aKey = try #require(lab.event("a", "joined")?["key"] as? String)
        for (p, other) in [("a", bKey), ("b", aKey)] {
            let links = try #require(lab.event(p, "end")?["links"] as? [[String: Any]])
            #expect(links.count == 3, "\(p): \(links)")
            for l in links {
                #expect(l["path"] as? String == (l["key"] as? String == other ? "relayed" : "direct"), "\(p): \(links)")
            }
        }
        // C forwarded ops between A and B (NetMatch relays an op a linked peer lacks for ~2 RTT).
        let cLinks = try #require(lab.event("c", "end")?["links"] as? [[String: Any]])
        let forwarded = cLinks.filter { [aKey, bKey].contains($0["key"] as? String ?? "") }.reduce(0) {
            $0 + ($1["ops_forwarded"] as? Int ?? 0)
        }
        #expect(forwarded > 0, "member C relayed nothing: \(cLinks)")
    }

    /// One peer's checkpoint hash at tick 30 is corrupted (a test-only switch): both peers report a
    /// desync naming tick 30, and count it in their end events.
    @Test func aForcedDesyncIsReportedByThePeers() throws {
        let lab = try Lab()
        let host = try lab.start("host", ["host", "--topic", "drift", "--seconds", "5", "--start-when", "2"])
        let lobby = try #require(lab.waitForEvent("host", "lobby"))
        let key = try #require(lobby["key"] as? String)
        let j = try lab.start("joiner", ["join", key], extraEnv: ["TURF_TESTING_CORRUPT_CHECKPOINT": "30"])
        #expect(lab.wait(j) == 0, "\(lab.events("joiner"))")
        #expect(lab.wait(host) == 0, "\(lab.events("host"))")
        for p in ["host", "joiner"] {
            let desync = try #require(lab.event(p, "desync"), "\(p) reported no desync: \(lab.events(p))")
            #expect(desync["tick"] as? Int == 30, "\(p): \(desync)")
            let end = try #require(lab.event(p, "end"))
            #expect((end["desyncs"] as? Int ?? 0) >= 1, "\(p): \(end)")
            #expect(end["first_bad_tick"] as? Int == 30, "\(p): \(end)")
        }
        // Only a checkpoint hash was corrupted, not the match: the replicas still agree.
        #expect(
            lab.event("host", "end")?["final_hash"] as? String == lab.event("joiner", "end")?["final_hash"] as? String
        )
    }
}
