import Engine
import TurfRules

/// Territory over time: each player's cell count, sampled once per second of match time.
public struct TerritoryHistory: Sendable, Equatable {
    public private(set) var samples: [[Int]] = []
    public private(set) var ticks: [Tick] = []
    public init() {}

    public mutating func record(tick: Tick, scores: [Int]) {
        if let last = ticks.last, last >= tick { return }
        ticks.append(tick)
        samples.append(scores)
    }

    /// Samples every `every` ticks by re-deriving a finished match (for replays).
    public static func derive(_ player: ReplayPlayer<TurfWorld>, every: Tick) throws -> TerritoryHistory {
        var h = TerritoryHistory()
        var replica = try player.emptyReplica()
        var next = 0
        var t: Tick = 0
        let length = player.replay.config.lengthTicks
        while true {
            let end = player.tickStart[Int(t) + 1]
            while next < end {
                replica.receive(player.ordered[next])
                next += 1
            }
            h.record(tick: t, scores: replica.state.scores)
            if t == length { break }
            t = min(length, t + every)
        }
        return h
    }
}

/// The end-of-round screen: ranking and a territory-over-time chart.
public struct EndScreen {
    public var theme: Theme
    public init(theme: Theme) { self.theme = theme }

    public func render(
        world: TurfWorld,
        config: MatchConfig,
        history: TerritoryHistory,
        focus: PlayerID?,
        footer: String,
        width: Int,
        height: Int
    ) -> Frame {
        var f = Frame(width: width, height: height)
        guard width >= 30 && height >= 8 else {
            f.put("Round over. q quits.", x: 0, y: 0)
            return f
        }
        let floor = max(1, world.map.floorCells.count)
        let ranking = (0..<config.players.count).sorted { (world.scores[$0], -$0) > (world.scores[$1], -$1) }
        let winner = ranking[0]
        let tie = ranking.count > 1 && world.scores[ranking[1]] == world.scores[winner]
        let headline =
            tie
            ? "Round over: a tie at \(world.scores[winner]) cells!"
            : "Round over: \(config.players[winner].name) wins with \(world.scores[winner]) cells (\(world.scores[winner] * 100 / floor)%)"
        f.center(headline, y: 0, style: Style(color: Palette.player(winner), bold: true))

        // Ranking with bars.
        let barWidth = max(5, min(40, width - 34))
        let best = max(1, world.scores[winner])
        for (rank, p) in ranking.enumerated() where 2 + rank < height - 4 {
            let y = 2 + rank
            let you = focus == PlayerID(p) && config.players[p].name != "you" ? " (you)" : ""
            var x = f.put(
                " \(rank + 1). \(Theme.letter(p)) \(pad(config.players[p].name + you, 12)) \(pad(String(world.scores[p]), 5, right: true)) ",
                x: 0,
                y: y,
                style: Style(color: Palette.player(p), bold: rank == 0)
            )
            let n = world.scores[p] * barWidth / best
            let bar = String(repeating: theme.unicode ? "█" : "#", count: n)
            x = f.put(bar, x: x, y: y, style: Style(color: Palette.player(p)))
            f.put(" \(world.scores[p] * 100 / floor)%", x: x, y: y)
        }

        // Chart: cells held over time.
        let top = 3 + ranking.count
        let chartHeight = height - top - 3
        if chartHeight >= 4 && history.samples.count >= 2 {
            drawChart(
                history,
                players: config.players.count,
                rate: Int(config.tickRate),
                floor: floor,
                into: &f,
                x: 0,
                y: top,
                width: width,
                height: chartHeight + 1
            )
        }
        f.put(String(footer.prefix(width)), x: 0, y: height - 1, style: Style(color: Palette.hud, bold: true))
        return f
    }

    func drawChart(
        _ h: TerritoryHistory,
        players: Int,
        rate: Int,
        floor: Int,
        into f: inout Frame,
        x: Int,
        y: Int,
        width: Int,
        height: Int
    ) {
        let maxValue = max(1, h.samples.flatMap { $0 }.max() ?? 1)
        let labelW = 6
        let plotW = max(2, width - labelW - 1)
        let plotH = height - 1
        f.put("territory over time (% of floor)", x: x + labelW, y: y - 1 + 0, style: Style(bold: true))
        for row in 0..<plotH {
            let value = maxValue * (plotH - 1 - row) / max(1, plotH - 1)
            if row == 0 || row == plotH - 1 || row == plotH / 2 {
                f.put(
                    pad("\(value * 100 / floor)%", labelW - 1, right: true),
                    x: x,
                    y: y + 1 + row,
                    style: Style(dim: true)
                )
            }
            f.put(theme.unicode ? "│" : "|", x: x + labelW - 1 + 1 - 1, y: y + 1 + row, style: Style(dim: true))
        }
        let axisY = y + plotH + 1
        if axisY < f.height - 1 {
            f.put(
                String(repeating: theme.unicode ? "─" : "-", count: plotW),
                x: x + labelW,
                y: axisY,
                style: Style(dim: true)
            )
            let end = ArenaRenderer.clock(Int(h.ticks.last ?? 0), rate: rate)
            f.put(end, x: x + labelW + plotW - end.count, y: axisY, style: Style(dim: true))
            f.put("00:00", x: x + labelW, y: axisY, style: Style(dim: true))
        }
        for col in 0..<plotW {
            let si = col * (h.samples.count - 1) / max(1, plotW - 1)
            for p in 0..<players {
                let v = h.samples[si][p]
                let row = plotH - 1 - v * (plotH - 1) / maxValue
                let glyph: Character = theme.unicode && theme.color ? "•" : Theme.letter(p)
                f.put(
                    String(glyph),
                    x: x + labelW + col,
                    y: y + 1 + row,
                    style: Style(color: Palette.player(p), bold: true)
                )
            }
        }
    }

    func pad(_ s: String, _ n: Int, right: Bool = false) -> String {
        let t = String(s.prefix(n))
        let space = String(repeating: " ", count: max(0, n - t.count))
        return right ? space + t : t + space
    }
}
