/// Appends fixed-width little-endian integers, LEB128 varints and length-prefixed strings.
public struct ByteWriter: Sendable {
    public var bytes: [UInt8]

    public init(capacity: Int = 256) {
        bytes = []
        bytes.reserveCapacity(capacity)
    }

    public var count: Int { bytes.count }

    @inlinable public mutating func u8(_ v: UInt8) { bytes.append(v) }
    public mutating func u16(_ v: UInt16) { le(UInt64(v), 2) }
    public mutating func u32(_ v: UInt32) { le(UInt64(v), 4) }
    public mutating func u64(_ v: UInt64) { le(v, 8) }
    public mutating func bytes<C: Collection>(_ b: C) where C.Element == UInt8 { bytes.append(contentsOf: b) }

    public mutating func varint(_ v: UInt64) {
        var x = v
        while x >= 0x80 {
            bytes.append(UInt8(x & 0x7F) | 0x80)
            x >>= 7
        }
        bytes.append(UInt8(x))
    }

    /// A varint length followed by the UTF-8 bytes.
    public mutating func string(_ s: String) {
        let u = Array(s.utf8)
        varint(UInt64(u.count))
        bytes.append(contentsOf: u)
    }

    /// A varint length followed by the bytes.
    public mutating func blob(_ b: [UInt8]) {
        varint(UInt64(b.count))
        bytes.append(contentsOf: b)
    }

    private mutating func le(_ v: UInt64, _ n: Int) {
        for i in 0..<n { bytes.append(UInt8(truncatingIfNeeded: v >> (8 * UInt64(i)))) }
    }
}

/// A decoding error that knows where in the input it happened.
public struct ByteReadError: Error, Equatable, CustomStringConvertible, Sendable {
    public var offset: Int
    public var message: String
    public init(offset: Int, _ message: String) {
        self.offset = offset
        self.message = message
    }
    public var description: String { "\(message) at byte \(offset)" }
}

/// Reads what `ByteWriter` writes, with bounds checks on every read: bad input is an error
/// naming the byte offset, never a crash.
/// Varints are LEB128, at most 10 bytes, and must be minimal: overlong and overflowing ones are
/// rejected.
public struct ByteReader {
    public let bytes: [UInt8]
    public private(set) var offset: Int
    public let end: Int

    public init(_ bytes: [UInt8], offset: Int = 0, end: Int? = nil) {
        self.bytes = bytes
        self.offset = offset
        self.end = min(end ?? bytes.count, bytes.count)
    }

    public var remaining: Int { end - offset }
    public var isAtEnd: Bool { offset >= end }

    @inline(__always)
    private func need(_ n: Int, _ what: String) throws {
        if n > end - offset {
            throw ByteReadError(
                offset: offset,
                "truncated: \(what) needs \(n) byte\(n == 1 ? "" : "s"), \(max(0, end - offset)) left"
            )
        }
    }

    public mutating func u8(_ what: String = "byte") throws -> UInt8 {
        try need(1, what)
        defer { offset += 1 }
        return bytes[offset]
    }

    public mutating func u16(_ what: String = "u16") throws -> UInt16 { UInt16(try le(2, what)) }
    public mutating func u32(_ what: String = "u32") throws -> UInt32 { UInt32(try le(4, what)) }
    public mutating func u64(_ what: String = "u64") throws -> UInt64 { try le(8, what) }

    public mutating func take(_ n: Int, _ what: String = "bytes") throws -> ArraySlice<UInt8> {
        guard n >= 0 else { throw ByteReadError(offset: offset, "negative length for \(what)") }
        try need(n, what)
        defer { offset += n }
        return bytes[offset..<(offset + n)]
    }

    public mutating func varint(_ what: String = "varint") throws -> UInt64 {
        let start = offset
        var result: UInt64 = 0
        var shift: UInt64 = 0
        while true {
            guard offset < end else {
                throw ByteReadError(offset: start, "truncated: \(what) (varint) runs past the end")
            }
            let b = bytes[offset]
            offset += 1
            if shift == 63 && b > 1 { throw ByteReadError(offset: start, "\(what): varint overflows 64 bits") }
            result |= UInt64(b & 0x7F) << shift
            if b & 0x80 == 0 {
                // A zero last byte after others is an overlong encoding: every value has exactly one
                // (the shortest), so equal values always encode to equal bytes.
                if b == 0 && shift > 0 {
                    throw ByteReadError(offset: start, "\(what): overlong varint (non-minimal encoding)")
                }
                return result
            }
            shift += 7
            if shift > 63 { throw ByteReadError(offset: start, "\(what): varint longer than 10 bytes") }
        }
    }

    /// A varint no larger than `limit`, as an Int.
    public mutating func count(_ what: String, limit: Int) throws -> Int {
        let start = offset
        let v = try varint(what)
        guard v <= UInt64(limit) else { throw ByteReadError(offset: start, "\(what) \(v) exceeds the limit \(limit)") }
        return Int(v)
    }

    public mutating func string(_ what: String = "string", limit: Int = 1 << 20) throws -> String {
        let n = try count("\(what) length", limit: limit)
        let start = offset
        let raw = try take(n, what)
        guard let s = String(validating: raw, as: UTF8.self) else {
            throw ByteReadError(offset: start, "\(what) is not valid UTF-8")
        }
        return s
    }

    public mutating func blob(_ what: String = "blob", limit: Int = 1 << 26) throws -> [UInt8] {
        let n = try count("\(what) length", limit: limit)
        return Array(try take(n, what))
    }

    public mutating func seek(to newOffset: Int) { offset = newOffset }

    private mutating func le(_ n: Int, _ what: String) throws -> UInt64 {
        try need(n, what)
        var v: UInt64 = 0
        for i in 0..<n { v |= UInt64(bytes[offset + i]) << (8 * UInt64(i)) }
        offset += n
        return v
    }
}
