import Engine
import TurfRules

/// Watches a recorded match: pause, speed x0.25…x8, seek to any tick. The state shown at tick t is
/// the merge of the ops with tick ≤ t: forward seeks merge more ops, backward seeks re-derive.
public final class ReplayViewer {
    public static let speeds: [Double] = [0.25, 0.5, 1, 2, 4, 8]
    public static let helpLines = [
        "replay controls",
        "",
        "  space        pause / play",
        "  + / -        faster / slower (x0.25 … x8)",
        "  left/right   seek 5 seconds",
        "  [ / ]        step one tick (pauses)",
        "  g            go to a tick (type it, Enter)",
        "  Home / End   start / end",
        "  Tab          follow the next player",
        "  q            quit",
        "",
        "press any key",
    ]

    let player: ReplayPlayer<TurfWorld>
    let title: String
    let wantColor: Bool
    let unicode: Bool
    let now: () -> UInt64

    /// The replica at `shownTick`, and the index of the next op to merge.
    private var replica: Replica<TurfWorld>
    private var nextOp = 0
    public private(set) var shownTick: Tick = 0

    public init(
        player: ReplayPlayer<TurfWorld>,
        title: String,
        wantColor: Bool,
        unicode: Bool,
        now: @escaping () -> UInt64
    ) throws {
        self.player = player
        self.title = title
        self.wantColor = wantColor
        self.unicode = unicode
        self.now = now
        replica = try player.emptyReplica()
        seek(to: 0)
    }

    var length: Tick { player.replay.config.lengthTicks }

    /// Moves the shown state to `tick` (clamped to the match).
    public func seek(to tick: Tick) {
        let t = min(tick, length)
        if t < shownTick {
            // try!: this config already built the viewer's first replica (the player checked it).
            replica = try! player.emptyReplica()
            nextOp = 0
        }
        let end = player.tickStart[Int(t) + 1]
        while nextOp < end {
            replica.receive(player.ordered[nextOp])
            nextOp += 1
        }
        shownTick = t
    }

    public var state: TurfWorld { replica.state }

    /// Runs until the viewer quits. Returns the signal that ended it (the shell exits 128 + it, as
    /// the demo does), or nil when the user quit with q.
    @discardableResult
    public func run() throws -> Int32? {
        let term = try CursesTerminal(wantColor: wantColor, unicode: unicode)
        defer { term.stop() }
        return run(on: term)
    }

    /// Runs on a terminal that is already up (the replay browser's), and leaves it up: q returns
    /// to the caller, which redraws its own screen.
    public func run(on term: CursesTerminal) -> Int32? {
        term.invalidate()
        let config = player.replay.config
        let rate = Double(config.tickRate)
        let renderer = ArenaRenderer(theme: term.theme)
        var speedIndex = 2
        var paused = false
        var help = false
        var goto: String?
        var focus: PlayerID? = nil
        var position = Double(shownTick)  // fractional tick while playing
        var last = now()
        var dirty = true
        var history: TerritoryHistory?
        var showEnd = false

        while true {
            if let sig = term.quitSignal { return sig }
            for key in term.readKeys() {
                dirty = true
                if help {
                    help = false
                    continue
                }
                if var g = goto {
                    switch key {
                    case .char(let c) where c.isASCII && c.isNumber:
                        g.append(c)
                        goto = g
                    case .backspace: goto = String(g.dropLast())
                    case .enter:
                        if let t = Tick(g) {
                            seek(to: t)
                            position = Double(shownTick)
                        }
                        goto = nil
                    case .escape: goto = nil
                    default: break
                    }
                    continue
                }
                showEnd = false
                switch key {
                case .char("q"), .char("Q"): return nil
                case .char(" "), .char("p"): paused.toggle()
                case .char("+"), .char("="): speedIndex = min(ReplayViewer.speeds.count - 1, speedIndex + 1)
                case .char("-"), .char("_"): speedIndex = max(0, speedIndex - 1)
                case .right:
                    seek(to: shownTick + 5 * Tick(config.tickRate))
                    position = Double(shownTick)
                case .left:
                    seek(to: shownTick >= 5 * Tick(config.tickRate) ? shownTick - 5 * Tick(config.tickRate) : 0)
                    position = Double(shownTick)
                case .char("]"):
                    paused = true
                    seek(to: shownTick + 1)
                    position = Double(shownTick)
                case .char("["):
                    paused = true
                    seek(to: shownTick > 0 ? shownTick - 1 : 0)
                    position = Double(shownTick)
                case .home:
                    seek(to: 0)
                    position = 0
                case .end:
                    seek(to: length)
                    position = Double(length)
                    showEnd = true
                case .char("g"), .char("G"): goto = ""
                case .char("\t"):
                    let n = config.players.count
                    focus = focus.map { Int($0) + 1 < n ? $0 + 1 : nil } ?? 0
                case .char("?"): help = true
                case .resize: term.invalidate()
                default: break
                }
            }
            let t = now()
            if !paused && goto == nil && !help && shownTick < length {
                position += Double(t - last) / 1e9 * rate * ReplayViewer.speeds[speedIndex]
                let target = Tick(min(Double(length), position))
                if target != shownTick {
                    seek(to: target)
                    dirty = true
                }
                if shownTick >= length {
                    showEnd = true
                    dirty = true
                }
            }
            last = t
            if dirty {
                let (w, h) = term.size
                if showEnd {
                    if history == nil { history = try? TerritoryHistory.derive(player, every: Tick(config.tickRate)) }
                    let frame = EndScreen(theme: term.theme).render(
                        world: state,
                        config: config,
                        history: history ?? TerritoryHistory(),
                        focus: nil,
                        footer: " replay over · Home: watch again · q: quit",
                        width: w,
                        height: h
                    )
                    term.draw(frame)
                } else {
                    let speed = ReplayViewer.speeds[speedIndex]
                    let speedText = speed < 1 ? "x\(speed)" : "x\(Int(speed))"
                    let status =
                        goto.map { "go to tick: \($0)_  (Enter to jump, Esc to cancel)" }
                        ?? "\(paused ? "paused" : "playing") \(speedText) · space pause · +/- speed · ←/→ seek · [ ] step · g go to · q quit"
                    let scene = ArenaScene(
                        world: state,
                        tick: shownTick,
                        config: config,
                        focus: focus,
                        title: "replay \(speedText) \(title)",
                        status: status,
                        paused: paused,
                        showHelp: help,
                        helpLines: ReplayViewer.helpLines
                    )
                    term.draw(renderer.render(scene, width: w, height: h))
                }
                dirty = false
            }
            term.wait(
                nanos: paused || showEnd
                    ? 100_000_000 : 1_000_000_000 / UInt64(rate * max(1, ReplayViewer.speeds[speedIndex]))
            )
        }
    }
}
