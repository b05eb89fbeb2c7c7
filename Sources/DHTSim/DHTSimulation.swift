import DHT
import Determinism
import NetCore
import NetSim

/// The DHT at scale on the simulated network: N real `DHTNode`s on a `SimNetwork` with virtual
/// time, topics announced, a fraction of nodes replaced during the run, and lookups measured.
/// `turf bench dht` prints its report; a smaller run is a test. A testing double (the DHTSim
/// target), not part of the DHT's API: the shipped game's code paths never use it.
package struct DHTSimulation {
    /// How the network is built before the measured window.
    package enum Bootstrap: String, Sendable, Codable, CaseIterable {
        /// Every node starts with an empty table and joins through the protocol (find_node of its
        /// own id via the router nodes) at a staggered time; maintenance runs throughout.
        case `protocol`
        /// Tables prebuilt as a converged network's would be (up to 2k random nodes per prefix,
        /// all marked as having answered), one announce per topic, announcers never leave.
        /// Kept for comparison: it flatters the figures.
        case oracle
    }

    package struct Parameters: Sendable {
        package var bootstrap = Bootstrap.protocol
        package var nodes = 10_000
        /// Fraction of nodes that leave during the window; as many new nodes join (via the protocol).
        package var churn = 0.2
        package var hopMs = 50
        package var topics = 100
        package var lookups = 2000
        /// Virtual time over which churn and lookups are spread (nil: 3000 s in protocol mode,
        /// 600 s in oracle mode).
        package var windowSeconds: Int? = nil
        /// Protocol mode: virtual time over which the initial nodes join, one after another.
        package var joinSeconds = 1200
        /// Protocol mode: the first nodes, which everyone else bootstraps from (like the public
        /// router nodes). They join first and never leave.
        package var routers = 3
        package var seed: UInt64 = 1
        /// Probability that any datagram is lost.
        package var loss = 0.0
        /// Protocol mode, BEP 32: the share of the non-router nodes that are dual-stack (a socket
        /// on `[::]`: DualStackSimHost) and the share that are IPv6-only; the rest are IPv4-only.
        /// With either set, the routers are dual-stack and the topics' hosts too, so that every
        /// looker shares a family with every host. A dual-stack node or host bootstraps through
        /// the routers' IPv4 addresses only (its IPv6 table fills from `nodes6`), an IPv6-only one
        /// through their IPv6 addresses.
        package var dualStackShare = 0.0
        package var ipv6OnlyShare = 0.0
        package init() {}

        package var mixed: Bool { dualStackShare > 0 || ipv6OnlyShare > 0 }

        package var window: Int { windowSeconds ?? (bootstrap == .protocol ? 3000 : 600) }
    }

    package struct Report: Sendable, Codable {
        package var mode: String
        package var nodes: Int
        package var churn: Double
        package var hop_ms: Int
        package var loss: Double
        package var topics: Int
        package var lookups: Int
        package var lookups_completed: Int
        /// Lookups counted in `success_rate`: those whose topic's announcer was still there.
        package var lookups_measured: Int
        /// Lookups of a topic whose announcer had left (not in `success_rate`).
        package var lookups_announcer_gone: Int
        /// Of those, lookups that still returned the departed announcer (its entry not yet expired).
        package var stale_hits: Int
        package var success_rate: Double
        package var rounds_p50: Int
        package var rounds_p99: Int
        package var messages_per_lookup: Double
        package var messages_p99: Int
        package var latency_ms_p50: Double
        package var latency_ms_p99: Double
        package var announces_stored_mean: Double
        /// Announce rounds (first announces plus re-announces) that completed.
        package var announce_rounds: Int
        package var table_size_mean: Double
        package var nodes_left: Int
        package var announcers_left: Int
        package var nodes_joined: Int
        package var joins_completed: Int
        package var join_seconds: Int
        package var window_seconds: Int
        package var datagrams_total: UInt64
        package var virtual_seconds: Double
    }

    package let p: Parameters
    var debugFailures = false
    package init(_ p: Parameters, debug: Bool = false) {
        self.p = p
        debugFailures = debug
    }

    private static func address(_ i: Int) -> PeerAddress {
        // One node per /24 in 11.0.0.0/8: package addresses, so no exemptions apply.
        PeerAddress(ip: 0x0B00_0001 &+ UInt32(i) << 8, port: 6881)
    }

    /// One node per /48 in 2001:db8::/32 (the documentation prefix, not exempt from anything).
    private static func address6(_ i: Int) -> PeerAddress {
        PeerAddress(ip6: IPv6Address(hi: 0x2001_0DB8 << 32 | UInt64(i) << 16, lo: 1), port: 6881)
    }

    /// A node's address families in a mixed network (fixed by the seed and the node's index).
    enum Stack { case v4, v6, dual }

    private func stack(_ i: Int, routers: Int) -> Stack {
        guard p.mixed else { return .v4 }
        if i < routers { return .dual }
        let u = Double(StableHash.of(p.seed, UInt64(i), 0x6) >> 11) / Double(1 << 53)
        return u < p.dualStackShare ? .dual : (u < p.dualStackShare + p.ipv6OnlyShare ? .v6 : .v4)
    }

    package func run() -> Report {
        let hop = Nanos.milliseconds(p.hopMs)
        let net = SimNetwork(seed: p.seed, conditions: LinkConditions(loss: p.loss, latency: hop))
        var rng = SplitMix64(seed: p.seed, stream: 0xB0B)
        let honest = p.bootstrap == .protocol
        var config = DHTConfig()
        // Ids stay put (random, as a client with a saved id): the oracle's prebuilt tables stay
        // valid, and both modes use the same ids.
        config.bep42NodeIDs = false
        config.maintenanceInterval = .seconds(60)
        let routerCount = honest ? min(max(1, p.routers), p.nodes / 4) : 0
        config.bootstrap = (0..<routerCount).map { DHTSimulation.address($0) }
        precondition(!p.mixed || honest, "a mixed IPv4/IPv6 network is built through the protocol")

        var nodes: [DHTNode] = []
        var closers: [() -> Void] = []
        var alive: [Bool] = []
        var stacks: [Stack] = []
        func makeNode(_ i: Int) -> DHTNode {
            var c = config
            c.seed = StableHash.of(p.seed, UInt64(i))
            let stack = self.stack(i, routers: routerCount)
            let routers = i < routerCount ? i : routerCount
            c.bootstrap = (0..<routers).map { stack == .v6 ? DHTSimulation.address6($0) : DHTSimulation.address($0) }
            let host: NetworkHost
            switch stack {
            case .v4:
                let s = net.bind(DHTSimulation.address(i))
                host = s
                closers.append(s.close)
            case .v6:
                let s = net.bind(DHTSimulation.address6(i))
                host = s
                closers.append(s.close)
            case .dual:
                let s = DualStackSimHost(network: net, v4: DHTSimulation.address(i), v6: DHTSimulation.address6(i))
                host = s
                closers.append(s.close)
            }
            let n = DHTNode(host: host, demux: Demultiplexer(socket: host), config: c)
            nodes.append(n)
            alive.append(true)
            stacks.append(stack)
            return n
        }
        /// Where lookers of `stack` can find node `i` (its addresses of the families they share).
        func addresses(of i: Int, for stack: Stack) -> Set<PeerAddress> {
            var out: Set<PeerAddress> = []
            if stacks[i] != .v6 && stack != .v6 { out.insert(DHTSimulation.address(i)) }
            if stacks[i] != .v4 && stack != .v4 { out.insert(DHTSimulation.address6(i)) }
            return out
        }
        for i in 0..<p.nodes { _ = makeNode(i) }
        precondition(
            !p.mixed || stacks[routerCount...].filter { $0 == .dual }.count >= p.topics,
            "a mixed network needs a dual-stack node per topic"
        )
        var joinsCompleted = 0

        if honest {
            // Nodes join one by one at staggered times through the real protocol: `start()` looks
            // up the node's own id via the routers (or the table once it has one), and maintenance
            // (bucket refresh, re-join when cut off) runs from then on. The routers come first.
            let joinWindow = Nanos.seconds(p.joinSeconds)
            var times = (routerCount..<p.nodes).map { _ in Nanos.seconds(2 * routerCount) &+ rng.below(joinWindow) }
            times.sort()
            for i in 0..<p.nodes {
                let at = i < routerCount ? Nanos.seconds(2 * i) : times[i - routerCount]
                net.schedule(after: at) { nodes[i].start { _ in joinsCompleted += 1 } }
            }
            _ = net.run(until: Nanos.seconds(2 * routerCount) &+ joinWindow)
        } else {
            buildOracleTables(nodes, config: config, rng: &rng)
            for n in nodes { n.startMaintenance() }
        }

        // Topics, each announced by its own node (never a router; dual-stack in a mixed network,
        // so that every looker shares a family with it).
        let topicHashes = (0..<p.topics).map { Topic.infoHash("bench-topic-\(p.seed)-\($0)") }
        var announcer: [Int] = []
        var announcerSet: Set<Int> = []
        while announcer.count < p.topics {
            let i = routerCount + rng.below(p.nodes - routerCount)
            if (!p.mixed || stacks[i] == .dual) && announcerSet.insert(i).inserted { announcer.append(i) }
        }
        var stored: [Int] = Array(repeating: 0, count: p.topics)
        var announceRounds = 0
        if honest {
            // Hosts: announce with the node's own keepAnnouncing (re-announce every 15 minutes,
            // before the 30-minute expiry), starting at random times over a minute.
            for (t, i) in announcer.enumerated() {
                net.schedule(after: rng.below(.seconds(60))) {
                    nodes[i].keepAnnouncing(topicHashes[t], port: 6881, impliedPort: true) { _, n in
                        if stored[t] == 0 { stored[t] = n }
                        announceRounds += 1
                    }
                }
            }
            _ = net.run(for: .seconds(120))
        } else {
            for (t, i) in announcer.enumerated() {
                nodes[i].announce(topicHashes[t], port: 6881, impliedPort: true) { _, n in
                    stored[t] = n
                    announceRounds += 1
                }
            }
            _ = net.run(for: .seconds(30))
        }
        let tableSizeMean = Double(nodes.reduce(0) { $0 + $1.tableSize }) / Double(nodes.count)
        let start = net.now
        let window = Nanos.seconds(p.window)

        // Churn: nodes leave at random times; as many new nodes join at random times through the
        // protocol. Routers never leave; in oracle mode announcers never leave either.
        let leaving = min(Int((Double(p.nodes) * p.churn).rounded()), p.nodes - routerCount - (honest ? 0 : p.topics))
        var candidates = Array(routerCount..<p.nodes).filter { honest || !announcerSet.contains($0) }
        candidates.shuffle(using: &rng)
        let leavers = Array(candidates.prefix(leaving))
        let leaverSet = Set(leavers)
        var stableLookers = Array(0..<p.nodes).filter { !leaverSet.contains($0) && !announcerSet.contains($0) }
        var joinedLookers: [Int] = []
        var announcerGoneAt: [Int: Nanos] = [:]
        for i in leavers {
            let at = rng.below(window)
            let joinAt = rng.below(window)
            net.schedule(after: at) {
                nodes[i].stop()
                closers[i]()
                alive[i] = false
                if announcerSet.contains(i) { announcerGoneAt[i] = net.now }
            }
            net.schedule(after: joinAt) {
                let idx = nodes.count
                let n = makeNode(idx)
                let done: (LookupResult) -> Void = { _ in
                    joinsCompleted += 1
                    joinedLookers.append(idx)
                }
                if honest {
                    n.start(completion: done)
                } else {
                    // Bootstrap from a random live stable node.
                    var r = SplitMix64(seed: p.seed ^ UInt64(idx), stream: 7)
                    let via = stableLookers[r.below(stableLookers.count)]
                    n.join(via: [nodes[via].localAddress], completion: done)
                }
            }
        }
        stableLookers.shuffle(using: &rng)

        // Lookups at random times by random live nodes that stay (never the topic's own
        // announcer); 20% from nodes that joined during the window, once there are some.
        var successes = 0
        var completed = 0
        var measured = 0
        var gone = 0
        var staleHits = 0
        var rounds: [Int] = []
        var messages: [Int] = []
        var latencies: [Nanos] = []
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
                // A topic whose host has left is not expected to be found; counted apart.
                let announcerGone = !alive[announcer[topic]]
                if announcerGone { gone += 1 } else { measured += 1 }
                let expected = addresses(of: announcer[topic], for: stacks[looker])
                nodes[looker].getPeers(topicHashes[topic]) { res in
                    completed += 1
                    let found = !expected.isDisjoint(with: res.peers)
                    if announcerGone {
                        if found { staleHits += 1 }
                    } else if found {
                        successes += 1
                    } else if debugFailures {
                        print(
                            "FAIL t=\(Double(net.now) / 1e9) topic \(topic) looker \(looker) closest \(res.closest.count) q \(res.queriesSent) r \(res.responsesReceived) rounds \(res.rounds) peers \(res.peers.count) dur \(res.duration / 1_000_000) table \(nodes[looker].tableSize)"
                        )
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
            return s[min(s.count - 1, max(0, Int((Double(s.count) * q).rounded(.up)) - 1))]
        }
        return Report(
            mode: p.bootstrap.rawValue,
            nodes: p.nodes,
            churn: p.churn,
            hop_ms: p.hopMs,
            loss: p.loss,
            topics: p.topics,
            lookups: p.lookups,
            lookups_completed: completed,
            lookups_measured: measured,
            lookups_announcer_gone: gone,
            stale_hits: staleHits,
            success_rate: measured == 0 ? 0 : Double(successes) / Double(measured),
            rounds_p50: pct(rounds, 0.5) ?? 0,
            rounds_p99: pct(rounds, 0.99) ?? 0,
            messages_per_lookup: messages.isEmpty ? 0 : Double(messages.reduce(0, +)) / Double(messages.count),
            messages_p99: pct(messages, 0.99) ?? 0,
            latency_ms_p50: Double(pct(latencies, 0.5) ?? 0) / 1e6,
            latency_ms_p99: Double(pct(latencies, 0.99) ?? 0) / 1e6,
            announces_stored_mean: Double(stored.reduce(0, +)) / Double(max(1, p.topics)),
            announce_rounds: announceRounds,
            table_size_mean: (tableSizeMean * 10).rounded() / 10,
            nodes_left: leavers.count,
            announcers_left: leavers.filter { announcerSet.contains($0) }.count,
            nodes_joined: nodes.count - p.nodes,
            joins_completed: joinsCompleted,
            join_seconds: honest ? p.joinSeconds : 0,
            window_seconds: p.window,
            datagrams_total: net.stats.sent,
            virtual_seconds: Double(net.now) / 1e9
        )
    }

    /// Oracle mode: tables as a converged network would have them: for each node and each prefix
    /// length, up to 2k random nodes from the range of ids that share exactly that prefix.
    private func buildOracleTables(_ nodes: [DHTNode], config: DHTConfig, rng: inout SplitMix64) {
        let sorted = nodes.indices.sorted { nodes[$0].id < nodes[$1].id }
        let sortedIDs = sorted.map { nodes[$0].id }
        func lowerBound(_ x: NodeID) -> Int {
            var lo = 0
            var hi = sortedIDs.count
            while lo < hi {
                let m = (lo + hi) / 2
                if sortedIDs[m] < x { lo = m + 1 } else { hi = m }
            }
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
                        for j in lo..<hi {
                            n.addAnsweredNode(NodeInfo(id: sortedIDs[j], address: nodes[sorted[j]].localAddress))
                        }
                    } else {
                        for _ in 0..<(config.k * 2) {
                            let j = lo + rng.below(count)
                            n.addAnsweredNode(NodeInfo(id: sortedIDs[j], address: nodes[sorted[j]].localAddress))
                        }
                    }
                }
                // Stop once nobody else shares a longer prefix.
                let sameLo = lowerBound(Self.prefixFloor(n.id, bits: depth + 1))
                let sameHi = lowerBound(Self.prefixCeil(n.id, bits: depth + 1))
                if sameHi - sameLo <= 1 { break }
                depth += 1
            }
        }
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
            if y.bit(i) {
                y = y.setting(bit: i, to: false)
                i -= 1
            } else {
                return y.setting(bit: i, to: true)
            }
        }
        return NodeID(a: ~0, b: ~0, c: ~0)
    }
}
