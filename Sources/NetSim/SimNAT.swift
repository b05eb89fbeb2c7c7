import Determinism
import NetCore

/// A NAT or stateful firewall between some hosts of a `SimNetwork` and everyone else, in the
/// terms of RFC 4787: how it maps (which external port an inside socket gets, per destination)
/// and how it filters (what it lets in to a mapping). Attach with `SimNetwork.attach(_:inside:)`.
///
/// - **consistent** (endpoint-independent mapping): one external port per inside socket, whatever
///   the destination; the usual home router (and Linux's `MASQUERADE`, which keeps the port when
///   it is free).
/// - **random** (address-and-port-dependent mapping, "symmetric"): a new external port per
///   destination; common on mobile and carrier-grade NATs.
/// - **cgnat**: a carrier-grade NAT: many subscribers share a few public IPs, and it does not
///   hairpin (a datagram from inside to one of its own public addresses is dropped).
/// - **firewall**: no translation (IPv6: every host has a global address) but the same stateful
///   filter, so nothing comes in that was not asked for (RFC 6092).
///
/// A mapping expires when nothing went out through it for `timeout` (RFC 4787 REQ-5 asks for at
/// least 2 minutes; many home routers use 30–60 s for UDP); only outbound traffic refreshes it
/// (REQ-6). Confined to the network's thread, like the network.
package final class SimNAT {
    package enum Mapping: Sendable, Equatable {
        /// Endpoint-independent: one external port per inside socket.
        case endpointIndependent
        /// Address-and-port-dependent: a new external port per destination.
        case addressAndPortDependent
        /// No translation (a stateful firewall only).
        case none
    }

    package enum Filtering: Sendable, Equatable {
        /// Anything may reach a mapping ("full cone").
        case endpointIndependent
        /// Only IPs the mapping has sent to ("restricted cone").
        case addressDependent
        /// Only the exact addresses the mapping has sent to ("port-restricted").
        case addressAndPortDependent
    }

    package struct Stats: Sendable, Equatable {
        package var mappingsCreated = 0
        package var mappingsExpired = 0
        /// Inbound datagrams with no mapping, or that its filter refused.
        package var filtered = 0
        /// Datagrams from inside to one of our own public addresses, dropped (no hairpinning).
        package var hairpinDropped = 0
        package var hairpinned = 0
    }

    package let mapping: Mapping
    package let filtering: Filtering
    package let hairpin: Bool
    package let timeout: Nanos
    /// The public IPs (IPv4) this NAT maps to; a subscriber gets one by its inside address.
    package let publicIPs: [UInt32]
    package private(set) var stats = Stats()

    /// One external endpoint and what may come in to it.
    private struct Binding {
        var inside: PeerAddress
        var lastOut: Nanos
        /// Whom it has sent to (for the filter).
        var peers: Set<PeerAddress> = []
        var peerIPs: Set<UInt32> = []
    }

    private struct Key: Hashable {
        var inside: PeerAddress
        /// nil for an endpoint-independent mapping.
        var destination: PeerAddress?
    }

    private var external: [Key: PeerAddress] = [:]
    private var bindings: [PeerAddress: Binding] = [:]
    private var rng: SplitMix64

    package init(
        mapping: Mapping,
        filtering: Filtering,
        hairpin: Bool = true,
        timeout: Nanos = .seconds(120),
        publicIPs: [UInt32],
        seed: UInt64
    ) {
        precondition(mapping == .none || !publicIPs.isEmpty, "a NAT needs a public address")
        self.mapping = mapping
        self.filtering = filtering
        self.hairpin = hairpin
        self.timeout = timeout
        self.publicIPs = publicIPs
        rng = SplitMix64(seed: seed, stream: 0x4A7)
    }

    /// A home router: endpoint-independent mapping, port-restricted filtering, hairpinning.
    package static func consistent(publicIP: UInt32, seed: UInt64, timeout: Nanos = .seconds(120)) -> SimNAT {
        SimNAT(
            mapping: .endpointIndependent,
            filtering: .addressAndPortDependent,
            timeout: timeout,
            publicIPs: [publicIP],
            seed: seed
        )
    }

    /// A symmetric NAT: a new port per destination, port-restricted filtering.
    package static func random(publicIP: UInt32, seed: UInt64, timeout: Nanos = .seconds(120)) -> SimNAT {
        SimNAT(
            mapping: .addressAndPortDependent,
            filtering: .addressAndPortDependent,
            timeout: timeout,
            publicIPs: [publicIP],
            seed: seed
        )
    }

    /// A carrier-grade NAT shared by many subscribers over `publicIPs`: a new port per
    /// destination, port-restricted filtering, no hairpinning.
    package static func cgnat(publicIPs: [UInt32], seed: UInt64, timeout: Nanos = .seconds(120)) -> SimNAT {
        SimNAT(
            mapping: .addressAndPortDependent,
            filtering: .addressAndPortDependent,
            hairpin: false,
            timeout: timeout,
            publicIPs: publicIPs,
            seed: seed
        )
    }

    /// An IPv6 home gateway's stateful firewall: no translation, nothing in that was not asked for.
    package static func firewall(seed: UInt64, timeout: Nanos = .seconds(120)) -> SimNAT {
        SimNAT(mapping: .none, filtering: .addressAndPortDependent, timeout: timeout, publicIPs: [], seed: seed)
    }

    /// The public IP a subscriber at `inside` goes out from (stable per subscriber).
    package func publicIP(for inside: PeerAddress) -> UInt32 {
        publicIPs.count == 1 ? publicIPs[0] : publicIPs[Int(StableHash.of(UInt64(inside.ip)) % UInt64(publicIPs.count))]
    }

    /// The external endpoint a datagram from `inside` to `destination` leaves from (making or
    /// refreshing its mapping).
    func outbound(from inside: PeerAddress, to destination: PeerAddress, now: Nanos) -> PeerAddress {
        let key = Key(inside: inside, destination: mapping == .addressAndPortDependent ? destination : nil)
        var ext: PeerAddress
        if mapping == .none {
            ext = inside
        } else if let e = external[key], let b = bindings[e], b.inside == inside, now &- b.lastOut < timeout {
            ext = e
        } else {
            if let e = external[key], bindings[e]?.inside == inside {
                bindings[e] = nil
                stats.mappingsExpired += 1
            }
            ext = allocate(for: inside)
            external[key] = ext
            stats.mappingsCreated += 1
        }
        var b =
            bindings[ext].flatMap { $0.inside == inside && now &- $0.lastOut < timeout ? $0 : nil }
            ?? Binding(inside: inside, lastOut: now)
        b.lastOut = now
        b.peers.insert(destination)
        b.peerIPs.insert(destination.ip)
        bindings[ext] = b
        return ext
    }

    /// The inside address a datagram from `source` to our `external` endpoint goes to, or nil
    /// when there is no live mapping or the filter refuses it.
    func inbound(from source: PeerAddress, to external: PeerAddress, now: Nanos) -> PeerAddress? {
        guard let b = bindings[external] else {
            stats.filtered += 1
            return nil
        }
        guard now &- b.lastOut < timeout else {
            bindings[external] = nil
            stats.mappingsExpired += 1
            stats.filtered += 1
            return nil
        }
        let allowed: Bool
        switch filtering {
        case .endpointIndependent: allowed = true
        case .addressDependent: allowed = b.peerIPs.contains(source.ip)
        case .addressAndPortDependent: allowed = b.peers.contains(source)
        }
        guard allowed else {
            stats.filtered += 1
            return nil
        }
        return b.inside
    }

    /// Whether `address` is one of this NAT's public IPs (a hairpin candidate).
    func owns(_ address: PeerAddress) -> Bool { !address.isIPv6 && publicIPs.contains(address.ip) }

    func countHairpin(dropped: Bool) {
        if dropped { stats.hairpinDropped += 1 } else { stats.hairpinned += 1 }
    }

    /// A fresh external endpoint: the inside port when free (port preservation) for an
    /// endpoint-independent mapping, else a random free port above 1024.
    private func allocate(for inside: PeerAddress) -> PeerAddress {
        let ip = publicIP(for: inside)
        if mapping == .endpointIndependent {
            let same = PeerAddress(ip: ip, port: inside.port)
            if bindings[same] == nil { return same }
        }
        while true {
            let port = UInt16(1024 + rng.below(UInt64(65536 - 1024)))
            let a = PeerAddress(ip: ip, port: port)
            if bindings[a] == nil { return a }
        }
    }

    /// Mappings alive (for tests and reports).
    package var mappingCount: Int { bindings.count }
}

extension SimNetwork {
    /// Puts the hosts at the IPs of `inside` (any port) behind `nat`: their datagrams to hosts
    /// outside it are translated, and datagrams to its public addresses are filtered and
    /// translated back. Hosts behind the same NAT reach each other directly (a LAN).
    package func attach(_ nat: SimNAT, inside: [PeerAddress]) {
        for a in inside { natInside[a.with(port: 0)] = nat }
        for ip in nat.publicIPs { natPublic[PeerAddress(ip: ip, port: 0)] = nat }
        // A firewall's inside addresses are its public ones.
        if nat.mapping == .none { for a in inside { natPublic[a.with(port: 0)] = nat } }
    }

    /// The NAT `address` is behind, if any.
    package func nat(of address: PeerAddress) -> SimNAT? { natInside[address.with(port: 0)] }
}
