import NetCore
import NetSim
import Noise
import Sodium
import Transport

/// The entry points that feed untrusted bytes to every network parser, shared by the libFuzzer
/// targets in `Fuzz/` and by the corpus tests in the normal suite. Each must return normally for
/// any input: errors are expected, crashes are bugs.
public enum FuzzHarness {
    public enum Target: String, CaseIterable, Sendable {
        case noise, transport, frames
    }

    public static func run(_ target: Target, _ data: [UInt8]) {
        switch target {
        case .noise: noise(data)
        case .transport: transport(data)
        case .frames: frames(data)
        }
    }

    // MARK: Noise handshake messages

    static let kinds = HandshakeKind.allCases
    static let prologue = Wire.noisePrologue

    /// Fixed keys so that a given input always takes the same path.
    struct NoiseKeys {
        // try!: fixed 32-byte keys, valid by construction (a wrong length is the only error).
        let initiatorStatic = try! X25519.KeyPair(secretKey: [UInt8](repeating: 1, count: 32))
        let responderStatic = try! X25519.KeyPair(secretKey: [UInt8](repeating: 2, count: 32))
        let initiatorEphemeral = try! X25519.KeyPair(secretKey: [UInt8](repeating: 3, count: 32))
        let responderEphemeral = try! X25519.KeyPair(secretKey: [UInt8](repeating: 4, count: 32))
        let psk = SecretBytes(copying: [UInt8](repeating: 5, count: 32))
    }
    static let keys = NoiseKeys()

    static func states(_ kind: HandshakeKind) throws -> (HandshakeState, HandshakeState) {
        let proto = try NoiseProtocol(name: kind.noiseName)
        let psks = kind == .xxpsk3 ? [keys.psk] : []
        let i = try HandshakeState(
            protocol: proto,
            initiator: true,
            prologue: prologue,
            localStatic: keys.initiatorStatic,
            localEphemeral: keys.initiatorEphemeral,
            remoteStatic: kind == .ik ? keys.responderStatic.publicKey : nil,
            psks: psks
        )
        let r = try HandshakeState(
            protocol: proto,
            initiator: false,
            prologue: prologue,
            localStatic: keys.responderStatic,
            localEphemeral: keys.responderEphemeral,
            psks: psks
        )
        return (i, r)
    }

    /// First byte: pattern (mod 3) and the message being read (by 3: 0 = responder reads
    /// message 1, 1 = initiator reads message 2, 2 = responder reads message 3). The rest is the
    /// message.
    public static func noise(_ data: [UInt8]) {
        guard let selector = data.first else { return }
        let kind = kinds[Int(selector) % 3]
        let stage = Int(selector / 3) % 3
        let message = Array(data.dropFirst())
        guard var (i, r) = try? states(kind) else { return }
        do {
            switch stage {
            case 0:
                _ = try r.readMessage(message)
            case 1:
                _ = try i.writeMessage(kind == .ik ? [UInt8](repeating: 9, count: 32) : [])
                _ = try i.readMessage(message)
            default:
                guard kind != .ik else {
                    _ = try r.readMessage(message)
                    return
                }
                _ = try r.readMessage(try i.writeMessage())
                _ = try i.readMessage(try r.writeMessage([UInt8](repeating: 8, count: 32)))
                _ = try r.readMessage(message)
            }
            // Reached a complete handshake: use the ciphers too.
            if r.isComplete, var c = try? r.split() {
                _ = try? c.receive.decrypt(ad: [], ciphertext: message)
            }
        } catch {}
    }

    /// Valid messages for the seed corpus: each stage of each pattern.
    public static func noiseSeeds() -> [[UInt8]] {
        var seeds: [[UInt8]] = []
        for (k, kind) in kinds.enumerated() {
            guard var (i, r) = try? states(kind) else { continue }
            guard let m1 = try? i.writeMessage(kind == .ik ? [UInt8](repeating: 9, count: 32) : []) else { continue }
            seeds.append([UInt8(k)] + m1)
            _ = try? r.readMessage(m1)
            guard let m2 = try? r.writeMessage(kind == .ik ? [] : [UInt8](repeating: 8, count: 32)) else { continue }
            seeds.append([UInt8(k + 3)] + m2)
            if kind != .ik, (try? i.readMessage(m2)) != nil, let m3 = try? i.writeMessage() {
                seeds.append([UInt8(k + 6)] + m3)
            }
        }
        return seeds
    }

    // MARK: transport packets and frames

    /// Two managers on a fresh simulated network with one established session, built anew for
    /// every input with fixed identities, fixed session indices and fixed transport keys (no
    /// handshake, so no random ephemeral keys): an input always meets the same state and takes
    /// the same path, whatever ran before it, so a crash found by libFuzzer reproduces alone.
    final class Environment {
        // try!: fixed 32-byte seeds of valid keys (a wrong length or an invalid point are the only errors).
        static let identityA = try! Identity(signing: try! Ed25519.KeyPair(seed: [UInt8](repeating: 0xA1, count: 32)))
        static let identityB = try! Identity(signing: try! Ed25519.KeyPair(seed: [UInt8](repeating: 0xB2, count: 32)))
        static let keyAtoB = [UInt8](repeating: 0x3C, count: 32)
        static let keyBtoA = [UInt8](repeating: 0x4D, count: 32)
        static let indexA: UInt32 = 0x0A0A_0001, indexB: UInt32 = 0x0B0B_0001

        let net = SimNetwork(seed: 1, conditions: .perfect)
        let a: SimSocket, b: SimSocket
        let da: Demultiplexer, db: Demultiplexer
        let ma: SessionManager, mb: SessionManager
        let sender: Session
        let receiver: Session
        let attacker = PeerAddress(10, 0, 0, 9, port: 9)

        init() {
            net.maxDatagram = Wire.maxDatagram
            a = net.bind(PeerAddress(10, 0, 0, 1, port: 1))
            b = net.bind(PeerAddress(10, 0, 0, 2, port: 1))
            da = Demultiplexer(socket: a)
            db = Demultiplexer(socket: b)
            ma = SessionManager(host: a, demux: da, identity: Environment.identityA)
            mb = SessionManager(host: b, demux: db, identity: Environment.identityB)
            // Indices of sessions created later (e.g. by an initiation in the input) are fixed too.
            var nextA = Environment.indexA
            var nextB = Environment.indexB
            ma.indexGenerator = {
                nextA &+= 1
                return nextA
            }
            mb.indexGenerator = {
                nextB &+= 1
                return nextB
            }
            sender = ma.adoptEstablishedSession(
                role: .initiator,
                localIndex: Environment.indexA,
                remoteIndex: Environment.indexB,
                peer: b.localAddress,
                remoteKey: Environment.identityB.publicKey,
                sendKey: Environment.keyAtoB,
                receiveKey: Environment.keyBtoA
            )
            receiver = mb.adoptEstablishedSession(
                role: .responder,
                localIndex: Environment.indexB,
                remoteIndex: Environment.indexA,
                peer: a.localAddress,
                remoteKey: Environment.identityA.publicKey,
                sendKey: Environment.keyBtoA,
                receiveKey: Environment.keyAtoB
            )
            var reliable: UInt64 = 0
            var unreliable: UInt64 = 0
            receiver.reliable.onReceive = { _ in reliable += 1 }
            receiver.unreliable.onReceive = { _ in unreliable += 1 }
            delivered = { (reliable, unreliable) }
        }

        private(set) var delivered: () -> (UInt64, UInt64) = { (0, 0) }

        /// Lets the replies and flushes an input caused run (bounded). Stops before the managers'
        /// first 10 ms tick, whose pings are the same for every input and would only cost time.
        func settle() { _ = net.run(for: .milliseconds(5), maxEvents: 10_000) }

        var outcome: Outcome {
            let (r, u) = delivered()
            return Outcome(
                datagramsSent: net.stats.sent,
                oversized: net.stats.oversized,
                reliableDelivered: r,
                unreliableDelivered: u,
                responderStats: mb.stats,
                receiverCounters: receiver.counters,
                receiverState: receiver.state
            )
        }
    }

    /// What one input did, for checking that the harness is reproducible.
    public struct Outcome: Equatable, Sendable {
        public var datagramsSent: UInt64
        public var oversized: UInt64
        public var reliableDelivered: UInt64
        public var unreliableDelivered: UInt64
        public var responderStats: SessionManager.Stats
        public var receiverCounters: Session.Counters
        public var receiverState: SessionState
    }

    /// First byte: 0 = the rest is a datagram from a stranger; 1 = the same with the receiver
    /// index patched to the live session's (so it reaches authentication); 2 = the rest is
    /// replayed from the session's peer address.
    public static func transport(_ data: [UInt8]) { _ = transportOutcome(data) }

    @discardableResult
    public static func transportOutcome(_ data: [UInt8]) -> Outcome? {
        guard let mode = data.first else { return nil }
        var packet = Array(data.dropFirst())
        let e = Environment()
        switch mode % 3 {
        case 0:
            e.mb.receive(packet, from: e.attacker)
        case 1:
            if packet.count >= 5 {
                let idx = e.receiver.localIndex
                for k in 0..<4 { packet[1 + k] = UInt8(truncatingIfNeeded: idx >> (8 * UInt32(k))) }
            }
            e.mb.receive(packet, from: e.attacker)
        default:
            e.mb.receive(packet, from: e.a.localAddress)
        }
        _ = try? HandshakeInitiation.decode(packet)
        _ = try? HandshakeResponse.decode(packet)
        _ = try? HandshakeFinal.decode(packet)
        _ = try? CookieReply.decode(packet)
        _ = try? TransportHeader.decode(packet)
        e.settle()
        return e.outcome
    }

    /// The input is the plaintext of a transport packet: parsed as frames, then sealed by the
    /// peer and delivered, so valid frames reach the channels.
    public static func frames(_ data: [UInt8]) { _ = framesOutcome(data) }

    @discardableResult
    public static func framesOutcome(_ data: [UInt8]) -> Outcome? {
        _ = try? Frame.decodeAll(data)
        let e = Environment()
        guard data.count <= Wire.maxTransportPayload, let packet = e.sender.seal(data, now: e.net.now) else {
            return nil
        }
        e.mb.receive(packet, from: e.a.localAddress)
        e.settle()
        return e.outcome
    }

    public static func transportSeeds() -> [[UInt8]] {
        var seeds: [[UInt8]] = []
        let init1 = HandshakeMACs.seal(
            HandshakeInitiation(kind: .xx, senderIndex: 7, noiseMessage: Array(noiseSeeds()[0].dropFirst())).encode()
        )
        seeds.append([0] + init1)
        seeds.append(
            [0]
                + HandshakeResponse(senderIndex: 1, receiverIndex: 2, noiseMessage: [UInt8](repeating: 1, count: 128))
                .encode()
        )
        seeds.append([1] + HandshakeFinal(receiverIndex: 1, noiseMessage: [UInt8](repeating: 2, count: 96)).encode())
        seeds.append(
            [0]
                + CookieReply(
                    receiverIndex: 1,
                    nonce: [UInt8](repeating: 3, count: 12),
                    sealedCookie: [UInt8](repeating: 4, count: 32)
                ).encode()
        )
        var t: [UInt8] = []
        TransportHeader(receiverIndex: 1, epoch: 0, counter: 5).write(into: &t)
        seeds.append([1] + t + [UInt8](repeating: 0, count: 40))
        let e = Environment()
        // A sealed ping (frame type 1, id 0, sent at time 0).
        var ping: [UInt8] = []
        Frame.ping(id: 0, sent: 0).encode(into: &ping)
        if let p = e.sender.seal(ping, now: e.net.now) { seeds.append([2] + p) }
        return seeds
    }

    public static func frameSeeds() -> [[UInt8]] {
        let all: [Frame] = [
            .ping(id: 1, sent: 10), .pong(id: 2, echo: 10, received: 20, sent: 21),
            .unreliable(seq: 3, data: [1, 2, 3]),
            .segment(seq: 0, last: true, data: [4, 5]), .segment(seq: 1, last: false, data: [6]),
            .segment(seq: 2, last: true, data: [7]), .ack(next: 1, bits: 3), .close(.closed),
        ]
        var seeds: [[UInt8]] = []
        for f in all {
            var b: [UInt8] = []
            f.encode(into: &b)
            seeds.append(b)
        }
        var mixed: [UInt8] = []
        for f in all.dropLast() { f.encode(into: &mixed) }
        seeds.append(mixed)
        return seeds
    }

    public static func seeds(_ target: Target) -> [[UInt8]] {
        switch target {
        case .noise: return noiseSeeds()
        case .transport: return transportSeeds()
        case .frames: return frameSeeds()
        }
    }
}
