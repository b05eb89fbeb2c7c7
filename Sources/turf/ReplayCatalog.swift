import Engine
import Foundation
import LocalFiles
import NetMatch
import TextOutput
import TurfRules

/// Saved matches as `turf replay` (the browser), `turf replay list` and `turf replay FILE` read
/// them (docs/replay-format.md, "Listing saved matches"). Every file is untrusted: opened without
/// blocking, at most `FileLimits.replay` bytes, its magic checked first; a file that cannot be read
/// or decoded is listed with its problem, never hiding the others. What is cheap comes first (the
/// directory's listing, then each file decoded and its final state merged: map, players, winner,
/// length); verification (every checkpoint hash and signature, as `--headless` does) costs more and
/// is done on demand: `--verify`, or lazily in the browser.
enum ReplayCatalog {
    /// The most replays listed: the newest.
    static let keep = 1000
    /// The most directory entries looked at (a directory of a million files is not read to its end).
    static let scanLimit = 100_000
    static let suffix = ".turfreplay"

    /// Reads and decodes one replay, as `turf replay FILE` does. One line on failure, naming it.
    static func open(_ path: String) throws -> TurfReplay {
        let bytes = try UntrustedFile.read(path, limit: FileLimits.replay, what: "replay", magic: ReplayFile.magic)
        do { return try ReplayFile.decode(bytes, as: TurfWorld.self) } catch let e as ReplayFormatError {
            throw CLIError("\(path): \(e)")
        }
    }

    /// The signed op logs (docs/netmatch.md): nil when every owned player's log is covered by
    /// signatures that verify and every verdict's proof holds (or the match recorded none, as a
    /// local one); else the first problem. A verdict voids a player's log: its proof (statements
    /// signed by the player's owner) must verify, or the file is not what the peers agreed.
    static func signatureProblem(_ replay: TurfReplay) -> String? {
        let badProof = replay.verdicts.first { v in
            guard v.rule != "equivocation" else {
                return !SignedStatement.checkProof(v.proof, player: v.player, config: replay.config)
            }
            // A time cut: one statement of the owner's that shows the op at `seq` breaking `rule`.
            let log = Int(v.player) < replay.logs.count ? replay.logs[Int(v.player)] : []
            return !SignedStatement.checkTimeProof(
                v.proof,
                player: v.player,
                seq: v.seq,
                rule: v.rule,
                config: replay.config,
                log: log,
                as: TurfWorld.self
            )
        }
        if let badProof { return "the \(badProof.rule) proof of player \(badProof.player) does not verify" }
        guard !replay.signatures.isEmpty else { return nil }
        return OpChain.check(
            config: replay.config,
            logs: replay.logs,
            signatures: replay.signatures,
            as: TurfWorld.self
        )
    }

    /// What `turf replay --headless` checks, without its figures: nil when the match re-derives
    /// to every recorded checkpoint hash and the final hash, and its signatures verify; else the
    /// first problem.
    static func verify(_ replay: TurfReplay) -> String? {
        do {
            let (result, _) = try ReplayPlayer(replay).verify()
            if let bad = result.firstBadTick { return "state hash mismatch at tick \(bad) (the first bad checkpoint)" }
            if !result.finalMatches { return "final state hash mismatch" }
        } catch {
            return "\(error)"
        }
        return signatureProblem(replay)
    }

    struct Player: Equatable, Sendable {
        var name: String
        var bot: Bool
        /// The owner's key (`turf1…`), nil for a local match's players.
        var owner: String?
        var cells: Int
    }

    /// What one decoded replay says, cheaply: its config, and its final state merged once.
    struct Summary: Equatable, Sendable {
        var map: String
        var players: [Player]
        /// The player with the most cells; nil on a tie for the lead or when nobody has any.
        var winner: Int?
        var tie: Bool
        var ticks: Int
        var tickRate: Int
        var ops: Int
        /// Players owned by keys: a match played with `turf host`/`join` (a local one records no owners).
        var networked: Bool
        /// The replay carries its players' signatures (networked matches).
        var signed: Bool

        var seconds: Double { Double(ticks) / Double(max(1, tickRate)) }
    }

    static func summarize(_ replay: TurfReplay) throws -> Summary {
        let final = try ReplayPlayer(replay).state(at: replay.config.lengthTicks)
        let scores = final.state.scores
        let players = replay.config.players.enumerated().map { i, p in
            Player(
                name: p.name,
                bot: p.kind == .bot,
                owner: p.owner?.text,
                cells: i < scores.count ? scores[i] : 0
            )
        }
        let best = players.map(\.cells).max() ?? 0
        let leaders = players.indices.filter { players[$0].cells == best }
        return Summary(
            map: final.state.map.name,
            players: players,
            winner: best > 0 && leaders.count == 1 ? leaders[0] : nil,
            tie: best > 0 && leaders.count > 1,
            ticks: Int(replay.config.lengthTicks),
            tickRate: Int(replay.config.tickRate),
            ops: replay.opCount,
            networked: replay.config.players.contains { $0.owner != nil },
            signed: !replay.signatures.isEmpty
        )
    }

    /// Whether a replay was checked, and how that went.
    enum Verification: Equatable, Sendable {
        /// Not checked (yet).
        case unknown
        case ok
        case failed(String)
    }

    /// One listed file.
    struct Item: Equatable, Sendable {
        var path: String
        var name: String
        var modified: Date?
        var bytes: Int64?
        /// Nil until read, and when the file could not be read or decoded (then `problem` says why).
        var summary: Summary?
        var problem: String?
        var verification: Verification = .unknown

        /// Reads and decodes the file: its summary, or its problem.
        mutating func read() {
            do {
                summary = try ReplayCatalog.summarize(ReplayCatalog.open(path))
                problem = nil
            } catch {
                summary = nil
                problem = describe(error)
            }
        }

        /// Decodes the file again and verifies it (`problem` too, if it no longer reads).
        mutating func verify() {
            do {
                let replay = try ReplayCatalog.open(path)
                verification = ReplayCatalog.verify(replay).map(Verification.failed) ?? .ok
            } catch {
                problem = describe(error)
                verification = .failed(describe(error))
            }
        }

        /// An error about this file, naming it by its name (the listing gives its path).
        private func describe(_ error: any Error) -> String {
            "\(error)".replacingOccurrences(of: path, with: name)
        }
    }

    /// A directory's replays, newest first.
    struct Listing: Sendable {
        var directory: String
        var items: [Item]
        /// Replay files found (more than `items` when over `keep`).
        var found: Int
        /// The directory had more entries than `scanLimit`: older replays may be missing.
        var scanStopped: Bool

        /// Every item read (its summary or its problem).
        func readAll() -> Listing {
            var l = self
            for i in l.items.indices { l.items[i].read() }
            return l
        }
    }

    /// The directory's replays, newest first, at most `keep`; nothing is read yet.
    static func list(_ dir: String) throws -> Listing {
        let l: UntrustedDirectory.Listing
        do { l = try UntrustedDirectory.newest(in: dir, suffix: suffix, keep: keep, scanLimit: scanLimit) } catch {
            throw CLIError("\(error)")
        }
        return Listing(
            directory: dir,
            items: l.entries.map { Item(path: $0.path, name: $0.name, modified: $0.modified, bytes: $0.size) },
            found: l.matched,
            scanStopped: l.scanStopped
        )
    }

    // MARK: Output

    /// The date as the list shows it, in local time: `2025-12-04 21:30`.
    static func shortDate(_ d: Date?) -> String {
        guard let d else { return "????-??-?? ??:??" }
        let f = DateFormatter()
        f.locale = Locale(identifier: "en_US_POSIX")
        f.dateFormat = "yyyy-MM-dd HH:mm"
        return f.string(from: d)
    }

    /// m:ss (or h:mm:ss).
    static func duration(_ seconds: Double) -> String {
        let s = Int(seconds.rounded())
        let (h, m, sec) = (s / 3600, s / 60 % 60, s % 60)
        let two = { (v: Int) in v < 10 ? "0\(v)" : "\(v)" }
        return h > 0 ? "\(h):\(two(m)):\(two(sec))" : "\(m):\(two(sec))"
    }

    /// The winner's name, `A = B` on a tie, `-` when nobody holds a cell.
    static func winnerText(_ s: Summary) -> String {
        if let w = s.winner { return s.players[w].name }
        guard s.tie, let best = s.players.map(\.cells).max() else { return "-" }
        return s.players.filter { $0.cells == best }.map(\.name).joined(separator: " = ")
    }

    static func json(_ listing: Listing, verified: Bool) -> JSONObject {
        var j = JSONObject()
        j.add("dir", listing.directory)
        j.add("count", listing.items.count)
        j.add("found", listing.found)
        j.add("truncated", listing.found > listing.items.count || listing.scanStopped)
        j.add("verified", verified)
        j.add("replays", listing.items.map(json))
        return j
    }

    static func json(_ item: Item) -> JSONObject {
        var j = JSONObject()
        j.add("path", item.path)
        j.add("file", item.name)
        if let d = item.modified {
            let f = ISO8601DateFormatter()
            j.add("date", f.string(from: d))
        } else {
            j.addNull("date")
        }
        j.add("bytes", item.bytes.map { Int($0) })
        j.add("ok", item.summary != nil)
        j.add("problem", item.problem)
        let s = item.summary
        j.add("map", s?.map)
        if let s {
            j.add(
                "players",
                s.players.enumerated().map { i, p in
                    var o = JSONObject()
                    o.add("player", i)
                    o.add("name", p.name)
                    o.add("kind", p.bot ? "bot" : "human")
                    o.add("owner", p.owner)
                    o.add("cells", p.cells)
                    return o
                }
            )
            if let w = s.winner {
                var o = JSONObject()
                o.add("player", w)
                o.add("name", s.players[w].name)
                o.add("cells", s.players[w].cells)
                j.add("winner", o)
            } else {
                j.addNull("winner")
            }
            j.add("tie", s.tie)
            j.add("ticks", s.ticks)
            j.add("tick_rate", s.tickRate)
            j.add("seconds", s.seconds)
            j.add("ops", s.ops)
            j.add("networked", s.networked)
            j.add("signed", s.signed)
        } else {
            for k in ["players", "winner", "tie", "ticks", "tick_rate", "seconds", "ops", "networked", "signed"] {
                j.addNull(k)
            }
        }
        switch item.verification {
        case .unknown:
            j.addNull("verified")
            j.addNull("verify_problem")
        case .ok:
            j.add("verified", true)
            j.addNull("verify_problem")
        case .failed(let why):
            j.add("verified", false)
            j.add("verify_problem", why)
        }
        return j
    }

    /// The list as text: a header, one line per replay (file text escaped), a last line saying
    /// how many and how to verify.
    static func text(_ listing: Listing, verified: Bool) -> [String] {
        let dir = SafeText.display(listing.directory, limit: 300)
        guard !listing.items.isEmpty else { return ["no saved matches in \(dir)"] }
        func pad(_ s: String, _ n: Int) -> String {
            let c = s.count
            return c >= n ? s : s + String(repeating: " ", count: n - c)
        }
        var lines = [
            pad("DATE", 17) + pad("MAP", 11) + pad("LENGTH", 8) + pad("KIND", 7) + pad("CHECK", 7) + pad("WINNER", 15)
                + "PLAYERS / FILE"
        ]
        for item in listing.items {
            let date = shortDate(item.modified)
            let check: String
            switch item.verification {
            case .unknown: check = "-"
            case .ok: check = "ok"
            case .failed: check = "BAD"
            }
            let name = SafeText.display(item.name, limit: 120)
            guard let s = item.summary else {
                let why = SafeText.display(item.problem ?? "unreadable", limit: 200)
                lines.append(pad(date, 17) + "unreadable: \(why)" + (why.contains(name) ? "" : " (\(name))"))
                continue
            }
            let players = s.players.map { SafeText.display($0.name, limit: 24) }.joined(separator: ", ")
            lines.append(
                pad(date, 17) + pad(SafeText.display(s.map, limit: 10), 11) + pad(duration(s.seconds), 8)
                    + pad(s.networked ? "net" : "local", 7) + pad(check, 7)
                    + pad(SafeText.display(winnerText(s), limit: 14), 15) + players + "  " + name
            )
            if case .failed(let why) = item.verification {
                lines.append(
                    String(repeating: " ", count: 17) + "verification failed: " + SafeText.display(why, limit: 200)
                )
            }
        }
        var tail = "\(listing.items.count) saved match\(listing.items.count == 1 ? "" : "es") in \(dir), newest first"
        if listing.found > listing.items.count || listing.scanStopped {
            tail += " (the newest \(listing.items.count) of \(listing.found)\(listing.scanStopped ? "+" : ""))"
        }
        tail +=
            verified
            ? "; CHECK: every hash and signature re-derived"
            : "; CHECK '-': not verified (turf replay list --verify, or turf replay --headless FILE)"
        lines.append(tail)
        return lines
    }
}
