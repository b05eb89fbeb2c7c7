import Determinism
import Logging
import NetCore
import Sodium

/// Settings of one DHT node. Defaults follow BEP 5 and libtorrent's practice.
public struct DHTConfig: Sendable {
    /// Nodes per bucket and the size of a lookup's result set.
    public var k = 8
    /// Parallel queries in a lookup.
    public var alpha = 3
    /// A query unanswered this long frees its lookup slot (the answer is still accepted later).
    /// The node adapts this to 3× its smoothed round-trip time, within `minSlowAfter...slowAfter`.
    public var slowAfter: Nanos = .milliseconds(1000)
    public var minSlowAfter: Nanos = .milliseconds(250)
    /// A query unanswered this long has failed.
    public var queryTimeout: Nanos = .milliseconds(3000)
    /// Extra attempts for standalone queries (ping, announce_peer). Lookups route around instead.
    public var retries = 1
    /// Most unknown queriers being verified by ping at once.
    public var maxVerifications = 64
    /// Attempts at joining before `start`'s completion reports an empty result.
    public var joinAttempts = 3
    /// Where to start when the routing table is empty. Host names are resolved by the caller.
    public var bootstrap: [PeerAddress] = []
    /// BEP 43: send `ro=1`, do not answer queries.
    public var readOnly = false
    /// Per-bucket limits: one node per IP, `maxPerSubnetInBucket` per /24 (loopback exempt).
    public var restrictIPs = true
    public var maxPerSubnetInBucket = 2
    /// BEP 42: adopt an id derived from the external address once it is known and public.
    public var bep42NodeIDs = true
    /// After adopting a BEP 42 id, the next id change waits at least this long: each change
    /// rebuilds the table and rejoins, and a tally that wavers between two reported IPs (a
    /// misreporting peer, stale votes) must not make the node hop ids on every flip.
    public var minIDChangeInterval: Nanos = .seconds(15 * 60)
    /// Per-source query rate (queries per second, burst). Loopback sources are keyed by port.
    public var queryRate: Double = 20
    public var queryBurst: Double = 50
    /// Datagrams longer than this are dropped unparsed.
    public var maxDatagram = 1500
    public var peerStore = PeerStore()
    /// Most peers returned in one get_peers answer (keeps the answer under ~1000 bytes).
    public var maxValuesPerResponse = 50
    public var tokenRotation: Nanos = .seconds(300)
    /// How often announces are repeated; below the 30-minute expiry.
    public var reannounceInterval: Nanos = .seconds(15 * 60)
    /// Buckets unchanged this long are refreshed with a lookup of a random id in their range.
    public var bucketRefresh: Nanos = .seconds(15 * 60)
    /// How often maintenance (refresh, expiry, token rotation) runs.
    public var maintenanceInterval: Nanos = .seconds(60)
    /// A node id pinned by the user: kept even when it does not match our external IP (BEP 42).
    public var nodeID: NodeID? = nil
    /// The id loaded from the state file: used at start, and replaced by a BEP 42 id once the
    /// learned public address shows that it does not match (unlike `nodeID`).
    public var savedNodeID: NodeID? = nil
    /// Seed for ids, transaction ids and token secrets. nil in production: libsodium's CSPRNG.
    /// Set only in simulations, where runs must repeat.
    public var seed: UInt64? = nil
    /// Client version sent as `v` (two letters and two version bytes).
    public var version: [UInt8] = Array("TF".utf8) + [0, 1]

    public init() {}
}

/// Counters a node keeps about itself; bad input is counted here rather than crashing anything.
public struct DHTStats: Sendable, Equatable {
    public init() {}
    public var received: UInt64 = 0
    public var sent: UInt64 = 0
    /// Queries this node sent (a subset of `sent`).
    public var queriesSent: UInt64 = 0
    public var oversized: UInt64 = 0
    public var malformed: UInt64 = 0
    public var rateLimited: UInt64 = 0
    public var queriesAnswered: UInt64 = 0
    public var queriesIgnoredReadOnly: UInt64 = 0
    public var errorsSent: UInt64 = 0
    /// Queries of a method we do not know (answered with a short error, or not at all).
    public var unknownMethods: UInt64 = 0
    /// Error replies not sent because even their shortest form was larger than the query.
    public var errorsSuppressed: UInt64 = 0
    public var responses: UInt64 = 0
    public var errorsReceived: UInt64 = 0
    /// Responses whose transaction id we did not issue or that came from the wrong address.
    public var unexpectedResponses: UInt64 = 0
    public var timeouts: UInt64 = 0
    public var badTokens: UInt64 = 0
    public var peersStored: UInt64 = 0
    /// Announces stored by evicting another entry (a full topic or store).
    public var peersEvicted: UInt64 = 0
    public var idChanges: UInt64 = 0
    /// Id changes the majority asked for within `minIDChangeInterval` of the last one (not made).
    public var idChangesDeferred: UInt64 = 0
    public var itemsStored: UInt64 = 0
    public var itemsRejected: UInt64 = 0
}

/// NAT behaviour inferred from the addresses other nodes report back (BEP 42 `ip`).
public enum NATType: String, Sendable, Codable {
    case unknown
    /// The same external port seen by several distinct nodes: endpoint-independent mapping.
    case consistent
    /// A different external port per destination: a symmetric NAT.
    case random
}

/// What a lookup produced.
public struct LookupResult: Sendable {
    public var target: NodeID
    /// The closest nodes that answered, closest first, with the tokens they handed out.
    public var closest: [NodeInfo]
    public var tokens: [NodeInfo: [UInt8]]
    /// Peers collected by a get_peers lookup.
    public var peers: [PeerAddress]
    public var queriesSent: Int
    public var responsesReceived: Int
    /// Datagrams the lookup caused: queries sent plus answers received.
    public var messages: Int { queriesSent + responsesReceived }
    /// Hops: depth of the deepest node that answered (nodes from the routing table are depth 1).
    public var rounds: Int
    public var duration: Nanos
    /// A BEP 44 `get` lookup: the verified item found (for mutable items, the highest `seq`).
    public var item: DHTItem? = nil
}

/// One Mainline DHT node (BEP 5, 42, 43), single-threaded on its host's thread.
///
/// It is written against `DatagramSocket` and `Scheduler` only, so the same code runs on the real
/// UDP host and on the simulated network. It answers queries, keeps a routing table and a peer
/// store, runs iterative lookups and announces, and learns its external address.
public final class DHTNode {
    public let config: DHTConfig
    public private(set) var id: NodeID
    public private(set) var table: RoutingTable
    public private(set) var stats = DHTStats()
    public private(set) var store: PeerStore
    var items = ItemStore()
    public var logger = Logger(label: "turf.dht")

    let socket: DatagramSocket
    let scheduler: Scheduler
    var rng: SplitMix64
    private var tokens: TokenIssuer
    private var rateLimiter: RateLimiter
    private var pending: [UInt32: Pending] = [:]
    private var maintenanceTimer: TimerToken?
    private var announcements: [NodeID: Announcement] = [:]
    private var stopped = false
    private var lastJoinVia: [PeerAddress] = []
    /// Unknown nodes that queried us and are being pinged before they may enter the table.
    private var verifying: Set<PeerAddress> = []
    /// Smoothed round-trip time of answered queries (0 until the first answer).
    public private(set) var smoothedRTT: Nanos = 0

    /// How long a lookup waits on a silent node before giving its slot to another.
    var slowDelay: Nanos {
        smoothedRTT == 0 ? config.slowAfter : min(config.slowAfter, max(config.minSlowAfter, smoothedRTT * 3))
    }

    // One vote per responder IP (per IP and port on loopback, where many nodes share an address).
    private var votes: [UInt64: (address: PeerAddress, at: Nanos)] = [:]
    public private(set) var externalAddress: PeerAddress?
    /// When the node last adopted a BEP 42 id.
    private var lastIDChange: Nanos?
    public private(set) var natType: NATType = .unknown

    struct Pending {
        var destination: PeerAddress
        var expectedID: NodeID?
        var method: String
        var callback: (QueryOutcome) -> Void
        var slowTimer: TimerToken?
        var timeoutTimer: TimerToken?
        var onSlow: (() -> Void)?
        var sentAt: Nanos = 0
    }

    /// The end of one query.
    public enum QueryOutcome {
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
    }

    private var announcementGeneration: UInt64 = 0
    /// The whole text of the error 203 sent for a malformed query.
    static let malformedMessage = "malformed"
    /// First retry delay for an announce that reached no node (doubling up to `reannounceInterval`).
    static let announceRetry: Nanos = .seconds(5)

    /// A node on `socket`, with timers from `scheduler`. Feed it datagrams with `receive`, or use
    /// `attach(to:)` / `init(host:)` to wire a socket or a demultiplexer.
    public init(socket: DatagramSocket, scheduler: Scheduler, config: DHTConfig = DHTConfig()) {
        self.config = config
        self.socket = socket
        self.scheduler = scheduler
        let seed = config.seed ?? Sodium.randomU64()
        rng = SplitMix64(seed: seed, stream: 0xD47)
        var r = rng
        id = config.nodeID ?? config.savedNodeID ?? NodeID.random(using: &r)
        rng = r
        table = RoutingTable(ownID: id, k: config.k, restrictIPs: config.restrictIPs,
                             maxPerSubnetInBucket: config.maxPerSubnetInBucket, now: scheduler.now)
        store = config.peerStore
        rateLimiter = RateLimiter(ratePerSecond: config.queryRate, burst: config.queryBurst)
        tokens = TokenIssuer(secret: [], previous: [], now: scheduler.now, rotation: config.tokenRotation)
        tokens = TokenIssuer(secret: freshSecret(), previous: freshSecret(), now: scheduler.now, rotation: config.tokenRotation)
    }

    /// A node that owns `host`'s receive callback.
    public convenience init(host: NetworkHost, config: DHTConfig = DHTConfig()) {
        self.init(socket: host, scheduler: host, config: config)
        host.onReceive = { [weak self] payload, source in self?.receive(payload, from: source) }
    }

    /// Routes datagrams starting with `d` (every KRPC message) from a shared socket to this node.
    public func attach(to demux: Demultiplexer) {
        demux.route([Demultiplexer.krpcFirstByte]) { [weak self] payload, source in self?.receive(payload, from: source) }
    }

    private func freshSecret() -> [UInt8] {
        if config.seed != nil {
            var out: [UInt8] = []
            for _ in 0..<4 { let w = rng.next(); for i in 0..<8 { out.append(UInt8(truncatingIfNeeded: w >> (8 * UInt64(i)))) } }
            return out
        }
        return Sodium.randomBytes(32)
    }

    public var now: Nanos { scheduler.now }

    /// Tokens follow the clock (5-minute epochs), not the maintenance timer.
    private func issueToken(for ip: UInt32) -> [UInt8] {
        var t = tokens
        let tok = t.token(for: ip, now: now) { freshSecret() }
        tokens = t
        return tok
    }

    private func tokenIsValid(_ token: [UInt8], for ip: UInt32) -> Bool {
        var t = tokens
        let ok = t.isValid(token, for: ip, now: now) { freshSecret() }
        tokens = t
        return ok
    }
    public var localAddress: PeerAddress { socket.localAddress }

    // MARK: life cycle

    /// Joins the network: looks up our own id, seeded by saved nodes, the table, or the bootstrap
    /// nodes, and starts maintenance. `completion` runs when the join lookup ends.
    public func start(savedNodes: [NodeInfo] = [], completion: ((LookupResult) -> Void)? = nil) {
        scheduleMaintenance()
        joinLookup(via: nil, seeds: savedNodes, attempt: 0, completion: completion)
    }

    /// Joins through `via` (instead of the configured bootstrap nodes) and starts maintenance.
    public func join(via: [PeerAddress], completion: ((LookupResult) -> Void)? = nil) {
        scheduleMaintenance()
        joinLookup(via: via, seeds: [], attempt: 0, completion: completion)
    }

    /// Looks up our own id. A join that reached nobody (every bootstrap datagram lost, say) is
    /// retried a few times before giving up; maintenance tries again while the table is empty.
    /// A join that reached someone then fills the ranges farther out (`refreshFarRanges`).
    private func joinLookup(via: [PeerAddress]?, seeds: [NodeInfo], attempt: Int, completion: ((LookupResult) -> Void)?) {
        let l = Lookup(node: self, target: id, kind: .findNode) { [weak self] r in
            guard let self, !self.stopped else { return }
            if r.closest.isEmpty && attempt < self.config.joinAttempts - 1 {
                self.scheduler.schedule(after: self.config.queryTimeout) { [weak self] in
                    self?.joinLookup(via: via, seeds: seeds, attempt: attempt + 1, completion: completion)
                }
            } else {
                self.refreshFarRanges(after: r)
                completion?(r)
            }
        }
        if let via { l.bootstrap = via; lastJoinVia = via }
        l.seeds = seeds
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
    func refreshFarRanges(after lookup: LookupResult) {
        guard lookup.target == id, let closest = lookup.closest.first else { return }
        let depth = min(id.commonPrefixLength(with: closest.id), 159)
        guard depth > 0 else { return }
        var held = [Int](repeating: 0, count: depth)
        for e in table.allEntries {
            let p = id.commonPrefixLength(with: e.info.id)
            if p < depth { held[p] += 1 }
        }
        var r = rng
        var targets: [NodeID] = []
        for p in 0..<depth where held[p] < config.k { targets.append(id.randomInBucket(prefix: p, using: &r)) }
        rng = r
        for t in targets {
            table.touchBucket(for: t, now: now)
            findNode(t) { _ in }
        }
    }

    /// Starts maintenance only (for a node whose table was filled some other way).
    public func startMaintenance() { scheduleMaintenance() }

    /// Adds a node as if it had just answered (simulations build tables directly with this).
    @discardableResult
    public func addNode(_ n: NodeInfo, responded: Bool = true) -> RoutingTable.InsertResult {
        table.insert(n, responded: responded, now: now)
    }

    /// Stops timers and forgets pending queries (their callbacks do not run).
    public func stop() {
        stopped = true
        maintenanceTimer?.cancel()
        for (_, p) in pending { p.slowTimer?.cancel(); p.timeoutTimer?.cancel() }
        pending.removeAll()
        for (_, a) in announcements { a.timer?.cancel() }
        announcements.removeAll()
    }

    private func scheduleMaintenance() {
        maintenanceTimer?.cancel()
        // With an empty table (bootstrap unreachable so far), try again soon rather than in a minute.
        let delay = table.count == 0 ? min(config.maintenanceInterval, .seconds(5)) : config.maintenanceInterval
        maintenanceTimer = scheduler.schedule(after: delay) { [weak self] in
            guard let self, !self.stopped else { return }
            self.maintain()
            self.scheduleMaintenance()
        }
    }

    func maintain() {
        let t = now
        if table.count == 0 && (!config.bootstrap.isEmpty || !lastJoinVia.isEmpty) {
            // Cut off (or never joined): try the bootstrap nodes again.
            joinLookup(via: lastJoinVia.isEmpty ? nil : lastJoinVia, seeds: [], attempt: config.joinAttempts - 1, completion: nil)
        } else if table.count < config.k {
            // A sparse table (we joined a young network): look ourselves up again to fill it.
            findNode(id) { _ in }
        }
        store.expire(now: t)
        items.expire(now: t)
        var r = rng
        let stale = table.staleBuckets(now: t, staleAfter: config.bucketRefresh, using: &r)
        rng = r
        for target in stale.prefix(3) {
            table.touchBucket(for: target, now: t)
            findNode(target) { _ in }
        }
    }

    // MARK: sending queries

    /// A random 4-byte transaction id not used by an outstanding query, so that an off-path
    /// sender cannot guess the next one and forge an answer. From libsodium in production, from
    /// the seeded generator in simulations (which must repeat).
    private func newTransaction() -> UInt32 {
        var t: UInt32
        repeat {
            t = config.seed != nil ? UInt32(truncatingIfNeeded: rng.next() >> 32) : UInt32(truncatingIfNeeded: Sodium.randomU64())
        } while pending[t] != nil
        return t
    }

    private func send(_ m: KRPCMessage, to a: PeerAddress) {
        stats.sent += 1
        socket.send(m.encoded(), to: a)
    }

    /// Sends one query; `callback` runs exactly once (unless the node stops). `onSlow` runs if no
    /// answer came within `slowAfter`.
    func query(_ q: KRPCQuery, to a: PeerAddress, expectedID: NodeID? = nil, onSlow: (() -> Void)? = nil,
               _ callback: @escaping (QueryOutcome) -> Void) {
        var q = q
        q.readOnly = config.readOnly
        let t = newTransaction()
        let tid: [UInt8] = [UInt8(t >> 24), UInt8((t >> 16) & 0xFF), UInt8((t >> 8) & 0xFF), UInt8(t & 0xFF)]
        var p = Pending(destination: a, expectedID: expectedID, method: q.method, callback: callback, onSlow: onSlow)
        p.sentAt = now
        if onSlow != nil {
            p.slowTimer = scheduler.schedule(after: slowDelay) { [weak self] in
                guard let self, let s = self.pending[t]?.onSlow else { return }
                self.pending[t]?.onSlow = nil
                s()
            }
        }
        p.timeoutTimer = scheduler.schedule(after: config.queryTimeout) { [weak self] in
            guard let self, let p = self.pending.removeValue(forKey: t) else { return }
            p.slowTimer?.cancel()
            self.stats.timeouts += 1
            if let id = p.expectedID, let promoted = self.table.markFailed(id, now: self.now) { self.pingPromoted(promoted) }
            p.callback(.timeout)
        }
        pending[t] = p
        stats.queriesSent += 1
        send(KRPCMessage(transactionID: tid, body: .query(q), version: config.version), to: a)
    }

    /// A query retried up to `config.retries` times on timeout.
    func queryWithRetries(_ q: KRPCQuery, to a: PeerAddress, expectedID: NodeID? = nil, attempt: Int = 0,
                          _ callback: @escaping (QueryOutcome) -> Void) {
        query(q, to: a, expectedID: expectedID) { [weak self] outcome in
            if case .timeout = outcome, let self, attempt < self.config.retries {
                self.queryWithRetries(q, to: a, expectedID: expectedID, attempt: attempt + 1, callback)
            } else {
                callback(outcome)
            }
        }
    }

    public func ping(_ a: PeerAddress, _ callback: @escaping (QueryOutcome) -> Void) {
        queryWithRetries(KRPCQuery(method: "ping", id: id), to: a, callback)
    }

    // MARK: receiving

    /// Handles one datagram from `source`. Anything malformed is counted and dropped (a malformed
    /// query with a transaction id is answered with error 203).
    public func receive(_ payload: [UInt8], from source: PeerAddress) {
        guard !stopped else { return }
        stats.received += 1
        guard payload.count <= config.maxDatagram else { stats.oversized += 1; return }
        let m: KRPCMessage
        do {
            m = try KRPCMessage.decode(payload)
        } catch {
            stats.malformed += 1
            // Answer only plausible queries, within the rate limit, with a short fixed message and
            // no larger than the query (no `ip`, no `v`), so that garbage cannot be turned into a
            // reflection flood nor learn anything about the parser.
            if let t = error.transactionID, payload.count > 12, !config.readOnly, isQuery(payload) {
                let reply = KRPCMessage(transactionID: t, body: .error(KRPCErrorBody(code: KRPCErrorCode.protocolError,
                                                                                   message: DHTNode.malformedMessage))).encoded()
                if reply.count <= payload.count, rateLimiter.allow(sourceKey(source), now: now) {
                    stats.errorsSent += 1
                    stats.sent += 1
                    socket.send(reply, to: source)
                }
            }
            return
        }
        switch m.body {
        case let .query(q): handleQuery(q, transactionID: m.transactionID, from: source, requestSize: payload.count)
        case let .response(r): handleReply(m, outcome: .response(r, from: source), from: source, responderID: r.id)
        case let .error(e): handleReply(m, outcome: .error(e), from: source, responderID: nil)
        }
    }

    private func isQuery(_ payload: [UInt8]) -> Bool {
        // "1:y1:q" appears in every query; cheap test without a parse.
        let needle = Array("1:y1:q".utf8)
        guard payload.count >= needle.count else { return false }
        for i in 0...(payload.count - needle.count) where payload[i] == needle[0] {
            if Array(payload[i..<(i + needle.count)]) == needle { return true }
        }
        return false
    }

    func sourceKey(_ a: PeerAddress) -> UInt64 {
        a.isLoopback ? UInt64(a.ip) << 16 | UInt64(a.port) : UInt64(a.ip) << 16
    }

    private func handleReply(_ m: KRPCMessage, outcome: QueryOutcome, from source: PeerAddress, responderID: NodeID?) {
        guard m.transactionID.count == 4 else { stats.unexpectedResponses += 1; return }
        let t = m.transactionID.reduce(UInt32(0)) { $0 << 8 | UInt32($1) }
        guard let p = pending[t], p.destination == source else { stats.unexpectedResponses += 1; return }
        pending[t] = nil
        p.slowTimer?.cancel()
        p.timeoutTimer?.cancel()
        switch outcome {
        case .response:
            stats.responses += 1
            let rtt = now &- p.sentAt
            smoothedRTT = smoothedRTT == 0 ? rtt : (smoothedRTT * 7 + rtt) / 8
            if let rid = responderID {
                if let e = p.expectedID, e != rid, let promoted = table.remove(e) { pingPromoted(promoted) }
                if let ip = m.ip { recordVote(ip, from: source) }
                noteNode(NodeInfo(id: rid, address: source), responded: true)
            }
        case .error:
            stats.errorsReceived += 1
        case .timeout:
            break
        }
        p.callback(outcome)
    }

    /// A node moved from a replacement cache into the table may be gone: check it.
    private func pingPromoted(_ n: NodeInfo) {
        guard !stopped else { return }
        query(KRPCQuery(method: "ping", id: id), to: n.address, expectedID: n.id) { _ in }
    }

    private func noteNode(_ n: NodeInfo, responded: Bool) {
        let r = table.insert(n, responded: responded, now: now)
        if case let .cached(ping: q?) = r {
            // Make room if the questionable node is gone; `query` marks it failed on timeout.
            query(KRPCQuery(method: "ping", id: id), to: q.address, expectedID: q.id) { _ in }
        }
    }

    /// A node queried us. Known nodes are refreshed; an unknown one is pinged first and enters
    /// the table only when it answers from that address, so spoofed queries cannot fill it.
    private func heardFrom(_ n: NodeInfo) {
        if let e = table.entry(for: n.id) {
            if e.info.address == n.address { table.insert(n, responded: false, now: now) }
            return
        }
        guard verifying.count < config.maxVerifications, !verifying.contains(n.address),
              n.id != id, n.address.port != 0, table.hasRoom(for: n.id, now: now) else { return }
        verifying.insert(n.address)
        query(KRPCQuery(method: "ping", id: id), to: n.address, expectedID: n.id) { [weak self] _ in
            self?.verifying.remove(n.address)
        }
    }

    /// The query methods this node answers; any other gets a short error and nothing else.
    static let knownMethods: Set<String> = ["ping", "find_node", "get_peers", "announce_peer", "get", "put"]

    private func handleQuery(_ q: KRPCQuery, transactionID t: [UInt8], from source: PeerAddress, requestSize: Int) {
        if config.readOnly { stats.queriesIgnoredReadOnly += 1; return }
        guard rateLimiter.allow(sourceKey(source), now: now) else { stats.rateLimited += 1; return }
        func reply(_ r: KRPCResponse) {
            stats.queriesAnswered += 1
            send(KRPCMessage(transactionID: t, body: .response(r), ip: source, version: config.version), to: source)
        }
        // An error reply is never larger than the query it answers (no amplification): with
        // `ip` and `v` if it fits, else without them, else not at all.
        func fail(_ code: Int, _ msg: String) {
            let body = KRPCMessage.Body.error(KRPCErrorBody(code: code, message: msg))
            var bytes = KRPCMessage(transactionID: t, body: body, ip: source, version: config.version).encoded()
            if bytes.count > requestSize { bytes = KRPCMessage(transactionID: t, body: body).encoded() }
            guard bytes.count <= requestSize else { stats.errorsSuppressed += 1; return }
            stats.errorsSent += 1
            stats.sent += 1
            socket.send(bytes, to: source)
        }
        // A query we cannot answer says nothing about its sender worth a ping: only the senders
        // of queries we know are verified for the table (a ping to an unknown sender would be
        // unsolicited traffic, and larger than what it answers).
        guard DHTNode.knownMethods.contains(q.method) else {
            stats.unknownMethods += 1
            fail(KRPCErrorCode.methodUnknown, "method unknown")
            return
        }
        if !q.readOnly { heardFrom(NodeInfo(id: q.id, address: source)) }
        switch q.method {
        case "ping":
            reply(KRPCResponse(id: id))
        case "find_node":
            reply(KRPCResponse(id: id, nodes: table.closest(to: q.target!, count: config.k, now: now)))
        case "get_peers":
            let h = q.infoHash!
            var r = rng
            let values = store.peers(for: h, now: now, max: config.maxValuesPerResponse, using: &r)
            rng = r
            reply(KRPCResponse(id: id, nodes: table.closest(to: h, count: config.k, now: now), values: values,
                               token: issueToken(for: source.ip)))
        case "announce_peer":
            guard tokenIsValid(q.token!, for: source.ip) else {
                stats.badTokens += 1
                fail(KRPCErrorCode.protocolError, "bad token")
                return
            }
            let port = q.impliedPort ? source.port : q.port!
            guard port != 0 else { fail(KRPCErrorCode.protocolError, "port 0"); return }
            var r = rng
            let added = store.add(PeerAddress(ip: source.ip, port: port), for: q.infoHash!, now: now, using: &r)
            rng = r
            stats.peersStored += 1
            if added == .storedEvicting { stats.peersEvicted += 1 }
            reply(KRPCResponse(id: id))
        case "get":
            let target = q.target!
            var extra: [(String, BValue)] = []
            if let item = items.get(target, now: now) {
                switch item {
                case let .immutable(v):
                    extra.append(("v", v))
                case let .mutable(m):
                    extra.append(("seq", .int(m.seq)))
                    // A getter that already has this seq (or newer) needs only the number.
                    if !(q.args["seq"]?.intValue.map { $0 >= m.seq } ?? false) {
                        extra += [("k", .bytes(m.publicKey)), ("sig", .bytes(m.signature)), ("v", m.value)]
                    }
                }
            }
            reply(KRPCResponse(id: id, nodes: table.closest(to: target, count: config.k, now: now),
                               token: issueToken(for: source.ip), extra: extra))
        case "put":
            guard tokenIsValid(q.token!, for: source.ip) else {
                stats.badTokens += 1
                fail(KRPCErrorCode.protocolError, "bad token")
                return
            }
            let v = q.args["v"]!
            guard Bencode.encode(v).count <= DHTItem.maxValueSize else {
                stats.itemsRejected += 1
                fail(KRPCErrorCode.messageTooBig, "message (v field) too big")
                return
            }
            let item: DHTItem
            if let k = q.args["k"]?.bytesValue {
                let salt = q.args["salt"]?.bytesValue ?? []
                guard salt.count <= DHTItem.maxSaltSize else {
                    stats.itemsRejected += 1
                    fail(KRPCErrorCode.saltTooBig, "salt (salt field) too big")
                    return
                }
                guard let sig = q.args["sig"]?.bytesValue, let seq = q.args["seq"]?.intValue else {
                    stats.itemsRejected += 1
                    fail(KRPCErrorCode.protocolError, "mutable put needs sig and seq")
                    return
                }
                let m = MutableItem(publicKey: k, salt: salt, seq: seq, value: v, signature: sig)
                guard m.isValid else {
                    stats.itemsRejected += 1
                    fail(KRPCErrorCode.invalidSignature, "invalid signature")
                    return
                }
                if case let .mutable(old)? = items.get(m.target, now: now) {
                    if let cas = q.args["cas"]?.intValue, cas != old.seq {
                        stats.itemsRejected += 1
                        fail(KRPCErrorCode.casMismatch, "CAS mismatch, re-read value and try again")
                        return
                    }
                    if seq < old.seq {
                        stats.itemsRejected += 1
                        fail(KRPCErrorCode.sequenceTooLow, "sequence number less than current")
                        return
                    }
                }
                item = .mutable(m)
            } else {
                item = .immutable(v)
            }
            guard items.put(item, now: now) else {
                stats.itemsRejected += 1
                fail(KRPCErrorCode.server, "item store full")
                return
            }
            stats.itemsStored += 1
            reply(KRPCResponse(id: id))
        default:
            fail(KRPCErrorCode.methodUnknown, "method unknown")
        }
    }

    // MARK: external address and NAT type (BEP 42)

    private func recordVote(_ reported: PeerAddress, from voter: PeerAddress) {
        let key = sourceKey(voter)
        if votes[key]?.address == reported {
            // The same voter saying the same again: only its time changes, and the tally below
            // depends on the addresses alone, so it would come out as it did last time.
            votes[key]!.at = now
            return
        }
        votes[key] = (reported, now)
        if votes.count > 64, let oldest = votes.min(by: { $0.value.at < $1.value.at }) { votes[oldest.key] = nil }
        // Majority IP, then classify its ports.
        var byIP: [UInt32: [UInt16]] = [:]
        for (_, v) in votes { byIP[v.address.ip, default: []].append(v.address.port) }
        guard let (ip, ports) = byIP.max(by: { $0.value.count < $1.value.count || ($0.value.count == $1.value.count && $0.key > $1.key) }) else { return }
        var counts: [UInt16: Int] = [:]
        for p in ports { counts[p, default: 0] += 1 }
        let top = counts.max { $0.value < $1.value || ($0.value == $1.value && $0.key > $1.key) }!
        externalAddress = PeerAddress(ip: ip, port: top.key)
        if ports.count >= 3 {
            if top.value >= 3 && top.value * 3 >= ports.count * 2 { natType = .consistent }
            else if top.value == 1 { natType = .random }
            else { natType = .unknown }
        }
        if config.bep42NodeIDs, config.nodeID == nil, ports.count >= 3, ports.count * 2 > votes.count,
           !BEP42.isExempt(ip), !BEP42.isValid(id, for: ip) {
            // The tally is re-run on every new vote, and without this a majority that flips
            // between two IPs and back (one stable public address, plus a few voters reporting
            // another) adopted a new id, rebuilt the table and rejoined on every flip.
            if let last = lastIDChange, now &- last < config.minIDChangeInterval {
                stats.idChangesDeferred += 1
            } else {
                adoptID(for: ip)
            }
        }
    }

    private func adoptID(for ip: UInt32) {
        var r = rng
        let newID = BEP42.nodeID(for: ip, using: &r)
        rng = r
        let old = table.allEntries
        id = newID
        table = RoutingTable(ownID: newID, k: config.k, restrictIPs: config.restrictIPs,
                             maxPerSubnetInBucket: config.maxPerSubnetInBucket, now: now)
        for e in old { table.insert(e.info, responded: e.lastResponse != nil, now: e.lastSeen) }
        stats.idChanges += 1
        lastIDChange = now
        logger.info("adopted BEP 42 node id \(newID) for external address")
        // A new id is a new place in the network: join it as at start (own id, then the far ranges).
        findNode(newID) { [weak self] r in self?.refreshFarRanges(after: r) }
    }

    // MARK: lookups

    public func findNode(_ target: NodeID, _ completion: @escaping (LookupResult) -> Void) {
        Lookup(node: self, target: target, kind: .findNode, completion: completion).start()
    }

    public func getPeers(_ infoHash: NodeID, _ completion: @escaping (LookupResult) -> Void) {
        Lookup(node: self, target: infoHash, kind: .getPeers, completion: completion).start()
    }

    // MARK: BEP 44 items

    /// Finds a mutable item by its public key and salt; the newest valid version wins.
    public func getMutable(publicKey: [UInt8], salt: [UInt8] = [], _ completion: @escaping (MutableItem?) -> Void) {
        let l = Lookup(node: self, target: MutableItem.target(publicKey: publicKey, salt: salt), kind: .getItem(salt: salt)) { r in
            if case let .mutable(m)? = r.item { completion(m) } else { completion(nil) }
        }
        l.start()
    }

    /// Finds an immutable item by its target (SHA-1 of its bencoded value).
    public func getImmutable(_ target: NodeID, _ completion: @escaping (BValue?) -> Void) {
        Lookup(node: self, target: target, kind: .getItem(salt: [])) { r in completion(r.item?.value) }.start()
    }

    /// Stores an item on the closest nodes that hand out tokens. Calls back with how many stored it.
    public func put(_ item: DHTItem, _ completion: @escaping (Int) -> Void) {
        let salt: [UInt8]
        if case let .mutable(m) = item { salt = m.salt } else { salt = [] }
        Lookup(node: self, target: item.target, kind: .getItem(salt: salt)) { [weak self] result in
            guard let self else { return }
            let targets = result.closest.filter { result.tokens[$0] != nil }
            if targets.isEmpty { completion(0); return }
            var left = targets.count, stored = 0
            for n in targets {
                var extra: [(String, BValue)] = [("v", item.value)]
                if case let .mutable(m) = item {
                    extra += [("k", .bytes(m.publicKey)), ("seq", .int(m.seq)), ("sig", .bytes(m.signature))]
                    if !m.salt.isEmpty { extra.append(("salt", .bytes(m.salt))) }
                }
                let q = KRPCQuery(method: "put", id: self.id, token: result.tokens[n], extra: extra)
                self.queryWithRetries(q, to: n.address, expectedID: n.id) { outcome in
                    if case .response = outcome { stored += 1 }
                    left -= 1
                    if left == 0 { completion(stored) }
                }
            }
        }.start()
    }

    /// Looks `infoHash` up and announces `port` (or, with `impliedPort`, our source port as the
    /// others see it) to the closest nodes that gave us a token. Calls back with the lookup and the
    /// number of nodes that stored the announce.
    public func announce(_ infoHash: NodeID, port: UInt16, impliedPort: Bool = true,
                         _ completion: @escaping (LookupResult, Int) -> Void) {
        getPeers(infoHash) { [weak self] result in
            guard let self else { return }
            let targets = result.closest.filter { result.tokens[$0] != nil }
            if targets.isEmpty { completion(result, 0); return }
            var left = targets.count, stored = 0
            for n in targets {
                let q = KRPCQuery(method: "announce_peer", id: self.id, infoHash: infoHash, port: port,
                                  impliedPort: impliedPort, token: result.tokens[n])
                self.queryWithRetries(q, to: n.address, expectedID: n.id) { outcome in
                    if case .response = outcome { stored += 1 }
                    left -= 1
                    if left == 0 { completion(result, stored) }
                }
            }
        }
    }

    /// Announces now and every `reannounceInterval` until `duration` ends (forever if nil). An
    /// announce that stored on no node (bootstrap unreachable yet, say) is retried after 5 s,
    /// doubling, instead of waiting a whole re-announce interval.
    public func keepAnnouncing(_ infoHash: NodeID, port: UInt16, impliedPort: Bool = true, duration: Nanos? = nil,
                               onEach: ((LookupResult, Int) -> Void)? = nil) {
        announcements[infoHash]?.timer?.cancel()
        announcementGeneration &+= 1
        announcements[infoHash] = Announcement(port: port, impliedPort: impliedPort, until: duration.map { now &+ $0 },
                                               generation: announcementGeneration)
        runAnnouncement(infoHash, retry: DHTNode.announceRetry, onEach: onEach)
    }

    public func stopAnnouncing(_ infoHash: NodeID) {
        announcements.removeValue(forKey: infoHash)?.timer?.cancel()
    }

    private func runAnnouncement(_ h: NodeID, retry: Nanos, onEach: ((LookupResult, Int) -> Void)?) {
        guard let a = announcements[h], !stopped else { return }
        if let until = a.until, now >= until { announcements[h] = nil; return }
        announce(h, port: a.port, impliedPort: a.impliedPort) { [weak self] r, stored in
            onEach?(r, stored)
            guard let self, !self.stopped, self.announcements[h]?.generation == a.generation else { return }
            let failed = stored == 0
            let interval = self.config.reannounceInterval
            let delay = failed ? min(retry, interval) : interval
            // Doubling stops at the re-announce interval, so any number of failures cannot overflow it.
            let next = failed ? min(retry > interval / 2 ? interval : retry * 2, interval) : DHTNode.announceRetry
            self.announcements[h]?.timer = self.scheduler.schedule(after: delay) { [weak self] in
                self?.runAnnouncement(h, retry: next, onEach: onEach)
            }
        }
    }

    // MARK: persistence

    /// Our id and live nodes, for the state file.
    public func serializedState() -> [UInt8] { table.serialized(now: now) }
}

/// An iterative Kademlia lookup: α queries in flight, converging on the k closest nodes that
/// answered. Nodes that stay silent past `slowAfter` stop holding a slot; past `queryTimeout` they
/// have failed.
final class Lookup {
    enum State { case fresh, inFlight, slow, answered, failed }
    struct Candidate {
        var info: NodeInfo
        var distance: NodeID
        var state: State
        var depth: Int
        /// An address from the bootstrap list whose id we do not know yet.
        var unknownID: Bool
    }

    enum Kind { case findNode, getPeers, getItem(salt: [UInt8]) }

    unowned let node: DHTNode
    let target: NodeID
    let kind: Kind
    var item: DHTItem?
    let completion: (LookupResult) -> Void
    var candidates: [Candidate] = []
    var seenAddresses: Set<PeerAddress> = []
    var seenIDs: Set<NodeID> = []
    var inFlight = 0 // holding a slot
    var outstanding = 0 // not yet answered or failed
    var tokens: [NodeInfo: [UInt8]] = [:]
    var peers: [PeerAddress] = []
    var peerSet: Set<PeerAddress> = []
    var queriesSent = 0
    var responses = 0
    var maxDepth = 0
    let started: Nanos
    var finished = false
    let maxCandidates: Int
    lazy var bootstrap: [PeerAddress] = node.config.bootstrap
    var seeds: [NodeInfo] = []

    init(node: DHTNode, target: NodeID, kind: Kind, completion: @escaping (LookupResult) -> Void) {
        self.node = node
        self.target = target
        self.kind = kind
        self.completion = completion
        started = node.now
        maxCandidates = node.config.k * 8
    }

    func start() {
        let initial = node.table.closest(to: target, count: node.config.k, now: node.now)
        for n in initial { add(n, depth: 1, unknownID: false) }
        for n in seeds { add(n, depth: 1, unknownID: false) }
        if candidates.count < node.config.k {
            // Few known nodes: also ask the bootstrap routers (sorted last, ids unknown).
            for a in bootstrap where !seenAddresses.contains(a) {
                seenAddresses.insert(a)
                candidates.append(Candidate(info: NodeInfo(id: target ^ NodeID(a: ~0, b: ~0, c: ~0), address: a),
                                            distance: NodeID(a: ~0, b: ~0, c: ~0), state: .fresh, depth: 1, unknownID: true))
            }
        }
        step()
    }

    private func add(_ n: NodeInfo, depth: Int, unknownID: Bool) {
        guard n.id != node.id, n.address.port != 0, !seenAddresses.contains(n.address), !seenIDs.contains(n.id) else { return }
        seenAddresses.insert(n.address)
        seenIDs.insert(n.id)
        let c = Candidate(info: n, distance: n.id ^ target, state: .fresh, depth: depth, unknownID: unknownID)
        // Insert in distance order (candidates stays sorted).
        var lo = 0, hi = candidates.count
        while lo < hi {
            let mid = (lo + hi) / 2
            if candidates[mid].distance < c.distance { lo = mid + 1 } else { hi = mid }
        }
        if lo >= maxCandidates { return }
        candidates.insert(c, at: lo)
        if candidates.count > maxCandidates {
            // Drop the farthest fresh candidate (never one we are waiting on).
            if let i = candidates.lastIndex(where: { $0.state == .fresh }) { candidates.remove(at: i) }
        }
    }

    private func step() {
        guard !finished else { return }
        let k = node.config.k
        // Walk in distance order: count the k closest not-failed; send to fresh ones among them.
        var considered = 0
        var pendingInTopK = false
        var i = 0
        while i < candidates.count && considered < k {
            switch candidates[i].state {
            case .failed: break
            case .answered: considered += 1
            case .slow:
                // Silent past `slowAfter`: likely gone. It no longer holds the lookup back; a late
                // answer is still used if the lookup is running.
                break
            case .inFlight:
                considered += 1
                pendingInTopK = true
            case .fresh:
                considered += 1
                pendingInTopK = true
                if inFlight < node.config.alpha { send(i) }
            }
            i += 1
        }
        if !pendingInTopK { finish() }
    }

    private func send(_ i: Int) {
        candidates[i].state = .inFlight
        inFlight += 1
        outstanding += 1
        queriesSent += 1
        let c = candidates[i]
        let addr = c.info.address
        let q: KRPCQuery
        switch kind {
        case .findNode: q = KRPCQuery(method: "find_node", id: node.id, target: target)
        case .getPeers: q = KRPCQuery(method: "get_peers", id: node.id, infoHash: target)
        case .getItem: q = KRPCQuery(method: "get", id: node.id, target: target)
        }
        node.query(q, to: addr, expectedID: c.unknownID ? nil : c.info.id, onSlow: { [self] in
            guard let j = index(of: addr), candidates[j].state == .inFlight else { return }
            candidates[j].state = .slow
            inFlight -= 1
            step()
        }) { [self] outcome in
            guard let j = index(of: addr) else { return }
            let wasHoldingSlot = candidates[j].state == .inFlight
            if wasHoldingSlot { inFlight -= 1 }
            outstanding -= 1
            switch outcome {
            case let .response(r, _):
                responses += 1
                if candidates[j].unknownID {
                    // A bootstrap node told us its id: re-place it by distance.
                    var c = candidates.remove(at: j)
                    c.info.id = r.id
                    c.distance = r.id ^ target
                    c.unknownID = false
                    c.state = .answered
                    if !seenIDs.contains(r.id) && r.id != node.id {
                        seenIDs.insert(r.id)
                        let pos = candidates.firstIndex { $0.distance > c.distance } ?? candidates.count
                        candidates.insert(c, at: pos)
                    }
                    if let tok = r.token { tokens[c.info] = tok }
                } else {
                    candidates[j].state = .answered
                    if let tok = r.token { tokens[candidates[j].info] = tok }
                }
                maxDepth = max(maxDepth, c.depth)
                if case let .getItem(salt) = kind, let found = r.item(for: target, salt: salt) {
                    switch (item, found) {
                    case let (.mutable(old)?, .mutable(new)) where new.seq <= old.seq: break
                    default: item = found
                    }
                }
                for p in r.values where !peerSet.contains(p) {
                    peerSet.insert(p)
                    peers.append(p)
                }
                for n in r.nodes.prefix(16) { add(n, depth: c.depth + 1, unknownID: false) }
            case .error, .timeout:
                candidates[j].state = .failed
            }
            step()
        }
    }

    private func index(of a: PeerAddress) -> Int? { candidates.firstIndex { $0.info.address == a } }

    private func finish() {
        guard !finished else { return }
        finished = true
        let closest = candidates.filter { $0.state == .answered && !$0.unknownID }.prefix(node.config.k).map(\.info)
        completion(LookupResult(target: target, closest: Array(closest), tokens: tokens.filter { closest.contains($0.key) },
                                peers: peers, queriesSent: queriesSent, responsesReceived: responses,
                                rounds: maxDepth, duration: node.now &- started, item: item))
    }
}
