import Foundation
import Keys
import NetCore

/// Who may sit down in a host's lobby (docs/lobby.md, "Who may sit down"): the host's decisions
/// on each hello, apart from the network so they can be tested.
///
/// - **Friends only.** With an allow list (`turf host --allow FILE`), a key not on it is refused
///   (`leave(notAllowed)`), to a seat and to watching.
/// - **Kicked.** A key the host kicked is banned for the lobby's life (`leave(banned)` to every
///   hello after the kick; the kick itself is `leave(kicked)`).
/// - **Rate.** At most `burst` hellos at once from one source address, then one per
///   `refillNanos`; more are refused (`leave(tooManyJoins)`) and counted. The table holds at most
///   `maxSources` addresses (the longest idle is forgotten first); loopback sources are told apart
///   by port (tests and players on one machine), others by IP (a home's players share one).
public struct LobbyAdmission: Sendable {
    public enum Verdict: Equatable, Sendable {
        case admit
        case refuse(LobbyMessage.LeaveReason)
    }

    /// nil: anyone may take a seat.
    public let allowed: Set<[UInt8]>?
    public private(set) var banned: Set<[UInt8]> = []
    /// Hellos refused by the rate limit, by the allow list, and from a banned key; kicks made.
    public private(set) var rateLimited = 0
    public private(set) var notAllowed = 0
    public private(set) var refusedBanned = 0
    public private(set) var kicks = 0

    public static let maxSources = 1024
    public static let burst = 8
    public static let refillNanos: UInt64 = 1_000_000_000

    struct Bucket: Sendable {
        var tokens: Int
        var at: UInt64
    }
    private var buckets: [UInt64: Bucket] = [:]

    public init(allowed: [PeerKey]? = nil) {
        self.allowed = allowed.map { Set($0.map(\.bytes)) }
    }

    /// How many source addresses the rate table remembers now (at most `maxSources`).
    public var sourcesRemembered: Int { buckets.count }

    /// A hello from `key` arrived from `source` at `now` (monotonic nanoseconds). The host itself
    /// (`host`) is never admitted this way (its own key in a hello is refused by the caller).
    public mutating func hello(key: [UInt8], from source: PeerAddress, now: UInt64) -> Verdict {
        guard take(source, now: now) else {
            rateLimited += 1
            return .refuse(.tooManyJoins)
        }
        if banned.contains(key) {
            refusedBanned += 1
            return .refuse(.banned)
        }
        if let allowed, !allowed.contains(key) {
            notAllowed += 1
            return .refuse(.notAllowed)
        }
        return .admit
    }

    /// Whether `key` may be in this lobby at all (mid-match spectators, who pass no rate check here).
    public func admits(_ key: [UInt8]) -> Bool { refusal(of: key) == nil }

    /// Mid-match (a spectator arriving, a rejoiner): why `key` may not come in, if it may not.
    public func refusal(of key: [UInt8]) -> LobbyMessage.LeaveReason? {
        if banned.contains(key) { return .banned }
        if let allowed, !allowed.contains(key) { return .notAllowed }
        return nil
    }

    /// The host kicked `key`: banned for the lobby's life.
    public mutating func kick(_ key: [UInt8]) {
        if banned.insert(key).inserted { kicks += 1 }
    }

    /// Per source: an IPv4 address or an IPv6 /64; on loopback (several players on one machine)
    /// per port as well.
    static func sourceKey(_ a: PeerAddress) -> UInt64 {
        guard a.isLoopback else { return a.sourceKey }
        return (a.isIPv6 ? 1 << 62 : UInt64(a.ip) << 16) | UInt64(a.port)
    }

    private mutating func take(_ source: PeerAddress, now: UInt64) -> Bool {
        let k = Self.sourceKey(source)
        var b = buckets[k] ?? Bucket(tokens: Self.burst, at: now)
        if now > b.at {
            let earned = Int(min((now - b.at) / Self.refillNanos, UInt64(Self.burst)))
            if earned > 0 {
                b.tokens = min(Self.burst, b.tokens + earned)
                b.at = b.tokens == Self.burst ? now : b.at + UInt64(earned) * Self.refillNanos
            }
        }
        if buckets[k] == nil, buckets.count >= Self.maxSources,
            let idle = buckets.min(by: { $0.value.at < $1.value.at })?.key
        {
            buckets[idle] = nil
        }
        guard b.tokens > 0 else {
            buckets[k] = b
            return false
        }
        b.tokens -= 1
        buckets[k] = b
        return true
    }

    /// An allow list's text (`turf host --allow FILE`): one `turf1…` key a line; `#` starts a
    /// comment, blank lines are skipped. Throws naming the first bad line (1-based).
    public static func parseAllowList(_ text: String) throws(AllowListError) -> [PeerKey] {
        var keys: [PeerKey] = []
        for (i, raw) in text.split(separator: "\n", omittingEmptySubsequences: false).enumerated() {
            let line = raw.split(separator: "#", maxSplits: 1, omittingEmptySubsequences: false).first ?? ""
            let t = line.trimmingCharacters(in: .whitespacesAndNewlines)
            guard !t.isEmpty else { continue }
            guard let k = PeerKey(text: t) else { throw AllowListError(line: i + 1, text: String(t.prefix(80))) }
            keys.append(k)
        }
        return keys
    }
}

public struct AllowListError: Error, Equatable, Sendable {
    public var line: Int
    /// The line's text (untrusted: shown escaped).
    public var text: String

    public init(line: Int, text: String) {
        self.line = line
        self.text = text
    }
}
