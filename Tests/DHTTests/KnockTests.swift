import Determinism
import NetCore
import NetSim
import Testing

@testable import DHT

/// The knock's fast path (docs/dht.md, "Knocking"): `turf_knock` relayed by the nodes that store an
/// announcement to the announcers, as `turf_knocked`; bounded, rate-limited and counted.
@Suite struct KnockTests {
    typealias Probe = NodeTests.Probe
    let me = NodeID(hex: "5500000000000000000000000000000000000000")!

    func config(seed: UInt64) -> DHTConfig {
        var c = DHTConfig()
        c.seed = seed
        return c
    }

    /// One node, `announcers` probes that announced `h` on it, and a token for `knocker`.
    func setUp(
        seed: UInt64,
        announcers n: Int,
        h: NodeID
    ) throws -> (SimNetwork, DHTNode, Probe, [Probe], [UInt8]) {
        let net = SimNetwork(seed: seed, conditions: .perfect)
        let node = DHTNode.alone(on: net.bind(PeerAddress(198, 51, 100, 1, port: 6881)), config: config(seed: seed))
        func token(_ p: Probe, _ t: UInt8) throws -> [UInt8] {
            p.query(KRPCQuery(method: .getPeers, id: me, infoHash: h), t: [t], to: node.localAddress)
            _ = net.run(for: .milliseconds(10))
            guard case .response(let r)? = p.response([t])?.body else { throw Failure.noAnswer }
            return try #require(r.token)
        }
        var announcers: [Probe] = []
        for i in 0..<n {
            let p = Probe(net, PeerAddress(203, 0, 113, UInt8(10 + i), port: 7000))
            let tok = try token(p, 1)
            p.query(
                KRPCQuery(method: .announcePeer, id: me, infoHash: h, impliedPort: true, token: tok),
                t: [2],
                to: node.localAddress
            )
            announcers.append(p)
        }
        _ = net.run(for: .milliseconds(10))
        let knocker = Probe(net, PeerAddress(192, 0, 2, 99, port: 5000))
        return (net, node, knocker, announcers, try token(knocker, 3))
    }

    enum Failure: Error { case noAnswer }

    func knocked(_ p: Probe) -> [KRPCQuery] {
        p.received.compactMap {
            if case .query(let q) = $0.0.body, q.method == .knocked { return q }
            return nil
        }
    }

    func knock(_ h: NodeID, token: [UInt8], blob: [UInt8]) -> KRPCQuery {
        KRPCQuery(method: .knock, id: me, infoHash: h, token: token, extra: [("blob", .bytes(blob))])
    }

    /// A knock reaches every announcer once, with the blob unchanged and the knocker's address as
    /// the node saw it; the knocker learns how many; each forwarded datagram is about the size of
    /// the knock (no amplification beyond one per announcer), and is never answered.
    @Test func aKnockIsRelayedOncePerAnnouncer() throws {
        let h = Topic.infoHash("knock lobby")
        let (net, node, knocker, announcers, tok) = try setUp(seed: 1, announcers: 3, h: h)
        let blob = [UInt8](repeating: 0xAB, count: 100)
        let q = KRPCMessage(transactionID: [9], body: .query(knock(h, token: tok, blob: blob)))
        knocker.send(q, to: node.localAddress)
        _ = net.run(for: .milliseconds(10))
        guard case .response(let r)? = knocker.response([9])?.body else {
            Issue.record("no answer to the knock")
            return
        }
        #expect(r.body["n"]?.intValue == 3)
        for a in announcers {
            let got = knocked(a)
            #expect(got.count == 1)
            #expect(got.first?.args["blob"]?.bytesValue == blob)
            #expect(got.first?.args["src"]?.bytesValue == knocker.socket.localAddress.compact)
            #expect(got.first?.infoHash == h)
        }
        #expect(node.stats.knocksRelayed == 1)
        #expect(node.stats.knocksForwarded == 3)
        // Each forwarded datagram is no more than 16 bytes larger than the knock itself.
        let forwarded = KRPCMessage(
            transactionID: Array("kn".utf8),
            body: .query(
                KRPCQuery(
                    method: .knocked,
                    id: node.id,
                    infoHash: h,
                    extra: [("blob", .bytes(blob)), ("src", .bytes(knocker.socket.localAddress.compact))]
                )
            )
        )
        #expect(forwarded.encoded().count <= q.encoded().count + 16)
        // A knock for an info-hash with no announcers is answered with 0 and forwards nothing.
        knocker.send(
            KRPCMessage(transactionID: [10], body: .query(knock(Topic.infoHash("empty"), token: tok, blob: blob))),
            to: node.localAddress
        )
        _ = net.run(for: .milliseconds(10))
        if case .response(let r0)? = knocker.response([10])?.body { #expect(r0.body["n"]?.intValue == 0) }
        #expect(node.stats.knocksForwarded == 3)
    }

    /// Hostile knocks: no token, a bad token, an oversized blob, a flood from one source, and a
    /// topic with more announcers than the cap. Each is refused or bounded, counted, and the node
    /// keeps relaying well-formed knocks.
    @Test func hostileKnocksAreBoundedAndCounted() throws {
        let h = Topic.infoHash("busy lobby")
        let (net, node, knocker, announcers, tok) = try setUp(seed: 2, announcers: 12, h: h)
        func send(_ q: KRPCQuery, _ t: UInt8) -> KRPCMessage? {
            knocker.send(KRPCMessage(transactionID: [t], body: .query(q)), to: node.localAddress)
            _ = net.run(for: .milliseconds(10))
            return knocker.response([t])
        }
        func forwardedTotal() -> Int { announcers.reduce(0) { $0 + knocked($1).count } }
        // No token: malformed (error 203), nothing forwarded.
        let noToken = KRPCQuery(method: .knock, id: me, infoHash: h, extra: [("blob", .bytes([1, 2, 3]))])
        if case .error(let e)? = send(noToken, 1)?.body { #expect(e.code == 203) } else { Issue.record("no error") }
        // A token issued to another IP.
        if case .error(let e)? = send(knock(h, token: [1, 2, 3, 4, 5, 6, 7, 8], blob: [1]), 2)?.body {
            #expect(e.code == 203)
        } else {
            Issue.record("bad token accepted")
        }
        #expect(node.stats.badTokens == 1)
        // A blob over the limit.
        let big = [UInt8](repeating: 7, count: DHTNode.maxKnockBlob + 1)
        if case .error(let e)? = send(knock(h, token: tok, blob: big), 3)?.body { #expect(e.code == 205) }
        #expect(forwardedTotal() == 0)
        #expect(node.stats.knocksDropped == 2)
        // Twelve announcers: one knock reaches at most `maxKnockForwards`.
        if case .response(let r)? = send(knock(h, token: tok, blob: [1]), 4)?.body {
            #expect(r.body["n"]?.intValue == Int64(DHTNode.maxKnockForwards))
        } else {
            Issue.record("no answer")
        }
        #expect(forwardedTotal() == DHTNode.maxKnockForwards)
        // A flood from one source: the burst (10 knocks, one used above) passes, the rest is dropped.
        for t in 0..<40 { knocker.query(knock(h, token: tok, blob: [2]), t: [100, UInt8(t)], to: node.localAddress) }
        _ = net.run(for: .milliseconds(10))
        #expect(node.stats.knocksRelayed == 10)
        #expect(forwardedTotal() == 10 * DHTNode.maxKnockForwards)
        #expect(node.stats.knocksDropped == 2 + 31)
        // A second later the source may knock again.
        _ = net.run(for: .seconds(1))
        if case .response? = send(knock(h, token: tok, blob: [3]), 5)?.body {} else { Issue.record("still limited") }
        #expect(node.stats.knocksRelayed == 11)
    }

    /// `turf_knocked` reaches the handler registered for its info-hash, is never answered, and one
    /// for another info-hash or with a damaged `src` is dropped and counted.
    @Test func relayedKnocksReachTheHandlerOnly() {
        let net = SimNetwork(seed: 3, conditions: .perfect)
        let host = DHTNode.alone(on: net.bind(PeerAddress(10, 1, 0, 2, port: 4000)), config: config(seed: 3))
        let relay = Probe(net, PeerAddress(198, 51, 100, 11, port: 6881))
        let h = Topic.infoHash("mine")
        var got: [Knock] = []
        host.onKnock(h) { got.append($0) }
        let src = PeerAddress(203, 0, 113, 7, port: 5555)
        func knocked(_ hash: NodeID, src: [UInt8], _ t: UInt8) {
            relay.query(
                KRPCQuery(
                    method: .knocked,
                    id: me,
                    infoHash: hash,
                    extra: [("blob", .bytes([1, 2])), ("src", .bytes(src))]
                ),
                t: [t],
                to: host.localAddress
            )
        }
        knocked(h, src: src.compact, 1)
        knocked(Topic.infoHash("other"), src: src.compact, 2)
        knocked(h, src: [1, 2, 3, 4, 5], 3)
        _ = net.run(for: .milliseconds(10))
        #expect(got == [Knock(infoHash: h, blob: [1, 2], source: src, relay: relay.socket.localAddress)])
        #expect(host.stats.knocksReceived == 1)
        #expect(host.stats.knocksUnclaimed == 1)
        #expect(relay.response([1]) == nil && relay.response([2]) == nil, "never answered")
        // Once the handler is removed, knocks are unclaimed.
        host.onKnock(h, nil)
        knocked(h, src: src.compact, 4)
        _ = net.run(for: .milliseconds(10))
        #expect(got.count == 1)
        #expect(host.stats.knocksUnclaimed == 2)
    }

    /// End to end on a small network: a host announces; a joiner's get_peers lookup names the nodes
    /// that store the announcement, and a knock through them reaches the host's handler with the
    /// joiner's address as source. The host keeps pinging those nodes every `keepAlive`.
    @Test func aJoinerKnocksThroughTheNodesHoldingTheAnnouncement() {
        let (net, nodes) = NodeTests().makeNetwork(20, seed: 30)
        let h = Topic.infoHash("fast lobby")
        let host = nodes[2]
        let joiner = nodes[9]
        var stored = 0
        host.keepAnnouncing(h, port: 9999, keepAlive: .seconds(20)) { _, n in stored = n }
        var knocks: [Knock] = []
        host.onKnock(h) { knocks.append($0) }
        _ = net.run(for: .seconds(5))
        #expect(stored > 0)
        var holders: [PeerHolder] = []
        var relayed: [Int?] = []
        joiner.getPeers(
            h,
            onValues: { holder, values in
                #expect(values.contains(host.localAddress), "implied port: the announcing socket's")
                holders.append(holder)
                joiner.knock(h, blob: [42], via: holder) { relayed.append($0) }
            }
        ) { _ in }
        _ = net.run(for: .seconds(5))
        #expect(!holders.isEmpty)
        #expect(relayed.count == holders.count)
        #expect(relayed.allSatisfy { $0 == 1 })
        #expect(knocks.count == holders.count)
        #expect(knocks.allSatisfy { $0.source == joiner.localAddress && $0.blob == [42] })
        // Keep-alive: every 20 s, one ping per node that stored the announce.
        let before = host.stats.keepAlivePings
        _ = net.run(for: .seconds(61))
        #expect(host.stats.keepAlivePings - before == UInt64(3 * stored))
        host.stopAnnouncing(h)
        let after = host.stats.keepAlivePings
        _ = net.run(for: .seconds(60))
        #expect(host.stats.keepAlivePings == after, "stops with the announcement")
    }

    /// A query the node does not know as a knock would be: other implementations answer 204, and
    /// our decoder insists on each knock message's arguments.
    @Test func knockMessagesRoundTripAndNeedTheirArguments() throws {
        let tok: [UInt8] = [1, 2, 3, 4]
        let q = knock(Topic.infoHash("x"), token: tok, blob: [9, 9])
        let m = KRPCMessage(transactionID: [1], body: .query(q))
        let back = try KRPCMessage.decode(m.encoded())
        guard case .query(let d) = back.body else {
            Issue.record("not a query")
            return
        }
        #expect(d.method == .knock && d.token == tok && d.args["blob"]?.bytesValue == [9, 9])
        #expect(KRPCMethod(name: "turf_knocked") == .knocked)
        let noBlob = KRPCMessage(
            transactionID: [2],
            body: .query(KRPCQuery(method: .knock, id: me, infoHash: Topic.infoHash("x"), token: tok))
        )
        #expect(throws: KRPCDecodeError.self) { try KRPCMessage.decode(noBlob.encoded()) }
        let noSrc = KRPCMessage(
            transactionID: [3],
            body: .query(
                KRPCQuery(method: .knocked, id: me, infoHash: Topic.infoHash("x"), extra: [("blob", .bytes([]))])
            )
        )
        #expect(throws: KRPCDecodeError.self) { try KRPCMessage.decode(noSrc.encoded()) }
    }
}
