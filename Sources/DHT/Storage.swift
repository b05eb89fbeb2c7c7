import Determinism
import NetCore
import Sodium

/// Peers announced to this node, per info-hash, with expiry and caps so that an attacker cannot
/// make the node hold unbounded state nor lock honest peers out.
///
/// One entry per source per info-hash (BEP 5 practice; the newest port wins), so one host cannot
/// fill a topic: per IPv4 address, per IPv6 /64 (`dhtSourceKey`). Loopback sources are keyed by
/// address and port, as in the routing table. Peers of both families share the caps; each is
/// handed only to requesters of its own family (BEP 32). A full topic
/// or a full store evicts instead of refusing: an expired entry if the topic has one, else a random
/// entry; a full set of info-hashes drops the smaller of two randomly chosen ones. Every add is
/// O(peers of that info-hash) at worst, never a scan of the whole store.
struct PeerStore: Sendable {
    var maxPeersPerInfoHash: Int
    var maxInfoHashes: Int
    var maxPeersTotal: Int
    var ttl: Nanos

    struct Slot: Sendable {
        var peer: PeerAddress
        var expiry: Nanos
        /// Index in `all`.
        var pos: Int
    }
    struct Swarm: Sendable {
        var slots: [UInt64: Slot] = [:]
        /// Index in `hashes`.
        var pos: Int
    }
    private var swarms: [NodeID: Swarm] = [:]
    /// Every stored peer, in no order (uniform random eviction at the total cap).
    private var all: [(hash: NodeID, key: UInt64)] = []
    /// Every info-hash held, in no order.
    private var hashes: [NodeID] = []

    var total: Int { all.count }

    enum AddResult: Equatable, Sendable {
        case stored
        /// The same source announced again (its port replaced by the newest one).
        case refreshed
        /// Stored after evicting another entry (a cap was reached).
        case storedEvicting
    }

    init(
        maxPeersPerInfoHash: Int = 200,
        maxInfoHashes: Int = 2000,
        maxPeersTotal: Int = 20_000,
        ttl: Nanos = .seconds(30 * 60)
    ) {
        self.maxPeersPerInfoHash = maxPeersPerInfoHash
        self.maxInfoHashes = maxInfoHashes
        self.maxPeersTotal = maxPeersTotal
        self.ttl = ttl
    }

    var infoHashCount: Int { swarms.count }

    /// Entries are per source: the IPv4 address or IPv6 /64, with the port on loopback.
    static func sourceKey(_ a: PeerAddress) -> UInt64 { a.dhtSourceKey }

    @discardableResult
    mutating func add<G: RandomNumberGenerator>(
        _ peer: PeerAddress,
        for hash: NodeID,
        now: Nanos,
        using g: inout G
    ) -> AddResult {
        let key = PeerStore.sourceKey(peer)
        // The `!`s below cannot fail: each follows a check (or an insertion) of the same key, and
        // `all` and `hashes` hold exactly the keys of `swarms` and its slots (add/remove keep them so).
        if swarms[hash]?.slots[key] != nil {
            swarms[hash]!.slots[key]!.peer = peer
            swarms[hash]!.slots[key]!.expiry = now &+ ttl
            return .refreshed
        }
        var evicted = false
        if all.count >= max(1, maxPeersTotal), !all.isEmpty {
            let victim = all[Int.random(in: 0..<all.count, using: &g)]
            removePeer(victim.hash, victim.key)
            evicted = true
        }
        if swarms[hash] == nil {
            if swarms.count >= max(1, maxInfoHashes), !hashes.isEmpty {
                // Two random info-hashes, drop the smaller: floods of one-peer topics go first.
                let a = hashes[Int.random(in: 0..<hashes.count, using: &g)]
                let b = hashes[Int.random(in: 0..<hashes.count, using: &g)]
                removeSwarm(swarms[a]!.slots.count <= swarms[b]!.slots.count ? a : b)
                evicted = true
            }
            swarms[hash] = Swarm(pos: hashes.count)
            hashes.append(hash)
        } else if swarms[hash]!.slots.count >= max(1, maxPeersPerInfoHash) {
            let slots = swarms[hash]!.slots
            let victim = slots.first { $0.value.expiry <= now }?.key ?? slots.randomElement(using: &g)!.key
            removePeer(hash, victim)
            evicted = true
            if swarms[hash] == nil {
                swarms[hash] = Swarm(pos: hashes.count)
                hashes.append(hash)
            }
        }
        swarms[hash]!.slots[key] = Slot(peer: peer, expiry: now &+ ttl, pos: all.count)
        all.append((hash, key))
        return evicted ? .storedEvicting : .stored
    }

    private mutating func removePeer(_ hash: NodeID, _ key: UInt64) {
        guard let slot = swarms[hash]?.slots.removeValue(forKey: key) else { return }
        // `!`: `all` mirrors every slot (so `last` has one) and `hash`'s swarm was found just above.
        let last = all.removeLast()
        if slot.pos < all.count {
            all[slot.pos] = last
            swarms[last.hash]!.slots[last.key]!.pos = slot.pos
        }
        if swarms[hash]!.slots.isEmpty { removeSwarm(hash) }
    }

    private mutating func removeSwarm(_ hash: NodeID) {
        guard let s = swarms[hash] else { return }
        for k in s.slots.keys { removePeer(hash, k) }  // ends by removing the emptied swarm
        guard let pos = swarms.removeValue(forKey: hash)?.pos else { return }
        let last = hashes.removeLast()
        if pos < hashes.count {
            hashes[pos] = last
            swarms[last]!.pos = pos  // `!`: `hashes` mirrors the keys of `swarms`
        }
    }

    /// Up to `max` unexpired peers for `hash` (of `family` only, if given), chosen by `rng` when
    /// there are more.
    func peers<G: RandomNumberGenerator>(
        for hash: NodeID,
        family: AddressFamily? = nil,
        now: Nanos,
        max: Int,
        using g: inout G
    ) -> [PeerAddress] {
        guard let s = swarms[hash] else { return [] }
        var live = s.slots.values.filter { $0.expiry > now && (family == nil || $0.peer.family == family) }.map(\.peer)
            .sorted()
        if live.count > max {
            live.shuffle(using: &g)
            live = Array(live.prefix(max))
        }
        return live
    }

    /// Drops expired entries (maintenance, once a minute).
    mutating func expire(now: Nanos) {
        var i = all.count - 1
        while i >= 0 {
            if i < all.count {
                let e = all[i]
                if let s = swarms[e.hash]?.slots[e.key], s.expiry <= now { removePeer(e.hash, e.key) }
            }
            i -= 1
        }
    }
}

/// announce_peer tokens (BEP 5): keyed BLAKE2b of the requester's IP address (4 bytes for IPv4,
/// the whole 16 for IPv6: a token is good only for the address it was handed to) under a secret per time epoch
/// of `rotation` (5 minutes). A token is accepted in the epoch it was issued and the next one only,
/// so it lives between one and two rotations (5 to 10 minutes), whenever maintenance happens to
/// run: the epoch is computed from the clock on every `token` and `isValid`, and after a gap of
/// two or more epochs both secrets are replaced.
struct TokenIssuer: Sendable {
    static let tokenLength = 8
    private var current: [UInt8]
    private var previous: [UInt8]
    /// The epoch `current` belongs to (`previous` belongs to the one before).
    private(set) var epoch: UInt64
    let rotation: Nanos

    init(secret: [UInt8], previous: [UInt8], now: Nanos, rotation: Nanos = .seconds(300)) {
        current = secret
        self.previous = previous
        self.rotation = max(1, rotation)
        epoch = TokenIssuer.epoch(of: now, rotation: self.rotation)
    }

    static func epoch(of t: Nanos, rotation: Nanos) -> UInt64 { t / rotation }

    /// Brings the secrets to `now`'s epoch; `fresh` supplies new secrets.
    mutating func advance(now: Nanos, fresh: () -> [UInt8]) {
        let e = TokenIssuer.epoch(of: now, rotation: rotation)
        guard e > epoch else { return }
        if e == epoch + 1 {
            previous = current
        } else {
            previous = fresh()  // a gap: no secret from before it survives
        }
        current = fresh()
        epoch = e
    }

    /// `ip`: the address bytes (`PeerAddress.addressBytes`), 4 or 16.
    static func token(secret: [UInt8], ip: [UInt8]) -> [UInt8] {
        let h = BLAKE2b.hash(ip, length: .bytes16, key: secret)
        return Array(h.prefix(tokenLength))
    }

    mutating func token(for address: PeerAddress, now: Nanos, fresh: () -> [UInt8]) -> [UInt8] {
        advance(now: now, fresh: fresh)
        return TokenIssuer.token(secret: current, ip: address.addressBytes)
    }

    /// Whether `token` was issued to `address`'s IP (its port does not matter) in this epoch or
    /// the one before.
    mutating func isValid(_ token: [UInt8], for address: PeerAddress, now: Nanos, fresh: () -> [UInt8]) -> Bool {
        advance(now: now, fresh: fresh)
        guard token.count == TokenIssuer.tokenLength else { return false }
        let ip = address.addressBytes
        return Sodium.constantTimeEqual(token, TokenIssuer.token(secret: current, ip: ip))
            || Sodium.constantTimeEqual(token, TokenIssuer.token(secret: previous, ip: ip))
    }
}

/// A token bucket per source, for the per-source query rate limit.
struct RateLimiter {
    var ratePerSecond: Double
    var burst: Double
    var maxSources: Int
    private var buckets: [UInt64: (tokens: Double, at: Nanos)] = [:]

    init(ratePerSecond: Double, burst: Double, maxSources: Int = 8192) {
        self.ratePerSecond = ratePerSecond
        self.burst = burst
        self.maxSources = maxSources
    }

    mutating func allow(_ key: UInt64, now: Nanos) -> Bool {
        var b = buckets[key] ?? (burst, now)
        let elapsed = Double(now &- b.at) / 1e9
        b.tokens = min(burst, b.tokens + elapsed * ratePerSecond)
        b.at = now
        guard b.tokens >= 1 else {
            buckets[key] = b
            return false
        }
        b.tokens -= 1
        if buckets.count >= maxSources && buckets[key] == nil {
            // Forget sources that are back to a full bucket; if none, start over (fail open).
            let full = burst / ratePerSecond * 1e9
            buckets = buckets.filter { Double(now &- $0.value.at) < full }
            if buckets.count >= maxSources { buckets.removeAll() }
        }
        buckets[key] = b
        return true
    }
}
