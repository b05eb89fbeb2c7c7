import Determinism
import Engine
import Keys
import NetMatch
import Sodium

/// A whole networked match in one process, in virtual time, over an in-memory network with a
/// seeded link conditioner: every peer runs the real `NetMatch` and its own `LocalMatch`. Used by
/// the chaos tests and `turf bench netmatch`. Deterministic for a seed.
package struct NetMatchSim<Controller: PlayerController> {
    package typealias Game = Controller.Game

    package struct Conditions: Sendable {
        /// Base one-way delay (half the RTT).
        package var oneWayNanos: UInt64 = 40_000_000
        /// Added to each datagram's delay: uniform in 0...jitterNanos (so datagrams reorder).
        package var jitterNanos: UInt64 = 10_000_000
        package var loss: Double = 0
        package var duplicate: Double = 0
        /// One peer (by index) cut off from every other between these times (ns).
        package var partition: (peer: Int, from: UInt64, to: UInt64)?
        /// Pairs of peers (by index) whose direct link is down for the whole match.
        package var cutPairs: [(Int, Int)] = []
        /// One peer (by index) crashes at this time (ns) and never comes back: it stops ticking,
        /// sending and receiving. The survivors must settle without it (docs/netmatch.md).
        package var crash: (peer: Int, at: UInt64)?
        /// Ticks the sim runs on after the match end for delivery to finish.
        package var settleTicks: Tick = 300
        package init() {}
    }

    package struct Result: Sendable {
        package var finalHashes: [UInt64]
        /// Per peer, the cheats its final replica found (where each cheater's log stops, and why).
        package var cheats: [[Replica<Game>.Cheat]]
        /// Every peer ended with the same replica hash, equal to the union of every owner's log,
        /// with a verified signature covering every op. With a crash: every survivor settled, with
        /// the same hash, equal to the union of the owners' logs where a gone player's log is cut to
        /// the count the survivors agreed (the crashed peer's hash is not compared).
        package var converged: Bool
        /// Per peer, the players it settled gone (a crashed peer's own entry is empty).
        package var gone: [[PlayerID]]
        /// Per peer, whether its `NetMatch` settled.
        package var settled: [Bool]
        package var signaturesOK: Bool
        /// Max over directed links of bytes sent per second of match (headers included).
        package var maxBytesPerSecPerLink: Double
        /// Per remote op merged into a peer's match: merge time − make time − base one-way (ms).
        package var opLagMs: [Double]
        /// The same, when the op was accepted (arrival), before waiting for the next tick.
        package var opLagAtArrivalMs: [Double]
        package var events: [[NetMatchEvent]]
        package var drops: [NetMatchDrops]
        package var maxTickSkewMs: Double
        /// Ops sent by a peer other than their owner, over all links.
        package var relayed: UInt64
    }

    package let config: MatchConfig
    package let keys: [Ed25519.KeyPair]
    package var conditions: Conditions
    package var options: NetMatchOptions
    package var seed: UInt64
    /// Test hook: called once per peer after it is built (e.g. to force a desync).
    package var prepare: (Int, inout NetMatch<Game>) -> Void = { _, _ in }

    private let makeControllers: (PeerKey) -> [PlayerID: Controller]

    package init(
        config: MatchConfig,
        keys: [Ed25519.KeyPair],
        conditions: Conditions,
        seed: UInt64,
        options: NetMatchOptions = NetMatchOptions(),
        controllers: @escaping (PeerKey) -> [PlayerID: Controller]
    ) {
        self.config = config
        self.keys = keys
        self.conditions = conditions
        self.seed = seed
        self.options = options
        self.makeControllers = controllers
    }

    private struct Datagram {
        var time: UInt64
        var order: UInt64
        var from: Int
        var to: Int
        var bytes: [UInt8]
    }

    package func run() throws -> Result {
        let n = keys.count
        let ownerKeys = keys.map { PeerKey(bytes: $0.publicKey)! }
        var rng = SplitMix64(seed: seed, stream: 0x6E65_746D)
        var nets: [NetMatch<Game>] = []
        var matches: [LocalMatch<Controller>] = []
        for i in 0..<n {
            var net = try NetMatch<Game>(config: config, identity: keys[i], now: 0, options: options)
            prepare(i, &net)
            nets.append(net)
            var m = try LocalMatch(config: config, controllers: makeControllers(ownerKeys[i]))
            m.recordOutbox = true
            matches.append(m)
        }
        let index = Dictionary(uniqueKeysWithValues: ownerKeys.enumerated().map { ($1, $0) })
        var heap = Heap<Datagram>(less: { ($0.time, $0.order) < ($1.time, $1.order) })
        var order: UInt64 = 0
        var inbox = [[Op<Game.Payload>]](repeating: [], count: n)
        var leftovers = [[Op<Game.Payload>]](repeating: [], count: n)
        // Ops taken back after a peer's match ended (an owner lied to it), for its final replica.
        var lateRetractions = [[(player: PlayerID, from: UInt32)]](repeating: [], count: n)
        var bytes = [[UInt64]](repeating: [UInt64](repeating: 0, count: n), count: n)
        var events = [[NetMatchEvent]](repeating: [], count: n)
        var lag: [Double] = []
        var lagArrival: [Double] = []
        let tickNs = UInt64(1_000_000_000 / UInt64(config.tickRate))
        let oneWayMs = Double(conditions.oneWayNanos) / 1e6
        let matchEnd = UInt64(config.lengthTicks + 1) * tickNs

        func partitioned(_ a: Int, _ b: Int, _ t: UInt64) -> Bool {
            guard let p = conditions.partition else { return false }
            return (a == p.peer || b == p.peer) && t >= p.from && t < p.to
        }
        func cut(_ a: Int, _ b: Int, _ t: UInt64) -> Bool {
            partitioned(a, b, t)
                || conditions.cutPairs.contains { ($0.0 == a && $0.1 == b) || ($0.0 == b && $0.1 == a) }
        }

        func crashed(_ i: Int, _ t: UInt64) -> Bool {
            guard let c = conditions.crash else { return false }
            return c.peer == i && t >= c.at
        }

        let lastTick = config.lengthTicks + 1 + conditions.settleTicks
        var tick: Tick = 0
        while tick <= lastTick {
            let now = UInt64(tick) * tickNs
            while let d = heap.peek, d.time <= now {
                _ = heap.pop()
                let to = d.to
                if crashed(to, d.time) { continue }
                nets[to].receive(d.bytes, from: ownerKeys[d.from], now: d.time)
                for r in nets[to].takeRetractions() {
                    inbox[to].removeAll { $0.player == r.player && $0.seq >= r.from }
                    leftovers[to].removeAll { $0.player == r.player && $0.seq >= r.from }
                    if matches[to].isOver {
                        lateRetractions[to].append(r)
                    } else {
                        matches[to].retract(r.player, from: r.from)
                    }
                }
                for op in nets[to].takeAccepted() {
                    lagArrival.append(Double(d.time) / 1e6 - Double(UInt64(op.tick) * tickNs) / 1e6 - oneWayMs)
                    if matches[to].isOver { leftovers[to].append(op) } else { inbox[to].append(op) }
                }
            }
            for i in 0..<n where !crashed(i, now) {
                if !matches[i].isOver {
                    for op in inbox[i] {
                        matches[i].deliver(op)
                        lag.append(Double(now) / 1e6 - Double(UInt64(op.tick) * tickNs) / 1e6 - oneWayMs)
                    }
                    inbox[i].removeAll()
                    let ran = matches[i].tick
                    matches[i].step()
                    let ops = matches[i].outbox
                    matches[i].outbox.removeAll()
                    nets[i].addLocal(ops, ranTick: ran, now: now)
                } else if !inbox[i].isEmpty {
                    leftovers[i].append(contentsOf: inbox[i])
                    inbox[i].removeAll()
                }
                for d in nets[i].poll(now: now) {
                    let j = index[d.to]!
                    if now < matchEnd { bytes[i][j] += UInt64(d.bytes.count + options.datagramOverhead) }
                    if cut(i, j, now) || rng.unit() < conditions.loss { continue }
                    let copies = rng.unit() < conditions.duplicate ? 2 : 1
                    for _ in 0..<copies {
                        let delay =
                            conditions.oneWayNanos
                            + (conditions.jitterNanos > 0 ? rng.below(conditions.jitterNanos + 1) : 0)
                        order += 1
                        heap.push(Datagram(time: now + delay, order: order, from: i, to: j, bytes: d.bytes))
                    }
                }
                events[i].append(contentsOf: nets[i].takeEvents())
            }
            // (A test's equivocating peer is not waited for: the others never agree with it.)
            let done = (0..<n).allSatisfy {
                crashed($0, now) || nets[$0].isSettled || nets[$0].testingEquivocate != nil
            }
            if tick > config.lengthTicks && done { break }
            tick += 1
        }

        // Final replicas: what each match merged plus what arrived after its end, each gone
        // player's log cut to the count the survivors agreed (what turf records).
        let survivors = (0..<n).filter { !crashed($0, .max) }
        var hashes: [UInt64] = []
        var cheats: [[Replica<Game>.Cheat]] = []
        var sigsOK = true
        for i in 0..<n {
            var r = matches[i].replica
            for t in lateRetractions[i] { r.retract(t.player, from: t.from) }
            for op in inbox[i] + leftovers[i] { r.receive(op) }
            if nets[i].cutsLogs {
                var cut = try Replica<Game>(config: config)
                for ops in nets[i].settledLogs(r.allLogs) { for op in ops { cut.receive(op) } }
                r = cut
            }
            for v in nets[i].verdicts { r.applyVerdict(v.player, fromSeq: v.seq, rule: v.rule, tick: v.tick) }
            hashes.append(r.hash)
            cheats.append(r.cheats)
            if survivors.contains(i),
                OpChain.check(config: config, logs: r.allLogs, statements: nets[i].statements, as: Game.self) != nil
            {
                sigsOK = false
            }
        }
        // The union of every owner's own log (a gone player's cut as the first survivor cut it).
        var union = try Replica<Game>(config: config)
        // A peer told to equivocate (a test's cheater) is not judged: it never voids its own log.
        let honest = survivors.filter { nets[$0].testingEquivocate == nil }
        let judge = honest.first.map { nets[$0] }
        for i in 0..<n {
            for p in config.players(ownedBy: ownerKeys[i]) {
                let keep = judge?.settledCount(p) ?? .max
                for op in matches[i].replica.ops(of: p, from: 0) where Int(op.seq) < keep { union.receive(op) }
            }
        }
        for v in judge?.verdicts ?? [] { union.applyVerdict(v.player, fromSeq: v.seq, rule: v.rule, tick: v.tick) }
        let settled = (0..<n).map { nets[$0].isSettled }
        let converged =
            sigsOK && honest.allSatisfy { hashes[$0] == union.hash && (conditions.crash == nil || settled[$0]) }
        let seconds = Double(matchEnd) / 1e9
        let maxBytes = bytes.flatMap { $0 }.max() ?? 0
        return Result(
            finalHashes: hashes,
            cheats: cheats,
            converged: converged,
            gone: (0..<n).map { crashed($0, .max) ? [] : nets[$0].gonePlayers },
            settled: settled,
            signaturesOK: sigsOK,
            maxBytesPerSecPerLink: Double(maxBytes) / seconds,
            opLagMs: lag,
            opLagAtArrivalMs: lagArrival,
            events: events,
            drops: nets.map { $0.drops },
            maxTickSkewMs: 0,
            relayed: (0..<n).reduce(0) { acc, i in
                acc + ownerKeys.reduce(0) { $0 + (nets[i].stats(for: $1)?.opsForwarded ?? 0) }
            }
        )
    }
}

/// A binary min-heap.
struct Heap<Element> {
    private var items: [Element] = []
    private let less: (Element, Element) -> Bool
    init(less: @escaping (Element, Element) -> Bool) { self.less = less }
    var isEmpty: Bool { items.isEmpty }
    var peek: Element? { items.first }
    mutating func push(_ e: Element) {
        items.append(e)
        var i = items.count - 1
        while i > 0 {
            let parent = (i - 1) / 2
            guard less(items[i], items[parent]) else { break }
            items.swapAt(i, parent)
            i = parent
        }
    }
    mutating func pop() -> Element? {
        guard !items.isEmpty else { return nil }
        items.swapAt(0, items.count - 1)
        let top = items.removeLast()
        var i = 0
        while true {
            let l = 2 * i + 1
            let r = l + 1
            var m = i
            if l < items.count && less(items[l], items[m]) { m = l }
            if r < items.count && less(items[r], items[m]) { m = r }
            if m == i { break }
            items.swapAt(i, m)
            i = m
        }
        return top
    }
}
