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
        announceStoring(infoHash, port: port, impliedPort: impliedPort) { completion($0, $1.count) }
    }

    /// `announce`, calling back with the nodes that stored it.
    func announceStoring(
        _ infoHash: NodeID,
        port: UInt16,
        impliedPort: Bool,
        _ completion: @escaping (LookupResult, [NodeInfo]) -> Void
    ) {
        getPeers(infoHash) { [weak self] result in
            guard let self else { return }
            let targets = result.closest.filter { result.tokens[$0] != nil }
            if targets.isEmpty {
                completion(result, [])
                return
            }
            var left = targets.count
            var stored: [NodeInfo] = []
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
                    if case .response = outcome { stored.append(n) }
                    left -= 1
                    if left == 0 { completion(result, stored) }
                }
            }
        }
    }

    /// Announces now and every `reannounceInterval` until `duration` ends (forever if nil). An
    /// announce that stored on no node (bootstrap unreachable yet, say) is retried after 5 s,
    /// doubling, instead of waiting a whole re-announce interval.
    ///
    /// With `keepAlive`, the nodes that stored the announce are pinged that often between
    /// announces: behind a NAT, that keeps the mappings to them open (Linux drops an unanswered
    /// UDP mapping after 30 s), so that they can relay knocks to us (docs/dht.md, "Knocking").
    public func keepAnnouncing(
        _ infoHash: NodeID,
        port: UInt16,
        impliedPort: Bool = true,
        duration: Nanos? = nil,
        keepAlive: Nanos? = nil,
        onEach: ((LookupResult, Int) -> Void)? = nil
    ) {
        scheduler.assertInLoop()
        announcements[infoHash]?.timer?.cancel()
        announcements[infoHash]?.keepAliveTimer?.cancel()
        announcementGeneration &+= 1
        announcements[infoHash] = Announcement(
            port: port,
            impliedPort: impliedPort,
            until: duration.map { now &+ $0 },
            generation: announcementGeneration,
            keepAlive: keepAlive.map { max($0, .seconds(1)) }
        )
        runAnnouncement(infoHash, retry: DHTNode.announceRetry, onEach: onEach)
    }

    public func stopAnnouncing(_ infoHash: NodeID) {
        scheduler.assertInLoop()
        let a = announcements.removeValue(forKey: infoHash)
        a?.timer?.cancel()
        a?.keepAliveTimer?.cancel()
    }

    func runAnnouncement(_ h: NodeID, retry: Nanos, onEach: ((LookupResult, Int) -> Void)?) {
        guard let a = announcements[h], !stopped else { return }
        if let until = a.until, now >= until {
            announcements[h]?.keepAliveTimer?.cancel()
            announcements[h] = nil
            return
        }
        announceStoring(h, port: a.port, impliedPort: a.impliedPort) { [weak self] r, holders in
            onEach?(r, holders.count)
            guard let self, !self.stopped, self.announcements[h]?.generation == a.generation else { return }
            let stored = holders.count
            if !holders.isEmpty {
                self.announcements[h]?.holders = holders
                if a.keepAlive != nil && self.announcements[h]?.keepAliveTimer == nil { self.pingHolders(h) }
            }
            // Failed also when a family with nodes to ask (in its table or among the bootstrap
            // nodes) stored nothing (its DHT answers lookups apart, BEP 32): a dual-stack host
            // whose first IPv6 announce went unanswered must not stay out of the IPv6 DHT until
            // the re-announce interval.
            let missing = self.families.contains { f in
                (self.table(f).count > 0 || self.config.bootstrap.contains { $0.family == f })
                    && !holders.contains { $0.address.family == f }
            }
            let failed = stored == 0 || missing
            let interval = self.config.reannounceInterval
            let delay = failed ? min(retry, interval) : interval
            // Doubling stops at the re-announce interval, so any number of failures cannot overflow it.
            let next = failed ? min(retry > interval / 2 ? interval : retry * 2, interval) : DHTNode.announceRetry
            self.announcements[h]?.timer = self.scheduler.schedule(after: delay) { [weak self] in
                self?.runAnnouncement(h, retry: next, onEach: onEach)
            }
        }
    }

    /// How many nodes stored the last announce of `infoHash` made by `keepAnnouncing` (0 until one did).
    public func announcementHolders(_ infoHash: NodeID) -> Int {
        scheduler.assertInLoop()
        return announcements[infoHash]?.holders.count ?? 0
    }

    /// The nodes holding our announcement of `infoHash`, per family (BEP 32: the IPv6 DHT stores
    /// our IPv6 address, the IPv4 one our IPv4 address).
    public func announcementHoldersByFamily(_ infoHash: NodeID) -> (v4: Int, v6: Int) {
        scheduler.assertInLoop()
        let holders = announcements[infoHash]?.holders ?? []
        let v6 = holders.count { $0.address.isIPv6 }
        return (holders.count - v6, v6)
    }

    /// Pings the nodes that stored the announce of `h`, every `keepAlive`, until it stops.
    func pingHolders(_ h: NodeID) {
        guard let a = announcements[h], let every = a.keepAlive, !stopped else { return }
        announcements[h]?.keepAliveTimer = scheduler.schedule(after: every) { [weak self] in
            guard let self, let a = self.announcements[h], !self.stopped else { return }
            for n in a.holders {
                self.query(KRPCQuery(method: .ping, id: self.id), to: n.address, expectedID: n.id) { _ in }
            }
            self.stats.keepAlivePings += UInt64(a.holders.count)
            self.pingHolders(h)
        }
    }
}
