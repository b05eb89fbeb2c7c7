import Determinism
import Logging
import NetCore
import Sodium

/// The external address and NAT type from the `ip` other nodes report (BEP 42), and the
/// BEP 42 node id adopted for it.
extension DHTNode {
    func recordVote(_ reported: PeerAddress, from voter: PeerAddress) {
        let key = sourceKey(voter)
        if votes[key]?.address == reported {
            // The same voter saying the same again: only its time changes, and the tally below
            // depends on the addresses alone, so it would come out as it did last time.
            votes[key]!.at = now
            return
        }
        votes[key] = (reported, now)
        if votes.count > 64, let oldest = votes.min(by: { $0.value.at < $1.value.at }) { votes[oldest.key] = nil }
        // Majority IP, then classify its ports.
        var byIP: [UInt32: [UInt16]] = [:]
        for (_, v) in votes { byIP[v.address.ip, default: []].append(v.address.port) }
        guard
            let (ip, ports) = byIP.max(by: {
                $0.value.count < $1.value.count || ($0.value.count == $1.value.count && $0.key > $1.key)
            })
        else { return }
        var counts: [UInt16: Int] = [:]
        for p in ports { counts[p, default: 0] += 1 }
        let top = counts.max { $0.value < $1.value || ($0.value == $1.value && $0.key > $1.key) }!
        externalAddress = PeerAddress(ip: ip, port: top.key)
        if ports.count >= 3 {
            if top.value >= 3 && top.value * 3 >= ports.count * 2 {
                natType = .consistent
            } else if top.value == 1 {
                natType = .random
            } else {
                natType = .unknown
            }
        }
        if config.bep42NodeIDs, config.nodeID == nil, ports.count >= 3, ports.count * 2 > votes.count,
            !BEP42.isExempt(ip), !BEP42.isValid(id, for: ip)
        {
            // The tally is re-run on every new vote, and without this a majority that flips
            // between two IPs and back (one stable public address, plus a few voters reporting
            // another) adopted a new id, rebuilt the table and rejoined on every flip.
            if let last = lastIDChange, now &- last < config.minIDChangeInterval {
                stats.idChangesDeferred += 1
            } else {
                adoptID(for: ip)
            }
        }
    }

    func adoptID(for ip: UInt32) {
        var r = rng
        let newID = BEP42.nodeID(for: ip, using: &r)
        rng = r
        let old = table.allEntries
        id = newID
        table = RoutingTable(
            ownID: newID,
            k: config.k,
            restrictIPs: config.restrictIPs,
            maxPerSubnetInBucket: config.maxPerSubnetInBucket,
            now: now
        )
        for e in old { table.insert(e.info, responded: e.lastResponse != nil, now: e.lastSeen) }
        stats.idChanges += 1
        lastIDChange = now
        logger.info("adopted BEP 42 node id \(newID) for external address")
        // A new id is a new place in the network: join it as at start (own id, then the far ranges).
        findNode(newID) { [weak self] r in self?.refreshFarRanges(after: r) }
    }
}
