import Engine
import TurfRules

/// A local match against bots in the terminal: keys, pausing, help, rendering, the end screen and
/// rematches, around the engine's `MatchLoop` (which runs the ticks, the journal and the recording).
public final class DemoApp {
    public struct Options {
        public var config: MatchConfig
        public var human: PlayerID
        public var wantColor: Bool
        public var unicode: Bool
        /// Test hook: crash deliberately at this tick, to check the terminal is restored on a crash.
        public var crashAtTick: Tick?
        /// Where stderr goes while curses runs (copied back to the terminal afterwards, or after a crash).
        public var stderrCapture: String?
        public init(
            config: MatchConfig,
            human: PlayerID = 0,
            wantColor: Bool,
            unicode: Bool,
            crashAtTick: Tick? = nil,
            stderrCapture: String? = nil
        ) {
            self.stderrCapture = stderrCapture
            self.config = config
            self.human = human
            self.wantColor = wantColor
            self.unicode = unicode
            self.crashAtTick = crashAtTick
        }
    }

    public enum Outcome: Equatable {
        case finished, quit
        case signal(Int32)
    }

    public static let helpLines = [
        "turf: paint the arena, hold the most cells when time runs out",
        "",
        "  arrows / WASD / hjkl   steer (you keep moving)",
        "  p or space             pause",
        "  ? or F1                this help",
        "  q                      quit (the match is saved)",
        "",
        "Every cell you enter becomes yours, even if it was someone else's.",
        "Grab a pickup (✱ or *) to splat your colour around it.",
        "Your avatar is the letter with @ (just @ on a crowded screen). Walls stop you.",
        "",
        "press any key",
    ]

    let options: Options
    /// Called with the recording when the match ends or is abandoned (the shell saves it).
    let record: (TurfReplay) -> String?
    /// Opens the journal of a round that starts (nil: no journal).
    let openJournal: (MatchConfig) -> RoundJournal?
    let now: () -> UInt64
    /// Ticks between journal flushes (the match loop flushes): a crash loses at most this much play.
    public static let journalEvery: Tick = 10

    public init(
        options: Options,
        now: @escaping () -> UInt64,
        record: @escaping (TurfReplay) -> String?,
        journal: @escaping (MatchConfig) -> RoundJournal? = { _ in nil }
    ) {
        self.options = options
        self.now = now
        self.record = record
        self.openJournal = journal
    }

    /// Runs matches until the player quits. Returns how it ended and where replays were saved.
    public func run() throws -> (Outcome, [String]) {
        let term = try CursesTerminal(
            wantColor: options.wantColor,
            unicode: options.unicode,
            stderrCapture: options.stderrCapture
        )
        defer { term.stop() }
        var saved: [String] = []
        var config = options.config
        while true {
            let journal = openJournal(config)
            let (outcome, replay) = try playRound(config: config, term: term, journal: journal)
            var kept = true
            if let replay, replay.opCount > 0, let path = record(replay) {
                saved.append(path)
                kept = false
            }
            if let replay, replay.opCount == 0 { kept = false }
            journal?.close(keep: kept)
            switch outcome {
            case .rematch:
                config.seed = config.seed &* 6364136223846793005 &+ 1442695040888963407
            case .done(let o):
                return (o, saved)
            }
        }
    }

    enum RoundEnd {
        case rematch
        case done(Outcome)
    }

    private func playRound(config: MatchConfig, term: CursesTerminal, journal: RoundJournal?) throws -> (
        RoundEnd, TurfReplay?
    ) {
        let human = options.human
        let rate = Tick(config.tickRate)
        var loop = TurfMatchLoop(
            match: try TurfMatch.local(config: config),
            clock: TickClock(tickRate: UInt32(rate), origin: now()),
            maxCatchUp: 4,
            journal: journal,
            journalEvery: DemoApp.journalEvery
        )
        var hook = DemoTickHook(crashAtTick: options.crashAtTick, names: config.players.map(\.name), rate: rate)
        let renderer = ArenaRenderer(theme: term.theme)
        var paused = false
        var help = false

        func recording() -> TurfReplay? { try? loop.recording() }

        while !loop.isOver {
            if let sig = term.quitSignal { return (.done(.signal(sig)), recording()) }
            for key in term.readKeys() {
                if help {
                    help = false
                    paused = false
                    loop.resume(at: now())
                    hook.dirty = true
                    continue
                }
                if let d = steering(key) {
                    loop.controllers[human]?.steer(d)
                    continue
                }
                switch key {
                case .char("q"), .char("Q"): return (.done(.quit), recording())
                case .char("p"), .char("P"), .char(" "):
                    paused.toggle()
                    if !paused { loop.resume(at: now()) }
                    hook.dirty = true
                case .char("?"):
                    help = true
                    paused = true
                    hook.dirty = true
                case .resize:
                    term.invalidate()
                    hook.dirty = true
                default: break
                }
            }
            // A local match shares its clock with nobody: when the process was stopped (Ctrl-Z) or
            // stalled for over a second, pause rather than let the round's time run out unseen.
            if !paused && loop.lag(at: now()) > rate {
                paused = true
                hook.dirty = true
            }
            // After a shorter stall the loop skips ticks (it keeps the clock, so our tick numbers
            // stay everyone's); nothing is made for the skipped ticks.
            if !paused { loop.advance(now: now(), hook: &hook) }
            if loop.tick > hook.statusUntil { hook.status = "" }
            if hook.dirty {
                let (w, h) = term.size
                let scene = ArenaScene(
                    world: loop.replica.state,
                    tick: min(loop.tick, config.lengthTicks),
                    config: config,
                    focus: human,
                    title: "turf",
                    status: paused && !help ? "paused: p or space resumes" : hook.status,
                    paused: paused,
                    showHelp: help,
                    helpLines: DemoApp.helpLines
                )
                term.draw(renderer.render(scene, width: w, height: h))
                hook.dirty = false
            }
            term.wait(nanos: paused ? 100_000_000 : loop.wait(from: now()))
        }

        var history = hook.history
        let match = loop.match
        history.record(tick: config.lengthTicks, scores: match.replica.state.scores)
        let replay = recording()
        let end = EndScreen(theme: term.theme)
        var endDirty = true
        while true {
            if let sig = term.quitSignal { return (.done(.signal(sig)), replay) }
            for key in term.readKeys() {
                switch key {
                case .char("q"), .char("Q"), .escape: return (.done(.finished), replay)
                case .char("r"), .char("R"): return (.rematch, replay)
                case .resize:
                    term.invalidate()
                    endDirty = true
                default: break
                }
            }
            if endDirty {
                let (w, h) = term.size
                term.draw(
                    end.render(
                        world: match.replica.state,
                        config: config,
                        history: history,
                        focus: human,
                        footer: " r: play again   q: quit",
                        width: w,
                        height: h
                    )
                )
                endDirty = false
            }
            term.wait(nanos: 200_000_000)
        }
    }
}
