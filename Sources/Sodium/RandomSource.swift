import CSodium

/// Where a network component's randomness comes from: Noise ephemeral keys, session indices,
/// cookie secrets and nonces, path challenges, handshake-retry jitter, relay nonces.
///
/// In production it is the operating system's CSPRNG (`system`, libsodium's `randombytes_buf`),
/// as before it was injectable. A simulation that must repeat exactly from its seed (the session
/// chaos runs) passes `seeded(_:)` instead: ChaCha20 (libsodium's `randombytes_buf_deterministic`)
/// keyed by the seed and a counter, so every draw depends only on the seed and the order of draws.
/// A seeded source is for simulations only: its output is predictable by whoever knows the seed.
///
/// Not thread-safe: a source belongs to one component's thread (the network loop), like the
/// components that draw from it.
public final class RandomSource {
    /// The seed's 32-byte key, or nil for the system CSPRNG.
    private let key: [UInt8]?
    private var counter: UInt64 = 0

    private init(key: [UInt8]?) { self.key = key }

    /// The system CSPRNG (the default everywhere outside simulations).
    public static func system() -> RandomSource { RandomSource(key: nil) }

    /// A deterministic stream for `seed`: two sources with one seed give the same draws.
    public static func seeded(_ seed: UInt64) -> RandomSource {
        withUnsafeBytes(of: seed.littleEndian) { s in
            RandomSource(key: BLAKE2b.hash(Array("turf seeded random".utf8) + Array(s), length: .bytes32))
        }
    }

    /// Whether the draws are deterministic (a simulation's).
    public var isSeeded: Bool { key != nil }

    /// `count` random bytes.
    public func bytes(_ count: Int) -> [UInt8] {
        guard let key else { return Sodium.randomBytes(count) }
        guard count > 0 else { return [] }
        // Each draw gets its own ChaCha20 key: BLAKE2b(key, counter).
        let drawKey = withUnsafeBytes(of: counter.littleEndian) { BLAKE2b.hash(Array($0), length: .bytes32, key: key) }
        counter &+= 1
        var out = [UInt8](repeating: 0, count: count)
        out.withUnsafeMutableBytes { o in
            drawKey.withUnsafeBytes { k in randombytes_buf_deterministic(u8(o), count, u8(k)) }
        }
        return out
    }

    /// `count` random bytes kept as a secret (wiped when released).
    public func secretBytes(_ count: Int) -> SecretBytes {
        guard isSeeded else { return SecretBytes.random(count) }
        var b = bytes(count)
        defer { Sodium.wipe(&b) }
        return SecretBytes(copying: b)
    }

    /// A random 64-bit value.
    public func u64() -> UInt64 {
        guard isSeeded else { return Sodium.randomU64() }
        return bytes(8).withUnsafeBytes { $0.loadUnaligned(as: UInt64.self) }
    }

    /// A uniformly random integer in 0..<upperBound (upperBound > 0).
    public func uniform(_ upperBound: UInt32) -> UInt32 {
        guard isSeeded else { return Sodium.randomUniform(upperBound) }
        precondition(upperBound > 0, "uniform needs an upper bound above zero")
        // Rejection sampling, as randombytes_uniform: no modulo bias.
        let limit = UInt64.max - UInt64.max % UInt64(upperBound)
        while true {
            let v = u64()
            if v < limit { return UInt32(v % UInt64(upperBound)) }
        }
    }

    /// A fresh X25519 key pair (a Noise ephemeral key).
    public func x25519KeyPair() -> X25519.KeyPair {
        guard isSeeded else { return .generate() }
        // `!`: as `X25519.KeyPair.generate`: the length is right, and a clamped scalar times the
        // base point is never all zeros.
        return (try? X25519.KeyPair(secretKey: secretBytes(X25519.keyLength)))!
    }
}
