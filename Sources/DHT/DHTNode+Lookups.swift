import Determinism
import Logging
import NetCore
import Sodium

/// Iterative lookups (find_node, get_peers; BEP 44 get in DHTNode+Items.swift).
extension DHTNode {
    public func findNode(_ target: NodeID, _ completion: @escaping (LookupResult) -> Void) {
        scheduler.assertInLoop()
        Lookup(node: self, target: target, kind: .findNode, completion: completion).start()
    }

    public func getPeers(_ infoHash: NodeID, _ completion: @escaping (LookupResult) -> Void) {
        scheduler.assertInLoop()
        Lookup(node: self, target: infoHash, kind: .getPeers, completion: completion).start()
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
        let l = Lookup(node: self, target: infoHash, kind: .getPeers, completion: completion)
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
        let l = Lookup(node: self, target: infoHash, kind: .getPeers, completion: completion)
        l.onValues = onValues
        l.start()
    }
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

    enum Kind {
        case findNode, getPeers
        case getItem(salt: [UInt8])
    }

    unowned let node: DHTNode
    let target: NodeID
    let kind: Kind
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

    private func add(_ n: NodeInfo, depth: Int, unknownID: Bool) {
        guard n.id != node.id, n.address.port != 0, !seenAddresses.contains(n.address), !seenIDs.contains(n.id) else {
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
        case .findNode: q = KRPCQuery(method: .findNode, id: node.id, target: target)
        case .getPeers: q = KRPCQuery(method: .getPeers, id: node.id, infoHash: target)
        case .getItem: q = KRPCQuery(method: .get, id: node.id, target: target)
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
                var fresh: [PeerAddress] = []
                for p in r.values where !peerSet.contains(p) {
                    peerSet.insert(p)
                    peers.append(p)
                    fresh.append(p)
                }
                if !fresh.isEmpty, let onPeers { onPeers(fresh) }
                if !r.values.isEmpty, let onValues, let tok = r.token {
                    onValues(PeerHolder(node: NodeInfo(id: r.id, address: addr), token: tok), r.values)
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
