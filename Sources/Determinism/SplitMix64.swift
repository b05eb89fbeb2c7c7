/// A small, fast, seeded pseudo-random generator (SplitMix64, Steele et al. 2014).
///
/// Everything deterministic in turf draws from one of these, seeded from the match seed and a
/// purpose tag, never from the system RNG: the same seed gives the same sequence on every machine.
public struct SplitMix64: RandomNumberGenerator, Sendable {
    public var state: UInt64

    public init(seed: UInt64) { state = seed }

    /// A generator for one purpose within a match, independent of the others.
    public init(seed: UInt64, stream: UInt64) {
        state = StableHash.mix(seed ^ StableHash.mix(stream &+ 0x9E37_79B9_7F4A_7C15))
    }

    @inlinable
    public mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }

    /// Uniform in 0..<bound without modulo bias (Lemire's method). `bound` must be > 0.
    @inlinable
    public mutating func below(_ bound: UInt64) -> UInt64 {
        precondition(bound > 0)
        var m = next().multipliedFullWidth(by: bound)
        if m.low < bound {
            let t = (0 &- bound) % bound
            while m.low < t { m = next().multipliedFullWidth(by: bound) }
        }
        return m.high
    }

    @inlinable
    public mutating func below(_ bound: Int) -> Int { Int(below(UInt64(bound))) }

    /// True with probability `numerator / denominator`.
    @inlinable
    public mutating func chance(_ numerator: UInt64, in denominator: UInt64) -> Bool {
        below(denominator) < numerator
    }

    /// A double in [0, 1).
    @inlinable
    public mutating func unit() -> Double { Double(next() >> 11) * 0x1.0p-53 }
}
