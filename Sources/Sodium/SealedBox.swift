import CSodium

/// Anonymous public-key encryption (`crypto_box_seal`): anyone with the recipient's X25519 public
/// key can seal a message that only the holder of the secret key opens. The sender stays anonymous
/// (an ephemeral key per message) and is not authenticated; the box only keeps the content from
/// everyone who relays it. 48 bytes longer than the message.
public enum SealedBox {
    public static let overhead = 48

    /// Seals `message` to `publicKey` (32-byte X25519).
    public static func seal<M: ContiguousBytes, P: ContiguousBytes>(_ message: M, to publicKey: P) throws -> [UInt8] {
        try requireLength(publicKey, X25519.keyLength, "X25519 public key")
        Sodium.ensureInitialized()
        let n = message.withBytes { $0.count }
        var out = [UInt8](repeating: 0, count: n + overhead)
        let rc = out.withUnsafeMutableBytes { po in
            message.withBytes { pm in publicKey.withBytes { crypto_box_seal(u8(po), u8(pm), UInt64(n), u8($0)) } }
        }
        guard rc == 0 else { throw SodiumError.operationFailed("crypto_box_seal") }
        return out
    }

    /// Opens a box sealed to `keys`; nil if it is too short, was sealed to another key or was changed.
    public static func open<C: ContiguousBytes>(_ box: C, with keys: X25519.KeyPair) -> [UInt8]? {
        Sodium.ensureInitialized()
        let n = box.withBytes { $0.count }
        guard n >= overhead else { return nil }
        var out = [UInt8](repeating: 0, count: n - overhead)
        let rc = out.withUnsafeMutableBytes { po in
            box.withBytes { pb in
                keys.publicKey.withUnsafeBytes { pp in
                    keys.secretKey.withBytes { crypto_box_seal_open(u8(po), u8(pb), UInt64(n), u8(pp), u8($0)) }
                }
            }
        }
        return rc == 0 ? out : nil
    }
}
