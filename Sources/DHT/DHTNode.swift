import Determinism
import Logging
import NetCore
import Sodium

/// One Mainline DHT node (BEP 5, 32, 42, 43, 44), single-threaded on its host's thread: its public
/// entry points assert that in debug builds (`LoopConfinement.assertInLoop`).
///
/// On a dual-stack socket (`[::]`) it takes part in both DHTs (BEP 32): one routing table per
/// address family with the same id, lookups and announces run in both and merged. On an IPv4 or
/// an IPv6 socket it is a single-family node.
///
/// It is written against `DatagramSocket` and `Scheduler` only, so the same code runs on the real
/// UDP host and on the simulated network. It answers queries, keeps a routing table and a peer
/// store, runs iterative lookups and announces, and learns its external address.
///
/// This file holds its state, life cycle, maintenance and state file; the rest is split by concern:
/// `DHTNode+Queries` (sending), `+Receive` (parsing, matching answers, table upkeep), `+Responder`
/// (answering), `+ExternalAddress` (BEP 42), `+Lookups`, `+Items` (BEP 44), `+Announce`; the
/// config, stats and result types are in `DHTConfig.swift`.
public final class DHTNode {
    public let config: DHTConfig
    public internal(set) var id: NodeID
    /// The IPv4 routing table.
    var table: RoutingTable
    /// The IPv6 routing table (BEP 32); empty unless the socket reaches IPv6.
    var table6: RoutingTable
    /// The families the socket reaches: both on a dual-stack socket (bound to `::`), else its own.
    let families: [AddressFamily]
    /// Nodes in the routing tables (for the simulation's report).
    package var tableSize: Int { table.count + table6.count }
    public internal(set) var stats = DHTStats()
    var store: PeerStore
    var items = ItemStore()
    public var logger = Logger(label: "turf.dht")

    let socket: DatagramSocket
    let scheduler: Scheduler
    var rng: SplitMix64
    var tokens: TokenIssuer
    var rateLimiter: RateLimiter
    var pending: [UInt32: Pending] = [:]
    var maintenanceTimer: TimerToken?
    var announcements: [NodeID: Announcement] = [:]
    /// Knocks relayed (docs/dht.md, "Knocking"): per source IP, and per info-hash.
    var knockSourceLimiter = RateLimiter(ratePerSecond: 5, burst: 10, maxSources: 4096)
    var knockHashLimiter = RateLimiter(ratePerSecond: 20, burst: 20, maxSources: 4096)
    /// Who receives the knocks relayed to us, by the info-hash we announce.
    var knockHandlers: [NodeID: (Knock) -> Void] = [:]
    var stopped = false
    var lastJoinVia: [PeerAddress] = []
    /// Unknown nodes that queried us and are being pinged before they may enter the table.
    var verifying: Set<PeerAddress> = []
    /// Smoothed round-trip time of answered queries (0 until the first answer).
    public internal(set) var smoothedRTT: Nanos = 0

    /// How long a lookup waits on a silent node before giving its slot to another.
    var slowDelay: Nanos {
        smoothedRTT == 0 ? config.slowAfter : min(config.slowAfter, max(config.minSlowAfter, smoothedRTT * 3))
    }

    /// The addresses other nodes report for us (BEP 42 `ip`), one tally per family.
    var votes = AddressVotes()
    var votes6 = AddressVotes()
    /// Our IPv4 address and port as the majority of IPv4 responders saw it.
    public var externalAddress: PeerAddress? { votes.address }
    /// Our IPv6 address and port as the majority of IPv6 responders saw it (BEP 32 nodes).
    public var externalAddress6: PeerAddress? { votes6.address }
    /// The IPv4 NAT's behaviour, from the IPv4 votes.
    public var natType: NATType { votes.natType }
    /// The same from the IPv6 votes (a firewall that rewrites ports, rare; usually unknown or
    /// consistent).
    public var natType6: NATType { votes6.natType }
    /// When the node last adopted a BEP 42 id.
    var lastIDChange: Nanos?
    /// Joins made by maintenance for one family's empty table while the other family's is not
    /// (a dual-stack node on a network with little IPv6): spaced out, doubling, from a minute.
    var sparseFamilyJoins = 0
    var nextSparseFamilyJoin: Nanos = 0

    struct Pending {
        var destination: PeerAddress
        var expectedID: NodeID?
        var method: KRPCMethod
        var callback: (QueryOutcome) -> Void
        var slowTimer: TimerToken?
        var timeoutTimer: TimerToken?
        var onSlow: (() -> Void)?
        var sentAt: Nanos = 0
    }

    /// The end of one query.
    enum QueryOutcome {
        case response(KRPCResponse, from: PeerAddress)
        case error(KRPCErrorBody)
        case timeout
    }

    struct Announcement {
        var port: UInt16
        var impliedPort: Bool
        var until: Nanos?
        var timer: TimerToken?
        /// Distinguishes this announcement from a later `keepAnnouncing` of the same info-hash.
        var generation: UInt64
        /// The nodes that stored the last announce, and the timer that pings them (`keepAlive`).
        var holders: [NodeInfo] = []
        var keepAlive: Nanos? = nil
        var keepAliveTimer: TimerToken? = nil
    }

    var announcementGeneration: UInt64 = 0
    /// The whole text of the error 203 sent for a malformed query.
    static let malformedMessage = "malformed"
    /// The largest answer sent (BEP 32: no UDP payload over 1024 bytes, so it crosses any IPv6
    /// path, Teredo included, unfragmented).
    static let maxReply = 1024
    /// First retry delay for an announce that reached no node (doubling up to `reannounceInterval`).
    static let announceRetry: Nanos = .seconds(5)

    /// A node on `host` that receives through `demux`: it claims the datagrams starting with `d`
    /// (every KRPC message) and leaves the rest of the socket to the other components.
    public convenience init(host: NetworkHost, demux: Demultiplexer, config: DHTConfig = DHTConfig()) {
        self.init(socket: host, scheduler: host, config: config)
        demux.route([Demultiplexer.krpcFirstByte]) { [weak self] payload, source in self?.receive(payload, from: source)
        }
    }

    /// A node that sends on `socket`, with timers from `scheduler`, and receives only what is fed
    /// to `receive(_:from:)` (tests that drive it by hand).
    init(socket: DatagramSocket, scheduler: Scheduler, config: DHTConfig = DHTConfig()) {
        scheduler.assertInLoop()
        self.config = config
        self.socket = socket
        self.scheduler = scheduler
        let seed = config.seed ?? Sodium.randomU64()
        rng = SplitMix64(seed: seed, stream: 0xD47)
        var r = rng
        id = config.nodeID ?? config.savedNodeID ?? NodeID.random(using: &r)
        rng = r
        families = DHTNode.families(of: socket.localAddress)
        table = RoutingTable(
            ownID: id,
            family: .v4,
            k: config.k,
            restrictIPs: config.restrictIPs,
            maxPerSubnetInBucket: config.maxPerSubnetInBucket,
            now: scheduler.now
        )
        table6 = RoutingTable(
            ownID: id,
            family: .v6,
            k: config.k,
            restrictIPs: config.restrictIPs,
            maxPerSubnetInBucket: config.maxPerSubnetInBucket,
            now: scheduler.now
        )
        store = config.peerStore
        rateLimiter = RateLimiter(ratePerSecond: config.queryRate, burst: config.queryBurst)
        tokens = TokenIssuer(secret: [], previous: [], now: scheduler.now, rotation: config.tokenRotation)
        tokens = TokenIssuer(
            secret: freshSecret(),
            previous: freshSecret(),
            now: scheduler.now,
            rotation: config.tokenRotation
        )
    }

    func freshSecret() -> [UInt8] {
        if config.seed != nil {
            var out: [UInt8] = []
            for _ in 0..<4 {
                let w = rng.next()
                for i in 0..<8 { out.append(UInt8(truncatingIfNeeded: w >> (8 * UInt64(i)))) }
            }
            return out
        }
        return Sodium.randomBytes(32)
    }

    var now: Nanos { scheduler.now }

    /// The families a socket bound at `local` reaches: `::` is dual-stack, any other IPv6
    /// address IPv6 only, an IPv4 address IPv4 only.
    static func families(of local: PeerAddress) -> [AddressFamily] {
        guard let ip6 = local.ip6 else { return [.v4] }
        return ip6.isUnspecified ? [.v4, .v6] : [.v6]
    }

    func speaks(_ f: AddressFamily) -> Bool { families.contains(f) }

    /// The routing table of a family.
    func table(_ f: AddressFamily) -> RoutingTable { f == .v4 ? table : table6 }

    /// Changes the routing table of a family in place.
    @discardableResult
    func withTable<T>(_ f: AddressFamily, _ body: (inout RoutingTable) -> T) -> T {
        switch f {
        case .v4: return body(&table)
        case .v6: return body(&table6)
        }
    }

    /// Tokens follow the clock (5-minute epochs), not the maintenance timer.
    func issueToken(for address: PeerAddress) -> [UInt8] {
        var t = tokens
        let tok = t.token(for: address, now: now) { freshSecret() }
        tokens = t
        return tok
    }

    func tokenIsValid(_ token: [UInt8], for address: PeerAddress) -> Bool {
        var t = tokens
        let ok = t.isValid(token, for: address, now: now) { freshSecret() }
        tokens = t
        return ok
    }
    public var localAddress: PeerAddress { socket.localAddress }

    // MARK: life cycle

    /// Joins the network: looks up our own id, seeded by saved nodes, the table, or the bootstrap
    /// nodes, and starts maintenance. `completion` runs when the join lookup ends.
    public func start(savedNodes: [NodeInfo] = [], completion: ((LookupResult) -> Void)? = nil) {
        scheduler.assertInLoop()
        scheduleMaintenance()
        joinLookup(via: nil, seeds: savedNodes, attempt: 0, completion: completion)
    }

    /// Joins through `via` (instead of the configured bootstrap nodes) and starts maintenance.
    public func join(via: [PeerAddress], completion: ((LookupResult) -> Void)? = nil) {
        scheduler.assertInLoop()
        scheduleMaintenance()
        joinLookup(via: via, seeds: [], attempt: 0, completion: completion)
    }

    /// Looks up our own id, in every family the socket reaches. A join that reached nobody (every
    /// bootstrap datagram lost, say) is retried a few times before giving up; maintenance tries
    /// again while the table is empty. A join that reached someone then fills the ranges farther
    /// out (`refreshFarRanges`), in each family.
    ///
    /// A dual-stack node asks for both families' nodes while joining (BEP 32, `want` n4 and n6),
    /// so that bootstrap nodes of one family fill both tables: the nodes of the other family
    /// feed that family's lookup, which waits for them while it has nobody to ask.
    func joinLookup(via: [PeerAddress]?, seeds: [NodeInfo], attempt: Int, completion: ((LookupResult) -> Void)?) {
        let l = FamilyLookups(node: self, target: id, kind: .findNode, families: families) {
            [weak self] r, perFamily in
            guard let self, !self.stopped else { return }
            if r.closest.isEmpty && attempt < self.config.joinAttempts - 1 {
                self.scheduler.schedule(after: self.config.queryTimeout) { [weak self] in
                    self?.joinLookup(via: via, seeds: seeds, attempt: attempt + 1, completion: completion)
                }
            } else {
                for (f, result) in perFamily { self.refreshFarRanges(after: result, family: f) }
                completion?(r)
            }
        }
        if let via {
            l.bootstrap = via
            lastJoinVia = via
        }
        l.seeds = seeds
        l.crossFeed = families.count == 2
        l.start()
    }

    /// The second half of a join (Kademlia §2.3; libtorrent and other Mainline clients do the
    /// same): the lookup of our own id meets only nodes ever closer to us, so it fills the buckets
    /// near our id and leaves each farther range (half, a quarter, … of the network) with the one
    /// or two nodes met on the way. For every prefix length shorter than the one we share with the
    /// closest node found, a find_node of a random id at that distance fills that range now,
    /// instead of 15 minutes later when its bucket goes stale. Ranges already holding k nodes are
    /// skipped. The table may not have split that deep yet, so the ranges are taken by prefix
    /// length, not from the buckets as they are: the answers split the table as they arrive.
    /// `lookup` is a lookup of our own id; nothing happens if it found nobody or if our id changed
    /// since (a BEP 42 id adopted meanwhile does its own lookup and refresh).
    ///
    /// Each family has its own table and its own ranges: `lookup` is that family's part of the
    /// join, and the refreshing lookups run in that family only.
    func refreshFarRanges(after lookup: LookupResult, family: AddressFamily = .v4) {
        guard lookup.target == id, let closest = lookup.closest.first else { return }
        let depth = min(id.commonPrefixLength(with: closest.id), 159)
        guard depth > 0 else { return }
        var held = [Int](repeating: 0, count: depth)
        for e in table(family).allEntries {
            let p = id.commonPrefixLength(with: e.info.id)
            if p < depth { held[p] += 1 }
        }
        var r = rng
        var targets: [NodeID] = []
        for p in 0..<depth where held[p] < config.k { targets.append(id.randomInBucket(prefix: p, using: &r)) }
        rng = r
        for t in targets {
            withTable(family) { $0.touchBucket(for: t, now: now) }
            FamilyLookups(node: self, target: t, kind: .findNode, families: [family]) { _, _ in }.start()
        }
    }

    /// Starts maintenance only (for a node whose table was filled some other way).
    package func startMaintenance() { scheduleMaintenance() }

    /// Adds a node as if it had just answered (simulations build tables directly with this).
    @discardableResult
    func addNode(_ n: NodeInfo, responded: Bool = true) -> RoutingTable.InsertResult {
        withTable(n.address.family) { $0.insert(n, responded: responded, now: now) }
    }

    /// `addNode` for the simulation (DHTSim), which builds converged tables directly.
    package func addAnsweredNode(_ n: NodeInfo) { addNode(n) }

    /// Stops timers and forgets pending queries (their callbacks do not run).
    public func stop() {
        scheduler.assertInLoop()
        stopped = true
        maintenanceTimer?.cancel()
        for (_, p) in pending {
            p.slowTimer?.cancel()
            p.timeoutTimer?.cancel()
        }
        pending.removeAll()
        for (_, a) in announcements {
            a.timer?.cancel()
            a.keepAliveTimer?.cancel()
        }
        announcements.removeAll()
        knockHandlers.removeAll()
    }

    func scheduleMaintenance() {
        maintenanceTimer?.cancel()
        // With empty tables (bootstrap unreachable so far), try again soon rather than in a minute.
        let delay = tableSize == 0 ? min(config.maintenanceInterval, .seconds(5)) : config.maintenanceInterval
        maintenanceTimer = scheduler.schedule(after: delay) { [weak self] in
            guard let self, !self.stopped else { return }
            self.maintain()
            self.scheduleMaintenance()
        }
    }

    func maintain() {
        let t = now
        if tableSize == 0 && (!config.bootstrap.isEmpty || !lastJoinVia.isEmpty) {
            // Cut off (or never joined): try the bootstrap nodes again.
            rejoin()
        } else {
            for f in families where table(f).count < config.k {
                if table(f).count == 0 && families.count == 2 {
                    // One family's table is empty while the other's is not (little IPv6 around,
                    // or bootstrap nodes of one family only): a join asks the other family's
                    // nodes for this one's. Spaced out, doubling up to half an hour, as the host
                    // may have no route in this family at all.
                    guard t >= nextSparseFamilyJoin else { continue }
                    sparseFamilyJoins += 1
                    let wait = config.maintenanceInterval &* Nanos(1 << min(sparseFamilyJoins - 1, 5))
                    nextSparseFamilyJoin = t &+ min(wait, .seconds(30 * 60))
                    rejoin()
                    break
                }
                // A sparse table (we joined a young network): look ourselves up again to fill it.
                FamilyLookups(node: self, target: id, kind: .findNode, families: [f]) { _, _ in }.start()
            }
            if families.allSatisfy({ table($0).count > 0 }) { sparseFamilyJoins = 0 }
        }
        store.expire(now: t)
        items.expire(now: t)
        for f in families {
            var r = rng
            let stale = table(f).staleBuckets(now: t, staleAfter: config.bucketRefresh, using: &r)
            rng = r
            for target in stale.prefix(3) {
                withTable(f) { $0.touchBucket(for: target, now: t) }
                FamilyLookups(node: self, target: target, kind: .findNode, families: [f]) { _, _ in }.start()
            }
        }
    }

    /// A join from maintenance: through the nodes last joined through, else the bootstrap nodes.
    func rejoin() {
        joinLookup(
            via: lastJoinVia.isEmpty ? nil : lastJoinVia,
            seeds: [],
            attempt: config.joinAttempts - 1,
            completion: nil
        )
    }

    // MARK: persistence

    /// Our id and live nodes, for the state file.
    public func serializedState() -> [UInt8] {
        scheduler.assertInLoop()
        return RoutingTable.serialized(id: id, tables: [table, table6], now: now)
    }

    /// The largest state file worth reading (far above a full table).
    public static let maxStateFileSize = RoutingTable.maxStateFileSize

    /// The id and nodes (both families) of a state file written from `serializedState()`; throws
    /// if it is not one. A file written before BEP 32 support (IPv4 nodes only) loads as well.
    public static func savedState(_ bytes: [UInt8]) throws -> (id: NodeID, nodes: [NodeInfo]) {
        try RoutingTable.deserialize(bytes)
    }

    /// Nodes in the routing tables (both families).
    public var routingTableSize: Int { table.count + table6.count }

    /// Nodes in the IPv4 and in the IPv6 routing table.
    public var routingTableSizes: (v4: Int, v6: Int) { (table.count, table6.count) }
}
