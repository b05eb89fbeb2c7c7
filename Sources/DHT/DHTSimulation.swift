import Determinism
import NetCore

/// The DHT at scale on the simulated network: N real `DHTNode`s on a `SimNetwork` with virtual
/// time, topics announced, a fraction of nodes replaced during the run, and lookups measured.
/// `turf bench dht` prints its report; a smaller run is a test.
public struct DHTSimulation {
    public struct Parameters: Sendable {
        public var nodes = 10_000
        /// Fraction of nodes that leave during the run; as many new nodes join (via the protocol).
        public var churn = 0.2
        public var hopMs = 50
        public var topics = 100
        public var lookups = 2000
        /// Virtual time over which churn and lookups are spread.
        public var windowSeconds = 600
        public var seed: UInt64 = 1
        /// Probability that any datagram is lost.
        public var loss = 0.0
        public init() {}
    }

    public struct Report: Sendable, Codable {
        public var nodes: Int
        public var churn: Double
        public var hop_ms: Int
        public var loss: Double
        public var topics: Int
        public var lookups: Int
        public var lookups_completed: Int
        public var success_rate: Double
        public var rounds_p50: Int
        public var rounds_p99: Int
        public var messages_per_lookup: Double
        public var messages_p99: Int
        public var latency_ms_p50: Double
        public var latency_ms_p99: Double
        public var announces_stored_mean: Double
        public var nodes_left: Int
        public var nodes_joined: Int
        public var joins_completed: Int
        public var datagrams_total: UInt64
        public var virtual_seconds: Double
    }

    public let p: Parameters
    var debugFailures = false
    public init(_ p: Parameters, debug: Bool = false) { self.p = p; debugFailures = debug }

    private static func address(_ i: Int) -> PeerAddress {
        // One node per /24 in 11.0.0.0/8: public addresses, so no exemptions apply.
        PeerAddress(ip: 0x0B00_0001 &+ UInt32(i) << 8, port: 6881)
    }

    public func run() -> Report {
        let hop = Nanos.milliseconds(p.hopMs)
        let net = SimNetwork(seed: p.seed, conditions: LinkConditions(loss: p.loss, latency: hop))
        var rng = SplitMix64(seed: p.seed, stream: 0xB0B)
        var config = DHTConfig()
        config.bep42NodeIDs = false // ids stay put so the prebuilt tables stay valid
        config.maintenanceInterval = .seconds(60)

        var nodes: [DHTNode] = []
        var sockets: [SimSocket] = []
        var alive: [Bool] = []
        func makeNode(_ i: Int) -> DHTNode {
            var c = config
            c.seed = StableHash.of(p.seed, UInt64(i))
            let s = net.bind(DHTSimulation.address(i))
            let n = DHTNode(host: s, config: c)
            sockets.append(s)
            nodes.append(n)
            alive.append(true)
            return n
        }
        for i in 0..<p.nodes { _ = makeNode(i) }

        // Tables as a converged network would have them: for each node and each prefix length,
        // up to k random nodes from the range of ids that share exactly that prefix.
        let sorted = nodes.indices.sorted { nodes[$0].id < nodes[$1].id }
        let sortedIDs = sorted.map { nodes[$0].id }
        func lowerBound(_ x: NodeID) -> Int {
            var lo = 0, hi = sortedIDs.count
            while lo < hi { let m = (lo + hi) / 2; if sortedIDs[m] < x { lo = m + 1 } else { hi = m } }
            return lo
        }
        for n in nodes {
            var depth = 0
            while depth < 160 {
                // Ids sharing the first `depth` bits with n and differing at bit `depth`.
                let flipped = n.id.setting(bit: depth, to: !n.id.bit(depth))
                let lo = lowerBound(Self.prefixFloor(flipped, bits: depth + 1))
                let hi = lowerBound(Self.prefixCeil(flipped, bits: depth + 1))
                let count = hi - lo
                if count > 0 {
                    if count <= config.k * 2 {
                        for j in lo..<hi { n.addNode(NodeInfo(id: sortedIDs[j], address: nodes[sorted[j]].localAddress)) }
                    } else {
                        for _ in 0..<(config.k * 2) {
                            let j = lo + rng.below(count)
                            n.addNode(NodeInfo(id: sortedIDs[j], address: nodes[sorted[j]].localAddress))
                        }
                    }
                }
                // Stop once nobody else shares a longer prefix.
                let sameLo = lowerBound(Self.prefixFloor(n.id, bits: depth + 1))
                let sameHi = lowerBound(Self.prefixCeil(n.id, bits: depth + 1))
                if sameHi - sameLo <= 1 { break }
                depth += 1
            }
            n.startMaintenance()
        }

        // Announce topics from distinct nodes, then wait for the announces to land.
        let topicHashes = (0..<p.topics).map { Topic.infoHash("bench-topic-\(p.seed)-\($0)") }
        var announcer: [Int] = []
        var announcerSet: Set<Int> = []
        while announcer.count < p.topics {
            let i = rng.below(p.nodes)
            if announcerSet.insert(i).inserted { announcer.append(i) }
        }
        var stored: [Int] = Array(repeating: 0, count: p.topics)
        for (t, i) in announcer.enumerated() {
            nodes[i].announce(topicHashes[t], port: 6881, impliedPort: true) { _, n in stored[t] = n }
        }
        _ = net.run(for: .seconds(30))
        let start = net.now
        let window = Nanos.seconds(p.windowSeconds)

        // Churn: nodes leave at random times; as many new nodes join, bootstrapping from a live node.
        let leaving = Int((Double(p.nodes) * p.churn).rounded())
        var candidates = Array(0..<p.nodes).filter { !announcerSet.contains($0) }
        candidates.shuffle(using: &rng)
        let leavers = Array(candidates.prefix(leaving))
        let leaverSet = Set(leavers)
        var stableLookers = Array(0..<p.nodes).filter { !leaverSet.contains($0) && !announcerSet.contains($0) }
        var joinedLookers: [Int] = []
        var joinsCompleted = 0
        for i in leavers {
            let at = rng.below(window)
            let joinAt = rng.below(window)
            net.schedule(after: at) {
                nodes[i].stop()
                sockets[i].close()
                alive[i] = false
            }
            net.schedule(after: joinAt) {
                let idx = nodes.count
                let n = makeNode(idx)
                // Bootstrap from a random live stable node.
                var r = SplitMix64(seed: p.seed ^ UInt64(idx), stream: 7)
                let via = stableLookers[r.below(stableLookers.count)]
                n.join(via: [nodes[via].localAddress]) { _ in
                    joinsCompleted += 1
                    joinedLookers.append(idx)
                }
            }
        }
        stableLookers.shuffle(using: &rng)

        // Lookups at random times by random live nodes (never the topic's own announcer).
        var successes = 0, completed = 0
        var rounds: [Int] = [], messages: [Int] = [], latencies: [Nanos] = []
        for _ in 0..<p.lookups {
            let at = rng.below(window)
            let topic = rng.below(p.topics)
            let pickJoined = rng.below(UInt64(10)) < 2
            let pickSeed = rng.next()
            net.schedule(after: at) {
                var r = SplitMix64(seed: pickSeed)
                let looker: Int
                if pickJoined && !joinedLookers.isEmpty {
                    looker = joinedLookers[r.below(joinedLookers.count)]
                } else {
                    looker = stableLookers[r.below(stableLookers.count)]
                }
                let expected = nodes[announcer[topic]].localAddress
                nodes[looker].getPeers(topicHashes[topic]) { res in
                    completed += 1
                    if res.peers.contains(expected) { successes += 1 } else if debugFailures {
                        print("FAIL topic \(topic) looker \(looker) closest \(res.closest.count) q \(res.queriesSent) r \(res.responsesReceived) rounds \(res.rounds) peers \(res.peers.count) dur \(res.duration / 1_000_000)")
                    }
                    rounds.append(res.rounds)
                    messages.append(res.messages)
                    latencies.append(res.duration)
                }
            }
        }
        net.run(until: start &+ window &+ .seconds(30))

        func pct<T: Comparable>(_ xs: [T], _ q: Double) -> T? {
            guard !xs.isEmpty else { return nil }
            let s = xs.sorted()
            return s[min(s.count - 1, Int((Double(s.count) * q).rounded(.up)) - 1 < 0 ? 0 : Int((Double(s.count) * q).rounded(.up)) - 1)]
        }
        return Report(
            nodes: p.nodes, churn: p.churn, hop_ms: p.hopMs, loss: p.loss, topics: p.topics, lookups: p.lookups,
            lookups_completed: completed,
            success_rate: p.lookups == 0 ? 0 : Double(successes) / Double(p.lookups),
            rounds_p50: pct(rounds, 0.5) ?? 0, rounds_p99: pct(rounds, 0.99) ?? 0,
            messages_per_lookup: messages.isEmpty ? 0 : Double(messages.reduce(0, +)) / Double(messages.count),
            messages_p99: pct(messages, 0.99) ?? 0,
            latency_ms_p50: Double(pct(latencies, 0.5) ?? 0) / 1e6, latency_ms_p99: Double(pct(latencies, 0.99) ?? 0) / 1e6,
            announces_stored_mean: Double(stored.reduce(0, +)) / Double(max(1, p.topics)),
            nodes_left: leavers.count, nodes_joined: nodes.count - p.nodes, joins_completed: joinsCompleted,
            datagrams_total: net.stats.sent, virtual_seconds: Double(net.now) / 1e9)
    }

    static func mask(_ bits: Int) -> UInt64 { bits <= 0 ? 0 : (bits >= 64 ? ~0 : ~((~UInt64(0)) >> UInt64(bits))) }

    /// `x` with all bits from `bits` on cleared.
    static func prefixFloor(_ x: NodeID, bits: Int) -> NodeID {
        NodeID(a: x.a & mask(bits), b: x.b & mask(bits - 64), c: x.c & mask(bits - 128))
    }

    /// The first id after every id sharing `x`'s first `bits` bits (all ones past the top).
    static func prefixCeil(_ x: NodeID, bits: Int) -> NodeID {
        var y = prefixFloor(x, bits: bits)
        var i = bits - 1
        while i >= 0 {
            if y.bit(i) { y = y.setting(bit: i, to: false); i -= 1 } else { return y.setting(bit: i, to: true) }
        }
        return NodeID(a: ~0, b: ~0, c: ~0)
    }
}
