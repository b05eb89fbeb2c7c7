/// An IPv4 UDP endpoint. Compact form (BEP 5) is 4 address bytes then 2 port bytes, big-endian.
///
/// IPv4 only for now: the Mainline DHT's compact peer and node formats that turf speaks are IPv4
/// (BEP 32 adds IPv6 separately).
public struct PeerAddress: Hashable, Comparable, Sendable, CustomStringConvertible {
    /// The address in host order: 127.0.0.1 is 0x7F00_0001.
    public var ip: UInt32
    public var port: UInt16

    public init(ip: UInt32, port: UInt16) {
        self.ip = ip
        self.port = port
    }

    public init(_ a: UInt8, _ b: UInt8, _ c: UInt8, _ d: UInt8, port: UInt16) {
        ip = UInt32(a) << 24 | UInt32(b) << 16 | UInt32(c) << 8 | UInt32(d)
        self.port = port
    }

    /// Parses "a.b.c.d:port". Host names are resolved by the shell, not here.
    public init?(_ text: String) {
        let parts = text.split(separator: ":", omittingEmptySubsequences: false)
        guard parts.count == 2, let port = UInt16(parts[1]), let ip = PeerAddress.parseIPv4(String(parts[0])) else {
            return nil
        }
        self.ip = ip
        self.port = port
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

    public var ipString: String {
        "\(ip >> 24).\((ip >> 16) & 0xFF).\((ip >> 8) & 0xFF).\(ip & 0xFF)"
    }

    public var description: String { "\(ipString):\(port)" }

    public var compact: [UInt8] {
        [
            UInt8(ip >> 24), UInt8((ip >> 16) & 0xFF), UInt8((ip >> 8) & 0xFF), UInt8(ip & 0xFF),
            UInt8(port >> 8), UInt8(port & 0xFF),
        ]
    }

    public init?<C: Collection>(compact c: C) where C.Element == UInt8 {
        guard c.count == 6 else { return nil }
        let b = Array(c)
        ip = UInt32(b[0]) << 24 | UInt32(b[1]) << 16 | UInt32(b[2]) << 8 | UInt32(b[3])
        port = UInt16(b[4]) << 8 | UInt16(b[5])
    }

    public var isLoopback: Bool { ip >> 24 == 127 }

    /// Addresses that are not globally routable: loopback, RFC 1918, link-local, CGNAT, unspecified.
    public var isPrivate: Bool {
        let a = ip >> 24
        let b = (ip >> 16) & 0xFF
        return a == 10 || a == 127 || a == 0 || (a == 172 && (16...31).contains(b)) || (a == 192 && b == 168)
            || (a == 169 && b == 254) || (a == 100 && (64...127).contains(b))
    }

    public static func < (l: PeerAddress, r: PeerAddress) -> Bool { (l.ip, l.port) < (r.ip, r.port) }
}
