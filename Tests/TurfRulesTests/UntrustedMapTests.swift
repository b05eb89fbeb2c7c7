import Determinism
import Engine
import Foundation
import Testing
@_spi(Fuzzing) import TurfRules

/// Maps travel inside every replay and journal, so the parser faces whatever a file or a peer
/// holds: it reads Unicode scalars, never Characters, and bounds what ends up on screen.
@Suite struct UntrustedMapTests {
    static let tiny = "name: T\n---\n####\n#12#\n####\n"

    func error(_ text: String) -> MapError? {
        do {
            _ = try ArenaMap(parsing: text, file: "m.map")
            return nil
        } catch let e as MapError { return e } catch {
            Issue.record("not a MapError: \(error)")
            return nil
        }
    }

    /// A digit followed by a combining mark is one Character ("1́") that compared equal to a
    /// digit range and trapped on `asciiValue!`: now it is the digit, then an unexpected U+0301.
    @Test func aCombiningMarkAfterASpawnDigitIsAnErrorAtItsColumn() throws {
        let e = try #require(error("name: T\n---\n#####\n#1\u{301}2#\n#####\n"))
        #expect(e.line == 4 && e.column == 3, "\(e)")
        #expect(e.description.contains("U+0301"), "\(e)")
        // And everywhere else in the grid: after a wall, after floor, alone, wide characters.
        for (row, column) in [
            ("#\u{301}12#", 2), ("#1.\u{308}2#", 4), ("#12\u{200D}#", 4), ("#1２#", 3), ("#1\u{1F600}2#", 3),
        ] {
            let e = try #require(
                error("name: T\n---\n#####\n\(row)\n#####\n"),
                "\(row.unicodeScalars.map { $0.value })"
            )
            #expect(e.line == 4 && e.column == column, "\(e)")
        }
    }

    /// CRLF line ends ("\r\n" is one Character in Swift) parse exactly like LF ones.
    @Test func crlfMapsParseLikeLFMaps() throws {
        let lf = try ArenaMap(parsing: String(contentsOf: mapsDir.appendingPathComponent("dojo.map"), encoding: .utf8))
        let crlf = try ArenaMap(parsing: lf.source.replacingOccurrences(of: "\n", with: "\r\n"))
        #expect(crlf.name == lf.name)
        #expect(crlf.cells == lf.cells && crlf.width == lf.width && crlf.spawns == lf.spawns)
        // A lone CR inside a grid row is not a line end: it is an error there.
        let e = try #require(error("name: T\n---\n####\n#1\r2#\n####\n"))
        #expect(e.line == 4 && e.column == 3, "\(e)")
    }

    /// Header values reach the screen: control characters (an escape sequence would re-title or
    /// recolour the terminal) and bidirectional overrides are refused where they stand, and
    /// lengths count Unicode scalars (one Character with a thousand combining marks is long).
    @Test func headerValuesAreBoundedAndFreeOfControlCharacters() throws {
        for (header, column) in [
            ("name: \u{1B}]0;pwned\u{07}", 7), ("name: A\u{9B}31m", 8), ("author: x\u{202E}y", 10),
            ("description: \u{7F}", 14), ("# comment \u{1B}[2J", 11), ("name: A\u{0}B", 8),
        ] {
            let e = try #require(error("\(header)\n---\n####\n#12#\n####\n"), "\(header.debugDescription)")
            #expect(e.line == 1 && e.column == column, "\(e)")
            #expect(e.description.contains("control character"), "\(e)")
            #expect(!e.description.unicodeScalars.contains { $0.value < 0x20 || (0x7F...0x9F).contains($0.value) })
        }
        let zalgo = "name: A" + String(repeating: "\u{301}", count: 1000)
        #expect(error("\(zalgo)\n---\n####\n#12#\n####\n")?.description.contains("1–40") == true)
        let long = "author: " + String(repeating: "a", count: 201)
        #expect(error("name: T\n\(long)\n---\n####\n#12#\n####\n")?.description.contains("at most 200") == true)
        let longKey = String(repeating: "k", count: 10_000) + ": v"
        let e = try #require(error("name: T\n\(longKey)\n---\n####\n#12#\n####\n"))
        #expect(e.description.count < 200, "\(e.description.count) characters")
        // Tabs and non-ASCII text remain fine in the header.
        let ok = try ArenaMap(parsing: "name:\tCafé 北\nauthor: Zoë\n---\n####\n#12#\n####\n")
        #expect(ok.name == "Café 北")
    }

    /// The parser's fuzz target over its seed corpus (Fuzz/Corpus/map) and seeded mutations of it.
    @Test func mapFuzzCorpusAndMutationsKeepEveryPromise() throws {
        let dir = mapsDir.deletingLastPathComponent().deletingLastPathComponent().appendingPathComponent(
            "Fuzz/Corpus/map"
        )
        let seeds = try FileManager.default.contentsOfDirectory(atPath: dir.path).sorted()
            .map { [UInt8](try Data(contentsOf: dir.appendingPathComponent($0))) }
        #expect(seeds.count >= 3)
        for seed in seeds {
            #expect(MapFuzz.check(seed) == nil)
            #expect(
                (try? ArenaMap(parsing: String(decoding: seed, as: UTF8.self))) != nil,
                "a corpus seed should be a good map"
            )
        }
        var rng = SplitMix64(seed: 0x3A9)
        let interesting: [UInt8] = Array("#. 12345678\n\r\t:-".utf8) + [0xCC, 0x81, 0xE2, 0x80, 0xAE, 0x1B, 0x00, 0xFF]
        var parsed = 0
        for i in 0..<1200 {
            var m = seeds[i % seeds.count]
            for _ in 0...rng.below(3) {
                switch rng.below(4) {
                case 0: m[rng.below(m.count)] = interesting[rng.below(interesting.count)]
                case 1: m.insert(interesting[rng.below(interesting.count)], at: rng.below(m.count + 1))
                case 2 where m.count > 1: m.remove(at: rng.below(m.count))
                default: m[rng.below(m.count)] ^= UInt8(1) << UInt8(rng.below(8))
                }
            }
            if let problem = MapFuzz.check(m) {
                Issue.record("\(problem) for \(String(decoding: m, as: UTF8.self).debugDescription)")
                return
            }
            if (try? ArenaMap(parsing: String(decoding: m, as: UTF8.self))) != nil { parsed += 1 }
        }
        #expect(parsed > 40, "only \(parsed) mutants parsed")
    }
}

/// A config that passes every per-field check can still imply unbounded work: the bounds are on
/// the product (docs/untrusted-input.md).
@Suite struct WorkBoundTests {
    func settings(_ interval: Tick, radius: UInt8) throws -> TurfSettings {
        var s = TurfSettings(
            map: try ArenaMap(
                parsing: String(contentsOf: mapsDir.appendingPathComponent("warren.map"), encoding: .utf8)
            )
        )
        s.pickupInterval = interval
        s.splatRadius = radius
        return s
    }

    /// The issue's 67 KB replay: pickups every 10 ticks of splat radius 8 over a long match would
    /// build a schedule of gigabytes. Refused before anything is built.
    @Test func aPickupScheduleBeyondTheBoundsIsRefused() throws {
        let s = try settings(10, radius: 8)
        let players = TurfMatch.players(humans: [], total: 2)
        let long = s.matchConfig(seed: 1, players: players, seconds: 4 * 3600)
        #expect(throws: ConfigError.self) { try TurfWorld.settings(for: long) }
        #expect(throws: ConfigError.self) { try Replica<TurfWorld>(config: long) }
        // Each bound on its own: the count (radius 0), and the splat cells (few pickups, radius 8).
        let many = try settings(20, radius: 0).matchConfig(seed: 1, players: players, seconds: 4 * 3600)
        #expect(throws: ConfigError.self) { try TurfWorld.settings(for: many) }
        let wide = try settings(100, radius: 8).matchConfig(seed: 1, players: players, seconds: 4 * 3600)
        #expect(throws: ConfigError.self) { try TurfWorld.settings(for: wide) }
        // Through a replay file: the config decodes, the replay is refused when it is loaded.
        let bomb = TurfReplay(config: long, logs: [[], []], equivocations: [], checkpoints: [], finalHash: 0)
        let decoded = try ReplayFile.decode(ReplayFile.encode(bomb), as: TurfWorld.self)
        #expect(throws: ConfigError.self) { try ReplayPlayer(decoded).run() }
    }

    /// What real matches use stays well inside: the longest match turf records (4 h at 30 Hz)
    /// with the default settings, and a real 90 s match with frequent wide pickups.
    @Test func realMatchesAreWithinTheBounds() throws {
        let players = TurfMatch.players(humans: [], total: 8)
        let day = try settings(300, radius: 2).matchConfig(seed: 1, players: players, seconds: 4 * 3600)
        #expect(day.lengthTicks == MatchConfig.maxLengthTicks)
        _ = try TurfWorld.settings(for: day)
        try day.validate()
        let busy = try settings(10, radius: 8).matchConfig(seed: 1, players: players, seconds: 90)
        _ = try TurfWorld.settings(for: busy)
        #expect(TurfSettings(map: try settings(300, radius: 2).map).pickupCount(lengthTicks: day.lengthTicks) == 1439)
    }

    /// The engine's own bounds: a match longer than 24 h at 30 Hz, or with more checkpoints than
    /// 4 hours at one a second, is refused whatever its game.
    @Test func lengthAndCheckpointsAreBounded() throws {
        let s = try settings(0, radius: 0)
        let players = TurfMatch.players(humans: [], total: 2)
        var c = s.matchConfig(seed: 1, players: players, seconds: 60)
        c.lengthTicks = 10_000_000
        #expect(throws: ConfigError.self) { try c.validate() }
        c.lengthTicks = MatchConfig.maxLengthTicks
        c.checkpointInterval = 1
        #expect(throws: ConfigError.self) { try c.validate() }
        c.checkpointInterval = 30
        try c.validate()
    }
}

/// The pickup bounds cap the schedule's size; these cap the work a merge does with it. Before the
/// splat trees and the binary search in `PickupSchedule.live`, each op scanned every pickup at its
/// cell and every pickup covering it, and each change of a claim rescanned its whole area against
/// every pickup covering each cell: thousands of steps per op, minutes for a crafted file of a
/// million ops (docs/untrusted-input.md). `mergeSteps` counts binary-search probes and splat-tree
/// nodes visited; the old code would have counted a pickup per scanned entry.
@Suite struct MergeWorkTests {
    func world(_ map: String, interval: Tick, lifetime: Tick, radius: UInt8) throws -> TurfWorld {
        var s = TurfSettings(map: try ArenaMap(parsing: map))
        s.pickupInterval = interval
        s.pickupLifetime = lifetime
        s.splatRadius = radius
        let c = s.matchConfig(seed: 7, players: TurfMatch.players(humans: [], total: 2), seconds: 4 * 3600)
        return TurfWorld(config: c, settings: try TurfWorld.settings(for: c))
    }

    /// The incremental state equals the one derived from the registers alone, and the same ops in
    /// another order give the same state.
    func expectConsistent(_ w: TurfWorld, ops: [Op<TurfOp>], fresh: TurfWorld) {
        var rebuilt = fresh
        rebuilt.join(w)
        #expect(rebuilt.owner == w.owner && rebuilt.scores == w.scores && rebuilt.stateHash == w.stateHash)
        var rng = SystemRandomNumberGenerator()
        var shuffled = fresh
        for op in ops.shuffled(using: &rng) { _ = shuffled.merge(op) }
        #expect(shuffled.owner == w.owner && shuffled.scores == w.scores && shuffled.stateHash == w.stateHash)
    }

    static func log2(_ n: Int) -> Int { Int.bitWidth - n.leadingZeroBitCount }

    /// 9,818 short-lived pickups on the one free cell of a 5 × 3 map, each claimed by ops arriving
    /// in falling tick order: the live pickup is found among thousands, every claim is a new winner.
    @Test func pickupsPiledOnOneCellCostLogarithmicWork() throws {
        let fresh = try world("name: P\n---\n#####\n#1.2#\n#####\n", interval: 44, lifetime: 44, radius: 4)
        let pickups = fresh.schedule.pickups
        #expect(pickups.count == 9818)
        var ops: [Op<TurfOp>] = []
        for (k, p) in pickups.enumerated().reversed() where k % 3 == 0 {
            for d: Tick in [40, 20, 1] {
                ops.append(
                    Op(
                        player: UInt8(ops.count % 2),
                        seq: UInt32(ops.count),
                        tick: p.spawn + d,
                        payload: .move(cell: UInt32(p.cell))
                    )
                )
            }
        }
        var w = fresh
        for op in ops { _ = w.merge(op) }
        #expect(pickups.indices.allSatisfy { w.collector(of: $0) != nil || $0 % 3 != 0 })
        // Per op: a binary search over the cell's pickups, and per cell of the splat (3 here) a
        // path up a tree over the pickups covering it. The old scans: ~10k steps per op.
        let perOp = Self.log2(pickups.count) + 3 * (Self.log2(2 * pickups.count) + 1)
        #expect(w.mergeSteps <= ops.count * perOp, "\(w.mergeSteps) steps for \(ops.count) ops")
        expectConsistent(w, ops: ops, fresh: fresh)
    }

    /// 3,455 pickups of radius 8 on a 17 × 17 floor, so that every cell is covered by hundreds to
    /// thousands of them, and one claimed again and again in falling tick order: each claim
    /// repaints up to 289 cells.
    @Test func overlappingSplatsCostLogarithmicWorkPerCell() throws {
        let wall = String(repeating: "#", count: 19)
        let rows = (0..<17).map { r in
            "#" + (r == 0 ? "1" : ".") + String(repeating: ".", count: 15) + (r == 16 ? "2" : ".") + "#"
        }
        let fresh = try world(
            "name: O\n---\n" + ([wall] + rows + [wall]).joined(separator: "\n") + "\n",
            interval: 125,
            lifetime: 500_000,
            radius: 8
        )
        let pickups = fresh.schedule.pickups
        #expect(pickups.count == 3455)
        let p = pickups[0]
        var ops: [Op<TurfOp>] = []
        var t = MatchConfig.maxLengthTicks - 1
        while t > p.spawn && ops.count < 600 {
            ops.append(
                Op(player: UInt8(ops.count % 2), seq: UInt32(ops.count), tick: t, payload: .move(cell: UInt32(p.cell)))
            )
            t -= 97
        }
        var w = fresh
        for op in ops { _ = w.merge(op) }
        let perOp = Self.log2(pickups.count) + p.area.count * (Self.log2(2 * pickups.count) + 1)
        #expect(w.mergeSteps <= ops.count * perOp, "\(w.mergeSteps) steps for \(ops.count) ops")
        expectConsistent(w, ops: ops, fresh: fresh)
    }
}
