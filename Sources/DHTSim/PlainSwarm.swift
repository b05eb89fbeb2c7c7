import DHT
import Determinism
import NetCore
import NetSim

/// The Mainline DHT around turf's players, cheaply: N plain BEP 5 nodes (`PlainResponder`: real
/// KRPC, no turf extensions, no timers, no queries of their own) on a `SimNetwork`, with churn.
///
/// What makes it cheap (docs/benchmarks.md, "bench internet"): no node builds a routing table.
/// Every id is known up front (sorted once), and when node n is asked for the nodes closest to a
/// target, its answer is what a converged Kademlia table would give: from the bucket the target
/// falls in (ids sharing n's first d bits and differing at bit d), 8 nodes picked by a hash of
/// (n, d, slot), every one of them when the bucket holds 8 or fewer (a node knows all of its
/// near neighbours), then deeper buckets if needed; the closest 8 to the target. A node that left
/// stays listed for `staleSeconds` (the 15 minutes after which BEP 5 calls a node questionable
/// and a refresh drops it), so lookups meet dead entries as they do on the real network. A node
/// that joins is listed from the moment it is up. A node costs its id, its address, two times
/// and, once it has been sent something, a socket and its store of announcements.
package final class PlainSwarm {
    package struct Config: Sendable {
        package var nodes = 100_000
        /// Fraction of the nodes that leave per hour; as many new ones join (over the run, and
        /// before it: entries of nodes that left in the `staleSeconds` before the start).
        package var churnPerHour = 0.2
        package var staleSeconds = 900
        /// Virtual seconds over which churn is spread.
        package var windowSeconds = 600
        package var seed: UInt64 = 1
        package init() {}
    }

    package struct Stats: Sendable, Equatable {
        package var queries = 0
        package var stored = 0
        package var unknownMethod = 0
        package var left = 0
        package var joined = 0
    }

    package let config: Config
    package private(set) var stats = Stats()
    let net: SimNetwork
    private var ids: [NodeID] = []
    private var born: [Nanos] = []
    private var died: [Nanos] = []
    private var sortedIDs: [NodeID] = []
    private var sortedIndex: [Int32] = []
    private var responders: [PlainResponder?] = []
    private var sockets: [SimSocket?] = []
    private let stale: Nanos
    package static let k = 8

    /// Plain node i's address: one per /24 from 11.0.0.1 on (package addresses, as DHTSimulation's).
    package static func address(_ i: Int) -> PeerAddress { PeerAddress(ip: 0x0B00_0001 &+ UInt32(i) << 8, port: 6881) }

    /// Builds the population and schedules its churn on `net` (starting at the network's now).
    package init(net: SimNetwork, config: Config) {
        self.net = net
        self.config = config
        stale = .seconds(config.staleSeconds)
        var rng = SplitMix64(seed: config.seed, stream: 0x91A1)
        let window = Nanos.seconds(config.windowSeconds)
        let perSecond = config.churnPerHour / 3600
        let leaving = Int((Double(config.nodes) * perSecond * Double(config.windowSeconds)).rounded())
        let goneBefore = Int((Double(config.nodes) * perSecond * Double(config.staleSeconds)).rounded())
        let total = config.nodes + leaving + goneBefore
        let start = net.now
        for i in 0..<total {
            ids.append(NodeID(a: rng.next(), b: rng.next(), c: rng.next() & 0xFFFF_FFFF_0000_0000))
            _ = i
            born.append(start)
            died.append(.max)
        }
        // Stale entries at the start: nodes that left in the last `staleSeconds`.
        for i in config.nodes..<(config.nodes + goneBefore) {
            born[i] = 0
            died[i] = start &- min(start, rng.below(stale))
        }
        // Over the window: `leaving` of the first nodes leave, as many new ones join.
        var order = Array(0..<config.nodes)
        order.shuffle(using: &rng)
        for j in 0..<leaving {
            died[order[j]] = start &+ rng.below(window)
            born[config.nodes + goneBefore + j] = start &+ rng.below(window)
        }
        sortedIndex = (0..<total).map { Int32($0) }.sorted { ids[Int($0)] < ids[Int($1)] }
        sortedIDs = sortedIndex.map { ids[Int($0)] }
        responders = Array(repeating: nil, count: total)
        sockets = Array(repeating: nil, count: total)
        for i in 0..<total where died[i] > start {
            if born[i] <= start {
                up(i)
            } else {
                net.schedule(after: born[i] &- start) { [unowned self] in
                    self.stats.joined += 1
                    self.up(i)
                }
            }
            if died[i] != .max {
                net.schedule(after: died[i] &- start) { [unowned self] in
                    self.stats.left += 1
                    self.sockets[i]?.close()
                    self.sockets[i] = nil
                }
            }
        }
    }

    private func up(_ i: Int) {
        let s = net.bind(Self.address(i))
        sockets[i] = s
        s.onReceive = { [unowned self, unowned s] payload, source in
            if self.responders[i] == nil {
                self.responders[i] = PlainResponder(id: self.ids[i], secret: StableHash.of(self.config.seed, UInt64(i)))
            }
            self.stats.queries += 1
            let now = self.net.now
            let (reply, outcome) = self.responders[i]!.answer(payload, from: source, now: now) { target in
                self.closest(to: target, asKnownBy: self.ids[i], key: UInt64(i), now: now)
            }
            switch outcome {
            case .stored: self.stats.stored += 1
            case .unknownMethod: self.stats.unknownMethod += 1
            case .answered, .ignored: break
            }
            if let reply { s.send(reply, to: source) }
        }
    }

    package var count: Int { ids.count }
    package var aliveCount: Int { sockets.reduce(0) { $0 + ($1 == nil ? 0 : 1) } }

    /// Whether node x is in others' tables at `now`: up, or gone for less than `staleSeconds`.
    @inline(__always) private func listed(_ x: Int, now: Nanos) -> Bool {
        born[x] <= now && (died[x] == .max || now < died[x] &+ stale)
    }

    private func lowerBound(_ x: NodeID) -> Int {
        var lo = 0
        var hi = sortedIDs.count
        while lo < hi {
            let m = (lo + hi) >> 1
            if sortedIDs[m] < x { lo = m + 1 } else { hi = m }
        }
        return lo
    }

    /// The range of sorted positions of the ids sharing `bits` leading bits with `x`.
    private func range(sharing bits: Int, with x: NodeID) -> Range<Int> {
        lowerBound(DHTSimulation.prefixFloor(x, bits: bits))..<lowerBound(DHTSimulation.prefixCeil(x, bits: bits))
    }

    /// The nodes `id`'s bucket `depth` holds (ids sharing `depth` bits with it and differing at
    /// bit `depth`): all of them when at most k are listed, else k picked by hash of (key, depth).
    private func bucket(of id: NodeID, key: UInt64, depth: Int, now: Nanos, into out: inout [Int]) {
        let r = range(sharing: depth + 1, with: id.setting(bit: depth, to: !id.bit(depth)))
        guard !r.isEmpty else { return }
        if r.count <= 2 * Self.k {
            var n = 0
            for p in r where n < Self.k {
                let x = Int(sortedIndex[p])
                if listed(x, now: now) {
                    out.append(x)
                    n += 1
                }
            }
            return
        }
        var picked = 0
        for slot in 0..<UInt64(Self.k) {
            for attempt in 0..<UInt64(3) {
                let p = r.lowerBound + Int(StableHash.of(key, UInt64(depth), slot, attempt) % UInt64(r.count))
                let x = Int(sortedIndex[p])
                if listed(x, now: now) && !out.suffix(picked).contains(x) {
                    out.append(x)
                    picked += 1
                    break
                }
            }
        }
    }

    /// What a node with `id` (its table keyed by `key`) answers for `target`: up to k nodes.
    package func closest(to target: NodeID, asKnownBy id: NodeID, key: UInt64, now: Nanos) -> [NodeInfo] {
        var found: [Int] = []
        var depth = min(id.commonPrefixLength(with: target), 159)
        while found.count < Self.k && depth < 160 {
            bucket(of: id, key: key, depth: depth, now: now, into: &found)
            // Stop once nobody else shares a longer prefix with `id`.
            if range(sharing: depth + 1, with: id).count <= 1 { break }
            depth += 1
        }
        return found.map { NodeInfo(id: ids[$0], address: Self.address($0)) }
            .sorted { ($0.id ^ target) < ($1.id ^ target) }
            .prefix(Self.k).map { $0 }
    }

    /// A converged table for a newcomer with `id` (a player's DHT node, which then joins through
    /// the protocol): every bucket as `closest` models it.
    package func table(for id: NodeID, key: UInt64) -> [NodeInfo] {
        var out: [Int] = []
        var depth = 0
        while depth < 160 {
            bucket(of: id, key: key, depth: depth, now: net.now, into: &out)
            if range(sharing: depth + 1, with: id).count <= 1 { break }
            depth += 1
        }
        return out.map { NodeInfo(id: ids[$0], address: Self.address($0)) }
    }
}
