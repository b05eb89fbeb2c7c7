import Sodium

/// Noise's HandshakeState: runs any `HandshakePattern` by interpreting its tokens.
///
/// Usage: each side calls `writeMessage` / `readMessage` in turn (`isMyTurn` says whose turn it
/// is); when `isComplete`, `split()` yields the transport ciphers and `handshakeHash` the channel
/// binding. Any error leaves the handshake unusable (the caller discards it), as the spec requires.
public struct HandshakeState {
    public static let maxMessageLength = 65535
    public static let dhLength = 32
    public static let tagLength = ChaChaPoly.tagLength

    public let noiseProtocol: NoiseProtocol
    public let isInitiator: Bool
    private var symmetric: SymmetricState
    private var s: X25519.KeyPair?
    private var e: X25519.KeyPair?
    public private(set) var remoteStatic: [UInt8]?
    public private(set) var remoteEphemeral: [UInt8]?
    private var psks: [SecretBytes]
    private var messageIndex = 0
    private var failed = false

    /// - Parameters:
    ///   - localStatic: needed when the pattern sends `s` from this side or has it as a pre-message.
    ///   - localEphemeral: a fixed ephemeral key: test vectors, and simulations whose randomness is
    ///     seeded (the caller draws it from its `RandomSource`); nil: generated from the system
    ///     CSPRNG when the first message that sends `e` is written.
    ///   - remoteStatic: the peer's static public key when the pattern has it as a pre-message.
    ///   - psks: 32-byte pre-shared keys, one per psk token, in the order they are used.
    public init(
        protocol proto: NoiseProtocol,
        initiator: Bool,
        prologue: [UInt8] = [],
        localStatic: X25519.KeyPair? = nil,
        localEphemeral: X25519.KeyPair? = nil,
        remoteStatic: [UInt8]? = nil,
        psks: [SecretBytes] = []
    ) throws {
        noiseProtocol = proto
        isInitiator = initiator
        s = localStatic
        e = localEphemeral
        self.remoteStatic = remoteStatic
        let pattern = proto.pattern
        guard psks.count == pattern.pskCount else {
            throw NoiseError.wrongPSKCount(expected: pattern.pskCount, got: psks.count)
        }
        guard psks.allSatisfy({ $0.count == 32 }) else { throw NoiseError.wrongKeyLength("pre-shared key") }
        if let rs = remoteStatic, rs.count != HandshakeState.dhLength {
            throw NoiseError.wrongKeyLength("remote static")
        }
        self.psks = psks
        symmetric = SymmetricState(protocolName: proto.name)
        symmetric.mixHash(prologue)

        // Pre-messages: the initiator's first, then the responder's.
        for (tokens, isLocal) in [(pattern.initiatorPreMessage, initiator), (pattern.responderPreMessage, !initiator)] {
            for t in tokens {
                switch t {
                case .s:
                    let key = isLocal ? s?.publicKey : self.remoteStatic
                    guard let key else { throw NoiseError.missingKey(isLocal ? "local static" : "remote static") }
                    symmetric.mixHash(key)
                case .e:
                    // No fundamental pattern has an ephemeral pre-message; only the local one is supported.
                    guard isLocal, let key = e?.publicKey else { throw NoiseError.missingKey("pre-message ephemeral") }
                    symmetric.mixHash(key)
                    if pattern.usesPSK { symmetric.mixKey(key) }
                default:
                    throw NoiseError.unsupportedPattern(pattern.name)
                }
            }
        }
    }

    public var isComplete: Bool { messageIndex >= noiseProtocol.pattern.messages.count }
    /// Whether the next message is ours to write.
    public var isMyTurn: Bool { !isComplete && (messageIndex % 2 == 0) == isInitiator }
    public var handshakeHash: [UInt8] { symmetric.handshakeHash }
    /// The index of the next handshake message (0-based).
    public var nextMessageIndex: Int { messageIndex }

    private func dh(_ local: X25519.KeyPair?, _ remote: [UInt8]?, _ what: String) throws -> [UInt8] {
        guard let local else { throw NoiseError.missingKey("local \(what)") }
        guard let remote else { throw NoiseError.missingKey("remote \(what)") }
        do {
            return try X25519.sharedSecret(secretKey: local.secretKey, publicKey: remote).bytes
        } catch {
            throw NoiseError.invalidPublicKey
        }
    }

    /// The DH for a mixed token: `es` is DH(initiator e, responder s), `se` DH(initiator s, responder e).
    private mutating func mixDH(_ token: HandshakePattern.Token) throws {
        var shared: [UInt8]
        switch token {
        case .ee: shared = try dh(e, remoteEphemeral, "ephemeral")
        case .ss: shared = try dh(s, remoteStatic, "static")
        case .es: shared = isInitiator ? try dh(e, remoteStatic, "e/s") : try dh(s, remoteEphemeral, "s/e")
        case .se: shared = isInitiator ? try dh(s, remoteEphemeral, "s/e") : try dh(e, remoteStatic, "e/s")
        default: return
        }
        symmetric.mixKey(shared)
        Sodium.wipe(&shared)
    }

    private mutating func mixPSK() throws {
        guard !psks.isEmpty else { throw NoiseError.wrongPSKCount(expected: noiseProtocol.pattern.pskCount, got: 0) }
        let psk = psks.removeFirst()
        symmetric.mixKeyAndHash(psk.bytes)
    }

    /// Writes the next handshake message carrying `payload`.
    public mutating func writeMessage(_ payload: [UInt8] = []) throws -> [UInt8] {
        guard !failed else { throw NoiseError.handshakeComplete }
        guard !isComplete else { throw NoiseError.handshakeComplete }
        guard isMyTurn else { throw NoiseError.wrongTurn }
        failed = true  // cleared on success
        var out: [UInt8] = []
        for t in noiseProtocol.pattern.messages[messageIndex] {
            switch t {
            case .e:
                let ephemeral = e ?? X25519.KeyPair.generate()
                e = ephemeral
                let pub = ephemeral.publicKey
                out += pub
                symmetric.mixHash(pub)
                if noiseProtocol.pattern.usesPSK { symmetric.mixKey(pub) }
            case .s:
                guard let s else { throw NoiseError.missingKey("local static") }
                out += try symmetric.encryptAndHash(s.publicKey)
            case .ee, .es, .se, .ss:
                try mixDH(t)
            case .psk:
                try mixPSK()
            }
        }
        out += try symmetric.encryptAndHash(payload)
        guard out.count <= HandshakeState.maxMessageLength else { throw NoiseError.messageTooLong(out.count) }
        messageIndex += 1
        failed = false
        return out
    }

    /// Reads the peer's next handshake message, returning its payload. Throws on any malformed or
    /// unauthenticated input.
    public mutating func readMessage<C: Collection>(_ message: C) throws -> [UInt8] where C.Element == UInt8 {
        guard !failed, !isComplete else { throw NoiseError.handshakeComplete }
        guard !isMyTurn else { throw NoiseError.wrongTurn }
        guard message.count <= HandshakeState.maxMessageLength else { throw NoiseError.messageTooLong(message.count) }
        failed = true
        let bytes = Array(message)
        var offset = 0
        func take(_ n: Int) throws -> [UInt8] {
            guard bytes.count - offset >= n else { throw NoiseError.truncated(needed: offset + n, got: bytes.count) }
            defer { offset += n }
            return Array(bytes[offset..<(offset + n)])
        }
        for t in noiseProtocol.pattern.messages[messageIndex] {
            switch t {
            case .e:
                let re = try take(HandshakeState.dhLength)
                remoteEphemeral = re
                symmetric.mixHash(re)
                if noiseProtocol.pattern.usesPSK { symmetric.mixKey(re) }
            case .s:
                let n = HandshakeState.dhLength + (symmetric.hasKey ? HandshakeState.tagLength : 0)
                remoteStatic = try symmetric.decryptAndHash(try take(n))
            case .ee, .es, .se, .ss:
                try mixDH(t)
            case .psk:
                try mixPSK()
            }
        }
        let payload = try symmetric.decryptAndHash(Array(bytes[offset...]))
        messageIndex += 1
        failed = false
        return payload
    }

    /// The transport ciphers once the handshake is complete: (send, receive) for this side.
    public mutating func split() throws -> (send: CipherState, receive: CipherState) {
        guard isComplete, !failed else { throw NoiseError.handshakeNotComplete }
        let (c1, c2) = symmetric.split()
        failed = true  // the chaining key is wiped: a second split would be meaningless
        return isInitiator ? (c1, c2) : (c2, c1)
    }
}
