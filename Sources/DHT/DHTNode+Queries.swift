import Determinism
import Logging
import NetCore
import Sodium

/// Sending queries: transaction ids, timeouts and retries, the pending table.
extension DHTNode {
    /// A random 4-byte transaction id not used by an outstanding query, so that an off-path
    /// sender cannot guess the next one and forge an answer. From libsodium in production, from
    /// the seeded generator in simulations (which must repeat).
    func newTransaction() -> UInt32 {
        var t: UInt32
        repeat {
            t =
                config.seed != nil
                ? UInt32(truncatingIfNeeded: rng.next() >> 32) : UInt32(truncatingIfNeeded: Sodium.randomU64())
        } while pending[t] != nil
        return t
    }

    func send(_ m: KRPCMessage, to a: PeerAddress) {
        stats.sent += 1
        socket.send(m.encoded(), to: a)
    }

    /// Sends one query; `callback` runs exactly once (unless the node stops). `onSlow` runs if no
    /// answer came within `slowAfter`.
    func query(
        _ q: KRPCQuery,
        to a: PeerAddress,
        expectedID: NodeID? = nil,
        onSlow: (() -> Void)? = nil,
        _ callback: @escaping (QueryOutcome) -> Void
    ) {
        var q = q
        q.readOnly = config.readOnly
        let t = newTransaction()
        let tid: [UInt8] = [UInt8(t >> 24), UInt8((t >> 16) & 0xFF), UInt8((t >> 8) & 0xFF), UInt8(t & 0xFF)]
        var p = Pending(destination: a, expectedID: expectedID, method: q.method, callback: callback, onSlow: onSlow)
        p.sentAt = now
        if onSlow != nil {
            p.slowTimer = scheduler.schedule(after: slowDelay) { [weak self] in
                guard let self, let s = self.pending[t]?.onSlow else { return }
                self.pending[t]?.onSlow = nil
                s()
            }
        }
        p.timeoutTimer = scheduler.schedule(after: config.queryTimeout) { [weak self] in
            guard let self, let p = self.pending.removeValue(forKey: t) else { return }
            p.slowTimer?.cancel()
            self.stats.timeouts += 1
            if let id = p.expectedID,
                let promoted = self.withTable(p.destination.family, { $0.markFailed(id, now: self.now) })
            {
                self.pingPromoted(promoted)
            }
            p.callback(.timeout)
        }
        pending[t] = p
        stats.queriesSent += 1
        send(KRPCMessage(transactionID: tid, body: .query(q), version: config.version), to: a)
    }

    /// A query retried up to `config.retries` times on timeout.
    func queryWithRetries(
        _ q: KRPCQuery,
        to a: PeerAddress,
        expectedID: NodeID? = nil,
        attempt: Int = 0,
        _ callback: @escaping (QueryOutcome) -> Void
    ) {
        query(q, to: a, expectedID: expectedID) { [weak self] outcome in
            if case .timeout = outcome, let self, attempt < self.config.retries {
                self.queryWithRetries(q, to: a, expectedID: expectedID, attempt: attempt + 1, callback)
            } else {
                callback(outcome)
            }
        }
    }

    func ping(_ a: PeerAddress, _ callback: @escaping (QueryOutcome) -> Void) {
        queryWithRetries(KRPCQuery(method: .ping, id: id), to: a, callback)
    }
}
