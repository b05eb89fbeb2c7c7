/// The one mapping from ticks to wall time. Time comes in from outside (nanoseconds on a monotonic
/// clock); nothing here reads a clock. The networking layer aligns peers by moving `origin`.
public struct TickClock: Equatable, Sendable {
    public let tickRate: UInt32
    /// Wall time (ns) at which tick 0 starts. Signed: a clock rebased mid-match can start before 0.
    public var origin: Int64

    public init(tickRate: UInt32, origin: UInt64) {
        precondition(tickRate > 0)
        self.tickRate = tickRate
        self.origin = Int64(clamping: origin)
    }

    public var nanosPerTick: Int64 { 1_000_000_000 / Int64(tickRate) }

    /// The tick in progress at wall time `now` (0 before the origin).
    public func tick(at now: UInt64) -> Tick {
        let elapsed = Int64(clamping: now) - origin
        guard elapsed > 0 else { return 0 }
        return Tick(clamping: elapsed.multipliedFullWidth(by: Int64(tickRate)).low / 1_000_000_000)
    }

    /// Wall time at which `tick` starts.
    public func time(of tick: Tick) -> Int64 {
        origin + Int64(tick) * 1_000_000_000 / Int64(tickRate)
    }

    /// Shifts the origin by `offset` ns (positive: later), e.g. from a measured clock offset to a peer.
    public mutating func shift(by offset: Int64) { origin += offset }
}

/// Fixed-timestep stepping with a cap on catch-up. After a stall longer than `maxCatchUp` ticks,
/// only the last `maxCatchUp` due ticks run: the stepper jumps `nextTick` forward over the rest
/// (counted in `skippedTicks`) and the clock is left alone, so tick numbers stay those of every
/// other peer's clock (its origin is the one thing networking aligns; at the same cell the later
/// tick wins, so a peer whose ticks fell behind would lose every paint). The caller advances its
/// match over the skipped ticks without simulating them (`LocalMatch.skip(to:)`), so a slow machine
/// never spirals into ever more ticks per frame.
public struct TickStepper: Sendable {
    public private(set) var clock: TickClock
    /// The next tick to simulate.
    public private(set) var nextTick: Tick
    public let maxCatchUp: Int
    /// Ticks jumped over after stalls, never simulated.
    public private(set) var skippedTicks: UInt64 = 0

    public init(clock: TickClock, startTick: Tick = 0, maxCatchUp: Int = 4) {
        precondition(maxCatchUp > 0)
        self.clock = clock
        self.maxCatchUp = maxCatchUp
        nextTick = startTick
    }

    /// The ticks to simulate now, in order. Call once per frame with the current wall time. After a
    /// stall the range starts past the previous `nextTick`: the ticks in between are skipped, and
    /// the caller must move its tick counter to the range's lower bound before running it.
    public mutating func due(at now: UInt64) -> Range<Tick> {
        guard Int64(clamping: now) >= clock.origin else { return nextTick..<nextTick }
        let target = clock.tick(at: now) + 1  // every tick whose start time has passed
        guard target > nextTick else { return nextTick..<nextTick }
        var start = nextTick
        if Int(target - nextTick) > maxCatchUp {
            start = target - Tick(maxCatchUp)
            skippedTicks += UInt64(start - nextTick)
        }
        nextTick = target
        return start..<target
    }

    /// Nanoseconds from `now` until the next tick is due (0 if already due).
    public func wait(from now: UInt64) -> UInt64 {
        let t = clock.time(of: nextTick) - Int64(clamping: now)
        return t > 0 ? UInt64(t) : 0
    }

    /// Moves the running clock by `offset` ns (positive: later), as a networked peer's estimate of
    /// its offset to the shared clock improves during a match. Tick numbers never go backwards:
    /// `nextTick` is kept, so after a shift later nothing runs until the clock reaches `nextTick`
    /// again (no tick runs twice), and after a shift earlier the ticks that became due run at the
    /// next `due`, capped at `maxCatchUp` like after any stall (the rest are skipped and counted).
    public mutating func shiftClock(by offset: Int64) { clock.shift(by: offset) }

    /// Applies at most `maxStep` ns (≥ 0; in either direction) of a wanted correction of `offset` ns,
    /// and returns the part still to apply: called once a tick, a large correction is spread over
    /// several ticks, so the match neither freezes nor jumps when an estimate moves a lot.
    public mutating func slewClock(by offset: Int64, maxStep: Int64) -> Int64 {
        let m = max(0, maxStep)
        let step = max(-m, min(m, offset))
        clock.shift(by: step)
        return offset - step
    }

    /// Re-anchors after a pause or a seek: `tick` becomes the next tick, due one tick after `now`.
    /// This moves the clock's origin, so it is for matches whose clock nobody shares (a local match
    /// against bots, the replay viewer); a networked match never pauses.
    public mutating func restart(at now: UInt64, tick: Tick) {
        nextTick = tick
        clock.origin = Int64(clamping: now) + clock.nanosPerTick - Int64(tick) * clock.nanosPerTick
    }
}
