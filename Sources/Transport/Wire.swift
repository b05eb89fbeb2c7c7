import Determinism
import NetCore

/// turf's packets on the shared UDP socket. The first byte is the packet type; all are below 0x20
/// so they never collide with bencoded KRPC (which starts with `d`). Integers are little-endian.
/// See docs/transport.md for the layouts.
public enum PacketType: UInt8, CaseIterable, Sendable {
    case handshakeInitiation = 0x01
    case handshakeResponse = 0x02
    case handshakeFinal = 0x03
    case cookieReply = 0x04
    case transportData = 0x05

    /// The first bytes the session layer claims on the demultiplexer.
    public static var allFirstBytes: [UInt8] { allCases.map(\.rawValue) }
}

/// Which Noise pattern an initiation starts.
public enum HandshakeKind: UInt8, Sendable, CaseIterable {
    /// Noise XX: peer found by topic, keys learned in the handshake.
    case xx = 1
    /// Noise IK: the initiator already knows the responder's key (joining a friend by key).
    case ik = 2
    /// Noise XXpsk3: XX bound to a lobby passphrase.
    case xxpsk3 = 3

    public var noiseName: String {
        switch self {
        case .xx: return "Noise_XX_25519_ChaChaPoly_BLAKE2b"
        case .ik: return "Noise_IK_25519_ChaChaPoly_BLAKE2b"
        case .xxpsk3: return "Noise_XXpsk3_25519_ChaChaPoly_BLAKE2b"
        }
    }
}

public enum Wire {
    /// No turf datagram is larger than this (netcode's rule; fits every path MTU in practice).
    public static let maxDatagram = 1200
    public static let macLength = 16

    // Handshake initiation: fixed size, padded, so that nothing we answer before authentication
    // is larger than what the peer sent.
    public static let initiationLength = 192
    static let initiationNoiseOffset = 8
    public static let mac1Offset = initiationLength - 2 * macLength  // 160
    public static let mac2Offset = initiationLength - macLength  // 176
    public static let maxInitiationNoise = mac1Offset - initiationNoiseOffset

    public static let responseHeaderLength = 9
    public static let finalHeaderLength = 5
    public static let cookieNonceLength = 12
    public static let cookieReplyLength = 1 + 4 + cookieNonceLength + 16 + 16
    public static let transportHeaderLength = 14
    public static let tagLength = 16
    /// Plaintext room in one transport packet.
    public static let maxTransportPayload = maxDatagram - transportHeaderLength - tagLength

    /// The Noise prologue of every turf handshake: bound into the handshake hash, so a turf
    /// handshake cannot be confused with another protocol's (both sides must use the same bytes).
    public static let noisePrologue: [UInt8] = Array("turf transport v1".utf8)
}

/// The reason byte of a close frame (docs/transport.md). Decoding keeps the raw byte (a newer peer
/// may send a reason this one does not know; any close frame closes).
public enum CloseCode: UInt8, Sendable, CaseIterable {
    /// `close()` was called.
    case closed = 0
    /// The peer's session manager shut down.
    case shutdown = 1
    /// The receiver of this frame exceeded a resource limit (its reliable data overflowed the budget).
    case limitExceeded = 2
}

public enum WireError: Error, Equatable, CustomStringConvertible {
    case wrongType(UInt8)
    case wrongLength(Int)
    case badField(String)

    public var description: String {
        switch self {
        case .wrongType(let t): return "unexpected packet type 0x\(String(t, radix: 16))"
        case .wrongLength(let n): return "packet has the wrong length (\(n) bytes)"
        case .badField(let f): return "bad field: \(f)"
        }
    }
}

@inline(__always)
func readU32(_ b: [UInt8], _ o: Int) -> UInt32 {
    UInt32(b[o]) | UInt32(b[o + 1]) << 8 | UInt32(b[o + 2]) << 16 | UInt32(b[o + 3]) << 24
}

@inline(__always)
func readU64(_ b: [UInt8], _ o: Int) -> UInt64 {
    var v: UInt64 = 0
    for i in 0..<8 { v |= UInt64(b[o + i]) << (8 * UInt64(i)) }
    return v
}

@inline(__always)
func appendU32(_ out: inout [UInt8], _ v: UInt32) {
    out.append(UInt8(truncatingIfNeeded: v))
    out.append(UInt8(truncatingIfNeeded: v >> 8))
    out.append(UInt8(truncatingIfNeeded: v >> 16))
    out.append(UInt8(truncatingIfNeeded: v >> 24))
}

@inline(__always)
func appendU64(_ out: inout [UInt8], _ v: UInt64) {
    for i in 0..<8 { out.append(UInt8(truncatingIfNeeded: v >> (8 * UInt64(i)))) }
}

/// `[0x01][kind][sender u32][noise length u16][noise message, zero padded][mac1 16][mac2 16]`
public struct HandshakeInitiation: Equatable {
    public var kind: HandshakeKind
    public var senderIndex: UInt32
    public var noiseMessage: [UInt8]
    public var mac1: [UInt8]
    public var mac2: [UInt8]

    public init(
        kind: HandshakeKind,
        senderIndex: UInt32,
        noiseMessage: [UInt8],
        mac1: [UInt8] = [UInt8](repeating: 0, count: 16),
        mac2: [UInt8] = [UInt8](repeating: 0, count: 16)
    ) {
        self.kind = kind
        self.senderIndex = senderIndex
        self.noiseMessage = noiseMessage
        self.mac1 = mac1
        self.mac2 = mac2
    }

    /// Encodes with the macs as given (callers fill them in with `Macs`).
    public func encode() -> [UInt8] {
        precondition(noiseMessage.count <= Wire.maxInitiationNoise)
        var out: [UInt8] = []
        out.reserveCapacity(Wire.initiationLength)
        out.append(PacketType.handshakeInitiation.rawValue)
        out.append(kind.rawValue)
        appendU32(&out, senderIndex)
        out.append(UInt8(noiseMessage.count & 0xFF))
        out.append(UInt8(noiseMessage.count >> 8))
        out += noiseMessage
        out += [UInt8](repeating: 0, count: Wire.mac1Offset - out.count)
        out += mac1
        out += mac2
        return out
    }

    public static func decode(_ b: [UInt8]) throws -> HandshakeInitiation {
        guard b.count == Wire.initiationLength else { throw WireError.wrongLength(b.count) }
        guard b[0] == PacketType.handshakeInitiation.rawValue else { throw WireError.wrongType(b[0]) }
        guard let kind = HandshakeKind(rawValue: b[1]) else { throw WireError.badField("handshake kind \(b[1])") }
        let n = Int(b[6]) | Int(b[7]) << 8
        guard n <= Wire.maxInitiationNoise else { throw WireError.badField("noise length \(n)") }
        let end = Wire.initiationNoiseOffset + n
        guard b[end..<Wire.mac1Offset].allSatisfy({ $0 == 0 }) else { throw WireError.badField("padding") }
        return HandshakeInitiation(
            kind: kind,
            senderIndex: readU32(b, 2),
            noiseMessage: Array(b[Wire.initiationNoiseOffset..<end]),
            mac1: Array(b[Wire.mac1Offset..<Wire.mac2Offset]),
            mac2: Array(b[Wire.mac2Offset...])
        )
    }
}

/// `[0x02][sender u32][receiver u32][noise message]`
public struct HandshakeResponse: Equatable {
    public var senderIndex: UInt32
    public var receiverIndex: UInt32
    public var noiseMessage: [UInt8]

    public init(senderIndex: UInt32, receiverIndex: UInt32, noiseMessage: [UInt8]) {
        self.senderIndex = senderIndex
        self.receiverIndex = receiverIndex
        self.noiseMessage = noiseMessage
    }

    public func encode() -> [UInt8] {
        var out: [UInt8] = [PacketType.handshakeResponse.rawValue]
        appendU32(&out, senderIndex)
        appendU32(&out, receiverIndex)
        return out + noiseMessage
    }

    public static func decode(_ b: [UInt8]) throws -> HandshakeResponse {
        guard b.count >= Wire.responseHeaderLength + 32, b.count <= Wire.initiationLength - Wire.macLength else {
            throw WireError.wrongLength(b.count)
        }
        guard b[0] == PacketType.handshakeResponse.rawValue else { throw WireError.wrongType(b[0]) }
        return HandshakeResponse(
            senderIndex: readU32(b, 1),
            receiverIndex: readU32(b, 5),
            noiseMessage: Array(b[Wire.responseHeaderLength...])
        )
    }
}

/// `[0x03][receiver u32][noise message]` — the third XX message, initiator to responder.
public struct HandshakeFinal: Equatable {
    public var receiverIndex: UInt32
    public var noiseMessage: [UInt8]

    public init(receiverIndex: UInt32, noiseMessage: [UInt8]) {
        self.receiverIndex = receiverIndex
        self.noiseMessage = noiseMessage
    }

    public func encode() -> [UInt8] {
        var out: [UInt8] = [PacketType.handshakeFinal.rawValue]
        appendU32(&out, receiverIndex)
        return out + noiseMessage
    }

    public static func decode(_ b: [UInt8]) throws -> HandshakeFinal {
        guard b.count >= Wire.finalHeaderLength + 48, b.count <= Wire.maxDatagram else {
            throw WireError.wrongLength(b.count)
        }
        guard b[0] == PacketType.handshakeFinal.rawValue else { throw WireError.wrongType(b[0]) }
        return HandshakeFinal(receiverIndex: readU32(b, 1), noiseMessage: Array(b[Wire.finalHeaderLength...]))
    }
}

/// `[0x04][receiver u32][nonce 12][sealed cookie 16+16]`
public struct CookieReply: Equatable {
    public var receiverIndex: UInt32
    public var nonce: [UInt8]
    public var sealedCookie: [UInt8]

    public init(receiverIndex: UInt32, nonce: [UInt8], sealedCookie: [UInt8]) {
        self.receiverIndex = receiverIndex
        self.nonce = nonce
        self.sealedCookie = sealedCookie
    }

    public func encode() -> [UInt8] {
        var out: [UInt8] = [PacketType.cookieReply.rawValue]
        appendU32(&out, receiverIndex)
        return out + nonce + sealedCookie
    }

    public static func decode(_ b: [UInt8]) throws -> CookieReply {
        guard b.count == Wire.cookieReplyLength else { throw WireError.wrongLength(b.count) }
        guard b[0] == PacketType.cookieReply.rawValue else { throw WireError.wrongType(b[0]) }
        return CookieReply(receiverIndex: readU32(b, 1), nonce: Array(b[5..<17]), sealedCookie: Array(b[17...]))
    }
}

/// The cleartext header of a transport packet: `[0x05][receiver u32][epoch u8][counter u64]`,
/// followed by the ChaChaPoly ciphertext and tag. The header is the AEAD's associated data.
public struct TransportHeader: Equatable {
    public var receiverIndex: UInt32
    public var epoch: UInt8
    public var counter: UInt64

    public init(receiverIndex: UInt32, epoch: UInt8, counter: UInt64) {
        self.receiverIndex = receiverIndex
        self.epoch = epoch
        self.counter = counter
    }

    @inline(__always)
    public func write(into out: inout [UInt8]) {
        out.append(PacketType.transportData.rawValue)
        appendU32(&out, receiverIndex)
        out.append(epoch)
        appendU64(&out, counter)
    }

    /// Parses the header of a transport packet; the packet must also hold at least a tag.
    @inline(__always)
    public static func decode(_ b: [UInt8]) throws -> TransportHeader {
        guard b.count >= Wire.transportHeaderLength + Wire.tagLength, b.count <= Wire.maxDatagram else {
            throw WireError.wrongLength(b.count)
        }
        guard b[0] == PacketType.transportData.rawValue else { throw WireError.wrongType(b[0]) }
        return TransportHeader(receiverIndex: readU32(b, 1), epoch: b[5], counter: readU64(b, 6))
    }
}

/// The frames inside a decrypted transport packet. An empty payload is a keepalive.
public enum Frame: Equatable {
    /// Asks for a pong (the keepalive, and an RTT and clock sample): `sent` is the sender's clock
    /// when it left (T1 of docs/transport.md, "Clock samples").
    case ping(id: UInt32, sent: Nanos)
    /// Answers a ping: its id, its `sent` echoed (T1), and on the answering peer's clock when the
    /// ping arrived (T2) and when this pong left (T3).
    case pong(id: UInt32, echo: Nanos, received: Nanos, sent: Nanos)
    /// Unreliable channel message: latest wins.
    case unreliable(seq: UInt32, data: [UInt8])
    /// Reliable channel segment; `last` ends a (possibly fragmented) message.
    case segment(seq: UInt32, last: Bool, data: [UInt8])
    /// Reliable channel acknowledgement: every seq below `next`, and next+1+i for each bit i.
    case ack(next: UInt32, bits: UInt64)
    case close(reason: UInt8)
    /// Sent to a peer's new, unvalidated address; the peer echoes the data in a path response.
    case pathChallenge(data: UInt64)
    case pathResponse(data: UInt64)

    static let pingType: UInt8 = 1, pongType: UInt8 = 2, unreliableType: UInt8 = 3
    static let segmentType: UInt8 = 4, ackType: UInt8 = 5, closeType: UInt8 = 6
    static let pathChallengeType: UInt8 = 7, pathResponseType: UInt8 = 8

    /// A close frame with a known reason.
    public static func close(_ code: CloseCode) -> Frame { .close(reason: code.rawValue) }

    public var encodedLength: Int {
        switch self {
        case .ping: return 13
        case .pong: return 29
        case .unreliable(_, let d): return 7 + d.count
        case .segment(_, _, let d): return 8 + d.count
        case .ack: return 13
        case .close: return 2
        case .pathChallenge, .pathResponse: return 9
        }
    }

    /// Encodes an unreliable message frame without building a `Frame`.
    @inline(__always)
    static func appendUnreliable(seq: UInt32, data: [UInt8], to out: inout [UInt8]) {
        out.append(unreliableType)
        appendU32(&out, seq)
        out.append(UInt8(data.count & 0xFF))
        out.append(UInt8(data.count >> 8))
        out += data
    }

    public func encode(into out: inout [UInt8]) {
        switch self {
        case .ping(let id, let sent):
            out.append(Frame.pingType)
            appendU32(&out, id)
            appendU64(&out, sent)
        case .pong(let id, let echo, let received, let sent):
            out.append(Frame.pongType)
            appendU32(&out, id)
            appendU64(&out, echo)
            appendU64(&out, received)
            appendU64(&out, sent)
        case .unreliable(let seq, let d):
            out.append(Frame.unreliableType)
            appendU32(&out, seq)
            out.append(UInt8(d.count & 0xFF))
            out.append(UInt8(d.count >> 8))
            out += d
        case .segment(let seq, let last, let d):
            out.append(Frame.segmentType)
            appendU32(&out, seq)
            out.append(last ? 1 : 0)
            out.append(UInt8(d.count & 0xFF))
            out.append(UInt8(d.count >> 8))
            out += d
        case .ack(let next, let bits):
            out.append(Frame.ackType)
            appendU32(&out, next)
            appendU64(&out, bits)
        case .close(let r):
            out.append(Frame.closeType)
            out.append(r)
        case .pathChallenge(let d):
            out.append(Frame.pathChallengeType)
            appendU64(&out, d)
        case .pathResponse(let d):
            out.append(Frame.pathResponseType)
            appendU64(&out, d)
        }
    }

    /// Parses every frame in a decrypted payload. Any malformed frame rejects the whole payload.
    public static func decodeAll(_ b: [UInt8]) throws -> [Frame] {
        var r = ByteReader(b)
        var frames: [Frame] = []
        while !r.isAtEnd {
            let type = try r.u8("frame type")
            switch type {
            case pingType: frames.append(.ping(id: try r.u32("ping id"), sent: try r.u64("ping time")))
            case pongType:
                frames.append(
                    .pong(
                        id: try r.u32("pong id"),
                        echo: try r.u64("pong echo"),
                        received: try r.u64("pong receive time"),
                        sent: try r.u64("pong send time")
                    )
                )
            case unreliableType:
                let seq = try r.u32("unreliable seq")
                let n = Int(try r.u16("unreliable length"))
                frames.append(.unreliable(seq: seq, data: Array(try r.take(n, "unreliable data"))))
            case segmentType:
                let seq = try r.u32("segment seq")
                let flags = try r.u8("segment flags")
                guard flags <= 1 else { throw ByteReadError(offset: r.offset - 1, "segment flags \(flags)") }
                let n = Int(try r.u16("segment length"))
                frames.append(.segment(seq: seq, last: flags == 1, data: Array(try r.take(n, "segment data"))))
            case ackType:
                frames.append(.ack(next: try r.u32("ack next"), bits: try r.u64("ack bits")))
            case closeType:
                frames.append(.close(reason: try r.u8("close reason")))
            case pathChallengeType:
                frames.append(.pathChallenge(data: try r.u64("path challenge")))
            case pathResponseType:
                frames.append(.pathResponse(data: try r.u64("path response")))
            default:
                throw ByteReadError(offset: r.offset - 1, "unknown frame type \(type)")
            }
        }
        return frames
    }
}
