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
}

/// One key direction: a ChaChaPoly key, its epoch, and (receiving) its replay window.
struct DirectionKey {
    var key: SecretBytes
    var epoch: UInt8
    var since: Nanos
    var counter: UInt64 = 0      // next counter to send
    var window = ReplayWindow()  // counters received
}

/// A secure session with one peer: Noise handshake state while connecting, then transport keys,
/// timers, channels and path metrics. Created by `SessionManager`; confined to its host's thread.
public final class Session {
    public enum Role: Sendable { case initiator, responder }

    public let role: Role
    public let kind: HandshakeKind
    public let localIndex: UInt32
    public internal(set) var remoteIndex: UInt32 = 0
    /// Where the peer is; follows the peer if it roams (a newer authenticated packet from elsewhere).
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

    public struct Counters: Sendable, Equatable {
        public var packetsSent: UInt64 = 0
        public var packetsReceived: UInt64 = 0
        public var bytesSent: UInt64 = 0
        public var replaysDropped: UInt64 = 0
        public var authFailures: UInt64 = 0
        public var malformedFrames: UInt64 = 0
        public var rekeys: UInt64 = 0
        public var handshakeAttempts: Int = 0
    }
    public internal(set) var counters = Counters()

    weak var manager: SessionManager?

    // Handshake.
    var handshake: HandshakeState?
    var expectedRemoteKey: PeerKey?
    var psk: SecretBytes?
    var lastInitiationMac1: [UInt8] = []
    var cookie: (value: [UInt8], received: Nanos)?
    var finalMessage: [UInt8]?          // initiator (XX): resent until the peer confirms
    var cachedResponse: [UInt8]?        // responder: resent for a duplicate initiation
    var initiationNoise: [UInt8] = []
    var nextHandshakeAction: Nanos = 0
    var cookieResendUsed = false
    let createdAt: Nanos

    // Transport.
    var send: DirectionKey?
    var receive: DirectionKey?
    var previousReceive: DirectionKey?
    var lastReceived: Nanos
    var lastSent: Nanos = 0
    var lastPing: Nanos = 0
    var nextPingID: UInt32 = 1
    var pingsInFlight: [(UInt32, Nanos)] = []
    var lossWindowStart: Nanos
    var lossWindowHighest: UInt64?
    var lossWindowReceived: UInt64 = 0
    var flushScheduled = false
    var scratch: [UInt8] = []

    init(role: Role, kind: HandshakeKind, localIndex: UInt32, peer: PeerAddress, now: Nanos) {
        self.role = role
        self.kind = kind
        self.localIndex = localIndex
        peerAddress = peer
        createdAt = now
        lastReceived = now
        lossWindowStart = now
        scratch.reserveCapacity(Wire.maxDatagram)
        unreliable.session = self
        reliable.session = self
    }

    public var isEstablished: Bool { state == .established }
    public var isClosed: Bool { if case .closed = state { return true } else { return false } }

    /// Closes the session: tells the peer (twice, best effort) and forgets the keys.
    public func close() {
        guard !isClosed else { return }
        if isEstablished {
            sendFrames([.close(reason: 0)], includeAck: false)
            sendFrames([.close(reason: 0)], includeAck: false)
        }
        manager?.remove(self, reason: .local)
    }

    // MARK: sending

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
        guard let manager, let packet = seal(payload, now: manager.host.now) else { return }
        manager.host.send(packet, to: peerAddress)
    }

    /// The transport packet for `payload` (the hot path measured by `turf bench crypto`).
    public func seal(_ payload: [UInt8], now: Nanos) -> [UInt8]? {
        guard var key = send else { return nil }
        if let manager, key.counter >= manager.config.rekeyAfterMessages || now &- key.since >= manager.config.rekeyAfterTime {
            key = DirectionKey(key: CipherState.rekeyed(key.key), epoch: key.epoch &+ 1, since: now)
            counters.rekeys += 1
        }
        var packet: [UInt8] = []
        packet.reserveCapacity(Wire.transportHeaderLength + payload.count + Wire.tagLength)
        TransportHeader(receiverIndex: remoteIndex, epoch: key.epoch, counter: key.counter).write(into: &packet)
        ChaChaPoly.sealAppending(key: key.key, counter: key.counter, plaintext: payload, to: &packet)
        key.counter += 1
        send = key
        lastSent = now
        counters.packetsSent += 1
        counters.bytesSent += UInt64(packet.count)
        return packet
    }

    // MARK: receiving

    /// Authenticates and decrypts a transport packet addressed to this session; nil if it fails
    /// (counted). Handles epochs: the current key, the previous one for a grace period, and the
    /// next one (the peer rekeyed), which is adopted only once a packet authenticates under it.
    public func open(_ packet: [UInt8], header: TransportHeader, now: Nanos) -> [UInt8]? {
        guard let current = receive else { return nil }
        let h = Wire.transportHeaderLength
        var out: [UInt8] = []
        out.reserveCapacity(packet.count - h)
        if header.epoch == current.epoch {
            guard current.window.wouldAccept(header.counter) else { counters.replaysDropped += 1; return nil }
            guard ChaChaPoly.openPacket(key: current.key, counter: header.counter, packet: packet, headerLength: h, appendingTo: &out) else {
                counters.authFailures += 1; return nil
            }
            guard receive!.window.accept(header.counter) else { counters.replaysDropped += 1; return nil }
        } else if var prev = previousReceive, header.epoch == prev.epoch {
            guard prev.window.wouldAccept(header.counter),
                  ChaChaPoly.openPacket(key: prev.key, counter: header.counter, packet: packet, headerLength: h, appendingTo: &out),
                  prev.window.accept(header.counter) else { counters.authFailures += 1; return nil }
            previousReceive = prev
        } else if header.epoch == current.epoch &+ 1 {
            var next = DirectionKey(key: CipherState.rekeyed(current.key), epoch: header.epoch, since: now)
            guard ChaChaPoly.openPacket(key: next.key, counter: header.counter, packet: packet, headerLength: h, appendingTo: &out),
                  next.window.accept(header.counter) else { counters.authFailures += 1; return nil }
            previousReceive = current
            receive = next
            lossWindowHighest = nil
        } else {
            counters.authFailures += 1
            return nil
        }
        counters.packetsReceived += 1
        lossWindowReceived += 1
        lastReceived = now
        return out
    }

    /// Handles the frames of an authenticated packet.
    func handle(frames payload: [UInt8], from source: PeerAddress, now: Nanos) {
        let frames: [Frame]
        do { frames = try Frame.decodeAll(payload) } catch {
            counters.malformedFrames += 1
            return
        }
        var unreliableMessages: [(UInt32, [UInt8])] = []
        for f in frames {
            switch f {
            case .ping(let id):
                sendFrames([.pong(id: id)], includeAck: true)
            case .pong(let id):
                if let i = pingsInFlight.firstIndex(where: { $0.0 == id }) {
                    metrics.addRTT(now &- pingsInFlight[i].1)
                    pingsInFlight.remove(at: i)
                }
            case let .unreliable(seq, data):
                unreliableMessages.append((seq, data))
            case let .segment(seq, last, data):
                reliable.handleSegment(seq: seq, last: last, data: data)
                requestFlush()
            case let .ack(next, bits):
                reliable.handleAck(next: next, bits: bits)
            case .close:
                manager?.remove(self, reason: .remote)
                return
            }
        }
        if !unreliableMessages.isEmpty { unreliable.receive(unreliableMessages) }
    }

    // MARK: timers

    func tick(now: Nanos, config: SessionManager.Config) {
        guard isEstablished else { return }
        if now &- lastReceived >= config.sessionTimeout {
            manager?.remove(self, reason: .timeout)
            return
        }
        if let prev = previousReceive, now &- prev.since >= config.previousKeyGrace + config.rekeyAfterTime {
            previousReceive = nil
        }
        if now &- lastPing >= config.pingInterval {
            lastPing = now
            let id = nextPingID
            nextPingID &+= 1
            pingsInFlight.append((id, now))
            if pingsInFlight.count > 8 { pingsInFlight.removeFirst() }
            sendFrames([.ping(id: id)], includeAck: true)
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
