import Determinism
import NetCore
import Sodium

/// Peers announced to this node, per info-hash, with expiry and caps so that an attacker cannot
/// make the node hold unbounded state.
public struct PeerStore: Sendable {
    public var maxPeersPerInfoHash: Int
    public var maxInfoHashes: Int
    public var maxPeersTotal: Int
    public var ttl: Nanos
    public private(set) var total = 0
    private var byHash: [NodeID: [PeerAddress: Nanos]] = [:] // peer -> expiry

    public enum AddResult: Equatable, Sendable { case stored, refreshed, fullForInfoHash, fullTotal, tooManyInfoHashes }

    public init(maxPeersPerInfoHash: Int = 200, maxInfoHashes: Int = 2000, maxPeersTotal: Int = 20_000,
                ttl: Nanos = .seconds(30 * 60)) {
        self.maxPeersPerInfoHash = maxPeersPerInfoHash
        self.maxInfoHashes = maxInfoHashes
        self.maxPeersTotal = maxPeersTotal
        self.ttl = ttl
    }

    public var infoHashCount: Int { byHash.count }

    @discardableResult
    public mutating func add(_ peer: PeerAddress, for hash: NodeID, now: Nanos) -> AddResult {
        if byHash[hash]?[peer] != nil {
            byHash[hash]![peer] = now &+ ttl
            return .refreshed
        }
        if byHash[hash] == nil && byHash.count >= maxInfoHashes { expire(now: now) }
        if byHash[hash] == nil && byHash.count >= maxInfoHashes { return .tooManyInfoHashes }
        if total >= maxPeersTotal { expire(now: now) }
        if total >= maxPeersTotal { return .fullTotal }
        if (byHash[hash]?.count ?? 0) >= maxPeersPerInfoHash {
            // Evict an expired one if possible.
            if let old = byHash[hash]!.first(where: { $0.value <= now }) {
                byHash[hash]![old.key] = nil
                total -= 1
            } else {
                return .fullForInfoHash
            }
        }
        byHash[hash, default: [:]][peer] = now &+ ttl
        total += 1
        return .stored
    }

    /// Up to `max` unexpired peers for `hash`, chosen by `rng` when there are more.
    public func peers<G: RandomNumberGenerator>(for hash: NodeID, now: Nanos, max: Int, using g: inout G) -> [PeerAddress] {
        guard let m = byHash[hash] else { return [] }
        var live = m.filter { $0.value > now }.map(\.key).sorted()
        if live.count > max {
            live.shuffle(using: &g)
            live = Array(live.prefix(max))
        }
        return live
    }

    public mutating func expire(now: Nanos) {
        for (h, m) in byHash {
            let kept = m.filter { $0.value > now }
            total -= m.count - kept.count
            byHash[h] = kept.isEmpty ? nil : kept
        }
    }
}

/// announce_peer tokens (BEP 5): keyed BLAKE2b of the requester's IP under a secret that rotates
/// every `rotation`; a token is accepted under the current or the previous secret, so it lives
/// between one and two rotations (5 and 10 minutes by default).
public struct TokenIssuer: Sendable {
    public static let tokenLength = 8
    private var current: [UInt8]
    private var previous: [UInt8]
    public private(set) var rotatedAt: Nanos
    public let rotation: Nanos

    public init(secret: [UInt8], previous: [UInt8], now: Nanos, rotation: Nanos = .seconds(300)) {
        current = secret
        self.previous = previous
        rotatedAt = now
        self.rotation = rotation
    }

    /// Rotates if due; `fresh` supplies a new secret.
    public mutating func rotateIfDue(now: Nanos, fresh: () -> [UInt8]) {
        while now &- rotatedAt >= rotation {
            previous = current
            current = fresh()
            rotatedAt = rotatedAt &+ rotation
            if now &- rotatedAt >= rotation { rotatedAt = now } // long gap: both secrets new enough
        }
    }

    static func token(secret: [UInt8], ip: UInt32) -> [UInt8] {
        let data: [UInt8] = [UInt8(ip >> 24), UInt8((ip >> 16) & 0xFF), UInt8((ip >> 8) & 0xFF), UInt8(ip & 0xFF)]
        let h = (try? BLAKE2b.hash(data, outputLength: 16, key: secret)) ?? []
        return Array(h.prefix(tokenLength))
    }

    public func token(for ip: UInt32) -> [UInt8] { TokenIssuer.token(secret: current, ip: ip) }

    public func isValid(_ token: [UInt8], for ip: UInt32) -> Bool {
        guard token.count == TokenIssuer.tokenLength else { return false }
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
