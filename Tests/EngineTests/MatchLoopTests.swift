import Determinism
import Engine
import Keys
import Testing

/// A journal that keeps what it is given, in memory.
final class MemoryJournal: MatchJournal {
    var bytes: [UInt8]
    var appends = 0
    init(config: MatchConfig) { bytes = ReplayJournal.header(config) }
    func append(_ chunk: [UInt8]) {
        bytes += chunk
        appends += 1
    }
}

/// Records what the loop did around each tick.
struct ProbeHook: MatchHook {
    typealias Controller = Bidder
    var before: [Tick] = []
    var after: [Tick] = []
    var skips: [(Tick, Tick)] = []
    mutating func willRun(tick: Tick, match: inout LocalMatch<Bidder>) {
        #expect(match.tick == tick)
        before.append(tick)
    }
    mutating func didRun(tick: Tick, match: inout LocalMatch<Bidder>) {
        #expect(match.tick == tick + 1)
        after.append(tick)
    }
    mutating func didSkip(from: Tick, to: Tick, match: inout LocalMatch<Bidder>) { skips.append((from, to)) }
}

/// A lossless link with a fixed delay, in ticks, between the peers of a test: what a peer's hook
/// sends after a tick arrives `delay` ticks later.
final class DelayLink {
    var inFlight: [(due: Tick, to: Int, op: Op<MaxBoard.Bid>)] = []
    let delay: Tick
    init(delay: Tick) { self.delay = delay }
}

/// A networked peer's hook, as host/join will write it: before a tick, deliver what has arrived;
/// after it, send the tick's own ops to every other peer.
struct LinkHook: MatchHook {
    typealias Controller = Bidder
    let me: Int
    let peers: Int
    let link: DelayLink
    var sent = 0
    mutating func willRun(tick: Tick, match: inout LocalMatch<Bidder>) {
        for m in link.inFlight where m.to == me && m.due <= tick { match.deliver(m.op) }
        link.inFlight.removeAll { $0.to == me && $0.due <= tick }
    }
    mutating func didRun(tick: Tick, match: inout LocalMatch<Bidder>) {
        for op in match.outbox {
            for p in 0..<peers where p != me { link.inFlight.append((tick + link.delay, p, op)) }
            sent += 1
        }
        match.outbox.removeAll()
    }
}

@Suite struct MatchLoopTests {
    static let tickNanos: UInt64 = 100_000_000  // MaxBoard configs run at 10 Hz

    func bidders(_ config: MatchConfig, owned: [PlayerID]? = nil) -> [PlayerID: Bidder] {
        var c: [PlayerID: Bidder] = [:]
        for p in owned ?? config.players(ownedBy: nil) { c[p] = Bidder(seed: config.seed, player: p) }
        return c
    }

    /// Driven by a fake clock one frame at a time, the loop runs each tick once, in order, when it
    /// is due, and records the same match as running it flat out.
    @Test func aFakeClockDrivesEveryTickOnceInOrder() throws {
        let config = MaxBoard.config(seed: 5, players: 3, slots: 8, ticks: 120)
        let start: UInt64 = 7_000_000_000
        var loop = try MatchLoop(config: config, controllers: bidders(config), start: start)
        var hook = ProbeHook()
        var now = start
        var frames = 0
        while !loop.isOver {
            let before = loop.tick
            let p = loop.advance(now: now, hook: &hook)
            #expect(p.skipped == 0)
            #expect(p.ran.lowerBound == before)
            // Tick t is due from start + t × 100 ms: exactly the ticks whose start has passed ran.
            #expect(loop.tick == min(Tick((now - start) / Self.tickNanos) + 1, 121))
            now += 25_000_000  // 40 frames a second
            frames += 1
        }
        #expect(hook.before == Array(0...120))
        #expect(hook.after == Array(0...120))
        #expect(frames >= 480 && frames <= 485)

        var flat = try MatchLoop(config: config, controllers: bidders(config), start: 0)
        flat.runToEnd()
        let a = try loop.recording()
        let b = try flat.recording()
        #expect(a.finalHash == b.finalHash)
        #expect(a.logs == b.logs)
        #expect(a.opCount > 20)
    }

    /// After a stall the loop jumps over all but the last 4 due ticks, tells the hook, and asks no
    /// controller about the ticks it skipped.
    @Test func aStallSkipsTicksWithoutMakingOpsForThem() throws {
        let config = MaxBoard.config(seed: 8, players: 2, slots: 8, ticks: 300)
        var loop = try MatchLoop(config: config, controllers: bidders(config), start: 0)
        var hook = ProbeHook()
        var now: UInt64 = 0
        for _ in 0..<10 {
            loop.advance(now: now, hook: &hook)
            now += Self.tickNanos
        }
        #expect(loop.tick == 10)
        now += 5_000_000_000  // a 5-second stall: the clock is at tick 60
        #expect(loop.lag(at: now) == 50)
        let p = loop.advance(now: now, hook: &hook)
        #expect(p.ran == 57..<61)
        #expect(p.skipped == 47)
        #expect(hook.skips.count == 1 && hook.skips[0] == (10, 57))
        #expect(hook.before == Array(0..<10) + Array(57..<61))
        #expect(loop.lag(at: now) == 0)
        #expect(loop.stepper.skippedTicks == 47)
        for (_, bidder) in loop.controllers { #expect(bidder.askedTicks == Array(0..<10) + Array(57..<61)) }
    }

    /// A pause is the front end's: it stops calling `advance`, then `resume` re-anchors the clock
    /// so the match goes on from where it stopped, nothing skipped.
    @Test func resumingAfterAPauseSkipsNothing() throws {
        let config = MaxBoard.config(seed: 2, players: 2, slots: 4, ticks: 100)
        var loop = try MatchLoop(config: config, controllers: bidders(config), start: 0)
        var now: UInt64 = 0
        for _ in 0..<20 {
            loop.advance(now: now)
            now += Self.tickNanos
        }
        now += 60_000_000_000  // paused for a minute
        loop.resume(at: now)
        #expect(loop.advance(now: now).ran.isEmpty)
        now += Self.tickNanos
        let p = loop.advance(now: now)
        #expect(p.ran == 20..<21 && p.skipped == 0)
        #expect(loop.stepper.skippedTicks == 0)
    }

    /// Headless in real time with a fake clock: `sleep` is the only thing that moves time, and the
    /// loop sleeps exactly until each tick is due.
    @Test func runsHeadlessInRealTimeWithAFakeClock() throws {
        let config = MaxBoard.config(seed: 3, players: 4, slots: 8, ticks: 50)
        let start: UInt64 = 1_000
        var loop = try MatchLoop(config: config, controllers: bidders(config), start: start)
        var now = start
        var sleeps = 0
        var hook = ProbeHook()
        let finished = loop.run(
            now: { now },
            sleep: { ns in
                now += ns
                sleeps += 1
            },
            hook: &hook
        )
        #expect(finished)
        #expect(loop.isOver)
        #expect(hook.before == Array(0...50))
        #expect(sleeps == 50)
        #expect(now == start + 50 * Self.tickNanos)
        #expect(loop.stepper.skippedTicks == 0)

        now = start
        var stopped = try MatchLoop(config: config, controllers: bidders(config), start: start)
        var wakeups = 0
        let ended = stopped.run(
            now: { now },
            sleep: { now += $0 },
            hook: &hook,
            shouldStop: {
                wakeups += 1
                return wakeups > 5
            }
        )
        #expect(!ended)
        #expect(stopped.tick == 5)
    }

    /// The journal gets a chunk every `journalEvery` ticks (and the rest when the recording is
    /// taken); recovering it rebuilds exactly the recorded match.
    @Test func theJournalIsFlushedEveryFewTicksAndRecoversTheMatch() throws {
        let config = MaxBoard.config(seed: 11, players: 3, slots: 8, ticks: 95)
        let journal = MemoryJournal(config: config)
        var loop = try MatchLoop(
            config: config,
            controllers: bidders(config),
            start: 0,
            journal: journal,
            journalEvery: 10
        )
        var now: UInt64 = 0
        while loop.tick < 10 {
            loop.advance(now: now)
            now += Self.tickNanos
        }
        #expect(journal.appends == 1)
        let afterTen = try ReplayJournal.recover(journal.bytes, as: MaxBoard.self)
        #expect(afterTen.replay.opCount == loop.replica.allLogs.reduce(0) { $0 + $1.count })
        while !loop.isOver {
            loop.advance(now: now)
            now += Self.tickNanos
        }
        #expect(journal.appends == 9)  // ticks 10, 20, …, 90
        let replay = try loop.recording()
        #expect(journal.appends == 10)  // the last 6 ticks, flushed with the recording
        #expect(loop.journalBytes == journal.bytes.count - ReplayJournal.header(config).count)
        let rec = try ReplayJournal.recover(journal.bytes, as: MaxBoard.self)
        #expect(rec.replay.logs == replay.logs)
        #expect(rec.replay.finalHash == replay.finalHash)
    }

    /// The seam host/join builds on: three peers, each running its own loop on its own clock and
    /// owning its player (by key), exchange ops through their hooks over a delayed link. All end
    /// with the same state, and each one's replay says who played.
    @Test func peersOwningTheirPlayersConvergeThroughTheirHooks() throws {
        let keys = (0..<3).map { i in PeerKey(bytes: [UInt8](repeating: UInt8(0xA0 + i), count: 32))! }
        var config = MaxBoard.config(seed: 17, players: 3, slots: 6, ticks: 150)
        for i in 0..<3 { config.players[i].owner = keys[i] }
        let link = DelayLink(delay: 3)
        var loops: [MatchLoop<Bidder>] = []
        var hooks: [LinkHook] = []
        for i in 0..<3 {
            let owned = config.players(ownedBy: keys[i])
            #expect(owned == [PlayerID(i)])
            var match = try LocalMatch(config: config, controllers: bidders(config, owned: owned))
            match.recordOutbox = true
            // Clocks differ by a few ms: each peer maps the agreed start onto its own clock.
            loops.append(MatchLoop(match: match, clock: TickClock(tickRate: 10, origin: UInt64(i) * 3_000_000)))
            hooks.append(LinkHook(me: i, peers: 3, link: link))
        }
        var now: UInt64 = 0
        while loops.contains(where: { !$0.isOver }) {
            for i in 0..<3 { loops[i].advance(now: now, hook: &hooks[i]) }
            now += 20_000_000
        }
        // Ops still in flight at the end arrive late, as they would on a network.
        var finals: [UInt64] = []
        for i in 0..<3 {
            var replica = loops[i].replica
            for m in link.inFlight where m.to == i { replica.receive(m.op) }
            finals.append(replica.hash)
            #expect(hooks[i].sent == replica.allLogs[i].count)
            #expect(replica.config.players[i].owner == keys[i])
        }
        #expect(Set(finals).count == 1)
        #expect(hooks.allSatisfy { $0.sent > 10 })
    }
}
