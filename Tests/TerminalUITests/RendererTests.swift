import Engine
import TerminalUI
import Testing
import TurfRules

@Suite struct RendererTests {
    func scene(width: Int = 30, height: Int = 12, tick: Tick = 60) throws -> (ArenaScene, TurfLocalMatch) {
        let map = try ArenaMap(
            parsing: "name: Tiny\n---\n############\n#1........2#\n#..........#\n#3........4#\n############\n"
        )
        var s = TurfSettings(map: map)
        s.pickupInterval = 0
        let config = s.matchConfig(seed: 3, players: TurfMatch.players(humans: ["me"], total: 4), seconds: 20)
        var m = try TurfMatch.local(config: config)
        for _ in 0..<tick { m.step() }
        return (ArenaScene(world: m.replica.state, tick: m.tick, config: config, focus: 0, title: "turf"), m)
    }

    /// Names and map titles from a replay (or a peer) are drawn with their control characters
    /// escaped: no cell ever holds ESC, a C1 control or a bidi override.
    @Test func textFromFilesIsDrawnEscaped() throws {
        var f = Frame(width: 60, height: 2)
        f.put("A \u{1B}]0;pwned\u{07} \u{202E}x", x: 0, y: 0)
        #expect(f.text.hasPrefix("A \\x1b]0;pwned\\x07 \\u{202e}x"))
        #expect(
            !f.cells.contains {
                $0.text.unicodeScalars.contains {
                    $0.value < 0x20 || (0x7F...0x9F).contains($0.value) || $0 == "\u{202E}"
                }
            }
        )
    }

    @Test func drawsHudArenaAndScoresWithoutColour() throws {
        let (s, m) = try scene()
        let f = ArenaRenderer(theme: Theme(color: false, unicode: false)).render(s, width: 60, height: 14)
        let lines = f.text.split(separator: "\n", omittingEmptySubsequences: false).map(String.init)
        #expect(lines[0].contains("turf · Tiny"))
        #expect(lines[0].contains("00:18 left"))
        #expect(lines[1].contains("A*me \(m.replica.state.scores[0])"))
        #expect(lines.contains { $0.contains("########################") })  // walls at 2 columns per cell
        #expect(f.text.contains("A@"))  // you
        #expect(["BB", "CC", "DD"].contains { f.text.contains($0) })  // bots
        #expect(f.text.contains("a "))  // your territory, readable without colour
    }

    /// At one column per cell there is no room for "A@": your avatar must still stand out from the
    /// bots' (which show their letters), with or without colour.
    @Test func yourAvatarIsMarkedAtOneColumnPerCell() throws {
        let map = try ArenaMap(
            parsing: "name: Long\n---\n" + String(repeating: "#", count: 32) + "\n#1"
                + String(repeating: ".", count: 28)
                + "2#\n#" + String(repeating: ".", count: 30) + "#\n#3" + String(repeating: ".", count: 28) + "4#\n"
                + String(repeating: "#", count: 32) + "\n"
        )
        var settings = TurfSettings(map: map)
        settings.pickupInterval = 0
        let config = settings.matchConfig(seed: 3, players: TurfMatch.players(humans: ["me"], total: 4), seconds: 20)
        var m = try TurfMatch.local(config: config)
        for _ in 0..<30 { m.step() }
        for color in [false, true] {
            let scene = ArenaScene(world: m.replica.state, tick: m.tick, config: config, focus: 0, title: "turf")
            #expect(ArenaRenderer.cellWidth(mapWidth: map.width, screenWidth: 50) == 1)
            let f = ArenaRenderer(theme: Theme(color: color, unicode: false)).render(scene, width: 50, height: 12)
            let arenaRows = f.text.split(separator: "\n", omittingEmptySubsequences: false).dropFirst(2).dropLast()
                .joined(separator: "\n")
            #expect(arenaRows.filter { $0 == "@" }.count == 1, "\(f.text)")
            for bot in ["B", "C", "D"] { #expect(arenaRows.contains(bot)) }
            #expect(!arenaRows.contains("A"))  // your letter gives way to the marker
        }
    }

    @Test func smallTerminalsGetAMessageNotACrash() throws {
        let (s, _) = try scene()
        for (w, h) in [(0, 0), (1, 1), (39, 30), (80, 11)] {
            let f = ArenaRenderer(theme: Theme(color: true, unicode: true)).render(s, width: w, height: h)
            if w > 0 && h > 2 { #expect(f.text.contains("too small")) }
        }
    }

    @Test func cameraFollowsTheFocusOnBigMaps() throws {
        // A map wider than the screen even at one column per cell.
        let row = String(repeating: ".", count: 200)
        let text =
            "name: Wide\n---\n" + String(repeating: "#", count: 204) + "\n#1" + row + ".2#\n"
            + String(repeating: "#", count: 204) + "\n"
        var s = TurfSettings(map: try ArenaMap(parsing: text))
        s.pickupInterval = 0
        let config = s.matchConfig(seed: 1, players: TurfMatch.players(humans: ["me"], total: 2), seconds: 60)
        var m = try TurfMatch.local(config: config)
        for _ in 0..<2 { m.step() }
        let right = ArenaScene(world: m.replica.state, tick: m.tick, config: config, focus: 1, title: "t")
        let f = ArenaRenderer(theme: Theme(color: false, unicode: false)).render(right, width: 80, height: 12)
        #expect(f.text.contains("B"))
        #expect(!f.text.contains("A@"))  // player 0 is off-screen at the other end
    }

    @Test func endScreenRanksPlayersAndChartsTerritory() throws {
        let (s, m) = try scene(tick: 200)
        var h = TerritoryHistory()
        for t in stride(from: 0, through: 200, by: 30) { h.record(tick: Tick(t), scores: [t / 10, t / 20, t / 30, 1]) }
        let f = EndScreen(theme: Theme(color: false, unicode: false)).render(
            world: s.world,
            config: s.config,
            history: h,
            focus: 0,
            footer: "q quits",
            width: 80,
            height: 24
        )
        let best = (0..<4).max { m.replica.state.scores[$0] < m.replica.state.scores[$1] }!
        #expect(f.text.contains("Round over"))
        #expect(f.text.contains(s.config.players[best].name))
        #expect(f.text.contains("territory over time"))
        #expect(f.text.contains("q quits"))
    }

    @Test func noColorAndLocaleDetection() {
        #expect(!Theme.colorWanted(environment: ["NO_COLOR": "1", "TERM": "xterm"]))
        #expect(Theme.colorWanted(environment: ["NO_COLOR": "", "TERM": "xterm"]))
        #expect(!Theme.colorWanted(environment: ["TERM": "dumb"]))
        #expect(localeIsUTF8(environment: ["LANG": "en_US.UTF-8"]))
        #expect(!localeIsUTF8(environment: ["LANG": "C"]))
        #expect(!localeIsUTF8(environment: ["LC_ALL": "C", "LANG": "en_US.UTF-8"]))
    }
}
