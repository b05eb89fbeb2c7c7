import NetCore
import Sodium

/// A token bucket: `rate` tokens per second, at most `burst` saved up.
struct TokenBucket {
    var tokens: Double
    var last: Nanos
    init(burst: Double, now: Nanos) {
        tokens = burst
        last = now
    }

    mutating func take(now: Nanos, rate: Double, burst: Double) -> Bool {
        if now > last {
            tokens = min(burst, tokens + Double(now - last) / 1e9 * rate)
            last = now
        }
        guard tokens >= 1 else { return false }
        tokens -= 1
        return true
    }
}

/// Per-source token buckets in a table of bounded size. Keyed by IP only, so a flood that cycles
/// source ports is still one source.
struct SourceRateLimiter {
    let rate: Double
    let burst: Double
    let capacity: Int
    private var buckets: [UInt64: TokenBucket] = [:]

    init(rate: Double, burst: Double, capacity: Int) {
        self.rate = rate
        self.burst = burst
        self.capacity = capacity
    }

    var count: Int { buckets.count }

    mutating func allow(_ ip: UInt64, now: Nanos) -> Bool {
        if buckets[ip] == nil {
            if buckets.count >= capacity { prune(now: now) }
            buckets[ip] = TokenBucket(burst: burst, now: now)
        }
        return buckets[ip]!.take(now: now, rate: rate, burst: burst)  // `!`: set just above if absent
    }

    /// Drops buckets that have refilled completely (they behave exactly like fresh ones); if that
    /// frees nothing the table is cleared, which at worst grants each source one more burst.
    private mutating func prune(now: Nanos) {
        let refill = UInt64(burst / rate * 1e9)
        buckets = buckets.filter { now &- $0.value.last < refill }
        if buckets.count >= capacity { buckets.removeAll(keepingCapacity: true) }
    }
}

/// When each source IP last had a handshake reach Diffie-Hellman, in a table of bounded size.
struct RecentSources {
    let window: Nanos
    let capacity: Int
    private var last: [UInt64: Nanos] = [:]

    init(window: Nanos, capacity: Int) {
        self.window = window
        self.capacity = capacity
    }

    var count: Int { last.count }

    /// No handshake from `ip` within the window.
    func isFresh(_ ip: UInt64, now: Nanos) -> Bool {
        guard let t = last[ip] else { return true }
        return now &- t >= window
    }

    /// Records a handshake. When the table is full, entries older than the window go first; if
    /// that frees nothing it is cleared, which at worst lets each source count as fresh once more.
    mutating func note(_ ip: UInt64, now: Nanos) {
        if last[ip] == nil, last.count >= capacity {
            last = last.filter { now &- $0.value < window }
            if last.count >= capacity { last.removeAll(keepingCapacity: true) }
        }
        last[ip] = now
    }
}

/// WireGuard-style handshake protection: mac1 proves an initiation is a turf packet, and under
/// load mac2 proves the initiator can receive at its source address (it must echo a cookie that
/// the responder derived from that address with a secret rotated every two minutes). Cookies are
/// sent back sealed to the initiation's mac1, so only the sender of that initiation can use it.
struct CookieChecker {
    static let secretLifetime: Nanos = .seconds(120)
    /// An initiator uses a received cookie for a little less than the secret's lifetime.
    static let cookieLifetime: Nanos = .seconds(110)
    /// `Wire.macLength` bytes (a test checks they agree).
    static let macLength = BLAKE2b.Length.bytes16

    private static let mac1Key: [UInt8] = BLAKE2b.hash(Array("turf mac1 v1".utf8), length: .bytes32)

    private let random: RandomSource
    private var secret: [UInt8]
    private var previousSecret: [UInt8]
    private var secretBorn: Nanos

    init(now: Nanos, random: RandomSource) {
        self.random = random
        secret = random.bytes(32)
        previousSecret = random.bytes(32)
        secretBorn = now
    }

    static func mac1(_ packet: [UInt8]) -> [UInt8] {
        BLAKE2b.hash(packet[0..<Wire.mac1Offset], length: macLength, key: mac1Key)
    }

    static func mac2(_ packet: [UInt8], cookie: [UInt8]) -> [UInt8] {
        BLAKE2b.hash(packet[0..<Wire.mac2Offset], length: macLength, key: cookie)
    }

    static func hasValidMac1(_ packet: [UInt8]) -> Bool {
        Sodium.constantTimeEqual(mac1(packet), packet[Wire.mac1Offset..<Wire.mac2Offset])
    }

    private mutating func rotate(now: Nanos) {
        if now &- secretBorn >= CookieChecker.secretLifetime {
            previousSecret = secret
            secret = random.bytes(32)
            secretBorn = now
        }
    }

    private static func cookie(secret: [UInt8], source: PeerAddress) -> [UInt8] {
        BLAKE2b.hash(source.compact, length: macLength, key: secret)
    }

    mutating func hasValidMac2(_ packet: [UInt8], from source: PeerAddress, now: Nanos) -> Bool {
        rotate(now: now)
        let got = packet[Wire.mac2Offset...]
        return Sodium.constantTimeEqual(
            CookieChecker.mac2(packet, cookie: CookieChecker.cookie(secret: secret, source: source)),
            got
        )
            || Sodium.constantTimeEqual(
                CookieChecker.mac2(packet, cookie: CookieChecker.cookie(secret: previousSecret, source: source)),
                got
            )
    }

    static func replyKey(mac1: ArraySlice<UInt8>) -> [UInt8] {
        BLAKE2b.hash(Array("turf cookie v1".utf8) + mac1, length: .bytes32)
    }

    /// The cookie reply to an initiation (smaller than the initiation: no amplification).
    mutating func reply(to packet: [UInt8], senderIndex: UInt32, from source: PeerAddress, now: Nanos) -> [UInt8] {
        rotate(now: now)
        let nonce = random.bytes(Wire.cookieNonceLength)
        let sealed = ChaChaPoly.seal(
            key: CookieChecker.replyKey(mac1: packet[Wire.mac1Offset..<Wire.mac2Offset]),
            nonce: nonce,
            ad: [UInt8](),
            plaintext: CookieChecker.cookie(secret: secret, source: source)
        )
        return CookieReply(receiverIndex: senderIndex, nonce: nonce, sealedCookie: sealed).encode()
    }

    /// The initiator's side: the cookie inside a reply to the initiation whose mac1 it was.
    static func openReply(_ reply: CookieReply, initiationMac1: [UInt8]) -> [UInt8]? {
        ChaChaPoly.open(
            key: replyKey(mac1: initiationMac1[...]),
            nonce: reply.nonce,
            ad: [UInt8](),
            ciphertext: reply.sealedCookie
        )
    }
}

/// The mac fields of an initiation, for tools that build initiations themselves (benchmarks,
/// load tests). Sessions fill them in automatically.
public enum HandshakeMACs {
    /// The initiation with a correct mac1 (and mac2, if a cookie is given).
    public static func seal(_ initiation: [UInt8], cookie: [UInt8]? = nil) -> [UInt8] {
        var p = initiation
        p.replaceSubrange(Wire.mac1Offset..<Wire.mac2Offset, with: CookieChecker.mac1(p))
        if let cookie {
            p.replaceSubrange(Wire.mac2Offset..<Wire.initiationLength, with: CookieChecker.mac2(p, cookie: cookie))
        }
        return p
    }
}

/// Decides how much work an initiation is worth: the order of checks is cheapest first, and the
/// expensive Diffie-Hellman work is bounded per source and overall.
struct HandshakeGuard {
    struct Config: Sendable {
        /// Initiations per second (all sources) above which mac2 (a cookie) is demanded.
        var underLoadThreshold = 64
        /// Handshakes per second per source IP that may reach Diffie-Hellman (WireGuard: 20, burst 5).
        var perSourceRate = 20.0
        var perSourceBurst = 5.0
        /// Handshakes per second from all sources together that may reach Diffie-Hellman.
        var globalRate = 500.0
        var globalBurst = 100.0
        /// A reserve on top of the global budget, only for sources with no handshake in the last
        /// `freshWindow`: a flood from a few dozen busy sources (each within its own rate) can
        /// drain the global bucket, but not this one, so a newcomer still gets in.
        var freshRate = 100.0
        var freshBurst = 20.0
        var freshWindow: Nanos = .seconds(10)
        /// Cookie replies per second per source IP.
        var cookieRate = 10.0
        var cookieBurst = 10.0
        var tableCapacity = 8192
    }

    enum Verdict: Equatable {
        case process, sendCookie
        case drop(Reason)
    }
    enum Reason: Equatable { case badMac1, rateLimited, globalLimit, cookieLimit }

    let config: Config
    var cookies: CookieChecker
    private var perSource: SourceRateLimiter
    private var cookieLimiter: SourceRateLimiter
    private var global: TokenBucket
    private var freshReserve: TokenBucket
    private var recent: RecentSources
    private var windowStart: Nanos
    private var windowCount = 0
    private var lastWindowCount = 0

    init(config: Config, now: Nanos, random: RandomSource) {
        self.config = config
        cookies = CookieChecker(now: now, random: random)
        perSource = SourceRateLimiter(
            rate: config.perSourceRate,
            burst: config.perSourceBurst,
            capacity: config.tableCapacity
        )
        cookieLimiter = SourceRateLimiter(
            rate: config.cookieRate,
            burst: config.cookieBurst,
            capacity: config.tableCapacity
        )
        global = TokenBucket(burst: config.globalBurst, now: now)
        freshReserve = TokenBucket(burst: config.freshBurst, now: now)
        recent = RecentSources(window: config.freshWindow, capacity: config.tableCapacity)
        windowStart = now
    }

    /// Under load when this second or the last had more initiations than the threshold.
    private mutating func countInitiation(now: Nanos) -> Bool {
        if now &- windowStart >= .seconds(1) {
            lastWindowCount = now &- windowStart >= .seconds(2) ? 0 : windowCount
            windowCount = 0
            windowStart = now
        }
        windowCount += 1
        return max(windowCount, lastWindowCount) > config.underLoadThreshold
    }

    var trackedSources: Int { perSource.count + cookieLimiter.count + recent.count }

    mutating func check(_ packet: [UInt8], from source: PeerAddress, now: Nanos) -> Verdict {
        guard CookieChecker.hasValidMac1(packet) else { return .drop(.badMac1) }
        let underLoad = countInitiation(now: now)
        if underLoad && !cookies.hasValidMac2(packet, from: source, now: now) {
            return cookieLimiter.allow(source.sourceKey, now: now) ? .sendCookie : .drop(.cookieLimit)
        }
        guard perSource.allow(source.sourceKey, now: now) else { return .drop(.rateLimited) }
        let fresh = recent.isFresh(source.sourceKey, now: now)
        guard
            global.take(now: now, rate: config.globalRate, burst: config.globalBurst)
                || (fresh && freshReserve.take(now: now, rate: config.freshRate, burst: config.freshBurst))
        else {
            return .drop(.globalLimit)
        }
        recent.note(source.sourceKey, now: now)
        return .process
    }
}
