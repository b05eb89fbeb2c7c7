/// Where a running match's journal goes: chunks of encoded ops (`ReplayJournal.chunk`), appended
/// in order. The shell owns the file (opening, locking, syncing, deleting it once the replay is
/// saved); the loop only hands it bytes.
public protocol MatchJournal: AnyObject {
    func append(_ bytes: [UInt8])
}

/// What runs around each tick of a `MatchLoop`: the network I/O of a networked match (deliver the
/// ops that arrived, send what the tick made), and anything a front end wants per tick (a HUD's
/// history, a test's probe). Every method has a default that does nothing.
public protocol MatchHook<Controller> {
    associatedtype Controller: PlayerController
    /// Before `tick` runs: deliver the remote ops received so far (`match.deliver`), so the tick
    /// merges them.
    mutating func willRun(tick: Tick, match: inout LocalMatch<Controller>)
    /// After `tick` ran (`match.tick` is now `tick + 1`): send `match.outbox`, update displays.
    mutating func didRun(tick: Tick, match: inout LocalMatch<Controller>)
    /// The loop jumped from `from` to `to` after a stall without running the ticks in between.
    mutating func didSkip(from: Tick, to: Tick, match: inout LocalMatch<Controller>)
    /// Between ticks (`MatchLoop.mergeArrivals`): deliver the remote ops received so far, as
    /// `willRun` does; the loop merges them at once.
    mutating func between(match: inout LocalMatch<Controller>)
}

extension MatchHook {
    public mutating func willRun(tick: Tick, match: inout LocalMatch<Controller>) {}
    public mutating func didRun(tick: Tick, match: inout LocalMatch<Controller>) {}
    public mutating func didSkip(from: Tick, to: Tick, match: inout LocalMatch<Controller>) {}
    public mutating func between(match: inout LocalMatch<Controller>) {}
}

/// A hook that does nothing: a match with no network and nothing to show per tick.
public struct NoHook<Controller: PlayerController>: MatchHook {
    public init() {}
}

/// The match loop every front end shares (the terminal demo, `turf replay generate`, networked
/// peers): fixed-timestep ticks from a `TickStepper`, catch-up capped after a stall, a journal
/// flushed every `journalEvery` ticks, the recording at the end. It takes its controllers (keys,
/// bots, later remote peers' players are simply not among them) and a per-tick `MatchHook` for
/// I/O. It reads no clock: time is passed in (`advance(now:)`, `run(now:sleep:)`), so it runs
/// under curses, headless in real time, headless as fast as the CPU allows (`runToEnd`), or in a
/// test with a fake clock. Pausing and rematches are the front end's business: `resume(at:)`
/// re-anchors a clock nobody shares after a pause.
///
/// A loop is a value confined to the thread that runs it (the UI's, or a headless peer's); the
/// hook is where anything from another thread (the network's mailbox) crosses into the match.
public struct MatchLoop<Controller: PlayerController> {
    public typealias Game = Controller.Game

    public private(set) var match: LocalMatch<Controller>
    public private(set) var stepper: TickStepper
    public let journal: (any MatchJournal)?
    /// Ticks between journal flushes: a crash loses at most this much play.
    public let journalEvery: Tick
    /// Journal bytes appended so far (chunks of ops merged here).
    public private(set) var journalBytes = 0

    /// What one `advance` did.
    public struct Progress: Equatable, Sendable {
        /// The ticks that ran, in order.
        public var ran: Range<Tick>
        /// Ticks jumped over (not run) before them, after a stall.
        public var skipped: Tick
        public init(ran: Range<Tick>, skipped: Tick) {
            self.ran = ran
            self.skipped = skipped
        }
    }

    /// A loop over `match` whose tick 0 starts at `clock.origin`. With a journal, every op merged
    /// here is journaled.
    public init(
        match: LocalMatch<Controller>,
        clock: TickClock,
        maxCatchUp: Int = 4,
        journal: (any MatchJournal)? = nil,
        journalEvery: Tick = 10
    ) {
        precondition(journalEvery > 0)
        self.match = match
        self.stepper = TickStepper(clock: clock, startTick: match.tick, maxCatchUp: maxCatchUp)
        self.journal = journal
        self.journalEvery = journalEvery
        if journal != nil { self.match.recordJournal = true }
    }

    /// A loop over a new match of `config` with tick 0 starting at `start` (ns on the caller's
    /// monotonic clock).
    public init(
        config: MatchConfig,
        controllers: [PlayerID: Controller],
        start: UInt64,
        maxCatchUp: Int = 4,
        journal: (any MatchJournal)? = nil,
        journalEvery: Tick = 10
    ) throws {
        self.init(
            match: try LocalMatch(config: config, controllers: controllers),
            clock: TickClock(tickRate: UInt32(config.tickRate), origin: start),
            maxCatchUp: maxCatchUp,
            journal: journal,
            journalEvery: journalEvery
        )
    }

    public var config: MatchConfig { match.replica.config }
    public var replica: Replica<Game> { match.replica }
    /// The next tick to run.
    public var tick: Tick { match.tick }
    public var isOver: Bool { match.isOver }

    /// The controllers of the players this peer owns (a front end steers its human through this).
    public var controllers: [PlayerID: Controller] {
        get { match.controllers }
        set { match.controllers = newValue }
    }

    /// Queues a remote op for the next tick's merge (a hook usually does this in `willRun`).
    public mutating func deliver(_ op: Op<Game.Payload>) { match.deliver(op) }

    /// Runs every tick due at `now`: after a stall, jumps over all but the last `maxCatchUp` due
    /// ticks first. Each tick is wrapped in the hook's `willRun`/`didRun`; the journal is flushed
    /// after every tick that is a multiple of `journalEvery`. Returns what ran.
    @discardableResult
    public mutating func advance<H: MatchHook>(now: UInt64, hook: inout H) -> Progress
    where H.Controller == Controller {
        guard !match.isOver else { return Progress(ran: match.tick..<match.tick, skipped: 0) }
        let due = stepper.due(at: now)
        var skipped: Tick = 0
        if due.lowerBound > match.tick {
            let from = match.tick
            match.skip(to: due.lowerBound)
            skipped = match.tick - from
            hook.didSkip(from: from, to: match.tick, match: &match)
        }
        let first = match.tick
        for _ in due {
            guard !match.isOver else { break }
            runTick(hook: &hook)
        }
        return Progress(ran: first..<match.tick, skipped: skipped)
    }

    @discardableResult
    public mutating func advance(now: UInt64) -> Progress {
        var none = NoHook<Controller>()
        return advance(now: now, hook: &none)
    }

    /// Runs every remaining tick at once, ignoring the clock: a headless bot match, as fast as the
    /// CPU allows (`turf replay generate`, benchmarks).
    public mutating func runToEnd<H: MatchHook>(hook: inout H) where H.Controller == Controller {
        while !match.isOver { runTick(hook: &hook) }
        flushJournal()
    }

    public mutating func runToEnd() {
        var none = NoHook<Controller>()
        runToEnd(hook: &none)
    }

    /// Runs to the end in real time, headless: reads the time from `now`, and between ticks calls
    /// `sleep` with the nanoseconds until the next one is due (the hook's I/O happens per tick).
    /// `shouldStop` is asked once per wake-up (a signal, a quit message); returns whether the
    /// match ran to its end.
    @discardableResult
    public mutating func run<H: MatchHook>(
        now: () -> UInt64,
        sleep: (UInt64) -> Void,
        hook: inout H,
        shouldStop: () -> Bool = { false }
    ) -> Bool where H.Controller == Controller {
        while !match.isOver {
            if shouldStop() {
                flushJournal()
                return false
            }
            advance(now: now(), hook: &hook)
            if match.isOver { break }
            let wait = stepper.wait(from: now())
            if wait > 0 { sleep(wait) }
        }
        flushJournal()
        return true
    }

    /// Between ticks: the hook delivers what arrived (`MatchHook.between`) and it is merged now
    /// rather than at the next tick, so a front end can draw remote ops as soon as they come (the
    /// state after the next tick is the same: merges commute). Returns how many ops were new.
    @discardableResult
    public mutating func mergeArrivals<H: MatchHook>(hook: inout H) -> Int where H.Controller == Controller {
        guard !match.isOver else { return 0 }
        hook.between(match: &match)
        return match.mergeDelivered()
    }

    /// Nanoseconds from `now` until the next tick is due (0 if one is due already).
    public func wait(from now: UInt64) -> UInt64 { stepper.wait(from: now) }

    /// How many ticks the clock is ahead of the loop at `now`: 0 when on time. A front end whose
    /// clock nobody shares may pause when this grows large (the process was stopped).
    public func lag(at now: UInt64) -> Tick {
        let t = stepper.clock.tick(at: now)
        return t > stepper.nextTick ? t - stepper.nextTick : 0
    }

    /// After a pause: the next tick is due one tick after `now`. This moves the clock, so it is only
    /// for a match whose clock nobody shares (a local match against bots).
    public mutating func resume(at now: UInt64) { stepper.restart(at: now, tick: match.tick) }

    /// Shifts the shared clock (a better offset estimate); tick numbers never go backwards
    /// (`TickStepper.shiftClock`).
    public mutating func shiftClock(by offset: Int64) { stepper.shiftClock(by: offset) }

    /// Spreads a clock correction: applies at most `maxStep` ns of it, returns what is left
    /// (`TickStepper.slewClock`).
    public mutating func slewClock(by offset: Int64, maxStep: Int64) -> Int64 {
        stepper.slewClock(by: offset, maxStep: maxStep)
    }

    /// Merges a snapshot of this match before resuming it (a rejoining peer; `LocalMatch.merge`).
    public mutating func merge(_ snapshot: ReplicaSnapshot<Game>) throws { try match.merge(snapshot) }

    /// Appends the ops merged since the last flush to the journal, as one chunk.
    public mutating func flushJournal() {
        guard let journal, !match.journal.isEmpty else { return }
        let chunk = ReplayJournal.chunk(match.journal, as: Game.self)
        journal.append(chunk)
        journalBytes += chunk.count
        match.journal.removeAll(keepingCapacity: true)
    }

    /// The recording of everything merged so far (the journal is flushed first, so journal and
    /// replay hold the same ops).
    public mutating func recording() throws -> Replay<Game> {
        flushJournal()
        return try match.recording()
    }

    private mutating func runTick<H: MatchHook>(hook: inout H) where H.Controller == Controller {
        let t = match.tick
        hook.willRun(tick: t, match: &match)
        match.step()
        if match.tick % journalEvery == 0 { flushJournal() }
        hook.didRun(tick: t, match: &match)
    }
}
