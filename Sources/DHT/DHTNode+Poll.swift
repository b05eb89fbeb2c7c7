import NetCore

extension DHTNode {
    /// One `get_peers` query for `infoHash` to each of `nodes`, without a lookup: for nodes known
    /// to store its announcements (the closest a lookup found a moment ago), asked again and
    /// again. `onValues` gets each answer that carries peers, with the node and its token (as
    /// the lookup's `onValues` does); `completion` runs once every query has been answered or
    /// has timed out. A node that is not where it was said to be (its id differs) is ignored.
    public func getPeers(
        _ infoHash: NodeID,
        at nodes: [NodeInfo],
        onValues: @escaping (PeerHolder, [PeerAddress]) -> Void,
        _ completion: @escaping () -> Void
    ) {
        scheduler.assertInLoop()
        var waiting = nodes.count
        guard waiting > 0 else { return completion() }
        for n in nodes {
            let q = KRPCQuery(method: .getPeers, id: id, infoHash: infoHash)
            query(q, to: n.address, expectedID: n.id) { [weak self] outcome in
                defer {
                    waiting -= 1
                    if waiting == 0 { completion() }
                }
                guard let self, case .response(let r, _) = outcome, r.id == n.id, let token = r.token else { return }
                let values = r.values.filter { self.speaks($0.family) }
                self.stats.unreachablePeers += UInt64(r.values.count - values.count)
                if !values.isEmpty { onValues(PeerHolder(node: n, token: token), values) }
            }
        }
    }
}
