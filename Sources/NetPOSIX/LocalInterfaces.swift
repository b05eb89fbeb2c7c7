import NetCore

#if canImport(Glibc)
    import Glibc
#elseif canImport(Darwin)
    import Darwin
#endif

/// This machine's own addresses, from its interfaces (getifaddrs): what the lobby record, the
/// invite and the knock offer a friend, and how a peer tells its own address from another's.
public enum LocalInterfaces {
    /// The IPv4 addresses, LAN first and loopback last (a friend on another machine tries the
    /// LAN addresses first).
    public static func ipv4() -> [UInt32] {
        var out: [UInt32] = []
        for a in all() where !a.isIPv6 && !out.contains(a.ip) { out.append(a.ip) }
        return out.filter { $0 >> 24 != 127 } + [0x7F00_0001]
    }

    /// The IPv6 addresses a peer elsewhere could reach: global and unique-local ones. Not
    /// link-local (an address that needs an interface scope to mean anything), not loopback.
    public static func ipv6() -> [IPv6Address] {
        var out: [IPv6Address] = []
        for a in all() {
            guard let v6 = a.ip6, !v6.isLinkLocal, !v6.isLoopback, !v6.isMulticast, !v6.isUnspecified,
                !out.contains(v6)
            else { continue }
            out.append(v6)
        }
        return out
    }

    /// Whether this machine has an IPv6 address on the internet (not unique-local, not the
    /// documentation prefix unless `documentation`: the NAT lab's internet is 2001:db8::/32).
    public static func hasGlobalIPv6(documentation: Bool = true) -> Bool {
        ipv6().contains { !$0.isUniqueLocal && (documentation || !$0.isDocumentation) }
    }

    /// Every interface address of either family (port 0).
    static func all() -> [PeerAddress] {
        var out: [PeerAddress] = []
        var list: UnsafeMutablePointer<ifaddrs>?
        guard getifaddrs(&list) == 0, let first = list else { return [] }
        defer { freeifaddrs(first) }
        var p: UnsafeMutablePointer<ifaddrs>? = first
        while let ifa = p {
            if let sa = ifa.pointee.ifa_addr {
                if sa.pointee.sa_family == sa_family_t(AF_INET) {
                    let sin = sa.withMemoryRebound(to: sockaddr_in.self, capacity: 1) { $0.pointee }
                    out.append(PeerAddress(ip: UInt32(bigEndian: sin.sin_addr.s_addr), port: 0))
                } else if sa.pointee.sa_family == sa_family_t(AF_INET6) {
                    var sin6 = sa.withMemoryRebound(to: sockaddr_in6.self, capacity: 1) { $0.pointee }
                    let bytes = withUnsafeBytes(of: &sin6.sin6_addr) { Array($0) }
                    if let v6 = IPv6Address(bytes: bytes) { out.append(PeerAddress(ip6: v6, port: 0)) }
                }
            }
            p = ifa.pointee.ifa_next
        }
        return out
    }
}
