import DHT
import NetCore

/// What a player's NAT does to its UDP traffic, as turf shows it (`"nat"` in the headless events,
/// docs/nat.md): classified from the external addresses DHT nodes report back (BEP 42 `ip`) on
/// the socket the game shares with the DHT.
public enum NATKind: String, Sendable, CaseIterable {
    /// No NAT: the address other nodes see is one of this machine's own.
    case open
    /// The same external port for every destination (endpoint-independent mapping, "cone"):
    /// punching works.
    case consistent
    /// A new external port per destination (symmetric NAT): punching needs the birthday method
    /// or a relay.
    case random
    /// Too few reports yet, or reports that disagree.
    case unknown

    /// Classifies from the DHT's tally (`DHTNode.natType`, which needs three agreeing reports
    /// for `consistent` and three different ports for `random`), the external address it settled
    /// on, and this machine's own IPv4 addresses. An external address that is one of ours means
    /// nothing translates our packets: open, once the reports agree on it.
    public static func classify(dht: NATType, external: PeerAddress?, localIPs: [UInt32]) -> NATKind {
        switch dht {
        case .unknown: return .unknown
        case .random: return .random
        case .consistent:
            if let external, localIPs.contains(external.ip) { return .open }
            return .consistent
        }
    }
}

/// Whether peers on the internet can reach this player over IPv6 (`"ipv6"` in the `nat` event,
/// the lobby screen): IPv6 has no NAT, but homes put a stateful firewall in front of it that
/// drops what was not asked for, which punching opens as it opens a cone NAT (docs/nat.md).
public enum IPv6Reach: String, Sendable, CaseIterable {
    /// An IPv6 datagram came in from an address this socket had not sent to: nothing dropped it.
    case open
    /// A global IPv6 address, and nothing unsolicited has come in (yet): reachable once punched.
    case firewalled
    /// No global IPv6 address, or a socket that does not speak IPv6.
    case none

    public static func classify(socketSpeaksIPv6: Bool, hasGlobalAddress: Bool, unsolicited: UInt64) -> IPv6Reach {
        guard socketSpeaksIPv6, hasGlobalAddress else { return .none }
        return unsolicited > 0 ? .open : .firewalled
    }
}
