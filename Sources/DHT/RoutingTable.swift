import Bencode
import NetCore

/// One routing-table entry and what we know of its liveness.
struct RoutingEntry: Sendable, Equatable {
    var info: NodeInfo
    /// Last time it answered one of our queries (nil: never).
    var lastResponse: Nanos?
    /// Last time we heard from it at all (query or response).
    var lastSeen: Nanos
    /// Consecutive queries it failed to answer.
    var failures: Int

    init(info: NodeInfo, lastResponse: Nanos?, lastSeen: Nanos, failures: Int = 0) {
        self.info = info
        self.lastResponse = lastResponse
        self.lastSeen = lastSeen
        self.failures = failures
    }

    enum Status: Sendable { case good, questionable, bad }

    /// BEP 5: good if it answered within 15 minutes (or answered once and queried us within 15);
    /// bad after repeated failures; questionable otherwise.
    func status(now: Nanos, goodFor: Nanos = .seconds(15 * 60)) -> Status {
        if failures >= 2 || (failures >= 1 && lastResponse == nil) { return .bad }
        guard let r = lastResponse else { return .questionable }
        if now &- r <= goodFor || (now &- lastSeen <= goodFor && failures == 0) { return .good }
        return .questionable
    }
}

/// Kademlia routing table: 160-bit ids, buckets of `k` nodes, the bucket holding our own id split
/// when full; a replacement cache per bucket; per-address and per-subnet limits within a bucket.
///
/// One table holds one address family (BEP 32: the IPv4 and IPv6 DHTs are separate). The limits:
/// for IPv4 one node per IP and `maxPerSubnetInBucket` per /24; for IPv6 one node per /64 and
/// `maxPerSubnetInBucket` per /48. Whoever holds one address of a /64 holds all 2^64 of them (a
/// subscriber's LAN is a /64), so a per-address limit would limit nothing: the /64 plays the part
/// of the single IPv4 address. A /48 is the usual assignment to one site, the part a /24 plays
/// for IPv4 (libtorrent allows one node per /64 in a bucket, and one per /24 for IPv4).
///
/// Bucket `i` (for i < count-1) holds the nodes whose id shares exactly `i` leading bits with ours;
/// the last bucket holds everything closer. This is the usual unbalanced split tree, flattened.
struct RoutingTable: Sendable {
    let ownID: NodeID
    /// The family of every node in it; nodes of the other family are refused.
    let family: AddressFamily
    let k: Int
    var restrictIPs: Bool
    /// Nodes from one /24 allowed in one bucket (one node per IP).
    var maxPerSubnetInBucket: Int
    private(set) var buckets: [Bucket]

    struct Bucket: Sendable {
        var entries: [RoutingEntry] = []
        var replacements: [RoutingEntry] = []
        var lastChanged: Nanos
    }

    enum InsertResult: Equatable, Sendable {
        case added, updated, replacedBad
        /// The bucket is full of live-looking nodes: the new node went to the replacement cache and
        /// the caller should ping `ping` (the least recently seen questionable node) to make room.
        case cached(ping: NodeInfo?)
        case rejected(String)
    }

    init(
        ownID: NodeID,
        family: AddressFamily = .v4,
        k: Int = 8,
        restrictIPs: Bool = true,
        maxPerSubnetInBucket: Int = 2,
        now: Nanos = 0
    ) {
        self.ownID = ownID
        self.family = family
        self.k = k
        self.restrictIPs = restrictIPs
        self.maxPerSubnetInBucket = maxPerSubnetInBucket
        buckets = [Bucket(lastChanged: now)]
    }

    var count: Int { buckets.reduce(0) { $0 + $1.entries.count } }
    var allEntries: [RoutingEntry] { buckets.flatMap(\.entries) }

    func bucketIndex(for id: NodeID) -> Int {
        min(ownID.commonPrefixLength(with: id), buckets.count - 1)
    }

    func entry(for id: NodeID) -> RoutingEntry? {
        let b = bucketIndex(for: id)
        return buckets[b].entries.first { $0.info.id == id }
    }

    /// Adds or refreshes a node. `responded`: it answered a query of ours just now (otherwise it
    /// queried us, which proves less).
    @discardableResult
    mutating func insert(_ node: NodeInfo, responded: Bool, now: Nanos) -> InsertResult {
        if node.id == ownID { return .rejected("own id") }
        if node.address.port == 0 { return .rejected("port 0") }
        if node.address.family != family { return .rejected("other address family") }
        var b = bucketIndex(for: node.id)
        if let i = buckets[b].entries.firstIndex(where: { $0.info.id == node.id }) {
            guard buckets[b].entries[i].info.address == node.address else {
                return .rejected("id already known at another address")
            }
            buckets[b].entries[i].lastSeen = now
            if responded {
                buckets[b].entries[i].lastResponse = now
                buckets[b].entries[i].failures = 0
            }
            buckets[b].lastChanged = now
            return .updated
        }
        let entry = RoutingEntry(info: node, lastResponse: responded ? now : nil, lastSeen: now)
        while true {
            if restrictIPs, let why = violatesIPLimits(node.address, bucket: b) { return .rejected(why) }
            // Another id at the same address: the old one is stale or someone is lying.
            if buckets[b].entries.contains(where: { $0.info.address == node.address }) {
                return .rejected("address already in table under another id")
            }
            if buckets[b].entries.count < k {
                buckets[b].entries.append(entry)
                buckets[b].lastChanged = now
                buckets[b].replacements.removeAll { $0.info.id == node.id }
                return .added
            }
            if b == buckets.count - 1 && buckets.count < 160 {
                split()
                b = bucketIndex(for: node.id)
                continue
            }
            break
        }
        if let i = buckets[b].entries.firstIndex(where: { $0.status(now: now) == .bad }) {
            buckets[b].entries[i] = entry
            buckets[b].lastChanged = now
            return .replacedBad
        }
        // Unconfirmed nodes do not displace anyone; they wait in the cache.
        addReplacement(entry, bucket: b)
        guard responded else { return .cached(ping: nil) }
        let questionable = buckets[b].entries.filter { $0.status(now: now) == .questionable }
        return .cached(ping: questionable.min { $0.lastSeen < $1.lastSeen }?.info)
    }

    /// Whether a new node with this id could enter the table now (room, a split, or a bad entry
    /// to replace), so that verifying it is worth a ping.
    func hasRoom(for id: NodeID, now: Nanos) -> Bool {
        let b = bucketIndex(for: id)
        if buckets[b].entries.count < k { return true }
        if b == buckets.count - 1 && buckets.count < 160 { return true }
        return buckets[b].entries.contains { $0.status(now: now) == .bad }
    }

    /// Loopback addresses are exempt (many nodes per host is normal there).
    private func violatesIPLimits(_ a: PeerAddress, bucket b: Int) -> String? {
        if a.isLoopback { return nil }
        var sameSubnet = 0
        if let ip6 = a.ip6 {
            for e in buckets[b].entries {
                guard let other = e.info.address.ip6 else { continue }
                if other.hi == ip6.hi { return "/64 already in bucket" }
                if other.hi >> 16 == ip6.hi >> 16 { sameSubnet += 1 }
            }
            if sameSubnet >= maxPerSubnetInBucket { return "too many nodes from this /48 in bucket" }
            return nil
        }
        for e in buckets[b].entries where !e.info.address.isIPv6 {
            if e.info.address.ip == a.ip { return "IP already in bucket" }
            if e.info.address.ip >> 8 == a.ip >> 8 { sameSubnet += 1 }
        }
        if sameSubnet >= maxPerSubnetInBucket { return "too many nodes from this /24 in bucket" }
        return nil
    }

    private mutating func addReplacement(_ e: RoutingEntry, bucket b: Int) {
        buckets[b].replacements.removeAll { $0.info.id == e.info.id || $0.info.address == e.info.address }
        buckets[b].replacements.append(e)
        if buckets[b].replacements.count > k { buckets[b].replacements.removeFirst() }
    }

    private mutating func split() {
        let last = buckets.count - 1
        let old = buckets[last]
        buckets[last] = Bucket(lastChanged: old.lastChanged)
        buckets.append(Bucket(lastChanged: old.lastChanged))
        for e in old.entries { buckets[bucketIndex(for: e.info.id)].entries.append(e) }
        for e in old.replacements {
            let i = bucketIndex(for: e.info.id)
            buckets[i].replacements.append(e)
        }
        for i in [last, last + 1] { while buckets[i].entries.count < k, promoteReplacement(bucket: i) != nil {} }
    }

    /// Moves the newest cached node that passes the bucket's IP limits into the bucket, as
    /// questionable (it may have gone since it was cached; the caller should ping it). Returns it.
    @discardableResult
    private mutating func promoteReplacement(bucket b: Int) -> NodeInfo? {
        guard buckets[b].entries.count < k else { return nil }
        for j in buckets[b].replacements.indices.reversed() {
            let r = buckets[b].replacements[j]
            if restrictIPs, violatesIPLimits(r.info.address, bucket: b) != nil { continue }
            if buckets[b].entries.contains(where: { $0.info.address == r.info.address || $0.info.id == r.info.id }) {
                continue
            }
            buckets[b].replacements.remove(at: j)
            buckets[b].entries.append(RoutingEntry(info: r.info, lastResponse: nil, lastSeen: r.lastSeen))
            return r.info
        }
        return nil
    }

    /// Records that `id` failed to answer. A bad node is replaced by the newest cached replacement
    /// that the bucket's IP limits allow, which is returned (questionable: ping it).
    @discardableResult
    mutating func markFailed(_ id: NodeID, now: Nanos) -> NodeInfo? {
        let b = bucketIndex(for: id)
        guard let i = buckets[b].entries.firstIndex(where: { $0.info.id == id }) else {
            buckets[b].replacements.removeAll { $0.info.id == id }
            return nil
        }
        buckets[b].entries[i].failures += 1
        guard buckets[b].entries[i].status(now: now) == .bad, !buckets[b].replacements.isEmpty else { return nil }
        let removed = buckets[b].entries.remove(at: i)
        if let r = promoteReplacement(bucket: b) {
            buckets[b].lastChanged = now
            return r
        }
        buckets[b].entries.insert(removed, at: i)  // nobody allowed in: keep the bad one until then
        return nil
    }

    /// Removes a node outright (e.g. it answered with a different id). Returns the cached node
    /// promoted in its place, if any (questionable: ping it).
    @discardableResult
    mutating func remove(_ id: NodeID) -> NodeInfo? {
        let b = bucketIndex(for: id)
        guard let i = buckets[b].entries.firstIndex(where: { $0.info.id == id }) else { return nil }
        buckets[b].entries.remove(at: i)
        return promoteReplacement(bucket: b)
    }

    /// The `count` closest known nodes to `target` that are not bad, closest first.
    func closest(to target: NodeID, count: Int, now: Nanos, includeQuestionable: Bool = true) -> [NodeInfo] {
        var out: [(NodeID, NodeInfo)] = []
        out.reserveCapacity(count + 8)
        // XOR order by bucket: the target's own bucket is closest; every bucket nearer to our id
        // comes next (those all differ from the target at the same bit, so they are taken as one
        // group); then the buckets farther out, one at a time.
        let home = bucketIndex(for: target)
        var groups: [[Int]] = [[home]]
        if home + 1 < buckets.count { groups.append(Array((home + 1)..<buckets.count)) }
        for j in stride(from: home - 1, through: 0, by: -1) { groups.append([j]) }
        for g in groups {
            for bi in g {
                for e in buckets[bi].entries {
                    let s = e.status(now: now)
                    if s == .bad || (!includeQuestionable && s != .good) { continue }
                    out.append((e.info.id ^ target, e.info))
                }
            }
            if out.count >= count { break }
        }
        out.sort { $0.0 < $1.0 }
        return out.prefix(count).map(\.1)
    }

    /// Buckets that have not changed for `staleAfter`: (index, a random id in that bucket's range).
    func staleBuckets<G: RandomNumberGenerator>(now: Nanos, staleAfter: Nanos, using g: inout G) -> [NodeID] {
        var out: [NodeID] = []
        for (i, b) in buckets.enumerated() where now &- b.lastChanged >= staleAfter {
            out.append(
                i == buckets.count - 1
                    ? ownID.randomInBucket(prefix: min(i + 1, 160), using: &g)
                    : ownID.randomInBucket(prefix: i, using: &g)
            )
        }
        return out
    }

    mutating func touchBucket(for id: NodeID, now: Nanos) {
        buckets[bucketIndex(for: id)].lastChanged = now
    }

    // MARK: persistence

    /// Our id and the nodes worth keeping from each table, bencoded:
    /// `{id: 20 bytes, nodes: IPv4 compact node info, nodes6: IPv6 compact node info, v: 1}`
    /// (`nodes6` only when there are IPv6 nodes; a file without it is an IPv4-only one, as
    /// written before BEP 32 support).
    static func serialized(id: NodeID, tables: [RoutingTable], now: Nanos) -> [UInt8] {
        let keep = tables.flatMap(\.allEntries).filter { $0.status(now: now) != .bad }.map(\.info)
        let v4 = keep.filter { !$0.address.isIPv6 }
        let v6 = keep.filter { $0.address.isIPv6 }
        var d: [(String, BValue)] = [("id", .bytes(id.bytes)), ("nodes", .bytes(NodeInfo.compact(v4))), ("v", .int(1))]
        if !v6.isEmpty { d.append(("nodes6", .bytes(NodeInfo.compact(v6)))) }
        return Bencode.encode(.dictionary(d))
    }

    /// The largest state file read: far above two full tables (160 buckets of 8 nodes, 26 or 38
    /// bytes each).
    static let maxStateFileSize = 1 << 20

    /// Reads what `serialized` wrote: the saved id and nodes of both families, IPv4 first (which
    /// the caller pings back in). A `nodes6` that is not whole 38-byte entries makes the file
    /// damaged, as a bad `nodes` does; entries that cannot be IPv6 nodes are left out.
    static func deserialize(_ bytes: [UInt8]) throws -> (id: NodeID, nodes: [NodeInfo]) {
        let v = try Bencode.decode(
            bytes,
            limits: BencodeLimits(maxInput: maxStateFileSize, maxDepth: 2, maxString: 1 << 20, maxItems: 16)
        )
        guard let idb = v["id"]?.bytesValue, let id = NodeID(bytes: idb) else { throw StateFileError.malformed("id") }
        guard let nb = v["nodes"]?.bytesValue, let nodes = NodeInfo.parseCompact(nb) else {
            throw StateFileError.malformed("nodes")
        }
        var nodes6: [NodeInfo] = []
        if let n6 = v["nodes6"] {
            guard let b = n6.bytesValue, let parsed = NodeInfo.parseCompact(b, family: .v6) else {
                throw StateFileError.malformed("nodes6")
            }
            nodes6 = parsed.nodes
        }
        return (id, nodes + nodes6)
    }
}

enum StateFileError: Error, CustomStringConvertible {
    case malformed(String)
    var description: String {
        switch self {
        case .malformed(let what): return "DHT state file: malformed '\(what)'"
        }
    }
}
