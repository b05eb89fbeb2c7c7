import DHT
import NetCore

/// LAN parties with no internet (docs/nat.md, "LAN parties"): BEP 14 local service discovery as a
/// pure state machine (bytes and time in; datagrams to multicast and lobbies found out), so that
/// its rules are tested without sockets. `LocalDiscoveryService` runs it on the multicast sockets.
///
/// - A **host** announces its lobby's info-hash (`Topic.infoHash`, the one its DHT announce uses)
///   when it starts, a second later (against a lost datagram), then once a minute (BEP 14's
///   cadence); and it **answers a search at once**: any message for its info-hash that is not
///   another host's announce makes it announce again, limited to one announce per
///   `answerInterval` (`LSDAnswerLimiter`: a search inside the interval is answered when it ends,
///   however many came), so a flood of searches costs it at most 4 datagrams a second.
/// - A **joiner** searches (a BEP 14 message for the info-hash, its own port) at once, 250 ms
///   later, then every second while it looks, and takes every announce for the info-hash that is
///   not another joiner's search as a lobby: the source IP and the `Port` header (at most
///   `maxLobbies`, each once).
///
/// Its own messages come back (multicast loopback) and are recognised by the cookie. Everything
/// else that arrives is counted in `stats`; nothing a datagram says is kept but an address.
public struct LocalDiscovery {
    public enum Role: String, Sendable {
        case host, join
    }

    public struct Config: Sendable {
        public var role: Role
        public var infoHash: NodeID
        /// Where this process's sessions listen: the `Port` header.
        public var port: UInt16
        /// Random per process (16 hex digits); the cookie is `role.nonce`.
        public var nonce: String
        public var answerInterval: Nanos = .milliseconds(250)
        /// The host's announces: at the start, `secondAnnounce` later, then every `announceEvery`.
        public var secondAnnounce: Nanos = .seconds(1)
        public var announceEvery: Nanos = .seconds(60)
        /// The joiner's searches: at the start, at `firstRetry`, then every `searchEvery`.
        public var firstRetry: Nanos = .milliseconds(250)
        public var searchEvery: Nanos = .seconds(1)
        public var maxLobbies = 16

        public init(role: Role, infoHash: NodeID, port: UInt16, nonce: String) {
            self.role = role
            self.infoHash = infoHash
            self.port = port
            self.nonce = nonce
        }

        public var cookie: String { "\(role.rawValue).\(nonce)" }
    }

    /// What arrived and what was done, for the `end` event and the tests.
    public struct Stats: Sendable, Equatable {
        public var received = 0
        /// Refused by the parser, by reason (`LSDMessage.Problem`).
        public var malformed: [LSDMessage.Problem: Int] = [:]
        /// Our own messages, looped back.
        public var own = 0
        /// Well-formed, for other info-hashes (other swarms, other lobbies).
        public var otherInfoHashes = 0
        /// For our info-hash but nothing for us to do (a host hearing another host, a joiner
        /// hearing another joiner), or an announce from an address no session can use.
        public var ignored = 0
        /// Searches a host heard, and the announces it sent for them: at once, or later
        /// (coalesced into one at the end of the interval: `answersCoalesced` searches).
        public var searchesHeard = 0
        public var answers = 0
        public var answersCoalesced = 0
        /// Announces sent on the host's own schedule, searches sent by a joiner.
        public var announcesSent = 0
        public var searchesSent = 0
        /// Lobbies a joiner found, and announces of further lobbies past `maxLobbies`.
        public var lobbiesFound = 0
        public var lobbiesDropped = 0

        public var malformedTotal: Int { malformed.values.reduce(0, +) }

        public init() {}
    }

    public enum Output: Equatable, Sendable {
        /// A message to multicast (both groups, every interface).
        case multicast([UInt8])
        /// A lobby at this address (joiners only), the first time it is heard.
        case found(PeerAddress)
    }

    public let config: Config
    public private(set) var stats = Stats()
    public private(set) var lobbies: [PeerAddress] = []
    private var limiter: LSDAnswerLimiter
    private var nextScheduled: Nanos?
    private var scheduledCount = 0
    private var searching: Bool

    public init(_ config: Config) {
        self.config = config
        limiter = LSDAnswerLimiter(interval: config.answerInterval)
        searching = config.role == .join
    }

    /// The message this process sends: its role's cookie, its port, its info-hash.
    public var message: [UInt8] {
        LSDMessage(port: config.port, infoHashes: [config.infoHash], cookie: config.cookie).encode()
    }

    /// The first announce or search, now.
    public mutating func start(now: Nanos) -> [Output] {
        nextScheduled = now
        return tick(now: now)
    }

    /// A joiner that connected stops searching (what it hears is still counted).
    public mutating func stopSearching() {
        searching = false
        if config.role == .join { nextScheduled = nil }
    }

    /// When `tick` has something to do next; nil: nothing scheduled.
    public var nextDeadline: Nanos? {
        [nextScheduled, limiter.pendingAt].compactMap { $0 }.min()
    }

    /// Sends what is due at `now`: the schedule's next announce or search, a coalesced answer.
    public mutating func tick(now: Nanos) -> [Output] {
        var out: [Output] = []
        if limiter.fire(now: now) {
            stats.answers += 1
            out.append(.multicast(message))
        }
        if let due = nextScheduled, now >= due {
            scheduledCount += 1
            switch config.role {
            case .host:
                // An answer just sent counts as this announce. The schedule's announces do not
                // count against the answers (a joiner that starts just after one is answered at
                // once): at most two more datagrams in a minute.
                if out.isEmpty {
                    stats.announcesSent += 1
                    out.append(.multicast(message))
                }
                nextScheduled = now + (scheduledCount == 1 ? config.secondAnnounce : config.announceEvery)
            case .join:
                if searching {
                    stats.searchesSent += 1
                    out.append(.multicast(message))
                    nextScheduled = now + (scheduledCount == 1 ? config.firstRetry : config.searchEvery)
                } else {
                    nextScheduled = nil
                }
            }
        }
        return out
    }

    /// One datagram from the multicast socket, from `source`.
    public mutating func receive(_ bytes: [UInt8], from source: PeerAddress, now: Nanos) -> [Output] {
        stats.received += 1
        let m: LSDMessage
        switch LSDMessage.parse(bytes) {
        case .success(let parsed): m = parsed
        case .failure(let problem):
            stats.malformed[problem, default: 0] += 1
            return []
        }
        if m.cookie == config.cookie {
            stats.own += 1
            return []
        }
        guard m.infoHashes.contains(config.infoHash) else {
            stats.otherInfoHashes += 1
            return []
        }
        let fromHost = m.cookie?.hasPrefix(Role.host.rawValue + ".") == true
        let fromJoiner = m.cookie?.hasPrefix(Role.join.rawValue + ".") == true
        switch config.role {
        case .host:
            // Anything for our lobby but another lobby's announce is someone looking: answer.
            guard !fromHost else {
                stats.ignored += 1
                return []
            }
            stats.searchesHeard += 1
            switch limiter.request(now: now) {
            case .now:
                stats.answers += 1
                return [.multicast(message)]
            case .later:
                return []
            case .coalesced:
                stats.answersCoalesced += 1
                return []
            }
        case .join:
            guard !fromJoiner, Self.usable(source) else {
                stats.ignored += 1
                return []
            }
            let lobby = source.with(port: m.port)
            guard !lobbies.contains(lobby) else { return [] }
            guard lobbies.count < config.maxLobbies else {
                stats.lobbiesDropped += 1
                return []
            }
            lobbies.append(lobby)
            stats.lobbiesFound += 1
            return [.found(lobby)]
        }
    }

    /// Whether a session could reach a lobby at this source address: not unspecified, not
    /// multicast, not an IPv6 link-local address (it would need the interface's scope, which
    /// `PeerAddress` does not carry).
    static func usable(_ a: PeerAddress) -> Bool {
        if let v6 = a.ip6 { return !v6.isUnspecified && !v6.isLinkLocal && !v6.isMulticast }
        return a.ip != 0 && a.ip >> 28 != 0xE && a.ip != 0xFFFF_FFFF
    }
}

/// The host's answers to searches: at most one announce per `interval`. A search inside the
/// interval after an announce is answered when the interval ends (one answer for every search
/// that came meanwhile), so a joiner never waits longer than `interval` and a flood of searches
/// makes the host send at most one datagram per `interval`.
public struct LSDAnswerLimiter: Sendable, Equatable {
    public enum Decision: Equatable, Sendable {
        /// Announce now.
        case now
        /// An announce is scheduled for the end of the interval (`pendingAt`).
        case later
        /// One was already scheduled: this search is answered by it.
        case coalesced
    }

    public let interval: Nanos
    public private(set) var lastSent: Nanos?
    public private(set) var pendingAt: Nanos?

    public init(interval: Nanos) { self.interval = interval }

    /// A search came at `now`.
    public mutating func request(now: Nanos) -> Decision {
        if pendingAt != nil { return .coalesced }
        guard let last = lastSent, now < last + interval else {
            lastSent = now
            return .now
        }
        pendingAt = last + interval
        return .later
    }

    /// The announce that answers searches inside the interval is due: true once, then it counts
    /// as sent.
    public mutating func fire(now: Nanos) -> Bool {
        guard let at = pendingAt, now >= at else { return false }
        pendingAt = nil
        lastSent = now
        return true
    }
}
