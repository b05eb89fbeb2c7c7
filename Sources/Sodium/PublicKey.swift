import CSodium

/// Diffie-Hellman on Curve25519 (`crypto_scalarmult`).
public enum X25519 {
    public static let keyLength = 32

    public struct KeyPair: Sendable {
        public let publicKey: [UInt8]
        public let secretKey: SecretBytes

        /// A fresh random key pair.
        public static func generate() -> KeyPair {
            // `!`: cannot fail: the key has the right length, and crypto_scalarmult_base fails only
            // for an all-zero result, which a clamped scalar times the base point never gives.
            (try? KeyPair(secretKey: SecretBytes.random(keyLength)))!
        }

        /// The key pair whose secret scalar is `secretKey` (32 bytes).
        public init<C: ContiguousBytes>(secretKey: C) throws {
            try requireLength(secretKey, keyLength, "X25519 secret key")
            let sk = (secretKey as? SecretBytes) ?? SecretBytes(copying: secretKey)
            var pk = [UInt8](repeating: 0, count: keyLength)
            let rc = pk.withUnsafeMutableBytes { pp in
                sk.withBytes { crypto_scalarmult_base(u8(pp), u8($0)) }
            }
            guard rc == 0 else { throw SodiumError.operationFailed("crypto_scalarmult_base") }
            publicKey = pk
            self.secretKey = sk
        }
    }

    /// The shared secret of our `secretKey` and their `publicKey`. Throws `weakPublicKey` if the
    /// result is all zeros (a low-order point), as libsodium reports.
    public static func sharedSecret<S: ContiguousBytes, P: ContiguousBytes>(secretKey: S, publicKey: P) throws
        -> SecretBytes
    {
        try requireLength(secretKey, keyLength, "X25519 secret key")
        try requireLength(publicKey, keyLength, "X25519 public key")
        let out = SecretBytes(count: keyLength)
        let rc = out.withMutableBytes { po in
            secretKey.withBytes { ps in publicKey.withBytes { pp in crypto_scalarmult(u8(po), u8(ps), u8(pp)) } }
        }
        guard rc == 0 else { throw SodiumError.weakPublicKey }
        return out
    }
}

/// Ed25519 signatures (`crypto_sign_*`) and the conversion of Ed25519 keys to X25519 keys, so one
/// long-term identity key can both sign and take part in Noise handshakes.
public enum Ed25519 {
    public static let publicKeyLength = 32
    public static let seedLength = 32
    public static let secretKeyLength = 64
    public static let signatureLength = 64

    public struct KeyPair: Sendable {
        public let publicKey: [UInt8]
        /// libsodium's 64-byte secret key (seed followed by the public key).
        public let secretKey: SecretBytes

        public static func generate() -> KeyPair {
            // `!`: cannot fail: the seed has the right length and crypto_sign_seed_keypair always succeeds.
            (try? KeyPair(seed: SecretBytes.random(seedLength)))!
        }

        /// The key pair derived from a 32-byte seed (the form turf stores on disk).
        public init<C: ContiguousBytes>(seed: C) throws {
            try requireLength(seed, seedLength, "Ed25519 seed")
            Sodium.ensureInitialized()
            var pk = [UInt8](repeating: 0, count: publicKeyLength)
            let sk = SecretBytes(count: secretKeyLength)
            let rc = pk.withUnsafeMutableBytes { pp in
                sk.withMutableBytes { ps in seed.withBytes { crypto_sign_seed_keypair(u8(pp), u8(ps), u8($0)) } }
            }
            guard rc == 0 else { throw SodiumError.operationFailed("crypto_sign_seed_keypair") }
            publicKey = pk
            secretKey = sk
        }

        /// The 32-byte seed this key pair was made from.
        public var seed: SecretBytes {
            let s = SecretBytes(count: seedLength)
            s.withMutableBytes { ps in
                secretKey.withBytes { ps.copyMemory(from: UnsafeRawBufferPointer(rebasing: $0[0..<32])) }
            }
            return s
        }

        public func sign<M: ContiguousBytes>(_ message: M) -> [UInt8] {
            var sig = [UInt8](repeating: 0, count: signatureLength)
            sig.withUnsafeMutableBytes { psig in
                secretKey.withBytes { psk in
                    message.withBytes { pm in
                        _ = crypto_sign_detached(u8(psig), nil, u8(pm), UInt64(pm.count), u8(psk))
                    }
                }
            }
            return sig
        }

        /// The X25519 key pair for Diffie-Hellman with this identity.
        public func x25519() throws -> X25519.KeyPair {
            let xsk = SecretBytes(count: X25519.keyLength)
            let rc = xsk.withMutableBytes { px in
                secretKey.withBytes { crypto_sign_ed25519_sk_to_curve25519(u8(px), u8($0)) }
            }
            guard rc == 0 else { throw SodiumError.operationFailed("crypto_sign_ed25519_sk_to_curve25519") }
            return try X25519.KeyPair(secretKey: xsk)
        }
    }

    public static func verify<M: ContiguousBytes, S: ContiguousBytes, P: ContiguousBytes>(
        signature: S,
        message: M,
        publicKey: P
    ) -> Bool {
        Sodium.ensureInitialized()
        guard signature.withBytes({ $0.count }) == signatureLength,
            publicKey.withBytes({ $0.count }) == publicKeyLength
        else { return false }
        return signature.withBytes { ps in
            message.withBytes { pm in
                publicKey.withBytes { pp in
                    crypto_sign_verify_detached(u8(ps), u8(pm), UInt64(pm.count), u8(pp)) == 0
                }
            }
        }
    }

    /// The X25519 public key that corresponds to an Ed25519 public key.
    public static func x25519PublicKey<P: ContiguousBytes>(from edPublicKey: P) throws -> [UInt8] {
        try requireLength(edPublicKey, publicKeyLength, "Ed25519 public key")
        Sodium.ensureInitialized()
        var out = [UInt8](repeating: 0, count: X25519.keyLength)
        let rc = out.withUnsafeMutableBytes { po in
            edPublicKey.withBytes { crypto_sign_ed25519_pk_to_curve25519(u8(po), u8($0)) }
        }
        guard rc == 0 else { throw SodiumError.invalidPublicKey }
        return out
    }
}
