import Determinism
import NetCore

/// A plain BEP 5 node for simulations at scale (`turf bench internet`): it answers `ping`,
/// `find_node`, `get_peers` and `announce_peer` with real KRPC (the same codec as `DHTNode`, the
/// BEP 42 `ip` key included) and stores announcements, but it knows nothing of turf (its
/// extensions get error 204, method unknown, as from libtorrent), sends no query of its own and
/// has no timer. Its routing table is not its own: `closest` is asked for the nodes it would
/// return, so a simulation can model converged tables without building one per node.
///
/// A testing double that lives here because the KRPC codec is internal to the DHT module; the
/// shipped game never makes one. Confined to the caller's thread.
package struct PlainResponder {
    package let id: NodeID
    /// Announcements: info-hash → peer → when stored. Made on the first announce.
    private var store: [NodeID: [PeerAddress: Nanos]]?
    private let secret: UInt64

    /// BEP 5 expiry of a stored peer (libtorrent: 30 minutes), and the most values in one answer
    /// (64 compact peers and 8 nodes fit a 1024-byte reply). A node keeps at most `maxStored` per info-hash.
    package static let peerLifetime: Nanos = .seconds(1800)
    package static let maxValues = 64
    package static let maxStored = 500
    /// Tokens: a secret rotated every 5 minutes, the previous one accepted too (BEP 5).
    static let tokenEpoch: Nanos = .seconds(300)

    package init(id: NodeID, secret: UInt64) {
        self.id = id
        self.secret = secret
    }

    /// What a plain node answers, counted by the caller.
    package enum Outcome: Equatable {
        case answered, stored, unknownMethod, ignored
    }

    /// Answers `payload` from `source` at `now`: the reply to send back (nil: nothing to send).
    /// `closest(target, family)` gives the nodes this node's table would return for `target`.
    package mutating func answer(
        _ payload: [UInt8],
        from source: PeerAddress,
        now: Nanos,
        closest: (NodeID) -> [NodeInfo]
    ) -> (reply: [UInt8]?, outcome: Outcome) {
        guard let m = try? KRPCMessage.decode(payload), case .query(let q) = m.body else { return (nil, .ignored) }
        let t = m.transactionID
        let version: [UInt8] = Array("LT".utf8) + [1, 2]
        func reply(_ r: KRPCResponse) -> [UInt8] {
            KRPCMessage(transactionID: t, body: .response(r), ip: source, version: version).encoded()
        }
        func fail(_ code: Int, _ message: String) -> [UInt8]? {
            let bytes = KRPCMessage(transactionID: t, body: .error(KRPCErrorBody(code: code, message: message)))
                .encoded()
            return bytes.count <= payload.count ? bytes : nil
        }
        switch q.method {
        case .ping:
            return (reply(KRPCResponse(id: id)), .answered)
        case .findNode:
            guard let target = q.target else { return (fail(KRPCErrorCode.protocolError, "bad query"), .ignored) }
            return (reply(KRPCResponse(id: id, nodes: closest(target))), .answered)
        case .getPeers:
            guard let h = q.infoHash else { return (fail(KRPCErrorCode.protocolError, "bad query"), .ignored) }
            var values: [PeerAddress] = []
            if let peers = store?[h] {
                // A random sample when there are more than fit (as libtorrent answers), drawn
                // from a hash of the query, so a run repeats.
                let salt = StableHash.of(secret, source.sourceKey, UInt64(source.port), now)
                var keyed: [(key: UInt64, peer: PeerAddress)] = []
                for (peer, at) in peers where now &- at < Self.peerLifetime && peer.isIPv6 == source.isIPv6 {
                    keyed.append((StableHash.of(salt, peer.sourceKey, UInt64(peer.port)), peer))
                }
                keyed.sort { a, b in a.key != b.key ? a.key < b.key : a.peer < b.peer }
                values = keyed.prefix(Self.maxValues).map(\.peer)
            }
            let token = self.token(for: source, epoch: now / Self.tokenEpoch)
            let nodes = closest(h)
            return (reply(KRPCResponse(id: id, nodes: nodes, values: values, token: token)), .answered)
        case .announcePeer:
            guard let h = q.infoHash, let token = q.token, let port = q.impliedPort ? source.port : q.port, port != 0
            else { return (fail(KRPCErrorCode.protocolError, "bad query"), .ignored) }
            let epoch = now / Self.tokenEpoch
            guard token == self.token(for: source, epoch: epoch) || token == self.token(for: source, epoch: epoch &- 1)
            else { return (fail(KRPCErrorCode.protocolError, "bad token"), .ignored) }
            var s = store ?? [:]
            var peers = s[h] ?? [:]
            if peers.count >= Self.maxStored { peers = peers.filter { now &- $0.value < Self.peerLifetime } }
            if peers.count < Self.maxStored || peers[source.with(port: port)] != nil {
                peers[source.with(port: port)] = now
            }
            s[h] = peers
            store = s
            return (reply(KRPCResponse(id: id)), .stored)
        default:
            return (fail(KRPCErrorCode.methodUnknown, "Method Unknown"), .unknownMethod)
        }
    }

    /// hash(IP, secret, epoch), 8 bytes: the port does not matter (BEP 5).
    private func token(for source: PeerAddress, epoch: UInt64) -> [UInt8] {
        let h = StableHash.of(secret, source.with(port: 0).sourceKey, epoch)
        return (0..<8).map { UInt8(truncatingIfNeeded: h >> (8 * UInt64($0))) }
    }
}
