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

    @exclusivity(unchecked) private var sessions: [UInt32: Session] = [:]
    /// Responder-side handshakes by (source, initiator's index), to answer duplicates from cache.
    private var pendingByInitiator: [PendingKey: UInt32] = [:]
    private var pendingOrder: [UInt32] = []
    /// Established inbound sessions, in total and per source IP (for the inbound caps).
    private var inboundCount = 0
    private var inboundByIP: [UInt32: Int] = [:]
    private var handshakeGuard: HandshakeGuard
    private var lobbyPSK: SecretBytes?
    private var tickTimer: TimerToken?
    /// Parsed once per process: every manager uses the same three protocols.
    // try!: the three names are constants that NoiseProtocol parses (every handshake test uses them).
    private static let protocols: [HandshakeKind: NoiseProtocol] =
        Dictionary(uniqueKeysWithValues: HandshakeKind.allCases.map { ($0, try! NoiseProtocol(name: $0.noiseName)) })
    /// The parsed protocol of `kind`. The `!` cannot fail: `protocols` has every case of HandshakeKind.
    private func noiseProtocol(_ kind: HandshakeKind) -> NoiseProtocol { SessionManager.protocols[kind]! }

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
    private var handshakes: [UInt32: Handshake] = [:]
    /// Established inbound sessions counted against the caps, by local index: their source IP.
    private var countedInboundIP: [UInt32: UInt32] = [:]

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

    public var activeSessions: [Session] { sessions.values.filter { $0.isEstablished } }
    public var sessionCount: Int { sessions.count }
    public var pendingHandshakeCount: Int { pendingOrder.count }
    var pendingMapCount: Int { pendingByInitiator.count }
    public var inboundSessionCount: Int { inboundCount }
    /// Where new session indices come from; random unless set (reproducible fuzzing and tests).
    @_spi(Testing) public var indexGenerator: (() -> UInt32)?
    var trackedSources: Int { handshakeGuard.trackedSources }

    /// Stops timers and closes every session.
    public func shutdown() {
        host.assertInLoop()
        tickTimer?.cancel()
        tickTimer = nil
        for s in Array(sessions.values) {
            if s.isEstablished { s.sendFrames([.close(.shutdown)], includeAck: false) }
            remove(s, reason: .shutdown)
        }
    }

    // MARK: initiating

    /// Adds a session that is established with the given transport keys, without a handshake:
    /// for fuzzing and tests that need exactly the same session state every time.
    @_spi(Testing) @discardableResult
    public func adoptEstablishedSession(
        role: Session.Role,
        localIndex: UInt32,
        remoteIndex: UInt32,
        peer: PeerAddress,
        remoteKey: PeerKey,
        sendKey: [UInt8],
        receiveKey: [UInt8]
    ) -> Session {
        let s = Session(role: role, kind: .xx, localIndex: localIndex, peer: peer, now: host.now)
        attach(s)
        s.remoteIndex = remoteIndex
        s.remoteKey = remoteKey
        s.send = DirectionKey(key: SecretBytes(copying: sendKey), epoch: 0, since: host.now)
        s.receive = DirectionKey(key: SecretBytes(copying: receiveKey), epoch: 0, since: host.now)
        sessions[localIndex] = s
        establish(s)
        return s
    }

    /// Starts a handshake with `address`. The session reports `.established` or `.closed` through
    /// `onStateChange`.
    @discardableResult
    public func connect(to address: PeerAddress, mode: ConnectMode) -> Session {
        host.assertInLoop()
        let kind: HandshakeKind
        switch mode {
        case .discovered: kind = .xx
        case .knownKey: kind = .ik
        case .passphrase: kind = .xxpsk3
        }
        let s = Session(role: .initiator, kind: kind, localIndex: freshIndex(), peer: address, now: host.now)
        attach(s)
        let h = Handshake(started: host.now)
        if case .knownKey(let k) = mode { h.expectedRemoteKey = k }
        if case .passphrase(let p) = mode { h.psk = p }
        sessions[s.localIndex] = s
        handshakes[s.localIndex] = h
        sendInitiation(s, h)
        return s
    }

    /// Resends now the initiation of each outbound handshake to `address` still waiting for an
    /// answer, instead of at its retry timer: a hole-punch probe from `address` just showed that
    /// the path through its NAT is open (docs/nat.md). At most one resend per 200 ms per handshake;
    /// it does not count as an attempt (a flood of forged probes cannot use up the handshake's
    /// attempts) and it pushes the timed resend back by one retry interval.
    public func retryHandshakes(to address: PeerAddress) {
        host.assertInLoop()
        let now = host.now
        for s in Array(sessions.values) where s.role == .initiator && s.peerAddress == address {
            // Rate-limited by the last early resend only: the first probe, however soon after the
            // initiation (a knock relayed by the DHT arrives within milliseconds), resends at once.
            guard case .connecting = s.state, let h = handshakes[s.localIndex], h.finalMessage == nil,
                h.lastEarly.map({ now &- $0 >= .milliseconds(200) }) ?? true
            else { continue }
            h.lastEarly = now
            stats.handshakesRetriedOnProbe += 1
            sendInitiation(s, h, early: true)
        }
    }

    private func freshIndex() -> UInt32 {
        while true {
            let i = indexGenerator?() ?? UInt32(truncatingIfNeeded: random.u64())
            if i != 0 && sessions[i] == nil { return i }
        }
    }

    /// Gives a new session its manager, limits and budget.
    private func attach(_ s: Session) {
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

    /// The handshake's ephemeral key when the randomness is seeded (a simulation that must repeat);
    /// nil in production, where Noise draws it from the system CSPRNG only once a message needs it
    /// (so an initiation that fails to decrypt costs no key generation).
    private func injectedEphemeral() -> X25519.KeyPair? { random.isSeeded ? random.x25519KeyPair() : nil }

    /// Whether another inbound session from `ip` fits under the caps.
    private func inboundAllowed(from ip: UInt32) -> Bool {
        inboundCount < config.maxInboundSessions && inboundByIP[ip, default: 0] < config.maxInboundSessionsPerIP
    }

    private func retryDelay() -> Nanos {
        config.handshakeRetry
            + Nanos(random.uniform(UInt32(min(config.handshakeRetry / 10, Nanos(UInt32.max - 1)) + 1)))
    }

    /// Sends a fresh initiation. A resend prompted by a cookie reply is not a new attempt.
    private func sendInitiation(_ s: Session, _ h: Handshake, cookieResend: Bool = false, early: Bool = false) {
        if !cookieResend && !early {
            s.counters.handshakeAttempts += 1
            h.cookieResendUsed = false
        }
        h.nextAction = host.now + retryDelay()
        do {
            var remoteStatic: [UInt8]?
            if let k = h.expectedRemoteKey { remoteStatic = try k.x25519() }
            var hs = try HandshakeState(
                protocol: noiseProtocol(s.kind),
                initiator: true,
                prologue: prologue,
                localStatic: identity.agreement,
                localEphemeral: injectedEphemeral(),
                remoteStatic: remoteStatic,
                psks: h.psk.map { [$0] } ?? []
            )
            // IK carries our identity in the first message; XX sends it in the third.
            let message = try hs.writeMessage(s.kind == .ik ? identity.signing.publicKey : [])
            h.noise = hs
            var packet = HandshakeInitiation(kind: s.kind, senderIndex: s.localIndex, noiseMessage: message).encode()
            let mac1 = CookieChecker.mac1(packet)
            packet.replaceSubrange(Wire.mac1Offset..<Wire.mac2Offset, with: mac1)
            if let c = h.cookie, host.now &- c.received < CookieChecker.cookieLifetime {
                packet.replaceSubrange(
                    Wire.mac2Offset..<Wire.initiationLength,
                    with: CookieChecker.mac2(packet, cookie: c.value)
                )
            }
            h.lastInitiationMac1 = mac1
            host.send(packet, to: s.peerAddress)
        } catch {
            logger.debug("cannot start handshake with \(s.peerAddress): \(error)")
            remove(s, reason: .handshakeFailed)
        }
    }

    private let prologue = Wire.noisePrologue

    // MARK: receiving

    /// Entry point for datagrams whose first byte is one of turf's packet types.
    public func receive(_ packet: [UInt8], from source: PeerAddress) {
        host.assertInLoop()
        guard let type = packet.first.flatMap(PacketType.init(rawValue:)) else {
            stats.malformed += 1
            return
        }
        if type != .transportData { stats.bytesReceivedUnauthenticated += UInt64(packet.count) }
        switch type {
        case .transportData: receiveTransport(packet, from: source)
        case .handshakeInitiation: receiveInitiation(packet, from: source)
        case .handshakeResponse: receiveResponse(packet, from: source)
        case .handshakeFinal: receiveFinal(packet, from: source)
        case .cookieReply: receiveCookie(packet, from: source)
        }
    }

    /// Sends a reply to an unauthenticated packet; never more bytes than the packet had.
    private func reply(_ bytes: [UInt8], to packetLength: Int, at address: PeerAddress) {
        guard bytes.count <= packetLength else {
            stats.malformed += 1
            return
        }
        stats.bytesSentUnauthenticated += UInt64(bytes.count)
        host.send(bytes, to: address)
    }

    private func receiveTransport(_ packet: [UInt8], from source: PeerAddress) {
        guard let header = try? TransportHeader.decode(packet) else {
            stats.malformed += 1
            return
        }
        guard let s = sessions[header.receiverIndex] else {
            stats.unknownIndex += 1
            return
        }
        let now = host.now
        guard s.open(packet, header: header, now: now, into: &s.receiveBuffer) else {
            stats.transportRejected += 1
            return
        }
        if source != s.peerAddress, header.counter >= (s.receive?.window.highest ?? 0) {
            // Possibly the peer roamed (NAT rebinding), possibly a copied packet sent from a
            // forged address: the new address must answer a challenge before anything else goes
            // there, and until then it gets no more bytes than it sent.
            s.observePath(source, bytes: packet.count, now: now)
        }
        if s.state == .connecting {
            guard establish(s) else { return }
        }
        if !s.receiveBuffer.isEmpty { s.handle(frames: s.receiveBuffer, from: source, now: now) }
    }

    private func receiveInitiation(_ packet: [UInt8], from source: PeerAddress) {
        stats.initiationsReceived += 1
        guard packet.count == Wire.initiationLength else {
            stats.malformed += 1
            return
        }
        switch handshakeGuard.check(packet, from: source, now: host.now) {
        case .drop(.badMac1):
            stats.badMac1 += 1
            return
        case .drop:
            stats.rateLimited += 1
            return
        case .sendCookie:
            let index = readU32(packet, 2)
            stats.cookieRepliesSent += 1
            reply(
                handshakeGuard.cookies.reply(to: packet, senderIndex: index, from: source, now: host.now),
                to: packet.count,
                at: source
            )
            return
        case .process: break
        }
        guard let initiation = try? HandshakeInitiation.decode(packet) else {
            stats.malformed += 1
            return
        }
        let key = PendingKey(source: source, index: initiation.senderIndex)
        if let existing = pendingByInitiator[key].flatMap({ handshakes[$0] }) {
            if existing.initiationNoise == initiation.noiseMessage, let cached = existing.cachedResponse {
                stats.duplicateInitiations += 1
                reply(cached, to: packet.count, at: source)
                return
            }
            // A different initiation under the same (source, index): the initiator's retry with
            // a new ephemeral key, or a forgery by someone who knows the index (the source address
            // can be spoofed). It is answered as its own handshake; the pending one is kept until
            // it completes or expires, so a forgery cannot cancel a genuine handshake.
        }
        switch (initiation.kind, lobbyPSK) {
        case (.xxpsk3, nil), (.xx, .some), (.ik, .some):
            stats.patternRefused += 1
            return
        default: break
        }
        guard inboundAllowed(from: source.ip) else {
            stats.inboundRefused += 1
            return
        }
        stats.handshakesProcessed += 1
        let s = Session(role: .responder, kind: initiation.kind, localIndex: freshIndex(), peer: source, now: host.now)
        attach(s)
        let h = Handshake(started: host.now)
        s.remoteIndex = initiation.senderIndex
        do {
            // The pattern check above refused .xxpsk3 without a lobby key, so `psks` is never short.
            var hs = try HandshakeState(
                protocol: noiseProtocol(initiation.kind),
                initiator: false,
                prologue: prologue,
                localStatic: identity.agreement,
                localEphemeral: injectedEphemeral(),
                psks: initiation.kind == .xxpsk3 ? lobbyPSK.map { [$0] } ?? [] : []
            )
            let payload = try hs.readMessage(initiation.noiseMessage)
            var responsePayload: [UInt8] = []
            if initiation.kind == .ik {
                s.remoteKey = try verifiedIdentity(payload, remoteStatic: hs.remoteStatic)
            } else {
                guard payload.isEmpty else { throw NoiseError.decryptionFailed }
                responsePayload = identity.signing.publicKey
            }
            let message = try hs.writeMessage(responsePayload)
            let response = HandshakeResponse(
                senderIndex: s.localIndex,
                receiverIndex: initiation.senderIndex,
                noiseMessage: message
            ).encode()
            if initiation.kind == .ik {
                // Complete on our side; established once the initiator's first packet proves it.
                installKeys(s, try hs.split())
            } else {
                h.noise = hs
            }
            h.cachedResponse = response
            h.initiationNoise = initiation.noiseMessage
            addPending(s, h, key: key)
            reply(response, to: packet.count, at: source)
        } catch {
            stats.handshakeFailures += 1
            logger.debug("initiation from \(source) rejected: \(error)")
        }
    }

    private func verifiedIdentity(_ payload: [UInt8], remoteStatic: [UInt8]?) throws -> PeerKey {
        guard let key = PeerKey(bytes: payload), let rs = remoteStatic,
            (try? key.x25519()) == rs
        else { throw NoiseError.decryptionFailed }
        return key
    }

    private func addPending(_ s: Session, _ h: Handshake, key: PendingKey) {
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

    private func receiveResponse(_ packet: [UInt8], from source: PeerAddress) {
        guard let response = try? HandshakeResponse.decode(packet) else {
            stats.malformed += 1
            return
        }
        guard let s = sessions[response.receiverIndex], s.role == .initiator, s.state == .connecting,
            let h = handshakes[s.localIndex], var hs = h.noise, !hs.isMyTurn, hs.nextMessageIndex == 1,
            source == s.peerAddress
        else {
            stats.unknownIndex += 1
            return
        }
        do {
            let payload = try hs.readMessage(response.noiseMessage)
            s.remoteIndex = response.senderIndex
            if s.kind == .ik {
                guard payload.isEmpty else { throw NoiseError.decryptionFailed }
                s.remoteKey = h.expectedRemoteKey
                installKeys(s, try hs.split())
                h.noise = nil
                establish(s)
                s.sendPayload([])  // key confirmation for the responder
            } else {
                s.remoteKey = try verifiedIdentity(payload, remoteStatic: hs.remoteStatic)
                let message = try hs.writeMessage(identity.signing.publicKey)
                installKeys(s, try hs.split())
                h.noise = nil
                let final = HandshakeFinal(receiverIndex: s.remoteIndex, noiseMessage: message).encode()
                h.finalMessage = final
                h.finalResends = 0
                h.nextAction = host.now + retryDelay()
                host.send(final, to: s.peerAddress)
            }
        } catch {
            // A stale response (to an earlier attempt) or a forged one. The failed read ran on a
            // copy, so the stored state is untouched and the genuine response can still be read.
            stats.handshakeFailures += 1
        }
    }

    private func receiveFinal(_ packet: [UInt8], from source: PeerAddress) {
        guard let final = try? HandshakeFinal.decode(packet) else {
            stats.malformed += 1
            return
        }
        guard let s = sessions[final.receiverIndex], s.role == .responder, source == s.peerAddress else {
            stats.unknownIndex += 1
            return
        }
        if s.isEstablished {
            // Our confirmation was lost and the initiator repeats its final message.
            s.sendPayload([])
            return
        }
        guard let h = handshakes[s.localIndex], var hs = h.noise, s.state == .connecting else {
            stats.unknownIndex += 1
            return
        }
        do {
            let payload = try hs.readMessage(final.noiseMessage)
            s.remoteKey = try verifiedIdentity(payload, remoteStatic: hs.remoteStatic)
            installKeys(s, try hs.split())
            h.noise = nil
            guard establish(s) else { return }
            s.sendPayload([])  // confirmation: the initiator is established when this arrives
        } catch {
            // Wrong passphrase, wrong key, or a forged final message from someone who saw our
            // index: counted; the pending handshake is left as it was (it expires on its own), so
            // a forgery cannot cancel a genuine handshake.
            if s.kind == .xxpsk3 { stats.passphraseRejected += 1 } else { stats.handshakeFailures += 1 }
            logger.debug("handshake from \(source) rejected in its final message: \(error)")
        }
    }

    private func receiveCookie(_ packet: [UInt8], from source: PeerAddress) {
        guard let reply = try? CookieReply.decode(packet) else {
            stats.malformed += 1
            return
        }
        guard let s = sessions[reply.receiverIndex], s.role == .initiator, s.state == .connecting,
            let h = handshakes[s.localIndex], h.finalMessage == nil, source == s.peerAddress,
            let cookie = CookieChecker.openReply(reply, initiationMac1: h.lastInitiationMac1)
        else {
            stats.unknownIndex += 1
            return
        }
        stats.cookieRepliesReceived += 1
        h.cookie = (cookie, host.now)
        // Retry at once with the cookie, once per attempt.
        if !h.cookieResendUsed {
            h.cookieResendUsed = true
            sendInitiation(s, h, cookieResend: true)
        }
    }

    private func installKeys(_ s: Session, _ ciphers: (send: CipherState, receive: CipherState)) {
        let now = host.now
        // `!`: cannot fail: `split()` makes both cipher states with a key.
        s.send = DirectionKey(key: ciphers.send.key!, epoch: 0, since: now)
        s.receive = DirectionKey(key: ciphers.receive.key!, epoch: 0, since: now)
    }

    /// Marks `s` established; false if it was an inbound session over the caps (then removed).
    @discardableResult
    private func establish(_ s: Session) -> Bool {
        guard s.state == .connecting else { return s.isEstablished }
        if s.role == .responder {
            guard inboundAllowed(from: s.peerAddress.ip) else {
                stats.inboundRefused += 1
                remove(s, reason: .handshakeFailed)
                return false
            }
            inboundCount += 1
            inboundByIP[s.peerAddress.ip, default: 0] += 1
            countedInboundIP[s.localIndex] = s.peerAddress.ip
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

    private func forgetPending(_ s: Session) {
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

    // MARK: timers

    private func scheduleTick() {
        tickTimer = host.schedule(after: config.tickInterval) { [weak self] in
            guard let self, self.tickTimer != nil else { return }
            self.tick()
            self.scheduleTick()
        }
    }

    func tick() {
        host.assertInLoop()
        let now = host.now
        for s in Array(sessions.values) {
            switch s.state {
            case .established:
                s.tick(now: now, config: config)
            case .connecting:
                guard let h = handshakes[s.localIndex] else {
                    remove(s, reason: .handshakeFailed)
                    continue
                }
                if s.role == .responder {
                    if now &- h.started >= config.pendingHandshakeTimeout { remove(s, reason: .handshakeFailed) }
                } else if now >= h.nextAction {
                    if s.counters.handshakeAttempts >= config.handshakeAttempts {
                        remove(s, reason: .handshakeTimeout)
                    } else if h.finalMessage != nil, h.finalResends >= config.finalResendsBeforeRestart {
                        // The responder has no record of the handshake: start over.
                        stats.handshakeRestarts += 1
                        h.finalMessage = nil
                        s.send = nil
                        s.receive = nil
                        s.remoteIndex = 0
                        s.remoteKey = nil
                        sendInitiation(s, h)
                    } else if let final = h.finalMessage {
                        s.counters.handshakeAttempts += 1
                        h.finalResends += 1
                        h.nextAction = now + retryDelay()
                        host.send(final, to: s.peerAddress)
                    } else {
                        sendInitiation(s, h)
                    }
                }
            case .closed:
                sessions[s.localIndex] = nil
            }
        }
    }
}
