/// Bencode (BEP 3), strict: the decoder accepts only canonical encodings and stops at bounds, so
/// two different byte strings never decode to the same value and hostile input costs little.
/// (KRPC decodes with `unsortedKeys`, the one relaxation: see `Bencode.decode`.)
///
/// Canonical means: integers without leading zeros, `-0` or a leading `+`; string lengths without
/// leading zeros; dictionary keys strictly ascending (raw byte order, so no duplicates); nothing
/// after the top-level value. The encoder always produces canonical output.
public enum BValue: Equatable, Sendable, CustomStringConvertible {
    case int(Int64)
    case bytes([UInt8])
    case list([BValue])
    /// Keys in strictly ascending byte order (the encoder sorts; the decoder requires it).
    case dict([BEntry])

    public static func string(_ s: String) -> BValue { .bytes(Array(s.utf8)) }

    /// Builds a dictionary from unordered pairs; later duplicates win.
    public static func dictionary(_ pairs: [(String, BValue)]) -> BValue {
        var m: [[UInt8]: BValue] = [:]
        for (k, v) in pairs { m[Array(k.utf8)] = v }
        return .dict(m.map { BEntry(key: $0.key, value: $0.value) }.sorted { $0.key.lexicographicallyPrecedes($1.key) })
    }

    public subscript(key: String) -> BValue? {
        guard case .dict(let items) = self else { return nil }
        let k = Array(key.utf8)
        for item in items where item.key == k { return item.value }
        return nil
    }

    public var bytesValue: [UInt8]? { if case .bytes(let b) = self { return b } else { return nil } }
    public var intValue: Int64? { if case .int(let i) = self { return i } else { return nil } }
    public var listValue: [BValue]? { if case .list(let l) = self { return l } else { return nil } }
    public var stringValue: String? { bytesValue.flatMap { String(validating: $0, as: UTF8.self) } }

    public var description: String {
        switch self {
        case .int(let i): return "\(i)"
        case .bytes(let b):
            if let s = String(validating: b, as: UTF8.self),
                s.unicodeScalars.allSatisfy({ $0.value >= 0x20 && $0.value < 0x7F })
            {
                return "\"\(s)\""
            }
            return "0x" + hex(b)
        case .list(let l): return "[" + l.map(\.description).joined(separator: ", ") + "]"
        case .dict(let d):
            return "{" + d.map { "\(BValue.bytes($0.key)): \($0.value)" }.joined(separator: ", ") + "}"
        }
    }
}

public struct BEntry: Equatable, Sendable {
    public var key: [UInt8]
    public var value: BValue
    public init(key: [UInt8], value: BValue) {
        self.key = key
        self.value = value
    }
}

/// Lower-case hexadecimal.
package func hex<C: Collection>(_ bytes: C) -> String where C.Element == UInt8 {
    let digits = Array("0123456789abcdef".utf8)
    var out: [UInt8] = []
    out.reserveCapacity(bytes.count * 2)
    for b in bytes {
        out.append(digits[Int(b >> 4)])
        out.append(digits[Int(b & 15)])
    }
    return String(decoding: out, as: UTF8.self)
}

/// Parses hexadecimal (either case); nil on odd length or a non-hex digit.
package func unhex(_ s: String) -> [UInt8]? {
    let u = Array(s.utf8)
    guard u.count % 2 == 0 else { return nil }
    func nib(_ c: UInt8) -> UInt8? {
        switch c {
        case 48...57: return c - 48
        case 97...102: return c - 87
        case 65...70: return c - 55
        default: return nil
        }
    }
    var out: [UInt8] = []
    out.reserveCapacity(u.count / 2)
    var i = 0
    while i < u.count {
        guard let h = nib(u[i]), let l = nib(u[i + 1]) else { return nil }
        out.append(h << 4 | l)
        i += 2
    }
    return out
}

/// Why a byte string is not acceptable bencode, and where.
public struct BencodeError: Error, Equatable, CustomStringConvertible, Sendable {
    public enum Kind: String, Sendable {
        case truncated, unexpectedByte, leadingZero, negativeZero, integerOverflow, emptyInteger
        case stringTooLong, tooDeep, tooManyItems, unsortedKeys, duplicateKey, nonStringKey, trailingData, inputTooLong
    }
    public var kind: Kind
    public var offset: Int
    public var detail: String

    public init(_ kind: Kind, at offset: Int, _ detail: String) {
        self.kind = kind
        self.offset = offset
        self.detail = detail
    }

    public var description: String { "bencode \(kind.rawValue) at byte \(offset): \(detail)" }
}

public struct BencodeLimits: Sendable {
    /// Longest accepted input.
    public var maxInput: Int
    /// Deepest nesting of lists and dictionaries (the top level is depth 1).
    public var maxDepth: Int
    /// Longest byte string.
    public var maxString: Int
    /// Most values (of any kind, dictionary keys included) in the whole input.
    public var maxItems: Int

    public init(maxInput: Int = 1 << 16, maxDepth: Int = 16, maxString: Int = 1 << 15, maxItems: Int = 2048) {
        self.maxInput = maxInput
        self.maxDepth = maxDepth
        self.maxString = maxString
        self.maxItems = maxItems
    }

    /// Limits for one KRPC datagram.
    public static let krpc = BencodeLimits(maxInput: 1500, maxDepth: 6, maxString: 1500, maxItems: 512)
}

public enum Bencode {
    public static func encode(_ v: BValue) -> [UInt8] {
        var out: [UInt8] = []
        out.reserveCapacity(128)
        encode(v, into: &out)
        return out
    }

    public static func encode(_ v: BValue, into out: inout [UInt8]) {
        switch v {
        case .int(let i):
            out.append(UInt8(ascii: "i"))
            out.append(contentsOf: String(i).utf8)
            out.append(UInt8(ascii: "e"))
        case .bytes(let b):
            out.append(contentsOf: String(b.count).utf8)
            out.append(UInt8(ascii: ":"))
            out.append(contentsOf: b)
        case .list(let l):
            out.append(UInt8(ascii: "l"))
            for x in l { encode(x, into: &out) }
            out.append(UInt8(ascii: "e"))
        case .dict(let d):
            out.append(UInt8(ascii: "d"))
            // Canonical regardless of how the value was built: sorted, first of duplicates wins.
            var sorted = d
            if !isStrictlySorted(d) {
                sorted = d.enumerated().sorted { a, b in
                    a.element.key == b.element.key
                        ? a.offset < b.offset : a.element.key.lexicographicallyPrecedes(b.element.key)
                }.map(\.element)
            }
            var previous: [UInt8]? = nil
            for item in sorted {
                if let p = previous, p == item.key { continue }
                previous = item.key
                out.append(contentsOf: String(item.key.count).utf8)
                out.append(UInt8(ascii: ":"))
                out.append(contentsOf: item.key)
                encode(item.value, into: &out)
            }
            out.append(UInt8(ascii: "e"))
        }
    }

    private static func isStrictlySorted(_ d: [BEntry]) -> Bool {
        var i = 1
        while i < d.count {
            if !d[i - 1].key.lexicographicallyPrecedes(d[i].key) { return false }
            i += 1
        }
        return true
    }

    /// Decodes `bytes`. With `unsortedKeys`, dictionary keys may come in any order (as some
    /// clients send them); they are sorted into the value, so it re-encodes canonically. Everything
    /// else stays strict: duplicate keys, leading zeros, `-0`, trailing data are still refused.
    public static func decode(
        _ bytes: [UInt8],
        limits: BencodeLimits = BencodeLimits(),
        unsortedKeys: Bool = false
    ) throws(BencodeError) -> BValue {
        guard bytes.count <= limits.maxInput else {
            throw BencodeError(.inputTooLong, at: 0, "\(bytes.count) bytes, limit \(limits.maxInput)")
        }
        var p = Parser(bytes: bytes, limits: limits, unsortedKeys: unsortedKeys)
        let v = try p.value(depth: 1)
        guard p.i == bytes.count else {
            throw BencodeError(.trailingData, at: p.i, "\(bytes.count - p.i) bytes after the value")
        }
        return v
    }

    private struct Parser {
        let bytes: [UInt8]
        let limits: BencodeLimits
        let unsortedKeys: Bool
        var i = 0
        var items = 0

        init(bytes: [UInt8], limits: BencodeLimits, unsortedKeys: Bool) {
            self.bytes = bytes
            self.limits = limits
            self.unsortedKeys = unsortedKeys
        }

        mutating func count() throws(BencodeError) {
            items += 1
            guard items <= limits.maxItems else {
                throw BencodeError(.tooManyItems, at: i, "more than \(limits.maxItems) values")
            }
        }

        mutating func value(depth: Int) throws(BencodeError) -> BValue {
            guard i < bytes.count else { throw BencodeError(.truncated, at: i, "expected a value") }
            try count()
            let c = bytes[i]
            switch c {
            case UInt8(ascii: "i"):
                i += 1
                return .int(try integer(terminator: UInt8(ascii: "e"), allowNegative: true, what: "integer"))
            case UInt8(ascii: "0")...UInt8(ascii: "9"):
                return .bytes(try byteString())
            case UInt8(ascii: "l"):
                guard depth <= limits.maxDepth else {
                    throw BencodeError(.tooDeep, at: i, "nesting deeper than \(limits.maxDepth)")
                }
                i += 1
                var list: [BValue] = []
                while true {
                    guard i < bytes.count else { throw BencodeError(.truncated, at: i, "unterminated list") }
                    if bytes[i] == UInt8(ascii: "e") {
                        i += 1
                        return .list(list)
                    }
                    list.append(try value(depth: depth + 1))
                }
            case UInt8(ascii: "d"):
                guard depth <= limits.maxDepth else {
                    throw BencodeError(.tooDeep, at: i, "nesting deeper than \(limits.maxDepth)")
                }
                i += 1
                var dict: [BEntry] = []
                var sorted = true
                while true {
                    guard i < bytes.count else { throw BencodeError(.truncated, at: i, "unterminated dictionary") }
                    if bytes[i] == UInt8(ascii: "e") {
                        i += 1
                        if !sorted { dict.sort { $0.key.lexicographicallyPrecedes($1.key) } }
                        return .dict(dict)
                    }
                    let keyAt = i
                    guard (UInt8(ascii: "0")...UInt8(ascii: "9")).contains(bytes[i]) else {
                        throw BencodeError(.nonStringKey, at: i, "dictionary key must be a byte string")
                    }
                    try count()
                    let key = try byteString()
                    if let last = dict.last, !last.key.lexicographicallyPrecedes(key) {
                        if !unsortedKeys {
                            throw BencodeError(
                                .unsortedKeys,
                                at: keyAt,
                                last.key == key ? "duplicate key" : "keys not in ascending order"
                            )
                        }
                        if dict.contains(where: { $0.key == key }) {
                            throw BencodeError(.duplicateKey, at: keyAt, "duplicate key")
                        }
                        sorted = false
                    } else if !sorted, dict.contains(where: { $0.key == key }) {
                        // Out of order earlier: the new key may repeat any of them.
                        throw BencodeError(.duplicateKey, at: keyAt, "duplicate key")
                    }
                    let v = try value(depth: depth + 1)
                    dict.append(BEntry(key: key, value: v))
                }
            default:
                throw BencodeError(.unexpectedByte, at: i, "byte 0x\(hex([c])) cannot start a value")
            }
        }

        mutating func byteString() throws(BencodeError) -> [UInt8] {
            let start = i
            let n = try integer(terminator: UInt8(ascii: ":"), allowNegative: false, what: "string length")
            guard n <= Int64(limits.maxString) else {
                throw BencodeError(.stringTooLong, at: start, "string of \(n) bytes, limit \(limits.maxString)")
            }
            let len = Int(n)
            guard len <= bytes.count - i else {
                throw BencodeError(.truncated, at: i, "string needs \(len) bytes, \(bytes.count - i) left")
            }
            defer { i += len }
            return Array(bytes[i..<(i + len)])
        }

        /// Digits up to `terminator`, which is consumed.
        mutating func integer(terminator: UInt8, allowNegative: Bool, what: String) throws(BencodeError) -> Int64 {
            let start = i
            var negative = false
            if allowNegative, i < bytes.count, bytes[i] == UInt8(ascii: "-") {
                negative = true
                i += 1
            }
            let digitsStart = i
            var v: Int64 = 0
            while true {
                guard i < bytes.count else { throw BencodeError(.truncated, at: i, "unterminated \(what)") }
                let c = bytes[i]
                if c == terminator { break }
                guard (UInt8(ascii: "0")...UInt8(ascii: "9")).contains(c) else {
                    throw BencodeError(.unexpectedByte, at: i, "byte 0x\(hex([c])) in \(what)")
                }
                let d = Int64(c - UInt8(ascii: "0"))
                let (m, o1) = v.multipliedReportingOverflow(by: 10)
                let (s, o2) = negative ? m.subtractingReportingOverflow(d) : m.addingReportingOverflow(d)
                guard !o1, !o2 else {
                    throw BencodeError(.integerOverflow, at: start, "\(what) does not fit in 64 bits")
                }
                v = s
                i += 1
            }
            let nDigits = i - digitsStart
            guard nDigits > 0 else { throw BencodeError(.emptyInteger, at: digitsStart, "\(what) has no digits") }
            if bytes[digitsStart] == UInt8(ascii: "0") {
                if negative {
                    throw BencodeError(.negativeZero, at: start, "\(what) is negative zero or has a leading zero")
                }
                if nDigits > 1 { throw BencodeError(.leadingZero, at: digitsStart, "\(what) has a leading zero") }
            }
            i += 1  // terminator
            return v
        }
    }
}
