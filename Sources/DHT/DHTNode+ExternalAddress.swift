import Determinism
import Logging
import NetCore
import Sodium

/// The addresses other nodes report seeing us at (BEP 42 `ip`), for one address family: one vote
/// per responder (`dhtSourceKey`: per IPv4 address or IPv6 /64; per address and port on
/// loopback), the newest 64 kept. The majority IP and its most reported port are the external
/// address; how the ports spread tells the NAT's kind.
struct AddressVotes {
    private(set) var votes: [UInt64: (address: PeerAddress, at: Nanos)] = [:]
    private(set) var address: PeerAddress?
    private(set) var natType: NATType = .unknown
    /// Responders behind the majority IP, once it is one (for the BEP 42 id decision).
    private(set) var majority = 0

    /// Records one vote; returns false if it changed nothing (the same voter saying the same).
    mutating func record(_ reported: PeerAddress, voter key: UInt64, now: Nanos) -> Bool {
        if votes[key]?.address == reported {
            // The same voter saying the same again: only its time changes, and the tally below
            // depends on the addresses alone, so it would come out as it did last time.
            votes[key]!.at = now
            return false
        }
        votes[key] = (reported, now)
        if votes.count > 64, let oldest = votes.min(by: { $0.value.at < $1.value.at }) { votes[oldest.key] = nil }
        // Majority IP, then classify its ports. IPs compare as addresses with port 0.
        var byIP: [PeerAddress: [UInt16]] = [:]
        for (_, v) in votes { byIP[v.address.with(port: 0), default: []].append(v.address.port) }
        guard
            let (ip, ports) = byIP.max(by: {
                $0.value.count < $1.value.count || ($0.value.count == $1.value.count && $0.key > $1.key)
            })
        else { return true }
        var counts: [UInt16: Int] = [:]
        for p in ports { counts[p, default: 0] += 1 }
        let top = counts.max { $0.value < $1.value || ($0.value == $1.value && $0.key > $1.key) }!
        address = ip.with(port: top.key)
        majority = ports.count
        if ports.count >= 3 {
            if top.value >= 3 && top.value * 3 >= ports.count * 2 {
                natType = .consistent
            } else if top.value == 1 {
                natType = .random
            } else {
                natType = .unknown
            }
        }
        return true
    }

    /// Whether the majority IP is settled enough to take an id from: at least 3 responders, and
    /// more than half of all votes.
    var isDecisive: Bool { majority >= 3 && majority * 2 > votes.count }
}

/// The external address and NAT type from the `ip` other nodes report (BEP 42), per family, and
/// the BEP 42 node id adopted for it.
extension DHTNode {
    /// One report of our address, by `voter`. A report of the other family than the voter's (an
    /// IPv4 node cannot see our IPv6 address, nor the reverse) is dropped and counted.
    func recordVote(_ reported: PeerAddress, from voter: PeerAddress) {
        guard reported.family == voter.family else {
            stats.ipFamilyMismatches += 1
            return
        }
        let changed: Bool
        switch voter.family {
        case .v4: changed = votes.record(reported, voter: voter.dhtSourceKey, now: now)
        case .v6: changed = votes6.record(reported, voter: voter.dhtSourceKey, now: now)
        }
        if changed { considerID() }
    }

    /// BEP 42: one id for both tables (BEP 32 asks for the same id in both DHTs), so it can match
    /// one family's address only. An id that matches the decided public address of either family
    /// is kept; otherwise the node adopts one for the family whose tally just settled, IPv4 first
    /// when both have. So a node never changes ids to move from one family's match to the other's.
    func considerID() {
        guard config.bep42NodeIDs, config.nodeID == nil else { return }
        let decided = [votes, votes6].filter(\.isDecisive).compactMap(\.address).filter { !BEP42.isExempt($0) }
        guard let first = decided.first, !decided.contains(where: { BEP42.isValid(id, for: $0) }) else { return }
        // The tally is re-run on every new vote, and without this a majority that flips
        // between two IPs and back (one stable public address, plus a few voters reporting
        // another) adopted a new id, rebuilt the table and rejoined on every flip.
        if let last = lastIDChange, now &- last < config.minIDChangeInterval {
            stats.idChangesDeferred += 1
        } else {
            adoptID(for: first)
        }
    }

    func adoptID(for address: PeerAddress) {
        var r = rng
        let newID = BEP42.nodeID(for: address, using: &r)
        rng = r
        let old = table.allEntries + table6.allEntries
        id = newID
        table = RoutingTable(
            ownID: newID,
            family: .v4,
            k: config.k,
            restrictIPs: config.restrictIPs,
            maxPerSubnetInBucket: config.maxPerSubnetInBucket,
            now: now
        )
        table6 = RoutingTable(
            ownID: newID,
            family: .v6,
            k: config.k,
            restrictIPs: config.restrictIPs,
            maxPerSubnetInBucket: config.maxPerSubnetInBucket,
            now: now
        )
        for e in old {
            withTable(e.info.address.family) { $0.insert(e.info, responded: e.lastResponse != nil, now: e.lastSeen) }
        }
        stats.idChanges += 1
        lastIDChange = now
        logger.info("adopted BEP 42 node id \(newID) for external address")
        // A new id is a new place in the network: join it as at start (own id, then the far
        // ranges), in every family.
        let l = FamilyLookups(node: self, target: newID, kind: .findNode, families: families) {
            [weak self] _, perFamily in
            for (f, result) in perFamily { self?.refreshFarRanges(after: result, family: f) }
        }
        l.crossFeed = true
        l.start()
    }
}
