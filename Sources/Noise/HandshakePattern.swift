/// A Noise handshake pattern as data: pre-message tokens and message token lists. The handshake
/// state machine interprets the tokens, so every pattern (and psk modifier) runs the same code.
public struct HandshakePattern: Equatable, Sendable {
    public enum Token: String, Equatable, Sendable {
        case e, s, ee, es, se, ss, psk
    }

    /// The pattern's name including modifiers, e.g. "XXpsk3".
    public let name: String
    public let initiatorPreMessage: [Token]
    public let responderPreMessage: [Token]
    /// Message i is sent by the initiator when i is even, by the responder when odd.
    public let messages: [[Token]]

    public var usesPSK: Bool { messages.contains { $0.contains(.psk) } }
    public var pskCount: Int { messages.reduce(0) { $0 + $1.filter { $0 == .psk }.count } }

    public init(name: String, initiatorPreMessage: [Token] = [], responderPreMessage: [Token] = [], messages: [[Token]])
    {
        self.name = name
        self.initiatorPreMessage = initiatorPreMessage
        self.responderPreMessage = responderPreMessage
        self.messages = messages
    }

    /// The fundamental interactive patterns of the Noise specification (section 7.4-7.5).
    static let fundamental: [String: HandshakePattern] = {
        typealias T = Token
        let list: [HandshakePattern] = [
            .init(name: "NN", messages: [[.e], [.e, .ee]]),
            .init(name: "NK", responderPreMessage: [.s], messages: [[.e, .es], [.e, .ee]]),
            .init(name: "NX", messages: [[.e], [.e, .ee, .s, .es]]),
            .init(name: "KN", initiatorPreMessage: [.s], messages: [[.e], [.e, .ee, .se]]),
            .init(
                name: "KK",
                initiatorPreMessage: [.s],
                responderPreMessage: [.s],
                messages: [[.e, .es, .ss], [.e, .ee, .se]]
            ),
            .init(name: "KX", initiatorPreMessage: [.s], messages: [[.e], [.e, .ee, .se, .s, .es]]),
            .init(name: "XN", messages: [[.e], [.e, .ee], [.s, .se]]),
            .init(name: "XK", responderPreMessage: [.s], messages: [[.e, .es], [.e, .ee], [.s, .se]]),
            .init(name: "XX", messages: [[.e], [.e, .ee, .s, .es], [.s, .se]]),
            .init(name: "IN", messages: [[.e, .s], [.e, .ee, .se]]),
            .init(name: "IK", responderPreMessage: [.s], messages: [[.e, .es, .s, .ss], [.e, .ee, .se]]),
            .init(name: "IX", messages: [[.e, .s], [.e, .ee, .se, .s, .es]]),
        ]
        return Dictionary(uniqueKeysWithValues: list.map { ($0.name, $0) })
    }()

    /// Parses a pattern name such as "XX", "IKpsk2" or "NNpsk0+psk2".
    public static func named(_ fullName: String) throws -> HandshakePattern {
        var baseEnd = fullName.startIndex
        while baseEnd < fullName.endIndex, fullName[baseEnd].isUppercase { baseEnd = fullName.index(after: baseEnd) }
        let baseName = String(fullName[..<baseEnd])
        guard let base = fundamental[baseName] else { throw NoiseError.unsupportedPattern(fullName) }
        var messages = base.messages
        let modifiers = fullName[baseEnd...]
        if !modifiers.isEmpty {
            for m in modifiers.split(separator: "+", omittingEmptySubsequences: false) {
                guard m.hasPrefix("psk"), let n = Int(m.dropFirst(3)), n >= 0, n <= messages.count else {
                    throw NoiseError.unsupportedPattern(fullName)
                }
                if n == 0 { messages[0].insert(.psk, at: 0) } else { messages[n - 1].append(.psk) }
            }
        }
        return HandshakePattern(
            name: fullName,
            initiatorPreMessage: base.initiatorPreMessage,
            responderPreMessage: base.responderPreMessage,
            messages: messages
        )
    }
}

/// A full protocol name: "Noise_XXpsk3_25519_ChaChaPoly_BLAKE2b". Only 25519, ChaChaPoly and BLAKE2b
/// are implemented.
public struct NoiseProtocol: Equatable, Sendable {
    public let pattern: HandshakePattern
    public var name: String { "Noise_\(pattern.name)_25519_ChaChaPoly_BLAKE2b" }

    public init(pattern: HandshakePattern) { self.pattern = pattern }

    public init(name: String) throws {
        let parts = name.split(separator: "_", omittingEmptySubsequences: false)
        guard parts.count == 5, parts[0] == "Noise" else { throw NoiseError.unsupportedProtocol(name) }
        guard parts[2] == "25519", parts[3] == "ChaChaPoly", parts[4] == "BLAKE2b" else {
            throw NoiseError.unsupportedProtocol(name)
        }
        pattern = try HandshakePattern.named(String(parts[1]))
    }
}

public enum NoiseError: Error, Equatable, CustomStringConvertible {
    case unsupportedPattern(String)
    case unsupportedProtocol(String)
    case missingKey(String)
    case wrongKeyLength(String)
    case wrongPSKCount(expected: Int, got: Int)
    case messageTooLong(Int)
    case truncated(needed: Int, got: Int)
    case decryptionFailed
    case invalidPublicKey
    case nonceExhausted
    case wrongTurn
    case handshakeComplete
    case handshakeNotComplete

    public var description: String {
        switch self {
        case .unsupportedPattern(let p): return "unsupported Noise pattern \(p)"
        case .unsupportedProtocol(let p): return "unsupported Noise protocol \(p)"
        case .missingKey(let k): return "handshake needs the \(k) key"
        case .wrongKeyLength(let k): return "\(k) has the wrong length"
        case .wrongPSKCount(let e, let g): return "pattern needs \(e) pre-shared keys, got \(g)"
        case .messageTooLong(let n): return "Noise message of \(n) bytes exceeds 65535"
        case .truncated(let n, let g): return "Noise message truncated: needed \(n) bytes, got \(g)"
        case .decryptionFailed: return "Noise message failed authentication"
        case .invalidPublicKey: return "peer sent a low-order public key"
        case .nonceExhausted: return "cipher nonce exhausted"
        case .wrongTurn: return "not this party's turn in the handshake"
        case .handshakeComplete: return "handshake already complete"
        case .handshakeNotComplete: return "handshake not complete"
        }
    }
}
