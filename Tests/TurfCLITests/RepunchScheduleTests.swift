import NetCore
import Testing

@testable import turf

/// A relayed joiner keeps looking for the direct path for the whole match (docs/nat.md,
/// "Upgrading a relayed session"): fast for the first 30 s, then backing off to once a minute.
@Suite struct RepunchScheduleTests {
    @Test func fastForThirtySecondsThenBacksOffToAMinuteAndNeverStops() {
        var t: Nanos = Repunch.every  // the first round, after `start`
        var times: [Nanos] = [t]
        for round in 1..<100 {
            t += Repunch.delay(afterRound: round)
            times.append(t)
        }
        let seconds = times.map { Int($0 / 1_000_000_000) }
        // 15 rounds 2 s apart cover the first 30 s, as before.
        #expect(Array(seconds.prefix(15)) == Array(stride(from: 2, through: 30, by: 2)))
        // Then 4, 8, 16, 32 s apart, and every 60 s from then on.
        #expect(Array(seconds[15..<20]) == [34, 42, 58, 90, 150])
        #expect(zip(seconds.dropFirst(19), seconds.dropFirst(20)).allSatisfy { $1 - $0 == 60 })
        // An hour-long match behind a relay still looks, 77 times in all (not 1,800).
        let inAnHour = times.count(where: { $0 <= .seconds(3600) })
        #expect(seconds.last! > 3600 && inAnHour == 77)
        #expect(Repunch.delay(afterRound: 10_000) == .seconds(60))
    }
}
