import CSodium

/// BLAKE2b (`crypto_generichash`) with output lengths 16...64 and an optional key of up to 64 bytes.
public enum BLAKE2b {
    public static let minOutputLength = 16
    public static let maxOutputLength = 64
    public static let maxKeyLength = 64
    /// The compression function's block size; HMAC-BLAKE2b pads keys to this.
    public static let blockLength = 128

    /// An output length from a fixed set, every one in 16...64: hashing with one cannot fail, so
    /// code with a fixed length calls the non-throwing `hash(_:length:)`.
    public enum Length: Int, Sendable, CaseIterable {
        case bytes16 = 16, bytes20 = 20, bytes32 = 32, bytes64 = 64
    }

    /// The hash of `data`, `length` bytes long. Never fails.
    public static func hash<C: ContiguousBytes>(_ data: C, length: Length) -> [UInt8] {
        generichash(data, outputLength: length.rawValue, key: [UInt8]())
    }

    /// The keyed hash (MAC) of `data`, `length` bytes long. Never fails: a key longer than 64 bytes
    /// (none of turf's is) is first replaced by its 64-byte hash, as HMAC treats long keys.
    public static func hash<C: ContiguousBytes, K: ContiguousBytes>(_ data: C, length: Length, key: K) -> [UInt8] {
        let keyLength = key.withBytes { $0.count }
        if keyLength > maxKeyLength {
            return generichash(data, outputLength: length.rawValue, key: hash(key, length: .bytes64))
        }
        return generichash(data, outputLength: length.rawValue, key: key)
    }

    /// The hash of `data`. Throws if the output or key length is out of range.
    public static func hash<C: ContiguousBytes>(_ data: C, outputLength: Int = 64, key: [UInt8] = []) throws -> [UInt8]
    {
        guard (minOutputLength...maxOutputLength).contains(outputLength) else {
            throw SodiumError.wrongLength(what: "BLAKE2b output", expected: maxOutputLength, got: outputLength)
        }
        guard key.count <= maxKeyLength else {
            throw SodiumError.wrongLength(what: "BLAKE2b key", expected: maxKeyLength, got: key.count)
        }
        return generichash(data, outputLength: outputLength, key: key)
    }

    /// `crypto_generichash`, which fails only for lengths out of range: every caller checked them.
    private static func generichash<C: ContiguousBytes, K: ContiguousBytes>(_ data: C, outputLength: Int, key: K)
        -> [UInt8]
    {
        Sodium.ensureInitialized()
        var out = [UInt8](repeating: 0, count: outputLength)
        out.withUnsafeMutableBytes { po in
            data.withBytes { pd in
                key.withBytes { pk in
                    _ = crypto_generichash(
                        u8(po),
                        outputLength,
                        u8(pd),
                        UInt64(pd.count),
                        pk.isEmpty ? nil : u8(pk),
                        pk.count
                    )
                }
            }
        }
        return out
    }

    /// The 64-byte hash of the concatenation of `parts`.
    public static func hash(concatenating parts: [[UInt8]]) -> [UInt8] {
        var all: [UInt8] = []
        all.reserveCapacity(parts.reduce(0) { $0 + $1.count })
        for p in parts { all.append(contentsOf: p) }
        defer { Sodium.wipe(&all) }
        return hash(all, length: .bytes64)
    }
}
