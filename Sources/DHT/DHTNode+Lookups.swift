import Determinism
import Logging
import NetCore
import Sodium

/// Iterative lookups (find_node, get_peers; BEP 44 get in DHTNode+Items.swift), in every address
/// family the socket reaches (BEP 32), merged.
extension DHTNode {
    /// A find_node lookup. One of our own id is a join: on a dual-stack node it asks for both
    /// families' nodes (BEP 32), as `start` does, so each family's table fills from the other's.
    public func findNode(_ target: NodeID, _ completion: @escaping (LookupResult) -> Void) {
        scheduler.assertInLoop()
        let l = FamilyLookups(node: self, target: target, kind: .findNode, families: families) { r, _ in completion(r) }
        l.crossFeed = target == id
        l.start()
    }

    public func getPeers(_ infoHash: NodeID, _ completion: @escaping (LookupResult) -> Void) {
        scheduler.assertInLoop()
        FamilyLookups(node: self, target: infoHash, kind: .getPeers, families: families) { r, _ in completion(r) }
            .start()
    }

    /// A get_peers lookup that also reports peers as they arrive (`onPeers`: each new batch, once
    /// per answer that brought new ones), before the lookup ends: hole punching acts on the first
    /// answer instead of waiting for slow or silent nodes (docs/nat.md).
    public func getPeers(
        _ infoHash: NodeID,
        onPeers: @escaping ([PeerAddress]) -> Void,
        _ completion: @escaping (LookupResult) -> Void
    ) {
        scheduler.assertInLoop()
        let l = FamilyLookups(node: self, target: infoHash, kind: .getPeers, families: families) { r, _ in
            completion(r)
        }
        l.onPeers = onPeers
        l.start()
    }

    /// A get_peers lookup that reports every answer carrying peers with the node that gave it
    /// (and its token), as it arrives: those nodes store the announcements and can relay a knock
    /// to the announcers (`knock(_:blob:via:_:)`).
    public func getPeers(
        _ infoHash: NodeID,
        onValues: @escaping (PeerHolder, [PeerAddress]) -> Void,
        _ completion: @escaping (LookupResult) -> Void
    ) {
        scheduler.assertInLoop()
        let l = FamilyLookups(node: self, target: infoHash, kind: .getPeers, families: families) { r, _ in
            completion(r)
        }
        l.onValues = onValues
        l.start()
    }
}

/// One lookup per address family, run side by side (BEP 32: the IPv4 and the IPv6 DHT are
/// separate networks, and a topic's announcements live at the closest nodes of each), and their
/// results merged: the closest nodes of both families with their tokens, so an announce or a
/// put reaches both; the peers of both; the newest item.
///
/// With `crossFeed` (a dual-stack node joining), every query asks for both families' nodes
/// (`want` n4 and n6) and the other family's nodes in an answer feed that family's lookup; a
/// family with nothing to start from (no known node, no bootstrap node of its own) starts
/// when the first such nodes arrive.
///
/// Ownership: each lookup's callbacks hold this object; it holds its lookups weakly (they live
/// as long as their queries are pending), so nothing outlives a stopped node's queries.
final class FamilyLookups {
    unowned let node: DHTNode
    let target: NodeID
    let kind: Lookup.Kind
    let families: [AddressFamily]
    let completion: (LookupResult, [(AddressFamily, LookupResult)]) -> Void
    /// Where to start without known nodes (default: the configured bootstrap nodes); each family
    /// takes the addresses of its own.
    var bootstrap: [PeerAddress]?
    var seeds: [NodeInfo] = []
    var crossFeed = false
    var onPeers: (([PeerAddress]) -> Void)?
    var onValues: ((PeerHolder, [PeerAddress]) -> Void)?

    private struct WeakLookup {
        weak var lookup: Lookup?
    }
    private var live: [AddressFamily: WeakLookup] = [:]
    /// Lookups started and not yet ended (plus one while `start` runs).
    private var running = 0
    private var results: [(AddressFamily, LookupResult)] = []
    private var done = false

    init(
        node: DHTNode,
        target: NodeID,
        kind: Lookup.Kind,
        families: [AddressFamily],
        completion: @escaping (LookupResult, [(AddressFamily, LookupResult)]) -> Void
    ) {
        self.node = node
        self.target = target
        self.kind = kind
        self.families = families
        self.completion = completion
    }

    private var feeds: Bool { crossFeed && families.count == 2 }

    func start() {
        let bootstrap = self.bootstrap ?? node.config.bootstrap
        running += 1  // a lookup that ends at once must not complete the others before they start
        for f in families {
            let own = seeds.filter { $0.address.family == f }
            let routers = bootstrap.filter { $0.family == f }
            // Nothing to start from in this family: the other family's answers may bring some.
            if feeds && node.table(f).count == 0 && own.isEmpty && routers.isEmpty { continue }
            launch(f, seeds: own, bootstrap: routers)
        }
        running -= 1
        if running == 0 { complete() }
    }

    private func launch(_ f: AddressFamily, seeds: [NodeInfo], bootstrap: [PeerAddress]) {
        let l = Lookup(node: node, family: f, target: target, kind: kind) { [self] r in finished(f, r) }
        l.bootstrap = bootstrap
        l.seeds = seeds
        l.onPeers = onPeers
        l.onValues = onValues
        if feeds {
            l.want = [.v4, .v6]
            l.onOtherFamily = { [self] nodes in offer(nodes, to: f.other) }
        }
        live[f] = WeakLookup(lookup: l)
        running += 1
        l.start()
    }

    /// Nodes of family `f` from the other family's answers: to its lookup, or to start one.
    private func offer(_ nodes: [NodeInfo], to f: AddressFamily) {
        guard !done, node.speaks(f) else { return }
        if let entry = live[f] {
            entry.lookup?.offer(nodes)
        } else {
            launch(f, seeds: nodes, bootstrap: [])
        }
    }

    private func finished(_ f: AddressFamily, _ r: LookupResult) {
        results.append((f, r))
        running -= 1
        if running == 0 { complete() }
    }

    private func complete() {
        guard !done else { return }
        done = true
        results.sort { $0.0 < $1.0 }
        completion(FamilyLookups.merge(target: target, results.map(\.1)), results)
    }

    /// One result from several lookups of the same target: the closest nodes of all (by distance),
    /// the tokens, the peers (in order, once each), the sums of queries and answers, the deepest
    /// round, the longest duration, and the newest item. For one lookup, its own result.
    static func merge(target: NodeID, _ results: [LookupResult]) -> LookupResult {
        guard results.count > 1 else {
            return results.first
                ?? LookupResult(
                    target: target,
                    closest: [],
                    tokens: [:],
                    peers: [],
                    queriesSent: 0,
                    responsesReceived: 0,
                    rounds: 0,
                    duration: 0
                )
        }
        var peers: [PeerAddress] = []
        var seen: Set<PeerAddress> = []
        var tokens: [NodeInfo: [UInt8]] = [:]
        var item: DHTItem?
        for r in results {
            for p in r.peers where seen.insert(p).inserted { peers.append(p) }
            tokens.merge(r.tokens) { a, _ in a }
            if let found = r.item {
                switch (item, found) {
                case (nil, _): item = found
                case (.mutable(let old)?, .mutable(let new)) where new.seq > old.seq: item = found
                default: break
                }
            }
        }
        let closest = results.flatMap(\.closest).sorted { closer($0.id, $1.id, to: target) }
        return LookupResult(
            target: target,
            closest: closest,
            tokens: tokens,
            peers: peers,
            queriesSent: results.reduce(0) { $0 + $1.queriesSent },
            responsesReceived: results.reduce(0) { $0 + $1.responsesReceived },
            rounds: results.map(\.rounds).max() ?? 0,
            duration: results.map(\.duration).max() ?? 0,
            item: item
        )
    }
}

/// An iterative Kademlia lookup in one address family: α queries in flight, converging on the k
/// closest nodes that answered. Nodes that stay silent past `slowAfter` stop holding a slot; past
/// `queryTimeout` they have failed.
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

    enum Kind {
        case findNode, getPeers
        case getItem(salt: [UInt8])
    }

    unowned let node: DHTNode
    /// The family of every node it queries (and of the routing table it starts from).
    let family: AddressFamily
    let target: NodeID
    let kind: Kind
    /// BEP 32 `want` sent with every query (nil: none, so answers carry this family's nodes).
    var want: Set<AddressFamily>?
    /// Nodes of the other family that answers carried (with `want`).
    var onOtherFamily: (([NodeInfo]) -> Void)?
    var item: DHTItem?
    let completion: (LookupResult) -> Void
    /// New peers as answers bring them (get_peers only).
    var onPeers: (([PeerAddress]) -> Void)?
    /// Every answer with peers, with who gave it (get_peers only).
    var onValues: ((PeerHolder, [PeerAddress]) -> Void)?
    var candidates: [Candidate] = []
    var seenAddresses: Set<PeerAddress> = []
    var seenIDs: Set<NodeID> = []
    var inFlight = 0  // holding a slot
    var outstanding = 0  // not yet answered or failed
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

    init(
        node: DHTNode,
        family: AddressFamily = .v4,
        target: NodeID,
        kind: Kind,
        completion: @escaping (LookupResult) -> Void
    ) {
        self.node = node
        self.family = family
        self.target = target
        self.kind = kind
        self.completion = completion
        started = node.now
        maxCandidates = node.config.k * 8
    }

    func start() {
        let initial = node.table(family).closest(to: target, count: node.config.k, now: node.now)
        for n in initial { add(n, depth: 1, unknownID: false) }
        for n in seeds { add(n, depth: 1, unknownID: false) }
        if candidates.count < node.config.k {
            // Few known nodes: also ask the bootstrap routers (sorted last, ids unknown).
            for a in bootstrap where !seenAddresses.contains(a) {
                seenAddresses.insert(a)
                candidates.append(
                    Candidate(
                        info: NodeInfo(id: target ^ NodeID(a: ~0, b: ~0, c: ~0), address: a),
                        distance: NodeID(a: ~0, b: ~0, c: ~0),
                        state: .fresh,
                        depth: 1,
                        unknownID: true
                    )
                )
            }
        }
        step()
    }

    /// Nodes of this family from elsewhere (the other family's answers), asked like any found.
    func offer(_ nodes: [NodeInfo]) {
        guard !finished else { return }
        for n in nodes.prefix(16) { add(n, depth: maxDepth + 1, unknownID: false) }
        step()
    }

    private func add(_ n: NodeInfo, depth: Int, unknownID: Bool) {
        guard n.address.family == family, n.id != node.id, n.address.port != 0, !seenAddresses.contains(n.address),
            !seenIDs.contains(n.id)
        else {
            return
        }
        seenAddresses.insert(n.address)
        seenIDs.insert(n.id)
        let c = Candidate(info: n, distance: n.id ^ target, state: .fresh, depth: depth, unknownID: unknownID)
        // Insert in distance order (candidates stays sorted).
        var lo = 0
        var hi = candidates.count
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
        case .findNode: q = KRPCQuery(method: .findNode, id: node.id, target: target, want: want)
        case .getPeers: q = KRPCQuery(method: .getPeers, id: node.id, infoHash: target, want: want)
        case .getItem: q = KRPCQuery(method: .get, id: node.id, target: target, want: want)
        }
        node.query(
            q,
            to: addr,
            expectedID: c.unknownID ? nil : c.info.id,
            onSlow: { [self] in
                guard let j = index(of: addr), candidates[j].state == .inFlight else { return }
                candidates[j].state = .slow
                inFlight -= 1
                step()
            }
        ) { [self] outcome in
            guard let j = index(of: addr) else { return }
            let wasHoldingSlot = candidates[j].state == .inFlight
            if wasHoldingSlot { inFlight -= 1 }
            outstanding -= 1
            switch outcome {
            case .response(let r, _):
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
                if case .getItem(let salt) = kind, let found = r.item(for: target, salt: salt) {
                    switch (item, found) {
                    case (.mutable(let old)?, .mutable(let new)) where new.seq <= old.seq: break
                    default: item = found
                    }
                }
                // Peers of a family the socket cannot reach are of no use to anyone here.
                let values = r.values.filter { node.speaks($0.family) }
                node.stats.unreachablePeers += UInt64(r.values.count - values.count)
                var fresh: [PeerAddress] = []
                for p in values where !peerSet.contains(p) {
                    peerSet.insert(p)
                    peers.append(p)
                    fresh.append(p)
                }
                if !fresh.isEmpty, let onPeers { onPeers(fresh) }
                if !values.isEmpty, let onValues, let tok = r.token {
                    onValues(PeerHolder(node: NodeInfo(id: r.id, address: addr), token: tok), values)
                }
                let (own, other) = family == .v4 ? (r.nodes, r.nodes6) : (r.nodes6, r.nodes)
                for n in own.prefix(16) { add(n, depth: c.depth + 1, unknownID: false) }
                if !other.isEmpty, let onOtherFamily { onOtherFamily(Array(other.prefix(16))) }
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
        completion(
            LookupResult(
                target: target,
                closest: Array(closest),
                tokens: tokens.filter { closest.contains($0.key) },
                peers: peers,
                queriesSent: queriesSent,
                responsesReceived: responses,
                rounds: maxDepth,
                duration: node.now &- started,
                item: item
            )
        )
    }
}
