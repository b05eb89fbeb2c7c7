/// An IPv6 address: 128 bits, as two big-endian halves (`hi` holds the first 8 bytes, so `hi` is
/// also the /64 prefix: one subscriber's network, the unit per-source limits count in).
///
/// Text forms follow RFC 4291 on input (`::` compression, an embedded dotted IPv4 tail) and RFC 5952
/// on output (lower case, the longest run of two or more zero groups compressed, the first on a tie).
public struct IPv6Address: Hashable, Comparable, Sendable, CustomStringConvertible {
    public var hi: UInt64
    public var lo: UInt64

    public init(hi: UInt64, lo: UInt64) {
        self.hi = hi
        self.lo = lo
    }

    /// Sixteen bytes in network order; nil for any other count.
    public init?<C: Collection>(bytes c: C) where C.Element == UInt8 {
        guard c.count == 16 else { return nil }
        var h: UInt64 = 0
        var l: UInt64 = 0
        for (i, b) in c.enumerated() {
            if i < 8 { h = h << 8 | UInt64(b) } else { l = l << 8 | UInt64(b) }
        }
        hi = h
        lo = l
    }

    public var bytes: [UInt8] {
        (0..<8).map { UInt8(truncatingIfNeeded: hi >> (56 - 8 * UInt64($0))) }
            + (0..<8).map { UInt8(truncatingIfNeeded: lo >> (56 - 8 * UInt64($0))) }
    }

    /// The eight 16-bit groups.
    public var groups: [UInt16] {
        (0..<4).map { UInt16(truncatingIfNeeded: hi >> (48 - 16 * UInt64($0))) }
            + (0..<4).map { UInt16(truncatingIfNeeded: lo >> (48 - 16 * UInt64($0))) }
    }

    public init(groups g: [UInt16]) {
        precondition(g.count == 8)
        hi = g[0..<4].reduce(0) { $0 << 16 | UInt64($1) }
        lo = g[4..<8].reduce(0) { $0 << 16 | UInt64($1) }
    }

    public static let any = IPv6Address(hi: 0, lo: 0)
    public static let loopback = IPv6Address(hi: 0, lo: 1)

    /// `::ffff:a.b.c.d` (how a dual-stack socket shows an IPv4 peer): the IPv4 address.
    public var mappedIPv4: UInt32? {
        hi == 0 && lo >> 32 == 0xFFFF ? UInt32(truncatingIfNeeded: lo) : nil
    }

    public init(mapping ipv4: UInt32) { self.init(hi: 0, lo: 0xFFFF << 32 | UInt64(ipv4)) }

    public var isUnspecified: Bool { hi == 0 && lo == 0 }
    public var isLoopback: Bool { hi == 0 && lo == 1 }
    /// fe80::/10
    public var isLinkLocal: Bool { hi >> 54 == 0x3FA }
    /// fc00::/7, unique local addresses (a LAN's own prefix, not routed on the internet).
    public var isUniqueLocal: Bool { hi >> 57 == 0x7E }
    /// ff00::/8
    public var isMulticast: Bool { hi >> 56 == 0xFF }
    /// 2001:db8::/32, the documentation prefix (RFC 3849): the NAT lab's "public" internet.
    public var isDocumentation: Bool { hi >> 32 == 0x2001_0DB8 }

    /// Parses RFC 4291 text; no zone (`%eth0`), no brackets, no prefix length.
    public init?(_ text: String) {
        guard !text.isEmpty, text.count <= 45, text.allSatisfy({ $0.isASCII }) else { return nil }
        var tail: [UInt16] = []
        var body = Substring(text)
        // An embedded IPv4 tail: the last 32 bits written as a dotted quad.
        if let lastColon = body.lastIndex(of: ":"), body[body.index(after: lastColon)...].contains(".") {
            guard let v4 = PeerAddress.parseIPv4(String(body[body.index(after: lastColon)...])) else { return nil }
            tail = [UInt16(v4 >> 16), UInt16(v4 & 0xFFFF)]
            body = body[...lastColon]
            // "::1.2.3.4" keeps its "::"; "a:b::c:1.2.3.4" drops its trailing single colon.
            if body.hasSuffix("::") == false { body = body.dropLast() }
        }
        func parseGroups(_ s: Substring) -> [UInt16]? {
            if s.isEmpty { return [] }
            var out: [UInt16] = []
            for part in s.split(separator: ":", omittingEmptySubsequences: false) {
                guard (1...4).contains(part.count), let v = UInt16(part, radix: 16) else { return nil }
                out.append(v)
            }
            return out
        }
        // Split at "::" (at most one).
        var halves: [Substring] = []
        var rest = body
        while let r = rest.firstRange(of: "::") {
            halves.append(rest[..<r.lowerBound])
            rest = rest[r.upperBound...]
        }
        halves.append(rest)
        var groups: [UInt16]
        switch halves.count {
        case 1:
            guard let g = parseGroups(halves[0]) else { return nil }
            groups = g + tail
            guard groups.count == 8 else { return nil }
        case 2:
            guard let a = parseGroups(halves[0]), let b = parseGroups(halves[1]) else {
                return nil
            }
            let known = a.count + b.count + tail.count
            guard known <= 7 else { return nil }
            groups = a + Array(repeating: 0, count: 8 - known) + b + tail
        default:
            return nil
        }
        self.init(groups: groups)
    }

    /// RFC 5952 text.
    public var description: String {
        let g = groups
        // The longest run of zero groups (at least two), the first on a tie.
        var best = (start: -1, count: 0)
        var i = 0
        while i < 8 {
            if g[i] == 0 {
                var j = i
                while j < 8 && g[j] == 0 { j += 1 }
                if j - i > best.count && j - i >= 2 { best = (i, j - i) }
                i = j
            } else {
                i += 1
            }
        }
        func hex(_ r: ArraySlice<UInt16>) -> String { r.map { String($0, radix: 16) }.joined(separator: ":") }
        if let v4 = mappedIPv4 {
            return "::ffff:" + PeerAddress(ip: v4, port: 0).ipString
        }
        guard best.start >= 0 else { return hex(g[...]) }
        return hex(g[0..<best.start]) + "::" + hex(g[(best.start + best.count)...])
    }

    public static func < (l: IPv6Address, r: IPv6Address) -> Bool { (l.hi, l.lo) < (r.hi, r.lo) }
}
