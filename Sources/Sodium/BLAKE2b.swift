import CSodium

/// BLAKE2b (`crypto_generichash`) with output lengths 16...64 and an optional key of up to 64 bytes.
public enum BLAKE2b {
    public static let minOutputLength = 16
    public static let maxOutputLength = 64
    public static let maxKeyLength = 64
    /// The compression function's block size; HMAC-BLAKE2b pads keys to this.
    public static let blockLength = 128

    /// The hash of `data`. Throws if the output or key length is out of range.
    public static func hash<C: ContiguousBytes>(_ data: C, outputLength: Int = 64, key: [UInt8] = []) throws -> [UInt8] {
        guard (minOutputLength...maxOutputLength).contains(outputLength) else {
            throw SodiumError.wrongLength(what: "BLAKE2b output", expected: maxOutputLength, got: outputLength)
        }
        guard key.count <= maxKeyLength else {
            throw SodiumError.wrongLength(what: "BLAKE2b key", expected: maxKeyLength, got: key.count)
        }
        Sodium.ensureInitialized()
        var out = [UInt8](repeating: 0, count: outputLength)
        out.withUnsafeMutableBytes { po in
            data.withBytes { pd in
                key.withUnsafeBytes { pk in
                    _ = crypto_generichash(u8(po), outputLength, u8(pd), UInt64(pd.count),
                                           key.isEmpty ? nil : u8(pk), key.count)
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
        return (try? hash(all))!
    }
}
