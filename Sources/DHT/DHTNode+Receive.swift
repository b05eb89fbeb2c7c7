import Determinism
import Logging
import NetCore
import Sodium

/// Receiving: every datagram is parsed here; answers are matched to their queries, and the
/// routing table learns from who answers and who asks.
extension DHTNode {
    /// Handles one datagram from `source`. Anything malformed is counted and dropped (a malformed
    /// query with a transaction id is answered with error 203).
    public func receive(_ payload: [UInt8], from source: PeerAddress) {
        scheduler.assertInLoop()
        guard !stopped else { return }
        stats.received += 1
        guard payload.count <= config.maxDatagram else {
            stats.oversized += 1
            return
        }
        let m: KRPCMessage
        do {
            m = try KRPCMessage.decode(payload)
        } catch {
            stats.malformed += 1
            // Answer only plausible queries, within the rate limit, with a short fixed message and
            // no larger than the query (no `ip`, no `v`), so that garbage cannot be turned into a
            // reflection flood nor learn anything about the parser.
            if let t = error.transactionID, payload.count > 12, !config.readOnly, isQuery(payload) {
                let reply = KRPCMessage(
                    transactionID: t,
                    body: .error(
                        KRPCErrorBody(
                            code: KRPCErrorCode.protocolError,
                            message: DHTNode.malformedMessage
                        )
                    )
                ).encoded()
                if reply.count <= payload.count, rateLimiter.allow(sourceKey(source), now: now) {
                    stats.errorsSent += 1
                    stats.sent += 1
                    socket.send(reply, to: source)
                }
            }
            return
        }
        switch m.body {
        case .query(let q): handleQuery(q, transactionID: m.transactionID, from: source, requestSize: payload.count)
        case .response(let r): handleReply(m, outcome: .response(r, from: source), from: source, responderID: r.id)
        case .error(let e): handleReply(m, outcome: .error(e), from: source, responderID: nil)
        }
    }

    func isQuery(_ payload: [UInt8]) -> Bool {
        // "1:y1:q" appears in every query; cheap test without a parse.
        let needle = Array("1:y1:q".utf8)
        guard payload.count >= needle.count else { return false }
        for i in 0...(payload.count - needle.count) where payload[i] == needle[0] {
            if Array(payload[i..<(i + needle.count)]) == needle { return true }
        }
        return false
    }

    /// Per-source limits count per IPv4 address or IPv6 /64 (per address and port on loopback).
    func sourceKey(_ a: PeerAddress) -> UInt64 { a.dhtSourceKey }

    func handleReply(_ m: KRPCMessage, outcome: QueryOutcome, from source: PeerAddress, responderID: NodeID?) {
        guard m.transactionID.count == 4 else {
            stats.unexpectedResponses += 1
            return
        }
        let t = m.transactionID.reduce(UInt32(0)) { $0 << 8 | UInt32($1) }
        guard let p = pending[t], p.destination == source else {
            stats.unexpectedResponses += 1
            return
        }
        pending[t] = nil
        p.slowTimer?.cancel()
        p.timeoutTimer?.cancel()
        switch outcome {
        case .response(let r, _):
            stats.responses += 1
            stats.droppedNodeEntries += UInt64(r.droppedNodes)
            let rtt = now &- p.sentAt
            smoothedRTT = smoothedRTT == 0 ? rtt : (smoothedRTT * 7 + rtt) / 8
            if let rid = responderID {
                if let e = p.expectedID, e != rid, let promoted = withTable(source.family, { $0.remove(e) }) {
                    pingPromoted(promoted)
                }
                if let ip = m.ip { recordVote(ip, from: source) }
                noteNode(NodeInfo(id: rid, address: source), responded: true)
            }
        case .error:
            stats.errorsReceived += 1
        case .timeout:
            break
        }
        p.callback(outcome)
    }

    /// A node moved from a replacement cache into the table may be gone: check it.
    func pingPromoted(_ n: NodeInfo) {
        guard !stopped else { return }
        query(KRPCQuery(method: .ping, id: id), to: n.address, expectedID: n.id) { _ in }
    }

    func noteNode(_ n: NodeInfo, responded: Bool) {
        let r = withTable(n.address.family) { $0.insert(n, responded: responded, now: now) }
        if case .cached(ping: let q?) = r {
            // Make room if the questionable node is gone; `query` marks it failed on timeout.
            query(KRPCQuery(method: .ping, id: id), to: q.address, expectedID: q.id) { _ in }
        }
    }

    /// A node queried us. Known nodes are refreshed; an unknown one is pinged first and enters
    /// the table only when it answers from that address, so spoofed queries cannot fill it.
    func heardFrom(_ n: NodeInfo) {
        let f = n.address.family
        if let e = table(f).entry(for: n.id) {
            if e.info.address == n.address { withTable(f) { $0.insert(n, responded: false, now: now) } }
            return
        }
        guard verifying.count < config.maxVerifications, !verifying.contains(n.address),
            n.id != id, n.address.port != 0, table(f).hasRoom(for: n.id, now: now)
        else { return }
        verifying.insert(n.address)
        query(KRPCQuery(method: .ping, id: id), to: n.address, expectedID: n.id) { [weak self] _ in
            self?.verifying.remove(n.address)
        }
    }
}
