import Engine
import Foundation
import Testing
import TurfRules

let mapsDir = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
    .deletingLastPathComponent()
    .appendingPathComponent("Assets/maps")

@Suite struct ArenaMapTests {
    static let shipped = ((try? FileManager.default.contentsOfDirectory(atPath: mapsDir.path)) ?? []).filter {
        $0.hasSuffix(".map")
    }.sorted()

    @Test func atLeastThreeMapsOfDifferentSizesOneFitting80x24() throws {
        let maps = try Self.shipped.map {
            try ArenaMap(parsing: String(contentsOf: mapsDir.appendingPathComponent($0), encoding: .utf8), file: $0)
        }
        #expect(maps.count >= 3)
        #expect(Set(maps.map { $0.width * $0.height }).count == maps.count)
        #expect(maps.contains { $0.width * 2 <= 80 && $0.height + 3 <= 24 })
        for m in maps {
            #expect((2...8).contains(m.spawns.count))
            #expect(m.spawns.allSatisfy(m.isFloor))
        }
    }

    static let bad: [(String, Int, Int, String)] = [
        ("name: X\n---\n####\n#1x#\n####\n", 4, 3, "unexpected character 'x'"),
        ("name: X\n---\n#####\n#1..#\n#####\n", 3, 1, "at least 2 spawn points"),
        ("name: X\n---\n#####\n#1.3#\n#####\n", 3, 1, "spawn point '3' present but '2' missing"),
        ("name: X\n---\n#####\n#1.1#\n#####\n", 4, 4, "appears twice"),
        ("name: X\n---\n#####\n#1.2.\n#####\n", 4, 5, "touches the outside"),
        ("name: X\nwalls\n---\n", 2, 1, "expected 'key: value'"),
        ("---\n#####\n#1.2#\n#####\n", 1, 1, "no 'name:' line"),
        ("name: X\nsize: 3\n---\n", 2, 1, "unknown header key 'size'"),
        ("name: X\n", 2, 1, "no '---' line"),
        ("name: X\n---\n\n", 3, 1, "the grid is empty"),
        ("name: X\n---\n#####\n#1\t2#\n#####\n", 4, 3, "tab in the grid"),
    ]

    @Test(arguments: 0..<bad.count)
    func badMapsNameTheLineAndColumn(_ i: Int) {
        let (text, line, column, message) = Self.bad[i]
        do {
            _ = try ArenaMap(parsing: text, file: "bad.map")
            Issue.record("accepted a bad map: \(message)")
        } catch let e as MapError {
            #expect(e.line == line)
            #expect(e.column == column)
            #expect(e.description.hasPrefix("bad.map:\(line):\(column): "))
            #expect(e.description.contains(message), "\(e)")
        } catch { Issue.record("unexpected error \(error)") }
    }

    @Test func randomGarbageNeverCrashesTheParser() {
        var rng = SystemRandomNumberGenerator()
        let alphabet = Array("#. 123456789\n\t:-namex")
        for _ in 0..<2000 {
            let text = String(
                (0..<Int.random(in: 0...80, using: &rng)).map { _ in alphabet.randomElement(using: &rng)! }
            )
            _ = try? ArenaMap(parsing: "name: R\n---\n" + text, file: "r.map")
        }
    }
}

@Suite struct RulesTests {
    func world(_ text: String, players: Int = 2, pickups: Bool = false) throws -> (TurfWorld, MatchConfig) {
        var s = TurfSettings(map: try ArenaMap(parsing: text))
        s.pickupInterval = pickups ? 60 : 0
        let c = s.matchConfig(seed: 1, players: TurfMatch.players(humans: [], total: players), seconds: 10)
        return (TurfWorld(config: c, settings: try TurfWorld.settings(for: c)), c)
    }

    static let corridor = "name: C\n---\n########\n#1....2#\n########\n"

    @Test func laterPaintWinsAndScoresFollow() throws {
        var (w, _) = try world(Self.corridor)
        let cell = UInt32(w.map.index(3, 1))
        do {
            let merged = w.merge(Op(player: 0, seq: 0, tick: 5, payload: .move(cell: cell)))
            #expect(merged)
        }
        #expect(w.owner[Int(cell)] == 0)
        do {
            let merged = w.merge(Op(player: 1, seq: 0, tick: 9, payload: .move(cell: cell)))
            #expect(merged)
        }
        #expect(w.owner[Int(cell)] == 1)
        #expect(w.scores == [0, 1])
        // An older claim arriving late changes nothing.
        do {
            let merged = w.merge(Op(player: 0, seq: 1, tick: 7, payload: .move(cell: cell)))
            #expect(merged)
        }
        #expect(w.owner[Int(cell)] == 1)
        #expect(w.scores == [0, 1])
    }

    @Test func sameTickTiesAreFairNotByPlayerId() throws {
        // Over many cells painted by both players at the same tick, each wins some.
        var (w, _) = try world(
            "name: W\n---\n" + String(repeating: "#", count: 42) + "\n#1" + String(repeating: ".", count: 38) + "2#\n"
                + String(repeating: "#", count: 42) + "\n"
        )
        for (k, c) in w.map.floorCells.enumerated() {
            _ = w.merge(Op(player: 0, seq: UInt32(k), tick: 3, payload: .move(cell: UInt32(c))))
            _ = w.merge(Op(player: 1, seq: UInt32(k), tick: 3, payload: .move(cell: UInt32(c))))
        }
        #expect(w.scores[0] > 5 && w.scores[1] > 5, "\(w.scores)")
        #expect(w.scores[0] + w.scores[1] == w.map.floorCells.count)
    }

    @Test func avatarsKeepMovingTurnWhenOpenAndStopAtWalls() throws {
        let map = try ArenaMap(parsing: "name: T\n---\n#####\n#1..#\n#.#.#\n#..2#\n#####\n")
        var a = Avatar()
        func step(_ t: Tick) -> TurfOp? { a.step(tick: t, player: 0, map: map, moveEvery: 1) }
        var next = step(0)
        #expect(next == .move(cell: UInt32(map.index(1, 1))))
        a.wanted = .right
        next = step(1)
        #expect(next == .move(cell: UInt32(map.index(2, 1))))
        a.wanted = .down  // blocked below (2,1): keeps going right
        next = step(2)
        #expect(next == .move(cell: UInt32(map.index(3, 1))))
        next = step(3)
        #expect(next == .move(cell: UInt32(map.index(3, 2))))  // the queued turn
        next = step(4)
        #expect(next == .move(cell: UInt32(map.index(3, 3))))
        next = step(5)
        #expect(next == nil)  // wall: stops
    }

    @Test func pickupsGoToTheEarliestClaimAndSplatTheArea() throws {
        let text =
            "name: P\n---\n" + String(repeating: "#", count: 12) + "\n"
            + (0..<8).map { r in
                "#" + (r == 0 ? "1" : ".") + String(repeating: ".", count: 8) + (r == 7 ? "2" : ".") + "#"
            }.joined(separator: "\n") + "\n" + String(repeating: "#", count: 12) + "\n"
        var (w, _) = try world(text, pickups: true)
        let p = try #require(w.schedule.pickups.first)
        let late = Op(player: 1, seq: 0, tick: p.spawn + 20, payload: TurfOp.move(cell: UInt32(p.cell)))
        let early = Op(player: 0, seq: 0, tick: p.spawn + 10, payload: TurfOp.move(cell: UInt32(p.cell)))
        do {
            let merged = w.merge(late)
            #expect(merged)
        }
        #expect(w.collector(of: 0) == 1)
        let area = p.area.count
        #expect(w.scores[1] == area)
        do {
            let merged = w.merge(early)
            #expect(merged)
        }  // arrives later, but claimed earlier: it wins, and the splat moves with it
        #expect(w.collector(of: 0) == 0)
        #expect(w.scores[0] == area - 1)  // the pickup cell itself was repainted by player 1 at a later tick
        #expect(w.scores[1] == 1)
        // A move into the cell before the pickup spawns claims nothing.
        var (w2, _) = try world(text, pickups: true)
        do {
            let merged = w2.merge(Op(player: 0, seq: 0, tick: p.spawn - 1, payload: .move(cell: UInt32(p.cell))))
            #expect(merged)
        }
        #expect(w2.collector(of: 0) == nil)
    }

    @Test func botsAreDeterministicFromSeedAndPlayer() throws {
        var s = TurfSettings(
            map: try ArenaMap(
                parsing: String(contentsOf: mapsDir.appendingPathComponent("courtyard.map"), encoding: .utf8)
            )
        )
        s.pickupInterval = 90
        let a = try TurfMatch.generate(settings: s, players: 6, seconds: 10, seed: 4)
        let b = try TurfMatch.generate(settings: s, players: 6, seconds: 10, seed: 4)
        #expect(a.logs == b.logs)
        #expect(a.finalHash == b.finalHash)
        // Hard bots out-paint easy ones on average.
        let r = try ReplayPlayer(a).run()
        let hard = stride(from: 0, to: 6, by: 2).map { r.state.scores[$0] }.reduce(0, +)
        let easy = stride(from: 1, to: 6, by: 2).map { r.state.scores[$0] }.reduce(0, +)
        #expect(hard > easy, "hard \(hard) vs easy \(easy)")
    }
}
