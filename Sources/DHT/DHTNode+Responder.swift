import Bencode
import Determinism
import Logging
import NetCore
import Sodium

/// Answering queries (BEP 5, BEP 44), within the rate limit, never larger than needed.
extension DHTNode {
    /// Answers one decoded query from `source` (`requestSize` bytes), by its typed method.
    func handleQuery(_ q: KRPCQuery, transactionID t: [UInt8], from source: PeerAddress, requestSize: Int) {
        if config.readOnly {
            stats.queriesIgnoredReadOnly += 1
            return
        }
        guard rateLimiter.allow(sourceKey(source), now: now) else {
            stats.rateLimited += 1
            return
        }
        func reply(_ r: KRPCResponse) {
            stats.queriesAnswered += 1
            send(KRPCMessage(transactionID: t, body: .response(r), ip: source, version: config.version), to: source)
        }
        // An error reply is never larger than the query it answers (no amplification): with
        // `ip` and `v` if it fits, else without them, else not at all.
        func fail(_ code: Int, _ msg: String) {
            let body = KRPCMessage.Body.error(KRPCErrorBody(code: code, message: msg))
            var bytes = KRPCMessage(transactionID: t, body: body, ip: source, version: config.version).encoded()
            if bytes.count > requestSize { bytes = KRPCMessage(transactionID: t, body: body).encoded() }
            guard bytes.count <= requestSize else {
                stats.errorsSuppressed += 1
                return
            }
            stats.errorsSent += 1
            stats.sent += 1
            socket.send(bytes, to: source)
        }
        // The decoder checks each method's arguments; a query without them never gets here, and
        // would be answered as malformed if one did.
        func malformed() {
            stats.malformed += 1
            fail(KRPCErrorCode.protocolError, DHTNode.malformedMessage)
        }
        // A query we cannot answer says nothing about its sender worth a ping: only the senders
        // of queries we know are verified for the table (a ping to an unknown sender would be
        // unsolicited traffic, and larger than what it answers).
        if case .unknown = q.method {
            stats.unknownMethods += 1
            fail(KRPCErrorCode.methodUnknown, "method unknown")
            return
        }
        if !q.readOnly { heardFrom(NodeInfo(id: q.id, address: source)) }
        switch q.method {
        case .ping:
            reply(KRPCResponse(id: id))
        case .findNode:
            guard let target = q.target else { return malformed() }
            let (nodes, nodes6) = closestNodes(to: target, want: q.want, from: source)
            reply(KRPCResponse(id: id, nodes: nodes, nodes6: nodes6))
        case .getPeers:
            guard let h = q.infoHash else { return malformed() }
            // BEP 32: peers of the requester's family only, whatever it wants of nodes (6-byte
            // values over IPv4, 18-byte over IPv6); IPv6 ones a quarter as many, as libtorrent.
            // And no more than fit the answer in 1024 bytes (BEP 32's limit, which only an IPv4
            // requester that wants both families' nodes of a busy topic comes near).
            let f = source.family
            let (nodes, nodes6) = closestNodes(to: h, want: q.want, from: source)
            let sizing = [UInt8](repeating: 0, count: TokenIssuer.tokenLength)  // every token's length
            let bare = KRPCMessage(
                transactionID: t,
                body: .response(KRPCResponse(id: id, nodes: nodes, nodes6: nodes6, token: sizing)),
                ip: source,
                version: config.version
            ).encoded().count
            // Each value costs its compact form and a length prefix; the key and list 10 bytes.
            let room = max(0, DHTNode.maxReply - bare - 10) / (f == .v4 ? 8 : 21)
            var r = rng
            let values = store.peers(
                for: h,
                family: f,
                now: now,
                max: min(room, f == .v4 ? config.maxValuesPerResponse : config.maxValuesPerResponse / 4),
                using: &r
            )
            rng = r
            reply(KRPCResponse(id: id, nodes: nodes, nodes6: nodes6, values: values, token: issueToken(for: source)))
        case .announcePeer:
            guard let h = q.infoHash, let token = q.token, let port = q.impliedPort ? source.port : q.port else {
                return malformed()
            }
            guard tokenIsValid(token, for: source) else {
                stats.badTokens += 1
                fail(KRPCErrorCode.protocolError, "bad token")
                return
            }
            guard port != 0 else {
                fail(KRPCErrorCode.protocolError, "port 0")
                return
            }
            var r = rng
            // BEP 32: the announcer's own address, so an announce over IPv6 stores an IPv6 peer.
            let added = store.add(source.with(port: port), for: h, now: now, using: &r)
            rng = r
            stats.peersStored += 1
            if added == .storedEvicting { stats.peersEvicted += 1 }
            reply(KRPCResponse(id: id))
        case .get:
            guard let target = q.target else { return malformed() }
            var extra: [(String, BValue)] = []
            if let item = items.get(target, now: now) {
                switch item {
                case .immutable(let v):
                    extra.append(("v", v))
                case .mutable(let m):
                    extra.append(("seq", .int(m.seq)))
                    // A getter that already has this seq (or newer) needs only the number.
                    if !(q.args["seq"]?.intValue.map { $0 >= m.seq } ?? false) {
                        extra += [("k", .bytes(m.publicKey)), ("sig", .bytes(m.signature)), ("v", m.value)]
                    }
                }
            }
            let (nodes, nodes6) = closestNodes(to: target, want: q.want, from: source)
            reply(KRPCResponse(id: id, nodes: nodes, nodes6: nodes6, token: issueToken(for: source), extra: extra))
        case .put:
            guard let token = q.token, let v = q.args["v"] else { return malformed() }
            guard tokenIsValid(token, for: source) else {
                stats.badTokens += 1
                fail(KRPCErrorCode.protocolError, "bad token")
                return
            }
            guard Bencode.encode(v).count <= DHTItem.maxValueSize else {
                stats.itemsRejected += 1
                fail(KRPCErrorCode.messageTooBig, "message (v field) too big")
                return
            }
            let item: DHTItem
            if let k = q.args["k"]?.bytesValue {
                let salt = q.args["salt"]?.bytesValue ?? []
                guard salt.count <= DHTItem.maxSaltSize else {
                    stats.itemsRejected += 1
                    fail(KRPCErrorCode.saltTooBig, "salt (salt field) too big")
                    return
                }
                guard let sig = q.args["sig"]?.bytesValue, let seq = q.args["seq"]?.intValue else {
                    stats.itemsRejected += 1
                    fail(KRPCErrorCode.protocolError, "mutable put needs sig and seq")
                    return
                }
                let m = MutableItem(publicKey: k, salt: salt, seq: seq, value: v, signature: sig)
                guard m.isValid else {
                    stats.itemsRejected += 1
                    fail(KRPCErrorCode.invalidSignature, "invalid signature")
                    return
                }
                if case .mutable(let old)? = items.get(m.target, now: now) {
                    if let cas = q.args["cas"]?.intValue, cas != old.seq {
                        stats.itemsRejected += 1
                        fail(KRPCErrorCode.casMismatch, "CAS mismatch, re-read value and try again")
                        return
                    }
                    if seq < old.seq {
                        stats.itemsRejected += 1
                        fail(KRPCErrorCode.sequenceTooLow, "sequence number less than current")
                        return
                    }
                }
                item = .mutable(m)
            } else {
                item = .immutable(v)
            }
            guard items.put(item, now: now) else {
                stats.itemsRejected += 1
                fail(KRPCErrorCode.server, "item store full")
                return
            }
            stats.itemsStored += 1
            reply(KRPCResponse(id: id))
        case .knock:
            relayKnock(q, from: source, reply: reply, fail: fail)
        case .knocked:
            deliverKnock(q, from: source)
        case .unknown:
            return  // answered above
        }
    }

    /// The closest nodes an answer carries (BEP 32): those of the families in `want` (`n4`:
    /// `nodes`, `n6`: `nodes6`), or without `want` those of the family the query came over.
    /// A node that does not reach a family has none of it to give.
    func closestNodes(
        to target: NodeID,
        want: Set<AddressFamily>?,
        from source: PeerAddress
    ) -> (nodes: [NodeInfo], nodes6: [NodeInfo]) {
        let wanted = want ?? [source.family]
        let v4 = wanted.contains(.v4) ? table.closest(to: target, count: config.k, now: now) : []
        let v6 = wanted.contains(.v6) ? table6.closest(to: target, count: config.k, now: now) : []
        return (v4, v6)
    }
}
