import Bencode
import Determinism
import NetCore

/// A 160-bit DHT node id or info-hash, big-endian, held in three words so XOR distance and
/// comparison cost a few instructions (the 10,000-node simulation compares ids millions of times).
public struct NodeID: Hashable, Comparable, Sendable, CustomStringConvertible {
    /// Bits 0-63 (most significant first), 64-127, and 128-159 in the high half of `c`.
    package var a: UInt64
    package var b: UInt64
    package var c: UInt64  // low 32 bits always zero

    public static let byteCount = 20
    public static let zero = NodeID(a: 0, b: 0, c: 0)

    package init(a: UInt64, b: UInt64, c: UInt64) {
        self.a = a
        self.b = b
        self.c = c & 0xFFFF_FFFF_0000_0000
    }

    public init?<C: Collection>(bytes: C) where C.Element == UInt8 {
        guard bytes.count == 20 else { return nil }
        var w: [UInt64] = [0, 0, 0]
        for (i, x) in bytes.enumerated() {
            w[i / 8] |= UInt64(x) << (56 - 8 * UInt64(i % 8))
        }
        self.init(a: w[0], b: w[1], c: w[2])
    }

    public init?(hex text: String) {
        guard let b = unhex(text) else { return nil }
        self.init(bytes: b)
    }

    public var bytes: [UInt8] {
        var out = [UInt8](repeating: 0, count: 20)
        for i in 0..<20 {
            let w = i < 8 ? a : (i < 16 ? b : c)
            out[i] = UInt8(truncatingIfNeeded: w >> (56 - 8 * UInt64(i % 8)))
        }
        return out
    }

    public var hexString: String { hex(bytes) }
    public var description: String { hexString }

    public static func random<G: RandomNumberGenerator>(using g: inout G) -> NodeID {
        NodeID(a: g.next(), b: g.next(), c: g.next())
    }

    @inline(__always)
    public static func ^ (l: NodeID, r: NodeID) -> NodeID { NodeID(a: l.a ^ r.a, b: l.b ^ r.b, c: l.c ^ r.c) }

    public static func < (l: NodeID, r: NodeID) -> Bool {
        if l.a != r.a { return l.a < r.a }
        if l.b != r.b { return l.b < r.b }
        return l.c < r.c
    }

    /// Number of leading zero bits (160 for zero).
    @inline(__always)
    var leadingZeroBitCount: Int {
        if a != 0 { return a.leadingZeroBitCount }
        if b != 0 { return 64 + b.leadingZeroBitCount }
        if c != 0 { return 128 + c.leadingZeroBitCount }
        return 160
    }

    /// Length of the common prefix of two ids, 0...160.
    @inline(__always)
    public func commonPrefixLength(with o: NodeID) -> Int { (self ^ o).leadingZeroBitCount }

    /// Bit `i` counting from the most significant (0...159).
    package func bit(_ i: Int) -> Bool {
        let w = i < 64 ? a : (i < 128 ? b : c)
        return (w >> (63 - UInt64(i % 64))) & 1 == 1
    }

    /// This id with bit `i` set to `v`.
    package func setting(bit i: Int, to v: Bool) -> NodeID {
        var x = self
        let m: UInt64 = 1 << (63 - UInt64(i % 64))
        switch i / 64 {
        case 0: x.a = v ? x.a | m : x.a & ~m
        case 1: x.b = v ? x.b | m : x.b & ~m
        default: x.c = v ? x.c | m : x.c & ~m
        }
        return x
    }

    /// A random id that shares exactly the first `prefix` bits with `self` and differs at bit `prefix`
    /// (or a random id sharing all `prefix` bits when prefix is 160).
    func randomInBucket<G: RandomNumberGenerator>(prefix: Int, using g: inout G) -> NodeID {
        let r = NodeID.random(using: &g)
        var x = NodeID.zero
        // Take the first `prefix` bits from self, the rest from r, then flip bit `prefix`.
        func mask(_ bits: Int) -> UInt64 { bits <= 0 ? 0 : (bits >= 64 ? ~0 : ~((~UInt64(0)) >> UInt64(bits))) }
        let ma = mask(prefix)
        let mb = mask(prefix - 64)
        let mc = mask(prefix - 128)
        x.a = (a & ma) | (r.a & ~ma)
        x.b = (b & mb) | (r.b & ~mb)
        x.c = ((c & mc) | (r.c & ~mc)) & 0xFFFF_FFFF_0000_0000
        if prefix < 160 { x = x.setting(bit: prefix, to: !bit(prefix)) }
        return x
    }
}

/// Distance ordering: is `l` closer to `target` than `r`?
@inline(__always)
func closer(_ l: NodeID, _ r: NodeID, to target: NodeID) -> Bool { (l ^ target) < (r ^ target) }

/// CRC-32C (Castagnoli), as BEP 42 uses for node ids.
enum CRC32C {
    static let table: [UInt32] = (0..<256).map { i -> UInt32 in
        var c = UInt32(i)
        for _ in 0..<8 { c = c & 1 != 0 ? (c >> 1) ^ 0x82F6_3B78 : c >> 1 }
        return c
    }

    static func checksum<C: Collection>(_ data: C) -> UInt32 where C.Element == UInt8 {
        var crc: UInt32 = 0xFFFF_FFFF
        for b in data { crc = table[Int((crc ^ UInt32(b)) & 0xFF)] ^ (crc >> 8) }
        return crc ^ 0xFFFF_FFFF
    }
}

/// BEP 42: node ids bound to the node's external address. For IPv4 the CRC covers the address
/// masked with 0x030f3fff; for IPv6 its first 64 bits masked with 0x0103070f1f3f7fff; in both,
/// the random number `r` (0-7) goes into the top three bits of the first byte.
enum BEP42 {
    /// Addresses exempt from the rule (BEP 42's list: 10/8, 172.16/12, 192.168/16, 169.254/16, 127/8).
    static func isExempt(_ ip: UInt32) -> Bool {
        let a = ip >> 24
        let b = (ip >> 16) & 0xFF
        return a == 10 || a == 127 || (a == 172 && (16...31).contains(b)) || (a == 192 && b == 168)
            || (a == 169 && b == 254)
    }

    /// IPv4 as above; IPv6 addresses that are not global (loopback, unspecified, link-local,
    /// site-local fec0::/10, unique local fc00::/7, multicast), as libtorrent exempts them.
    static func isExempt(_ a: PeerAddress) -> Bool {
        guard let ip6 = a.ip6 else { return isExempt(a.ip) }
        return ip6.isLoopback || ip6.isUnspecified || ip6.isLinkLocal || ip6.hi >> 54 == 0x3FB || ip6.isUniqueLocal
            || ip6.isMulticast
    }

    static func crc(ip: UInt32, r: UInt8) -> UInt32 {
        let masked = (ip & 0x030F_3FFF) | (UInt32(r & 7) << 29)
        return CRC32C.checksum([
            UInt8(masked >> 24), UInt8((masked >> 16) & 0xFF), UInt8((masked >> 8) & 0xFF), UInt8(masked & 0xFF),
        ])
    }

    /// The IPv6 form: the first 8 bytes of the address, masked, `r` in the top three bits.
    static func crc(ip6: IPv6Address, r: UInt8) -> UInt32 {
        let masked = (ip6.hi & 0x0103_070F_1F3F_7FFF) | (UInt64(r & 7) << 61)
        return CRC32C.checksum((0..<8).map { UInt8(truncatingIfNeeded: masked >> (56 - 8 * UInt64($0))) })
    }

    static func crc(_ a: PeerAddress, r: UInt8) -> UInt32 {
        if let ip6 = a.ip6 { return crc(ip6: ip6, r: r) }
        return crc(ip: a.ip, r: r)
    }

    /// A node id valid for `ip`: 21 bits from the CRC, random middle, last byte `rand`.
    static func nodeID<G: RandomNumberGenerator>(for ip: UInt32, using g: inout G) -> NodeID {
        nodeID(for: PeerAddress(ip: ip, port: 0), using: &g)
    }

    /// A node id valid for the address's IP (either family).
    static func nodeID<G: RandomNumberGenerator>(for address: PeerAddress, using g: inout G) -> NodeID {
        let rand = UInt8(truncatingIfNeeded: g.next())
        let crc = crc(address, r: rand)
        var bytes = NodeID.random(using: &g).bytes
        bytes[0] = UInt8(crc >> 24)
        bytes[1] = UInt8((crc >> 16) & 0xFF)
        bytes[2] = (UInt8((crc >> 8) & 0xF8)) | (bytes[2] & 0x07)
        bytes[19] = rand
        return NodeID(bytes: bytes)!  // `!`: a node id's 20 bytes, edited in place
    }

    /// Whether `id` is valid for `ip` (always true for exempt addresses).
    static func isValid(_ id: NodeID, for ip: UInt32) -> Bool { isValid(id, for: PeerAddress(ip: ip, port: 0)) }

    /// Whether `id` is valid for the address's IP (either family; true for exempt addresses).
    static func isValid(_ id: NodeID, for address: PeerAddress) -> Bool {
        if isExempt(address) { return true }
        let bytes = id.bytes
        let crc = crc(address, r: bytes[19])
        return bytes[0] == UInt8(crc >> 24) && bytes[1] == UInt8((crc >> 16) & 0xFF)
            && (bytes[2] & 0xF8) == (UInt8((crc >> 8) & 0xF8))
    }
}
