import Keys
import NetCore
import Noise
import Sodium

/// Round-trip time, jitter and loss for one session, for the HUD.
public struct PathMetrics: Sendable, Equatable {
    /// Smoothed RTT (RFC 6298 weights), nil before the first sample.
    public var smoothedRTT: Nanos?
    /// RTT variation (mean deviation), the jitter estimate.
    public var rttVariation: Nanos = 0
    public var lastRTT: Nanos?
    /// Smoothed fraction of the peer's packets that did not arrive (0...1), from counter gaps.
    public var incomingLoss: Double = 0
    public var rttSamples: Int = 0

    public var rttMilliseconds: Double? { smoothedRTT.map { Double($0) / 1e6 } }
    public var jitterMilliseconds: Double { Double(rttVariation) / 1e6 }

    mutating func addRTT(_ sample: Nanos) {
        lastRTT = sample
        rttSamples += 1
        guard let srtt = smoothedRTT else {
            smoothedRTT = sample
            rttVariation = sample / 2
            return
        }
        let diff = srtt > sample ? srtt - sample : sample - srtt
        rttVariation = (3 * rttVariation + diff) / 4
        smoothedRTT = (7 * srtt + sample) / 8
    }

    /// The retransmission timeout for the reliable channel.
    var rto: Nanos {
        guard let srtt = smoothedRTT else { return .milliseconds(250) }
        return min(ReliableChannel.maxRTO, max(ReliableChannel.minRTO, srtt + 4 * rttVariation))
    }
}

public enum SessionState: Equatable, Sendable {
    case connecting
    case established
    case closed(CloseReason)
}

public enum CloseReason: Equatable, Sendable {
    /// `close()` was called here.
    case local
    /// The peer closed the session.
    case remote
    /// Nothing authenticated arrived for `sessionTimeout`.
    case timeout
    /// The handshake did not complete within its attempts.
    case handshakeTimeout
    /// The handshake failed (wrong key, wrong passphrase, refused pattern).
    case handshakeFailed
    /// The session manager was shut down.
    case shutdown
    /// The peer exceeded a resource limit (its reliable data overflowed the receive budget).
    case limitExceeded
}

/// One key direction: a ChaChaPoly key, its epoch, and (receiving) its replay window. A class, so
/// the per-packet path mutates it in place instead of copying the window.
final class DirectionKey {
    let key: SecretBytes
    let epoch: UInt8
    let since: Nanos
    // @exclusivity(unchecked) here and on the per-packet fields of Session and SessionManager: they
    // are confined to the host's loop and never accessed overlappingly; `turf bench crypto` pays for
    // the checks (speed_ratio median 0.959 with, 0.946 without, 8-9 alternating runs; docs/benchmarks.md).
    @exclusivity(unchecked) var counter: UInt64 = 0  // next counter to send
    @exclusivity(unchecked) var window = ReplayWindow()  // counters received

    init(key: SecretBytes, epoch: UInt8, since: Nanos) {
        self.key = key
        self.epoch = epoch
        self.since = since
    }

    /// The key after this one: Noise's REKEY, next epoch, counters from zero.
    func next(now: Nanos) -> DirectionKey {
        DirectionKey(key: CipherState.rekeyed(key), epoch: epoch &+ 1, since: now)
    }
}

/// A secure session with one peer: Noise handshake state while connecting, then transport keys,
/// timers, channels and path metrics. Created by `SessionManager`; confined to its host's thread
/// (asserted in debug builds where it sends or closes).
public final class Session {
    public enum Role: Sendable { case initiator, responder }

    public let role: Role
    public let kind: HandshakeKind
    public let localIndex: UInt32
    public internal(set) var remoteIndex: UInt32 = 0
    /// Where the peer is. Follows the peer if it roams: a newer authenticated packet from
    /// elsewhere starts a path challenge, and the new address is adopted once it is answered.
    public internal(set) var peerAddress: PeerAddress
    /// The peer's identity, known once the handshake authenticated it.
    public internal(set) var remoteKey: PeerKey?
    public internal(set) var state: SessionState = .connecting {
        didSet { if state != oldValue { onStateChange?(state) } }
    }
    public var onStateChange: ((SessionState) -> Void)?

    public let unreliable = UnreliableChannel()
    public let reliable = ReliableChannel()
    public internal(set) var metrics = PathMetrics()

    /// Clock samples from the pings' pongs (offset θ and delay δ against the peer's clock), the
    /// newest last, at most 32: what a clock estimator reads. Every ping gives one, the keepalive
    /// every `pingInterval` included; `ping()` asks for one more now.
    public var clockSamples: [ClockSample] { pings.samples }
    /// Called with each new clock sample.
    public var onClockSample: ((ClockSample) -> Void)?

    public struct Counters: Sendable, Equatable {
        public var packetsSent: UInt64 = 0
        public var packetsReceived: UInt64 = 0
        public var bytesSent: UInt64 = 0
        /// Bytes of authenticated transport packets received (UDP payload, as `bytesSent`).
        public var bytesReceived: UInt64 = 0
        public var replaysDropped: UInt64 = 0
        public var authFailures: UInt64 = 0
        public var malformedFrames: UInt64 = 0
        public var rekeys: UInt64 = 0
        public var handshakeAttempts: Int = 0
    }
    @exclusivity(unchecked) public internal(set) var counters = Counters()  // see DirectionKey.counter

    weak var manager: SessionManager?

    /// A new address the peer's packets came from, not yet validated: it gets path challenges
    /// only, never more bytes than it sent us, until one is answered.
    struct PathProbe {
        var address: PeerAddress
        var challenge: UInt64
        var bytesReceived = 0
        var bytesSent = 0
        var lastChallenge: Nanos?
    }
    var pathProbe: PathProbe?
    /// The address this session moved away from (`migrate`, or a validated new path) and when:
    /// for `Session.leftPathHold` its packets start no path challenge (a late packet on the old
    /// path must not pull the session back there).
    var leftPath: (address: PeerAddress, at: Nanos)?
    static let leftPathHold: Nanos = .seconds(10)
    /// A `migrate` not yet confirmed by a packet from the new address: the old address and when.
    var migration: (from: PeerAddress, at: Nanos)?
    /// How long a migration waits for the peer to answer at the new address before it goes back.
    public static let migrationTimeout: Nanos = .seconds(3)

    // Transport. (@exclusivity(unchecked): per-packet fields, see DirectionKey.counter.)
    @exclusivity(unchecked) var send: DirectionKey?
    @exclusivity(unchecked) var receive: DirectionKey?
    @exclusivity(unchecked) var previousReceive: DirectionKey?
    @exclusivity(unchecked) var lastReceived: Nanos
    @exclusivity(unchecked) var lastSent: Nanos = 0
    var pings = PingState()
    var lossWindowStart: Nanos
    var lossWindowHighest: UInt64?
    @exclusivity(unchecked) var lossWindowReceived: UInt64 = 0
    var flushScheduled = false
    /// Reused packet buffers: the host copies what it sends, so these rarely reallocate.
    var sendBuffer: [UInt8] = []
    var receiveBuffer: [UInt8] = []
    var payloadBuffer: [UInt8] = []

    init(role: Role, kind: HandshakeKind, localIndex: UInt32, peer: PeerAddress, now: Nanos) {
        self.role = role
        self.kind = kind
        self.localIndex = localIndex
        peerAddress = peer
        lastReceived = now
        lossWindowStart = now
        sendBuffer.reserveCapacity(Wire.maxDatagram)
        payloadBuffer.reserveCapacity(Wire.maxDatagram)
        receiveBuffer.reserveCapacity(Wire.maxDatagram)
        unreliable.session = self
        reliable.session = self
    }

    public var isEstablished: Bool { state == .established }
    public var isClosed: Bool { if case .closed = state { return true } else { return false } }

    /// Closes the session: tells the peer (twice, best effort) and forgets the keys.
    public func close() {
        manager?.host.assertInLoop()
        guard !isClosed else { return }
        if isEstablished {
            sendFrames([.close(.closed)], includeAck: false)
            sendFrames([.close(.closed)], includeAck: false)
        }
        manager?.remove(self, reason: .local)
    }

    // MARK: sending

    /// Moves an established session to a path found after it opened (a relayed session's direct
    /// path, say): from now on it sends to `address`, at once a ping, and it does not go back to
    /// the old path for `leftPathHold`. The peer sees our packets come from elsewhere and
    /// validates the new path (a path challenge) before it answers there. Nothing from the peer
    /// at the new address within `migrationTimeout`: the session goes back to the old path.
    public func migrate(to address: PeerAddress) {
        guard isEstablished, address != peerAddress, let now = manager?.host.now else { return }
        migration = (migration?.from ?? peerAddress, now)
        leftPath = (peerAddress, now)
        peerAddress = address
        pathProbe = nil
        ping()
    }

    /// Sends a ping now, besides the keepalive's: its pong gives an RTT and a clock sample. A
    /// clock estimator calls this to gather samples faster at the start of a match.
    public func ping() {
        guard isEstablished, let manager else { return }
        sendFrames([pings.ping(now: manager.host.now)], includeAck: true)
    }

    func requestFlush() {
        guard !flushScheduled, let host = manager?.host else { return }
        flushScheduled = true
        host.schedule(after: 0) { [weak self] in
            guard let self else { return }
            self.flushScheduled = false
            self.flush()
        }
    }

    /// Sends owed acks and due reliable segments, packed into as few packets as fit.
    func flush() {
        guard isEstablished, let manager else { return }
        var frames = reliable.dueSegments(now: manager.host.now, rto: metrics.rto)
        if let ack = reliable.takeAck() { frames.insert(ack, at: 0) }
        guard !frames.isEmpty else { return }
        sendFrames(frames, includeAck: false)
    }

    /// Packs `frames` into packets of at most `Wire.maxTransportPayload` and sends them.
    /// Builds one plaintext payload in the session's reused buffer (with an owed ack first) and
    /// sends it: the allocation-free path for game traffic. `build` must stay within
    /// `Wire.maxTransportPayload` minus 13 bytes for the ack.
    func sendBuilt(_ build: (inout [UInt8]) -> Void) {
        var payload = payloadBuffer
        payloadBuffer = []
        payload.removeAll(keepingCapacity: true)
        if let ack = reliable.takeAck() { ack.encode(into: &payload) }
        build(&payload)
        sendPayload(payload)
        payloadBuffer = payload
    }

    func sendFrames(_ frames: [Frame], includeAck: Bool) {
        var payload: [UInt8] = []
        payload.reserveCapacity(Wire.maxTransportPayload)
        if includeAck, let ack = reliable.takeAck() { ack.encode(into: &payload) }
        for f in frames {
            if payload.count + f.encodedLength > Wire.maxTransportPayload && !payload.isEmpty {
                sendPayload(payload)
                payload.removeAll(keepingCapacity: true)
            }
            f.encode(into: &payload)
        }
        if !payload.isEmpty { sendPayload(payload) }
    }

    /// Encrypts one plaintext payload into a transport packet and sends it.
    func sendPayload(_ payload: [UInt8]) {
        guard let manager else { return }
        manager.host.assertInLoop()
        guard seal(payload, now: manager.host.now, into: &sendBuffer) else { return }
        manager.host.send(sendBuffer, to: peerAddress)
    }

    /// The transport packet for `payload`, or nil if the session has no keys.
    public func seal(_ payload: [UInt8], now: Nanos) -> [UInt8]? {
        var packet: [UInt8] = []
        return seal(payload, now: now, into: &packet) ? packet : nil
    }

    /// Seals `payload` into `packet` (resized, its storage reused): the hot path measured by
    /// `turf bench crypto`. False if the session has no keys.
    public func seal(_ payload: [UInt8], now: Nanos, into packet: inout [UInt8]) -> Bool {
        guard var key = send else { return false }
        if key.counter >= rekeyAfterMessages || now &- key.since >= rekeyAfterTime {
            key = key.next(now: now)
            send = key
            counters.rekeys += 1
        }
        let counter = key.counter
        key.counter += 1
        let h = Wire.transportHeaderLength
        let total = h + payload.count + Wire.tagLength
        if packet.count != total {
            packet.removeAll(keepingCapacity: true)
            packet.append(contentsOf: repeatElement(0, count: total))
        }
        let index = remoteIndex
        let epoch = key.epoch
        let secret = key.key
        packet.withUnsafeMutableBytes { buffer in
            let base = buffer.baseAddress!  // `!`: the packet was grown to its full length above
            base.storeBytes(of: PacketType.transportData.rawValue, as: UInt8.self)
            base.storeBytes(of: index.littleEndian, toByteOffset: 1, as: UInt32.self)
            base.storeBytes(of: epoch, toByteOffset: 5, as: UInt8.self)
            base.storeBytes(of: counter.littleEndian, toByteOffset: 6, as: UInt64.self)
            payload.withUnsafeBytes { p in
                ChaChaPoly.seal(
                    key: secret,
                    counter: counter,
                    ad: UnsafeRawBufferPointer(start: base, count: h),
                    plaintext: p,
                    output: base + h
                )
            }
        }
        lastSent = now
        counters.packetsSent += 1
        counters.bytesSent += UInt64(total)
        return true
    }

    /// Copied from the manager's configuration so the packet path needs no manager lookup.
    var rekeyAfterMessages: UInt64 = 1 << 32
    var rekeyAfterTime: Nanos = .seconds(120)

    // MARK: receiving

    /// Authenticates and decrypts a transport packet addressed to this session; nil if it fails
    /// (counted). Handles epochs: the current key, the previous one for a grace period, and the
    /// next one (the peer rekeyed), which is adopted only once a packet authenticates under it.
    public func open(_ packet: [UInt8], header: TransportHeader, now: Nanos) -> [UInt8]? {
        var out: [UInt8] = []
        return open(packet, header: header, now: now, into: &out) ? out : nil
    }

    /// Authenticates and decrypts into `plaintext` (resized, its storage reused); false if the
    /// packet is rejected.
    public func open(_ packet: [UInt8], header: TransportHeader, now: Nanos, into plaintext: inout [UInt8]) -> Bool {
        let h = Wire.transportHeaderLength
        guard let current = receive, packet.count >= h + Wire.tagLength else { return false }
        if header.epoch == current.epoch {
            guard current.window.wouldAccept(header.counter) else {
                counters.replaysDropped += 1
                return false
            }
            guard Session.decrypt(packet, key: current.key, counter: header.counter, into: &plaintext) else {
                counters.authFailures += 1
                return false
            }
            guard current.window.accept(header.counter) else {
                counters.replaysDropped += 1
                return false
            }
        } else if let prev = previousReceive, header.epoch == prev.epoch {
            guard prev.window.wouldAccept(header.counter) else {
                counters.replaysDropped += 1
                return false
            }
            guard Session.decrypt(packet, key: prev.key, counter: header.counter, into: &plaintext),
                prev.window.accept(header.counter)
            else {
                counters.authFailures += 1
                return false
            }
        } else if header.epoch == current.epoch &+ 1 {
            let next = current.next(now: now)
            guard Session.decrypt(packet, key: next.key, counter: header.counter, into: &plaintext),
                next.window.accept(header.counter)
            else {
                counters.authFailures += 1
                return false
            }
            previousReceive = current
            receive = next
            lossWindowHighest = nil
        } else {
            counters.authFailures += 1
            return false
        }
        counters.packetsReceived += 1
        counters.bytesReceived += UInt64(packet.count)
        lossWindowReceived += 1
        lastReceived = now
        return true
    }

    /// Decrypts a transport packet (header as associated data) into `out`.
    @inline(__always)
    static func decrypt(_ packet: [UInt8], key: SecretBytes, counter: UInt64, into out: inout [UInt8]) -> Bool {
        let h = Wire.transportHeaderLength
        let n = packet.count - h - Wire.tagLength
        if out.count != n {
            out.removeAll(keepingCapacity: true)
            out.append(contentsOf: repeatElement(0, count: n))
        }
        var scratch: UInt8 = 0
        return out.withUnsafeMutableBytes { o in
            packet.withUnsafeBytes { p in
                ChaChaPoly.open(
                    key: key,
                    counter: counter,
                    ad: UnsafeRawBufferPointer(rebasing: p[0..<h]),
                    ciphertext: UnsafeRawBufferPointer(rebasing: p[h...]),
                    output: o.baseAddress ?? withUnsafeMutableBytes(of: &scratch) { $0.baseAddress! }
                )  // a scalar's bytes have an address
            }
        }
    }

    /// Handles the frames of an authenticated packet.
    func handle(frames payload: [UInt8], from source: PeerAddress, now: Nanos) {
        if migration != nil && source == peerAddress { migration = nil }  // the new path works both ways
        // Fast path for game traffic: exactly one unreliable message.
        if payload.count >= 7, payload[0] == Frame.unreliableType {
            let n = Int(payload[5]) | Int(payload[6]) << 8
            if payload.count == 7 + n {
                unreliable.receive(readU32(payload, 1), Array(payload[7...]))
                return
            }
        }
        let frames: [Frame]
        do { frames = try Frame.decodeAll(payload) } catch {
            counters.malformedFrames += 1
            return
        }
        var unreliableMessages: [(UInt32, [UInt8])] = []
        // However many pings and challenges a packet holds, it gets at most one pong and one path
        // response, together in one packet: a packet never causes more than one packet back.
        var pingToAnswer: (id: UInt32, sent: Nanos)?
        var challengeToAnswer: UInt64?
        for f in frames {
            switch f {
            case .ping(let id, let sent):
                pingToAnswer = (id, sent)
            case .pathChallenge(let data):
                challengeToAnswer = data
            case .pathResponse(let data):
                if let probe = pathProbe, probe.challenge == data {
                    // Whichever address it comes from, the answer proves the peer received the
                    // challenge at the new address (as in QUIC, RFC 9000 section 8.2.2).
                    leftPath = (peerAddress, now)
                    peerAddress = probe.address
                    pathProbe = nil
                    manager?.stats.pathsValidated += 1
                }
            case .pong(let id, let echo, let received, let sent):
                switch pings.pong(id: id, echo: echo, received: received, sent: sent, now: now) {
                case .sample(let sample, let rtt):
                    metrics.addRTT(rtt)
                    onClockSample?(sample)
                case .malformed: counters.malformedFrames += 1
                case .unknown: break
                }
            case .unreliable(let seq, let data):
                unreliableMessages.append((seq, data))
            case .segment(let seq, let last, let data):
                reliable.handleSegment(seq: seq, last: last, data: data)
                if isClosed { return }  // over its receive budget
                requestFlush()
            case .ack(let next, let bits):
                reliable.handleAck(next: next, bits: bits)
            case .close:
                manager?.remove(self, reason: .remote)
                return
            }
        }
        if pingToAnswer != nil || challengeToAnswer != nil {
            var answer: [Frame] = []
            if let ping = pingToAnswer {
                // T2 is when the packet arrived; T3 is read as late as possible, just before sealing.
                answer.append(.pong(id: ping.id, echo: ping.sent, received: now, sent: manager?.host.now ?? now))
            }
            if let data = challengeToAnswer { answer.append(.pathResponse(data: data)) }
            sendFrames(answer, includeAck: true)
        }
        if unreliableMessages.count == 1 {
            unreliable.receive(unreliableMessages[0].0, unreliableMessages[0].1)
        } else if !unreliableMessages.isEmpty {
            unreliable.receive(unreliableMessages)
        }
    }

    // MARK: path validation

    /// An authenticated packet of `bytes` with a new highest counter came from `source`, which is
    /// not the peer's validated address. Challenges it (again after an RTO, while its budget of
    /// received bytes allows); traffic keeps going to the validated address meanwhile.
    func observePath(_ source: PeerAddress, bytes: Int, now: Nanos) {
        guard let manager else { return }
        if let left = leftPath, left.address == source, now &- left.at < Self.leftPathHold { return }
        if pathProbe?.address != source {
            pathProbe = PathProbe(address: source, challenge: manager.pathChallengeValue())
        }
        pathProbe?.bytesReceived += bytes
        guard let probe = pathProbe, send != nil else { return }
        if let last = probe.lastChallenge, now &- last < metrics.rto { return }
        let size = Wire.transportHeaderLength + Frame.pathChallenge(data: 0).encodedLength + Wire.tagLength
        guard probe.bytesSent + size <= probe.bytesReceived else { return }
        var payload: [UInt8] = []
        Frame.pathChallenge(data: probe.challenge).encode(into: &payload)
        guard seal(payload, now: now, into: &sendBuffer) else { return }
        pathProbe?.bytesSent += sendBuffer.count
        pathProbe?.lastChallenge = now
        manager.stats.pathChallengesSent += 1
        manager.host.send(sendBuffer, to: source)
    }

    // MARK: timers

    func tick(now: Nanos, config: SessionManager.Config) {
        guard isEstablished else { return }
        if let m = migration, now &- m.at >= Self.migrationTimeout {
            // The peer never answered at the new address: back to the path that worked.
            migration = nil
            leftPath = nil
            peerAddress = m.from
            manager?.stats.migrationsReverted += 1
        }
        if now &- lastReceived >= config.sessionTimeout {
            manager?.remove(self, reason: .timeout)
            return
        }
        if let prev = previousReceive, now &- prev.since >= config.previousKeyGrace + config.rekeyAfterTime {
            previousReceive = nil
        }
        if now &- pings.lastPing >= config.pingInterval {
            sendFrames([pings.ping(now: now)], includeAck: true)
        }
        if now &- lossWindowStart >= .seconds(1) {
            if let highest = receive?.window.highest {
                if let start = lossWindowHighest, highest > start {
                    let expected = Double(highest - start)
                    let sample = max(0, min(1, 1 - Double(lossWindowReceived) / expected))
                    metrics.incomingLoss = metrics.incomingLoss * 0.75 + sample * 0.25
                }
                lossWindowHighest = highest
            }
            lossWindowReceived = 0
            lossWindowStart = now
        }
        if reliable.hasInFlight { flush() }
    }
}
