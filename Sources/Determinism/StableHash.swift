/// Hashing that is stable across runs, processes and machines (unlike Swift's per-process seeded
/// `Hasher`). Used for state hashes, fair tie-breaks and file checksums.
public enum StableHash {
    /// The SplitMix64 / Murmur3 finaliser: a bijective 64-bit mixer with full avalanche.
    @inlinable
    public static func mix(_ x: UInt64) -> UInt64 {
        var z = x
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }

    /// Combine a running hash with one more word, order-sensitively.
    @inlinable
    public static func combine(_ h: UInt64, _ x: UInt64) -> UInt64 {
        mix(h ^ (x &+ 0x9E37_79B9_7F4A_7C15 &+ (h << 6) &+ (h >> 2)))
    }

    @inlinable
    public static func of(_ words: UInt64...) -> UInt64 {
        var h: UInt64 = 0x243F_6A88_85A3_08D3
        for w in words { h = combine(h, w) }
        return h
    }

    /// A 64-bit hash of a byte string (FNV-1a over 8-byte lanes, finalised with `mix`).
    public static func bytes<C: Collection>(_ data: C, seed: UInt64 = 0) -> UInt64 where C.Element == UInt8 {
        var h: UInt64 = 0xCBF2_9CE4_8422_2325 ^ seed
        var lane: UInt64 = 0
        var n = 0
        for b in data {
            lane |= UInt64(b) << (8 * UInt64(n & 7))
            n += 1
            if n & 7 == 0 {
                h = (h ^ lane) &* 0x0000_0100_0000_01B3
                h = mix(h)
                lane = 0
            }
        }
        h = (h ^ lane ^ (UInt64(n) << 56)) &* 0x0000_0100_0000_01B3
        return mix(h ^ UInt64(n))
    }

    /// A 64-bit hash of a string's UTF-8 bytes.
    public static func string(_ s: String, seed: UInt64 = 0) -> UInt64 { bytes(Array(s.utf8), seed: seed) }
}
