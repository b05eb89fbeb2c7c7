import Keys
import Sodium

extension PeerKey {
    /// The X25519 public key Noise uses for this peer.
    public func x25519() throws -> [UInt8] { try Ed25519.x25519PublicKey(from: bytes) }
}

/// This user's long-term identity: an Ed25519 key pair and the X25519 key pair derived from it
/// for Noise handshakes. A plain value: where it is kept on disk is the app's business (turf's
/// `IdentityStore`).
public struct Identity: Sendable {
    public let signing: Ed25519.KeyPair
    public let agreement: X25519.KeyPair
    public var publicKey: PeerKey { PeerKey(bytes: signing.publicKey)! }  // `!`: an Ed25519 public key is 32 bytes

    public init(signing: Ed25519.KeyPair) throws {
        self.signing = signing
        agreement = try signing.x25519()
    }

    /// `!`: cannot fail: a generated Ed25519 key is a valid point, so its X25519 conversion succeeds.
    public static func generate() -> Identity { (try? Identity(signing: .generate()))! }
}
