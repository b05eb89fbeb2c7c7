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
