import Determinism
import Logging
import NetCore
import Sodium

/// Announcing an info-hash, once or again and again (BEP 5 announce_peer with tokens).
extension DHTNode {
    /// Looks `infoHash` up and announces `port` (or, with `impliedPort`, our source port as the
    /// others see it) to the closest nodes that gave us a token. Calls back with the lookup and the
    /// number of nodes that stored the announce.
    public func announce(
        _ infoHash: NodeID,
        port: UInt16,
        impliedPort: Bool = true,
        _ completion: @escaping (LookupResult, Int) -> Void
    ) {
        scheduler.assertInLoop()
        getPeers(infoHash) { [weak self] result in
            guard let self else { return }
            let targets = result.closest.filter { result.tokens[$0] != nil }
            if targets.isEmpty {
                completion(result, 0)
                return
            }
            var left = targets.count
            var stored = 0
            for n in targets {
                let q = KRPCQuery(
                    method: .announcePeer,
                    id: self.id,
                    infoHash: infoHash,
                    port: port,
                    impliedPort: impliedPort,
                    token: result.tokens[n]
                )
                self.queryWithRetries(q, to: n.address, expectedID: n.id) { outcome in
                    if case .response = outcome { stored += 1 }
                    left -= 1
                    if left == 0 { completion(result, stored) }
                }
            }
        }
    }

    /// Announces now and every `reannounceInterval` until `duration` ends (forever if nil). An
    /// announce that stored on no node (bootstrap unreachable yet, say) is retried after 5 s,
    /// doubling, instead of waiting a whole re-announce interval.
    public func keepAnnouncing(
        _ infoHash: NodeID,
        port: UInt16,
        impliedPort: Bool = true,
        duration: Nanos? = nil,
        onEach: ((LookupResult, Int) -> Void)? = nil
    ) {
        scheduler.assertInLoop()
        announcements[infoHash]?.timer?.cancel()
        announcementGeneration &+= 1
        announcements[infoHash] = Announcement(
            port: port,
            impliedPort: impliedPort,
            until: duration.map { now &+ $0 },
            generation: announcementGeneration
        )
        runAnnouncement(infoHash, retry: DHTNode.announceRetry, onEach: onEach)
    }

    public func stopAnnouncing(_ infoHash: NodeID) {
        scheduler.assertInLoop()
        announcements.removeValue(forKey: infoHash)?.timer?.cancel()
    }

    func runAnnouncement(_ h: NodeID, retry: Nanos, onEach: ((LookupResult, Int) -> Void)?) {
        guard let a = announcements[h], !stopped else { return }
        if let until = a.until, now >= until {
            announcements[h] = nil
            return
        }
        announce(h, port: a.port, impliedPort: a.impliedPort) { [weak self] r, stored in
            onEach?(r, stored)
            guard let self, !self.stopped, self.announcements[h]?.generation == a.generation else { return }
            let failed = stored == 0
            let interval = self.config.reannounceInterval
            let delay = failed ? min(retry, interval) : interval
            // Doubling stops at the re-announce interval, so any number of failures cannot overflow it.
            let next = failed ? min(retry > interval / 2 ? interval : retry * 2, interval) : DHTNode.announceRetry
            self.announcements[h]?.timer = self.scheduler.schedule(after: delay) { [weak self] in
                self?.runAnnouncement(h, retry: next, onEach: onEach)
            }
        }
    }
}
