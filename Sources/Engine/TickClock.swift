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

/// Fixed-timestep stepping with a cap on catch-up: after a stall, at most `maxCatchUp` ticks run
/// per call and the rest of the backlog is dropped by moving the clock's origin, so a slow machine
/// never spirals into ever more ticks per frame.
public struct TickStepper: Sendable {
    public private(set) var clock: TickClock
    /// The next tick to simulate.
    public private(set) var nextTick: Tick
    public let maxCatchUp: Int
    public private(set) var droppedTicks: UInt64 = 0

    public init(clock: TickClock, startTick: Tick = 0, maxCatchUp: Int = 4) {
        precondition(maxCatchUp > 0)
        self.clock = clock
        self.maxCatchUp = maxCatchUp
        nextTick = startTick
    }

    /// The ticks to simulate now, in order. Call once per frame with the current wall time.
    public mutating func due(at now: UInt64) -> Range<Tick> {
        let nowI = Int64(clamping: now)
        guard nowI >= clock.origin else { return nextTick..<nextTick }
        let target = clock.tick(at: now) + 1 // every tick whose start time has passed
        guard target > nextTick else { return nextTick..<nextTick }
        var behind = Int(target - nextTick)
        if behind > maxCatchUp {
            let drop = behind - maxCatchUp
            droppedTicks += UInt64(drop)
            clock.origin += Int64(drop) * clock.nanosPerTick
            behind = maxCatchUp
        }
        let r = nextTick..<(nextTick + Tick(behind))
        nextTick = r.upperBound
        return r
    }

    /// Nanoseconds from `now` until the next tick is due (0 if already due).
    public func wait(from now: UInt64) -> UInt64 {
        let t = clock.time(of: nextTick) - Int64(clamping: now)
        return t > 0 ? UInt64(t) : 0
    }

    /// Re-anchors after a pause or a seek: `tick` becomes the next tick, due one tick after `now`.
    public mutating func restart(at now: UInt64, tick: Tick) {
        nextTick = tick
        clock.origin = Int64(clamping: now) + clock.nanosPerTick - Int64(tick) * clock.nanosPerTick
    }
}
