import Engine
import TurfRules

/// What the demo does around each tick of its match loop: the test crash, the score history for
/// the end screen's chart, and the pickup news on the status line.
struct DemoTickHook: MatchHook {
    typealias Controller = TurfController
    let crashAtTick: Tick?
    let names: [String]
    let rate: Tick
    var history = TerritoryHistory()
    var news = PickupNews()
    var status = ""
    var statusUntil: Tick = 0
    /// Something changed since the last frame was drawn.
    var dirty = true

    mutating func willRun(tick: Tick, match: inout TurfLocalMatch) {
        if let crash = crashAtTick, tick >= crash {
            fatalError("deliberate crash at tick \(tick) (TURF_DEBUG_CRASH_AT_TICK)")
        }
    }

    mutating func didRun(tick: Tick, match: inout TurfLocalMatch) {
        if tick % rate == 0 { history.record(tick: tick, scores: match.replica.state.scores) }
        if let n = news.update(world: match.replica.state, names: names) {
            status = n
            statusUntil = match.tick + 3 * rate
        }
        dirty = true
    }

    mutating func didSkip(from: Tick, to: Tick, match: inout TurfLocalMatch) { dirty = true }
}

/// Reports pickups collected between two states, for the status line.
struct PickupNews {
    private var known: [PlayerID?] = []

    mutating func update(world: TurfWorld, names: [String]) -> String? {
        if known.count != world.schedule.pickups.count {
            known = Array(repeating: nil, count: world.schedule.pickups.count)
        }
        var news: String?
        for i in known.indices {
            let c = world.collector(of: i)
            if c != known[i], let p = c {
                news = "Splat! \(names[Int(p)]) grabbed a pickup and painted the area around it."
            }
            known[i] = c
        }
        return news
    }
}
