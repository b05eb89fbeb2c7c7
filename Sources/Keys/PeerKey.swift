import Foundation
import Sodium

/// The one key type of turf: who a peer is, in the transport (the Noise static key is derived
/// from it), the lobby (seats, records, allow lists), the engine (the owner of a player, as 32
/// opaque bytes) and the networked match (whose ops, whose statements).
///
/// A peer's long-term public key: 32 bytes of Ed25519. The text form for pasting to a friend is
/// `turf1` followed by lowercase base32 (RFC 4648, no padding) of the key and a 2-byte BLAKE2b
/// checksum, so a mistyped key is caught rather than dialled.
public struct PeerKey: Hashable, Sendable, Comparable, CustomStringConvertible {
    public static let length = 32
    public let bytes: [UInt8]

    /// Nil unless `bytes` is exactly `PeerKey.length` bytes.
    public init?(bytes: [UInt8]) {
        guard bytes.count == PeerKey.length else { return nil }
        self.bytes = bytes
    }

    static let prefix = "turf1"
    static let alphabet = Array("abcdefghijklmnopqrstuvwxyz234567")

    static func checksum(_ key: [UInt8]) -> [UInt8] {
        Array(BLAKE2b.hash(Array("turf peer key".utf8) + key, length: .bytes16).prefix(2))
    }

    public var text: String {
        let data = bytes + PeerKey.checksum(bytes)
        var out = PeerKey.prefix
        var buffer: UInt32 = 0
        var bits = 0
        for b in data {
            buffer = buffer << 8 | UInt32(b)
            bits += 8
            while bits >= 5 {
                out.append(PeerKey.alphabet[Int((buffer >> UInt32(bits - 5)) & 31)])
                bits -= 5
            }
        }
        if bits > 0 { out.append(PeerKey.alphabet[Int((buffer << UInt32(5 - bits)) & 31)]) }
        return out
    }

    public var description: String { text }

    /// Lowercase hex of the 32 bytes.
    public var hex: String {
        let digits = Array("0123456789abcdef")
        return String(bytes.flatMap { [digits[Int($0 >> 4)], digits[Int($0 & 15)]] })
    }

    /// Byte order: the order of the pair rules (of two members, the greater key dials).
    public static func < (a: PeerKey, b: PeerKey) -> Bool { a.bytes.lexicographicallyPrecedes(b.bytes) }

    /// Parses the text form; whitespace around it and upper case are tolerated.
    public init?(text raw: String) {
        let t = raw.trimmingCharacters(in: .whitespacesAndNewlines).lowercased()
        guard t.hasPrefix(PeerKey.prefix) else { return nil }
        var buffer: UInt32 = 0
        var bits = 0
        var data: [UInt8] = []
        for ch in t.dropFirst(PeerKey.prefix.count) {
            guard let v = PeerKey.alphabet.firstIndex(of: ch) else { return nil }
            buffer = buffer << 5 | UInt32(v)
            bits += 5
            if bits >= 8 {
                data.append(UInt8((buffer >> UInt32(bits - 8)) & 0xFF))
                bits -= 8
            }
        }
        // Exactly 34 bytes, and the 3 bits of padding in the last character must be zero, so
        // every key has one text form.
        guard data.count == 34, bits < 5, buffer & ((1 << UInt32(bits)) - 1) == 0 else { return nil }
        let key = Array(data[0..<32])
        guard Array(data[32..<34]) == PeerKey.checksum(key) else { return nil }
        self.bytes = key
    }

}
