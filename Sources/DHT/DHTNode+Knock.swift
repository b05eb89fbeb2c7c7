import NetCore

/// A knock that a DHT node relayed to us (docs/dht.md, "Knocking"): the knocker's blob (opaque
/// here), the knocker's address as the relaying node saw it, and the relaying node.
public struct Knock: Sendable, Equatable {
    public let infoHash: NodeID
    public let blob: [UInt8]
    public let source: PeerAddress
    public let relay: PeerAddress
}

/// A node that answered a get_peers lookup with peers, so it stores their announcements, and the
/// token it gave us (a knock must carry it, which binds the knock to our IP address).
public struct PeerHolder: Hashable, Sendable {
    public let node: NodeInfo
    let token: [UInt8]
    /// The token's length: an answer's size is bounded below by it (the knock watcher's budget).
    public var tokenLength: Int { token.count }
}

/// Knocking (docs/dht.md): a joiner asks the nodes that store a host's announcement to pass a
/// small blob on to the host. Those nodes already have a live NAT mapping to the host (it
/// announced to them from its one socket, and keeps pinging them), so the relayed datagram gets
/// through the host's NAT where the joiner's own would be dropped.
///
/// `turf_knock` (joiner → holder): `{id, info_hash, token, blob}`, the token from the holder's
/// get_peers answer. Answered with `{id, n}`, the number of announcers it was relayed to.
/// `turf_knocked` (holder → each announcer): `{id, info_hash, blob, src}`, `src` the knocker's
/// compact address as the holder saw it (6 bytes, or 18 for an IPv6 knocker); never answered. Other implementations answer
/// `turf_knock` with error 204 and never send `turf_knocked`.
///
/// Bounds: a blob of at most `maxKnockBlob` bytes; at most `maxKnockForwards` announcers per knock
/// (each gets one datagram about the size of the knock); knocks per source IP (5/s, burst 10) and
/// per info-hash (20/s) on top of the general query rate; a token bound to the knocker's IP, so
/// `src` is an address that can receive. Everything refused is counted (`stats.knocksDropped`).
extension DHTNode {
    public static let maxKnockBlob = 200
    public static let maxKnockForwards = 8

    /// Asks `holder` to relay `blob` to the announcers of `infoHash` it stores. Calls back once with
    /// the number of announcers it relayed to, or nil (an error, such as 204 from a node that is
    /// not turf's, or no answer).
    public func knock(
        _ infoHash: NodeID,
        blob: [UInt8],
        via holder: PeerHolder,
        _ completion: @escaping (Int?) -> Void
    ) {
        scheduler.assertInLoop()
        guard blob.count <= Self.maxKnockBlob else { return completion(nil) }
        let q = KRPCQuery(
            method: .knock,
            id: id,
            infoHash: infoHash,
            token: holder.token,
            extra: [("blob", .bytes(blob))]
        )
        query(q, to: holder.node.address, expectedID: holder.node.id) { outcome in
            if case .response(let r, _) = outcome, let n = r.body["n"]?.intValue {
                completion(Int(clamping: n))
            } else {
                completion(nil)
            }
        }
    }

    /// Hands every knock relayed to us for `infoHash` to `handler` (nil: stop).
    public func onKnock(_ infoHash: NodeID, _ handler: ((Knock) -> Void)?) {
        scheduler.assertInLoop()
        knockHandlers[infoHash] = handler
    }

    /// A `turf_knock` query: relays its blob to the announcers this node stores for the info-hash.
    func relayKnock(
        _ q: KRPCQuery,
        from source: PeerAddress,
        reply: (KRPCResponse) -> Void,
        fail: (Int, String) -> Void
    ) {
        // The decoder checked that these are present.
        guard let h = q.infoHash, let token = q.token, let blob = q.args["blob"]?.bytesValue else { return }
        guard blob.count <= Self.maxKnockBlob else {
            stats.knocksDropped += 1
            return fail(KRPCErrorCode.messageTooBig, "blob too big")
        }
        guard tokenIsValid(token, for: source) else {
            stats.badTokens += 1
            stats.knocksDropped += 1
            return fail(KRPCErrorCode.protocolError, "bad token")
        }
        guard knockSourceLimiter.allow(sourceKey(source), now: now), knockHashLimiter.allow(h.a, now: now) else {
            stats.knocksDropped += 1
            return
        }
        var r = rng
        // Announcers of either family the socket reaches (an announcer over IPv6 is reached there).
        let announcers = store.peers(for: h, now: now, max: Self.maxKnockForwards + 1, using: &r)
            .filter { $0 != source && speaks($0.family) }.prefix(Self.maxKnockForwards)
        rng = r
        let forward = KRPCMessage(
            transactionID: Array("kn".utf8),
            body: .query(
                KRPCQuery(
                    method: .knocked,
                    id: id,
                    infoHash: h,
                    extra: [("blob", .bytes(blob)), ("src", .bytes(source.compact))]
                )
            )
        ).encoded()
        for a in announcers { socket.send(forward, to: a) }
        stats.sent += UInt64(announcers.count)
        stats.knocksRelayed += 1
        stats.knocksForwarded += UInt64(announcers.count)
        reply(KRPCResponse(id: id, extra: [("n", .int(Int64(announcers.count)))]))
    }

    /// A `turf_knocked` datagram: a knock relayed to us. Never answered.
    func deliverKnock(_ q: KRPCQuery, from relay: PeerAddress) {
        guard let h = q.infoHash, let blob = q.args["blob"]?.bytesValue,
            let src = q.args["src"]?.bytesValue.flatMap({ PeerAddress(compact: $0) })
        else { return }
        guard blob.count <= Self.maxKnockBlob, src.port != 0 else {
            stats.knocksDropped += 1
            return
        }
        guard let handler = knockHandlers[h] else {
            stats.knocksUnclaimed += 1
            return
        }
        stats.knocksReceived += 1
        handler(Knock(infoHash: h, blob: blob, source: src, relay: relay))
    }
}
