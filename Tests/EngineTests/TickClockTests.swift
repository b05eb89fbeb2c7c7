import Engine
import Testing

@Suite struct TickClockTests {
    @Test func mapsTicksToTimeBothWays() {
        var c = TickClock(tickRate: 30, origin: 1_000_000_000)
        #expect(c.tick(at: 0) == 0)
        #expect(c.tick(at: 1_000_000_000) == 0)
        #expect(c.tick(at: 2_000_000_000) == 30)
        #expect(c.time(of: 30) == 2_000_000_000)
        c.shift(by: -500_000_000)
        #expect(c.tick(at: 2_000_000_000) == 45)
    }

    @Test func stepsAtTheTickRateAndCapsCatchUp() {
        var s = TickStepper(clock: TickClock(tickRate: 30, origin: 0), maxCatchUp: 4)
        #expect(s.due(at: 0) == 0..<1)
        #expect(s.due(at: 10_000_000) == 1..<1)
        #expect(s.due(at: 34_000_000) == 1..<2)
        #expect(s.wait(from: 34_000_000) == 66_666_666 - 34_000_000)
        // A 10-second stall: only the last 4 due ticks run, the ones before are skipped, and
        // stepping resumes evenly.
        let r = s.due(at: 10_034_000_000)
        #expect(r == 298..<302)
        #expect(s.skippedTicks == 296)
        #expect(s.due(at: 10_034_000_000).isEmpty)
        #expect(s.due(at: 10_034_000_000 + 33_400_000) == 302..<303)
    }

    /// The clock is what peers agree on: a stall must not move it, so the ticks this peer runs
    /// after a stall are the ticks every other peer's clock shows at that time.
    @Test func aStallKeepsTheSharedClockAndTicksStayAlignedWithPeers() {
        let shared = TickClock(tickRate: 30, origin: 5_000_000_000)
        var stalled = TickStepper(clock: shared, maxCatchUp: 4)
        var steady = TickStepper(clock: shared, maxCatchUp: 4)
        var now: UInt64 = 5_000_000_000
        var lastStalled: Tick = 0
        var lastSteady: Tick = 0
        for frame in 0..<600 {
            now += 16_000_000  // 60 frames a second
            if let t = steady.due(at: now).last { lastSteady = t }
            // The stalled peer misses every frame from 2 s to 7 s (e.g. suspended), then runs again.
            if !(125..<440).contains(frame), let t = stalled.due(at: now).last { lastStalled = t }
        }
        #expect(stalled.clock == shared)
        #expect(stalled.skippedTicks > 100)
        #expect(lastStalled == lastSteady)
        #expect(lastStalled == shared.tick(at: now))
        #expect(stalled.nextTick == steady.nextTick)
    }

    /// The demo's loop: after a stall the match jumps over the skipped ticks without making ops for
    /// them, and resumes at the clock's tick.
    @Test func aLocalMatchSkipsTheTicksTheStepperSkipped() throws {
        var match = try maxBoardMatch(seed: 3, players: 2, ticks: 600)
        var s = TickStepper(clock: TickClock(tickRate: 10, origin: 0), maxCatchUp: 4)
        func frame(_ now: UInt64) {
            let due = s.due(at: now)
            if due.lowerBound > match.tick { match.skip(to: due.lowerBound) }
            for t in due {
                #expect(match.tick == t)
                match.step()
            }
        }
        var now: UInt64 = 0
        for _ in 0..<20 {
            frame(now)
            now += 100_000_000
        }
        #expect(match.tick == 20)
        now += 30_000_000_000  // a 30-second stall
        frame(now)
        #expect(match.tick == 321)  // the clock's tick 320 has run; 20..<317 were skipped
        #expect(s.skippedTicks == 297)
        for p: PlayerID in 0..<2 {
            let asked = match.controllers[p]!.askedTicks
            #expect(asked == Array(0..<20) + Array(317..<321))
            #expect(match.replica.allLogs[Int(p)].allSatisfy { $0.tick < 20 || $0.tick >= 317 })
        }
        // Skipping never goes back, nor past the end of the match.
        match.skip(to: 5)
        #expect(match.tick == 321)
        match.skip(to: 10_000)
        #expect(match.tick == 601)
        #expect(match.isOver)
    }

    @Test func restartAfterAPause() {
        var s = TickStepper(clock: TickClock(tickRate: 10, origin: 0))
        _ = s.due(at: 0)
        s.restart(at: 5_000_000_000, tick: 1)
        #expect(s.due(at: 5_050_000_000).isEmpty)
        #expect(s.due(at: 5_100_000_000) == 1..<2)
    }

    /// A running stepper's clock moves as the offset estimate improves; the ticks it hands out
    /// never repeat and never go back, whichever way the clock moves.
    @Test func shiftingTheClockNeverMovesTicksBackwards() {
        var s = TickStepper(clock: TickClock(tickRate: 30, origin: 0), maxCatchUp: 4)
        var ran: [Tick] = []
        var now: UInt64 = 0
        func frames(_ n: Int) {
            for _ in 0..<n {
                ran += Array(s.due(at: now))
                now += 10_000_000
            }
        }
        frames(100)  // 1 s: ticks 0...29
        #expect(ran == Array(0...29))
        // The clock moves 200 ms later: the stepper waits until the clock is back at its next tick.
        s.shiftClock(by: 200_000_000)
        #expect(s.clock.origin == 200_000_000)
        #expect(s.nextTick == 30)
        frames(20)  // 200 ms: the shifted clock is still before tick 30
        #expect(ran.count == 30)
        frames(100)
        #expect(ran == Array(0..<ran.count).map { Tick($0) })
        #expect(s.nextTick == s.clock.tick(at: now - 10_000_000) + 1)
        // The clock moves 100 ms earlier: four ticks are due at once (one was due anyway), run in
        // one catch-up.
        let before = s.nextTick
        s.shiftClock(by: -100_000_000)
        let burst = s.due(at: now)
        #expect(burst.lowerBound == before && burst.count == 4)
        #expect(s.skippedTicks == 0)
        // A full second earlier: catch-up is capped, the rest skipped, still never backwards.
        s.shiftClock(by: -1_000_000_000)
        let jump = s.due(at: now)
        #expect(jump.count == 4 && jump.lowerBound > burst.upperBound)
        #expect(s.skippedTicks == UInt64(jump.lowerBound - burst.upperBound))
        #expect(jump.upperBound == s.clock.tick(at: now) + 1)
    }

    /// A large correction applied a step at a time, so the match neither freezes nor jumps.
    @Test func slewingSpreadsACorrection() {
        var s = TickStepper(clock: TickClock(tickRate: 30, origin: 1_000_000_000), maxCatchUp: 4)
        var left: Int64 = 10_000_000
        var steps = 0
        while left != 0 {
            left = s.slewClock(by: left, maxStep: 3_000_000)
            steps += 1
        }
        #expect(steps == 4)
        #expect(s.clock.origin == 1_010_000_000)
        #expect(s.slewClock(by: -5_000_000, maxStep: 2_000_000) == -3_000_000)
        #expect(s.clock.origin == 1_008_000_000)
        #expect(s.slewClock(by: 7, maxStep: 0) == 7)  // a zero step moves nothing
        #expect(s.clock.origin == 1_008_000_000)
    }
}
