import NetCore

/// BEP 32: there are two DHTs, an IPv4 one and an IPv6 one, independent of each other. A node
/// that speaks both keeps one routing table per family (with the same node id), stores announces
/// in the family they arrived over, and looks topics up in both.
enum AddressFamily: Int, Sendable, Hashable, CaseIterable, Comparable {
    case v4, v6

    init(of a: PeerAddress) { self = a.isIPv6 ? .v6 : .v4 }

    /// The string a query's `want` list uses to ask for this family's nodes.
    var want: String { self == .v4 ? "n4" : "n6" }

    /// The response key that carries this family's compact node info.
    var nodesKey: String { self == .v4 ? "nodes" : "nodes6" }

    /// One compact node info entry: a 20-byte id and a 6- or 18-byte address.
    var nodeInfoSize: Int { self == .v4 ? 26 : 38 }

    var other: AddressFamily { self == .v4 ? .v6 : .v4 }

    static func < (l: AddressFamily, r: AddressFamily) -> Bool { l.rawValue < r.rawValue }
}

extension PeerAddress {
    var family: AddressFamily { AddressFamily(of: self) }

    /// The key the DHT's per-source limits count by (query rate, one vote per responder, one
    /// stored peer per source and info-hash, tables' per-address limit): the IPv4 address, or the
    /// IPv6 address's /64 (`sourceKey`: whoever holds one address of a /64 holds them all). On
    /// loopback, where many nodes share one address, the port as well.
    var dhtSourceKey: UInt64 {
        if isLoopback { return (isIPv6 ? 1 << 63 : 0) | UInt64(ip) << 16 | UInt64(port) }
        return isIPv6 ? sourceKey : UInt64(ip) << 16
    }

    /// The address without its port: 4 bytes for IPv4, 16 for IPv6 (what tokens are bound to).
    var addressBytes: [UInt8] { Array(compact.dropLast(2)) }

    /// Whether this address can be a DHT node's or a peer's: not unspecified, not multicast (an
    /// entry naming one is dropped from what a node hands out or receives).
    var isUsableUnicast: Bool {
        if let ip6 { return !ip6.isUnspecified && !ip6.isMulticast }
        return ip != 0 && ip >> 28 != 0xE
    }
}
