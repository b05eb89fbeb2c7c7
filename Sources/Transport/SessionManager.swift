import Keys
import Logging
import NetCore
import Noise
import Sodium

/// How to authenticate a new session.
public enum ConnectMode: Sendable {
    /// Noise XX: the peer was found by topic; its key is learned (and reported) in the handshake.
    case discovered
    /// Noise IK: we know the peer's key (joining a friend by key); anyone else fails the handshake.
    case knownKey(PeerKey)
    /// Noise XXpsk3: the lobby has a passphrase. Derive the key once with `SessionManager.lobbyKey`.
    case passphrase(SecretBytes)
}

/// Owns turf's packet types on the shared socket: runs handshakes (as initiator and responder),
/// defends against handshake floods, and routes transport packets to sessions.
///
/// Confined to the host's thread (the NIO event loop, or the simulated network's caller); its entry
/// points assert that in debug builds (`LoopConfinement.assertInLoop`).
///
/// One concern per file, as wireguard-go lays out its device: this file holds the state and the
/// session table; `+Send` initiates handshakes, `+Receive` takes packets and answers handshakes,
/// `+Cookie` handles cookie replies to our initiations, `+Timers` the periodic tick. The
/// responder's cookie and rate-limit defences are `HandshakeGuard`.
public final class SessionManager {
    public struct Config: Sendable {
        /// A ping (also the keepalive that holds NAT mappings open) is sent this often.
        public var pingInterval: Nanos = .milliseconds(1000)
        /// A session with nothing authenticated received for this long is closed.
        public var sessionTimeout: Nanos = .seconds(20)
        /// An initiation (or the XX final message) is resent after this, with up to 10% jitter.
        public var handshakeRetry: Nanos = .milliseconds(1000)
        public var handshakeAttempts = 10
        /// A responder forgets a handshake that was not completed within this time.
        public var pendingHandshakeTimeout: Nanos = .seconds(10)
        /// Each direction ratchets its key (Noise REKEY) after this many packets or this long.
        public var rekeyAfterMessages: UInt64 = 1 << 32
        public var rekeyAfterTime: Nanos = .seconds(120)
        /// How long after a rekey packets under the previous key are still accepted.
        public var previousKeyGrace: Nanos = .seconds(10)
        /// Responder-side handshakes kept at once (oldest dropped first).
        public var maxPendingHandshakes = 1024
        /// Sessions started by peers (this side responded) that may be established at once, in
        /// total and per source IP (ports ignored). When either is full, new initiations are
        /// refused before any Diffie-Hellman work (`stats.inboundRefused`).
        public var maxInboundSessions = 128
        public var maxInboundSessionsPerIP = 8
        /// Bytes of reliable data one session may hold for its receiver: segments buffered out of
        /// order plus the message being assembled. A peer that exceeds it is disconnected
        /// (`.closed(.limitExceeded)`, `stats.sessionsOverBudget`). The default fits one 1 MiB
        /// message plus a full send window, which a well-behaved peer never exceeds.
        public var reliableReceiveBudget = ReliableChannel.defaultReceiveBudget
        /// An XX initiator whose final message went unconfirmed this many resends starts over
        /// with a fresh initiation (the responder has lost the handshake: expired, evicted, or
        /// restarted).
        public var finalResendsBeforeRestart = 3
        public var tickInterval: Nanos = .milliseconds(10)
        var guardConfig = HandshakeGuard.Config()

        public var underLoadThreshold: Int {
            get { guardConfig.underLoadThreshold }
            set { guardConfig.underLoadThreshold = newValue }
        }
        public var perSourceHandshakesPerSecond: Double {
            get { guardConfig.perSourceRate }
            set { guardConfig.perSourceRate = newValue }
        }
        public var perSourceHandshakeBurst: Double {
            get { guardConfig.perSourceBurst }
            set { guardConfig.perSourceBurst = newValue }
        }

        public init() {}
    }

    public struct Stats: Sendable, Equatable {
        public var initiationsReceived: UInt64 = 0
        /// Initiations that reached Diffie-Hellman: the expensive work a flood tries to cause.
        public var handshakesProcessed: UInt64 = 0
        public var handshakesCompleted: UInt64 = 0
        public var handshakeFailures: UInt64 = 0
        /// XXpsk3 handshakes whose passphrase did not match ours.
        public var passphraseRejected: UInt64 = 0
        /// Initiations of a pattern we do not accept now (e.g. plain XX into a passphrase lobby).
        public var patternRefused: UInt64 = 0
        public var badMac1: UInt64 = 0
        public var cookieRepliesSent: UInt64 = 0
        public var cookieRepliesReceived: UInt64 = 0
        public var rateLimited: UInt64 = 0
        public var duplicateInitiations: UInt64 = 0
        public var pendingEvicted: UInt64 = 0
        public var malformed: UInt64 = 0
        public var unknownIndex: UInt64 = 0
        public var transportRejected: UInt64 = 0
        public var sessionsTimedOut: UInt64 = 0
        public var bytesReceivedUnauthenticated: UInt64 = 0
        public var bytesSentUnauthenticated: UInt64 = 0
        /// Initiations refused because the inbound session caps (total or per IP) were reached.
        public var inboundRefused: UInt64 = 0
        /// Sessions closed because the peer's reliable data exceeded `reliableReceiveBudget`.
        public var sessionsOverBudget: UInt64 = 0
        /// XX initiations restarted after unanswered final messages.
        public var handshakeRestarts: UInt64 = 0
        /// Path challenges sent to a peer's new address, and new addresses that answered one.
        public var pathChallengesSent: UInt64 = 0
        /// `Session.migrate` calls the peer never answered at the new address (gone back).
        public var migrationsReverted: UInt64 = 0
        /// Initiations resent early because a hole-punch probe came from the peer (`retryHandshakes`).
        public var handshakesRetriedOnProbe: UInt64 = 0
        public var pathsValidated: UInt64 = 0
    }

    public let host: NetworkHost
    public let identity: Identity
    public let config: Config
    @exclusivity(unchecked) public internal(set) var stats = Stats()  // per packet: see DirectionKey.counter
    /// Called when a session started by a peer is established.
    public var onInbound: ((Session) -> Void)?
    let logger: Logger

    @exclusivity(unchecked) var sessions: [UInt32: Session] = [:]
    /// Responder-side handshakes by (source, initiator's index), to answer duplicates from cache.
    var pendingByInitiator: [PendingKey: UInt32] = [:]
    var pendingOrder: [UInt32] = []
    /// Established inbound sessions, in total and per source IP (for the inbound caps).
    var inboundCount = 0
    var inboundByIP: [UInt64: Int] = [:]
    var handshakeGuard: HandshakeGuard
    var lobbyPSK: SecretBytes?
    var tickTimer: TimerToken?
    /// Parsed once per process: every manager uses the same three protocols.
    // try!: the three names are constants that NoiseProtocol parses (every handshake test uses them).
    static let protocols: [HandshakeKind: NoiseProtocol] =
        Dictionary(uniqueKeysWithValues: HandshakeKind.allCases.map { ($0, try! NoiseProtocol(name: $0.noiseName)) })
    /// The parsed protocol of `kind`. The `!` cannot fail: `protocols` has every case of HandshakeKind.
    func noiseProtocol(_ kind: HandshakeKind) -> NoiseProtocol { SessionManager.protocols[kind]! }

    struct PendingKey: Hashable {
        var source: PeerAddress
        var index: UInt32
    }

    /// What a connecting session needs until it is established: the Noise state and the messages
    /// to resend or answer again. Owned here, by session index, and dropped at establishment.
    final class Handshake {
        var noise: HandshakeState?
        /// IK: the key we expect the peer to prove. XXpsk3: the lobby's key.
        var expectedRemoteKey: PeerKey?
        var psk: SecretBytes?
        var lastInitiationMac1: [UInt8] = []
        var cookie: (value: [UInt8], received: Nanos)?
        /// Initiator (XX): resent until the peer confirms.
        var finalMessage: [UInt8]?
        /// Responder: resent for a duplicate initiation.
        var cachedResponse: [UInt8]?
        var initiationNoise: [UInt8] = []
        var pendingKey: PendingKey?
        var nextAction: Nanos = 0
        /// The last resend prompted by a probe (`retryHandshakes`): at most one per 200 ms.
        var lastEarly: Nanos?
        var cookieResendUsed = false
        var finalResends = 0
        let started: Nanos

        init(started: Nanos) { self.started = started }
    }

    /// Handshakes of the sessions still connecting, by local index.
    /// The randomness of this manager and its handshake guard (see `init`).
    let random: RandomSource
    var handshakes: [UInt32: Handshake] = [:]
    /// Established inbound sessions counted against the caps, by local index: their source IP.
    var countedInboundIP: [UInt32: UInt64] = [:]

    /// Registers turf's packet types on `demux` and starts the session timers. `random` is where
    /// ephemeral keys, session indices, cookie secrets, path challenges and retry jitter come from:
    /// the system CSPRNG unless a simulation that must repeat from its seed passes a seeded one.
    public init(
        host: NetworkHost,
        demux: Demultiplexer,
        identity: Identity,
        config: Config = Config(),
        random: RandomSource = .system(),
        logger: Logger = Logger(label: "turf.transport")
    ) {
        host.assertInLoop()
        self.host = host
        self.identity = identity
        self.config = config
        self.random = random
        self.logger = logger
        handshakeGuard = HandshakeGuard(config: config.guardConfig, now: host.now, random: random)
        demux.route(PacketType.allFirstBytes) { [weak self] payload, source in self?.receive(payload, from: source) }
        scheduleTick()
    }

    deinit {
        tickTimer?.cancel()
        for s in sessions.values where !s.isClosed { s.state = .closed(.shutdown) }
    }

    /// The 32-byte pre-shared key for a lobby passphrase: Argon2id, salted with the lobby's name
    /// (its topic), so a recorded handshake cannot be tested against a precomputed dictionary.
    public static func lobbyKey(passphrase: String, lobby: String) throws -> SecretBytes {
        let salt = try BLAKE2b.hash(Array("turf lobby \(lobby)".utf8), outputLength: PasswordHash.saltLength)
        return try PasswordHash.deriveKey(passphrase: Array(passphrase.utf8), salt: salt)
    }

    /// When set, this peer hosts a passphrase lobby: only XXpsk3 initiations with the same key are
    /// accepted; plain XX and IK are refused and counted.
    public func setLobbyKey(_ key: SecretBytes?) {
        host.assertInLoop()
        lobbyPSK = key
    }

    public var activeSessions: [Session] { sessionsInOrder.filter { $0.isEstablished } }
    /// The sessions by local index: an order that is the same on every run (a dictionary's is
    /// seeded per process), for loops whose sends or random draws must repeat from a seed.
    var sessionsInOrder: [Session] { sessions.keys.sorted().compactMap { sessions[$0] } }
    public var sessionCount: Int { sessions.count }
    public var pendingHandshakeCount: Int { pendingOrder.count }
    var pendingMapCount: Int { pendingByInitiator.count }
    public var inboundSessionCount: Int { inboundCount }
    /// Where new session indices come from; random unless set (reproducible fuzzing and tests).
    package var indexGenerator: (() -> UInt32)?
    var trackedSources: Int { handshakeGuard.trackedSources }

    /// Stops timers and closes every session.
    public func shutdown() {
        host.assertInLoop()
        tickTimer?.cancel()
        tickTimer = nil
        for s in sessionsInOrder {
            if s.isEstablished { s.sendFrames([.close(.shutdown)], includeAck: false) }
            remove(s, reason: .shutdown)
        }
    }

    // MARK: the session table

    let prologue = Wire.noisePrologue

    func freshIndex() -> UInt32 {
        while true {
            let i = indexGenerator?() ?? UInt32(truncatingIfNeeded: random.u64())
            if i != 0 && sessions[i] == nil { return i }
        }
    }

    /// Gives a new session its manager, limits and budget.
    func attach(_ s: Session) {
        s.manager = self
        s.rekeyAfterMessages = config.rekeyAfterMessages
        s.rekeyAfterTime = config.rekeyAfterTime
        s.reliable.receiveBudget = config.reliableReceiveBudget
        s.reliable.onOverBudget = { [weak self, weak s] in
            guard let self, let s, !s.isClosed else { return }
            self.stats.sessionsOverBudget += 1
            if s.isEstablished { s.sendFrames([.close(.limitExceeded)], includeAck: false) }
            self.remove(s, reason: .limitExceeded)
        }
    }

    /// The unpredictable data of a path challenge.
    func pathChallengeValue() -> UInt64 { random.u64() }

    /// Whether another inbound session from `ip` fits under the caps.
    func inboundAllowed(from ip: UInt64) -> Bool {
        inboundCount < config.maxInboundSessions && inboundByIP[ip, default: 0] < config.maxInboundSessionsPerIP
    }

    func addPending(_ s: Session, _ h: Handshake, key: PendingKey) {
        while pendingOrder.count >= config.maxPendingHandshakes {
            let oldest = pendingOrder.removeFirst()
            guard let o = sessions[oldest] else { continue }
            forgetPending(o)
            if o.state == .connecting {
                stats.pendingEvicted += 1
                remove(o, reason: .handshakeFailed)
            }
        }
        sessions[s.localIndex] = s
        handshakes[s.localIndex] = h
        // The first live handshake under this key keeps the entry (see receiveInitiation).
        if pendingByInitiator[key].flatMap({ sessions[$0] })?.state != .connecting {
            pendingByInitiator[key] = s.localIndex
            h.pendingKey = key
        }
        pendingOrder.append(s.localIndex)
    }

    func installKeys(_ s: Session, _ ciphers: (send: CipherState, receive: CipherState)) {
        let now = host.now
        // `!`: cannot fail: `split()` makes both cipher states with a key.
        s.send = DirectionKey(key: ciphers.send.key!, epoch: 0, since: now)
        s.receive = DirectionKey(key: ciphers.receive.key!, epoch: 0, since: now)
    }

    /// Marks `s` established; false if it was an inbound session over the caps (then removed).
    @discardableResult
    func establish(_ s: Session) -> Bool {
        guard s.state == .connecting else { return s.isEstablished }
        if s.role == .responder {
            guard inboundAllowed(from: s.peerAddress.sourceKey) else {
                stats.inboundRefused += 1
                remove(s, reason: .handshakeFailed)
                return false
            }
            inboundCount += 1
            inboundByIP[s.peerAddress.sourceKey, default: 0] += 1
            countedInboundIP[s.localIndex] = s.peerAddress.sourceKey
        }
        s.lastReceived = host.now
        s.pings.lastPing = host.now &- config.pingInterval  // ping at the next tick for a first RTT sample
        if let i = pendingOrder.firstIndex(of: s.localIndex) { pendingOrder.remove(at: i) }
        forgetPending(s)
        handshakes[s.localIndex] = nil
        stats.handshakesCompleted += 1
        s.state = .established
        if s.role == .responder { onInbound?(s) }
        return true
    }

    func forgetPending(_ s: Session) {
        guard let h = handshakes[s.localIndex] else { return }
        if let key = h.pendingKey, pendingByInitiator[key] == s.localIndex { pendingByInitiator[key] = nil }
        h.pendingKey = nil
    }

    func remove(_ s: Session, reason: CloseReason) {
        guard sessions[s.localIndex] === s else { return }
        sessions[s.localIndex] = nil
        if let i = pendingOrder.firstIndex(of: s.localIndex) { pendingOrder.remove(at: i) }
        forgetPending(s)
        handshakes[s.localIndex] = nil
        if let ip = countedInboundIP.removeValue(forKey: s.localIndex) {
            inboundCount -= 1
            if let n = inboundByIP[ip], n > 1 { inboundByIP[ip] = n - 1 } else { inboundByIP[ip] = nil }
        }
        if reason == .timeout { stats.sessionsTimedOut += 1 }
        s.send = nil
        s.receive = nil
        s.previousReceive = nil
        s.state = .closed(reason)
    }
}
