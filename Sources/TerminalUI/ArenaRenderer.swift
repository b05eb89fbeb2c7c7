import Engine
import TurfRules

/// Everything the match screen shows at one moment.
public struct ArenaScene {
    public var world: TurfWorld
    public var tick: Tick
    public var config: MatchConfig
    /// The local player: the camera follows it and the HUD marks it.
    public var focus: PlayerID?
    public var title: String
    public var status: String
    public var paused: Bool
    public var showHelp: Bool
    public var helpLines: [String]

    public init(
        world: TurfWorld,
        tick: Tick,
        config: MatchConfig,
        focus: PlayerID?,
        title: String,
        status: String = "",
        paused: Bool = false,
        showHelp: Bool = false,
        helpLines: [String] = []
    ) {
        self.world = world
        self.tick = tick
        self.config = config
        self.focus = focus
        self.title = title
        self.status = status
        self.paused = paused
        self.showHelp = showHelp
        self.helpLines = helpLines
    }
}

/// Draws the arena, the HUD and overlays into a frame. Pure: no curses, no clock.
public struct ArenaRenderer {
    public var theme: Theme
    public static let minWidth = 40
    public static let minHeight = 12

    public init(theme: Theme) { self.theme = theme }

    public func render(_ s: ArenaScene, width: Int, height: Int) -> Frame {
        var f = Frame(width: width, height: height)
        guard width >= ArenaRenderer.minWidth && height >= ArenaRenderer.minHeight else {
            f.put("Terminal too small: \(width)x\(height)", x: 0, y: 0)
            f.put("turf needs at least \(ArenaRenderer.minWidth)x\(ArenaRenderer.minHeight).", x: 0, y: 1)
            f.put("Resize, or press q to quit.", x: 0, y: 2)
            return f
        }
        drawHUD(s, into: &f)
        drawArena(s, into: &f, top: 2, rows: height - 3)
        drawStatus(s, into: &f)
        if s.showHelp { drawHelp(s.helpLines, into: &f) }
        return f
    }

    // MARK: HUD

    static func clock(_ ticks: Int, rate: Int) -> String {
        let secs = max(0, ticks) / max(1, rate)
        let m = secs / 60
        let sec = secs % 60
        return "\(m < 10 ? "0" : "")\(m):\(sec < 10 ? "0" : "")\(sec)"
    }

    func drawHUD(_ s: ArenaScene, into f: inout Frame) {
        let hud = Style(color: Palette.hud, bold: true)
        f.fill(x: 0, y: 0, width: f.width, height: 1, style: Style(color: Palette.hud, reverse: !theme.color))
        let left = Int(s.config.lengthTicks) - Int(s.tick)
        var x = f.put(" \(s.title) · \(s.world.map.name)", x: 0, y: 0, style: hud)
        x = f.put("   \(ArenaRenderer.clock(left, rate: Int(s.config.tickRate))) left", x: x, y: 0, style: hud)
        x = f.put("   tick \(s.tick)/\(s.config.lengthTicks)", x: x, y: 0, style: Style(color: Palette.hud))
        if s.paused { f.put("   PAUSED", x: x, y: 0, style: Style(color: Palette.hud, bold: true)) }
        let hint = "? help  q quit "
        if f.width - hint.count > x + 12 {
            f.put(hint, x: f.width - hint.count, y: 0, style: Style(color: Palette.hud))
        }

        // Scores, in player order; the leader is bold, the local player marked.
        let floor = max(1, s.world.map.floorCells.count)
        let best = s.world.scores.max() ?? 0
        var cx = 0
        let budget = max(6, (f.width - 1) / max(1, s.config.players.count) - 1)
        for (i, p) in s.config.players.enumerated() {
            let score = s.world.scores[i]
            let mark = s.focus == PlayerID(i) ? "*" : " "
            var label = "\(Theme.letter(i))\(mark)\(p.name) \(score) \(score * 100 / floor)%"
            if label.count > budget { label = "\(Theme.letter(i))\(mark)\(score) \(score * 100 / floor)%" }
            let style = Style(color: Palette.player(i), bold: score == best && best > 0)
            if theme.color {
                f.put(" ", x: cx, y: 1, style: Style(color: Palette.territory(i)))
                cx += 1
            }
            cx = f.put(label, x: cx, y: 1, style: style) + 1
            if cx >= f.width { break }
        }
    }

    func drawStatus(_ s: ArenaScene, into f: inout Frame) {
        let y = f.height - 1
        let text = s.status.isEmpty ? "arrows / WASD / hjkl steer · p pause · ? help · q quit" : s.status
        f.put(String(text.prefix(f.width)), x: 0, y: y, style: Style(color: Palette.hud, dim: s.status.isEmpty))
    }

    // MARK: arena

    /// Columns per map cell: 2 (square-ish cells) when the arena fits, else 1.
    public static func cellWidth(mapWidth: Int, screenWidth: Int) -> Int { mapWidth * 2 <= screenWidth ? 2 : 1 }

    /// The first map column and row shown: centred if the map fits, else following `focus`.
    static func camera(mapSize: Int, view: Int, focus: Int?) -> (offset: Int, pad: Int) {
        if mapSize <= view { return (0, (view - mapSize) / 2) }
        let c = focus ?? mapSize / 2
        return (min(max(0, c - view / 2), mapSize - view), 0)
    }

    func drawArena(_ s: ArenaScene, into f: inout Frame, top: Int, rows: Int) {
        let w = s.world
        let map = w.map
        let cw = ArenaRenderer.cellWidth(mapWidth: map.width, screenWidth: f.width)
        let viewCols = f.width / cw
        let focusCell = s.focus.flatMap { w.position(of: $0) }
        let (ox, padX) = ArenaRenderer.camera(mapSize: map.width, view: viewCols, focus: focusCell.map(map.x))
        let (oy, padY) = ArenaRenderer.camera(mapSize: map.height, view: rows, focus: focusCell.map(map.y))
        let padCols = padX * cw + (f.width - viewCols * cw) / 2

        var avatarAt: [Int: Int] = [:]
        for p in 0..<w.playerCount { if let c = w.position(of: PlayerID(p)) { avatarAt[c] = p } }
        var pickupAt: Set<Int> = []
        for (i, p) in w.schedule.pickups.enumerated() where w.isLive(pickup: i, at: s.tick) { pickupAt.insert(p.cell) }

        for vy in 0..<min(rows, map.height - oy) {
            let my = oy + vy
            let sy = top + padY + vy
            for vx in 0..<min(viewCols, map.width - ox) {
                let mx = ox + vx
                let i = map.index(mx, my)
                let sx = padCols + vx * cw
                let (a, b, style) = glyphs(
                    cell: i,
                    map: map,
                    world: w,
                    avatar: avatarAt[i],
                    pickup: pickupAt.contains(i),
                    focus: s.focus,
                    narrow: cw == 1
                )
                if sx < f.width { f[sx, sy] = FrameCell(text: a, style: style) }
                if cw == 2 && sx + 1 < f.width { f[sx + 1, sy] = FrameCell(text: b, style: style) }
            }
        }
    }

    /// The two characters (the second is used only at cell width 2) and style of one map cell.
    /// Your own avatar is your letter and `@`; at one column per cell (`narrow`) there is room for
    /// one character only, so it is `@` alone, still in your colour.
    func glyphs(
        cell i: Int,
        map: ArenaMap,
        world w: TurfWorld,
        avatar: Int?,
        pickup: Bool,
        focus: PlayerID?,
        narrow: Bool = false
    )
        -> (Character, Character, Style)
    {
        if let p = avatar {
            let you = focus == PlayerID(p)
            let l = Theme.letter(p)
            return (you && narrow ? "@" : l, you ? "@" : l, Style(color: Palette.player(p), bold: true, reverse: true))
        }
        switch map.cells[i] {
        case .void: return (" ", " ", .plain)
        case .wall:
            return theme.color ? (" ", " ", Style(color: Palette.wall)) : (theme.wallGlyph, theme.wallGlyph, .plain)
        case .floor:
            let o = w.owner[i]
            if pickup {
                let style = Style(
                    color: o == TurfWorld.noOwner ? Palette.pickup : Palette.territory(Int(o)),
                    bold: true
                )
                return (theme.pickupGlyph, " ", style)
            }
            if o == TurfWorld.noOwner { return (" ", theme.floorDot, Style(color: Palette.floor, dim: true)) }
            if theme.color { return (" ", " ", Style(color: Palette.territory(Int(o)))) }
            return (Theme.lower(Int(o)), " ", .plain)
        }
    }

    // MARK: overlays

    func drawHelp(_ lines: [String], into f: inout Frame) {
        let w = min(f.width - 2, (lines.map(\.count).max() ?? 10) + 4)
        let h = min(f.height - 2, lines.count + 2)
        let x = (f.width - w) / 2
        let y = (f.height - h) / 2
        f.box(x: x, y: y, width: w, height: h, unicode: theme.unicode, style: Style(bold: true))
        for (k, line) in lines.prefix(h - 2).enumerated() { f.put(String(line.prefix(w - 4)), x: x + 2, y: y + 1 + k) }
    }
}
