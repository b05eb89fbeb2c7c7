/// A UDP endpoint, IPv4 or IPv6.
///
/// Compact forms (BEP 5, BEP 32): 4 address bytes then 2 port bytes for IPv4, 16 then 2 for IPv6,
/// big-endian. An IPv4 address written as IPv6 (`::ffff:a.b.c.d`, how a dual-stack socket shows
/// an IPv4 peer) is always stored as IPv4, so one peer has one address whichever socket saw it.
public struct PeerAddress: Hashable, Comparable, Sendable, CustomStringConvertible {
    /// The IPv4 address in host order (127.0.0.1 is 0x7F00_0001); 0 for an IPv6 address.
    public private(set) var ip: UInt32
    public var port: UInt16
    /// The IPv6 address; nil for an IPv4 one.
    public private(set) var ip6: IPv6Address?

    public init(ip: UInt32, port: UInt16) {
        self.ip = ip
        self.port = port
        self.ip6 = nil
    }

    /// An IPv6 endpoint (a mapped IPv4 address becomes the IPv4 endpoint).
    public init(ip6: IPv6Address, port: UInt16) {
        self.port = port
        if let v4 = ip6.mappedIPv4 {
            ip = v4
            self.ip6 = nil
        } else {
            ip = 0
            self.ip6 = ip6
        }
    }

    public init(_ a: UInt8, _ b: UInt8, _ c: UInt8, _ d: UInt8, port: UInt16) {
        self.init(ip: UInt32(a) << 24 | UInt32(b) << 16 | UInt32(c) << 8 | UInt32(d), port: port)
    }

    /// Parses "a.b.c.d:port" or "[v6]:port". Host names are resolved by the shell, not here.
    public init?(_ text: String) {
        if text.hasPrefix("[") {
            guard let close = text.firstIndex(of: "]"), text[close...].hasPrefix("]:"),
                let port = UInt16(text[text.index(close, offsetBy: 2)...]),
                let a = IPv6Address(String(text[text.index(after: text.startIndex)..<close]))
            else { return nil }
            self.init(ip6: a, port: port)
            return
        }
        let parts = text.split(separator: ":", omittingEmptySubsequences: false)
        guard parts.count == 2, let port = UInt16(parts[1]), let ip = PeerAddress.parseIPv4(String(parts[0])) else {
            return nil
        }
        self.init(ip: ip, port: port)
    }

    /// An address with no port: "a.b.c.d" or an IPv6 address (with or without brackets).
    public init?(host text: String, port: UInt16) {
        if let v4 = PeerAddress.parseIPv4(text) {
            self.init(ip: v4, port: port)
        } else {
            let bare = text.hasPrefix("[") && text.hasSuffix("]") ? String(text.dropFirst().dropLast()) : text
            guard let v6 = IPv6Address(bare) else { return nil }
            self.init(ip6: v6, port: port)
        }
    }

    public static func parseIPv4(_ text: String) -> UInt32? {
        let octets = text.split(separator: ".", omittingEmptySubsequences: false)
        guard octets.count == 4 else { return nil }
        var v: UInt32 = 0
        for o in octets {
            guard !o.isEmpty, o.count <= 3, o.allSatisfy({ $0.isASCII && $0.isNumber }), let b = UInt8(o) else {
                return nil
            }
            v = v << 8 | UInt32(b)
        }
        return v
    }

    public var isIPv6: Bool { ip6 != nil }

    /// 0.0.0.0 or `::`: a socket bound to every address, never a peer's address.
    public var isUnspecified: Bool { ip6.map(\.isUnspecified) ?? (ip == 0) }

    /// The same host (an IPv4 address, or an IPv6 address exactly).
    public func sameHost(_ other: PeerAddress) -> Bool { ip == other.ip && ip6 == other.ip6 }

    /// A list of addresses of either family, each as its compact size (6 or 18) then its compact
    /// form: how the lobby's messages and the knock carry candidates.
    public static func tagged(_ list: [PeerAddress]) -> [UInt8] {
        list.flatMap { [UInt8($0.compactSize)] + $0.compact }
    }

    /// The addresses of a `tagged` list; nil if it is malformed (a size other than 6 or 18, a
    /// short entry) or holds more than `limit`.
    public static func untagged<C: Collection>(_ bytes: C, limit: Int) -> [PeerAddress]? where C.Element == UInt8 {
        let b = Array(bytes)
        var out: [PeerAddress] = []
        var i = 0
        while i < b.count {
            let n = Int(b[i])
            guard n == 6 || n == 18, i + 1 + n <= b.count, out.count < limit,
                let a = PeerAddress(compact: b[(i + 1)..<(i + 1 + n)])
            else { return nil }
            out.append(a)
            i += 1 + n
        }
        return out
    }

    /// The same host on another port.
    public func with(port: UInt16) -> PeerAddress {
        var a = self
        a.port = port
        return a
    }

    /// The address alone: "a.b.c.d" or an IPv6 address without brackets.
    public var ipString: String {
        if let ip6 { return ip6.description }
        return "\(ip >> 24).\((ip >> 16) & 0xFF).\((ip >> 8) & 0xFF).\(ip & 0xFF)"
    }

    public var description: String { ip6 != nil ? "[\(ipString)]:\(port)" : "\(ipString):\(port)" }

    /// The key per-source limits count by: an IPv4 address, or an IPv6 address's /64 (a
    /// subscriber usually holds a whole /64, so counting single IPv6 addresses limits nothing).
    public var sourceKey: UInt64 {
        guard let ip6 else { return UInt64(ip) }
        // Global unicast /64s start 0x2… or 0x3…; the top bit keeps every IPv6 key off the IPv4 ones.
        return ip6.hi | 1 << 63
    }

    /// 6 bytes for IPv4, 18 for IPv6 (BEP 5 / BEP 32).
    public var compact: [UInt8] {
        let p = [UInt8(port >> 8), UInt8(port & 0xFF)]
        if let ip6 { return ip6.bytes + p }
        return [UInt8(ip >> 24), UInt8((ip >> 16) & 0xFF), UInt8((ip >> 8) & 0xFF), UInt8(ip & 0xFF)] + p
    }

    /// The compact size of this address's family.
    public var compactSize: Int { ip6 != nil ? 18 : 6 }

    /// 6 bytes (IPv4) or 18 (IPv6); nil for any other count.
    public init?<C: Collection>(compact c: C) where C.Element == UInt8 {
        let b = Array(c)
        switch b.count {
        case 6:
            self.init(
                ip: UInt32(b[0]) << 24 | UInt32(b[1]) << 16 | UInt32(b[2]) << 8 | UInt32(b[3]),
                port: UInt16(b[4]) << 8 | UInt16(b[5])
            )
        case 18:
            guard let a = IPv6Address(bytes: b[0..<16]) else { return nil }
            self.init(ip6: a, port: UInt16(b[16]) << 8 | UInt16(b[17]))
        default:
            return nil
        }
    }

    public var isLoopback: Bool { ip6.map(\.isLoopback) ?? (ip >> 24 == 127) }

    /// Addresses that are not globally routable: loopback, RFC 1918, link-local, CGNAT,
    /// unspecified; for IPv6 loopback, unspecified, link-local, unique local and multicast.
    public var isPrivate: Bool {
        if let ip6 {
            return ip6.isLoopback || ip6.isUnspecified || ip6.isLinkLocal || ip6.isUniqueLocal || ip6.isMulticast
        }
        let a = ip >> 24
        let b = (ip >> 16) & 0xFF
        return a == 10 || a == 127 || a == 0 || (a == 172 && (16...31).contains(b)) || (a == 192 && b == 168)
            || (a == 169 && b == 254) || (a == 100 && (64...127).contains(b))
    }

    /// IPv4 addresses sort before IPv6 ones.
    public static func < (l: PeerAddress, r: PeerAddress) -> Bool {
        switch (l.ip6, r.ip6) {
        case (nil, nil): return (l.ip, l.port) < (r.ip, r.port)
        case (nil, _?): return true
        case (_?, nil): return false
        case (let a?, let b?): return (a, l.port) < (b, r.port)
        }
    }
}
