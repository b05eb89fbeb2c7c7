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
        // A 10-second stall: only 4 ticks run, the backlog is dropped, and stepping resumes evenly.
        let r = s.due(at: 10_034_000_000)
        #expect(r == 2..<6)
        #expect(s.droppedTicks > 290)
        #expect(s.due(at: 10_034_000_000).isEmpty)
        #expect(s.due(at: 10_034_000_000 + 33_400_000) == 6..<7)
    }

    @Test func restartAfterAPause() {
        var s = TickStepper(clock: TickClock(tickRate: 10, origin: 0))
        _ = s.due(at: 0)
        s.restart(at: 5_000_000_000, tick: 1)
        #expect(s.due(at: 5_050_000_000).isEmpty)
        #expect(s.due(at: 5_100_000_000) == 1..<2)
    }
}
