import Bencode
import Determinism
import NetCore
import NetSim
import Testing

@_spi(Fuzzing) @testable import DHT

/// Tests for abuse and robustness fixes: token epochs, announce back-off, transaction ids, error
/// replies to garbage, replacement-cache promotion, lenient key order, saved ids, bootstrap order.
@Suite struct RobustnessTests {
    typealias Probe = NodeTests.Probe

    func config(seed: UInt64) -> DHTConfig {
        var c = DHTConfig()
        c.seed = seed
        return c
    }

    /// Tokens follow the clock, not maintenance: with no maintenance at all, a token from epoch 0
    /// is accepted in epoch 1 and refused from epoch 2 on.
    @Test func tokensExpireByTheClockWithoutMaintenance() throws {
        let net = SimNetwork(seed: 41, conditions: .perfect)
        let node = DHTNode.alone(on: net.bind(PeerAddress(198, 51, 100, 1, port: 6881)), config: config(seed: 41))
        let probe = Probe(net, PeerAddress(203, 0, 113, 5, port: 41000))
        let me = NodeID(hex: "5500000000000000000000000000000000000000")!
        let h = Topic.infoHash("epochs")
        func getToken(_ t: UInt8) throws -> [UInt8] {
            probe.query(KRPCQuery(method: .getPeers, id: me, infoHash: h), t: [t], to: node.localAddress)
            _ = net.run(for: .milliseconds(10))
            var tok: [UInt8]? = nil
            if case .response(let r)? = probe.response([t])?.body { tok = r.token }
            return try #require(tok)
        }
        func announce(_ tok: [UInt8], _ t: UInt8) -> Bool {
            probe.query(
                KRPCQuery(method: .announcePeer, id: me, infoHash: h, port: 7000, token: tok),
                t: [t],
                to: node.localAddress
            )
            _ = net.run(for: .milliseconds(10))
            if case .response? = probe.response([t])?.body { return true }
            return false
        }
        let early = try getToken(1)  // epoch 0
        _ = net.run(for: .seconds(4 * 60))
        #expect(announce(early, 2))
        _ = net.run(for: .seconds(5 * 60))  // 9 min: epoch 1
        #expect(announce(early, 3), "previous epoch still accepted")
        _ = net.run(for: .seconds(90))  // 10.5 min: epoch 2
        #expect(!announce(early, 4), "two epochs old: refused")
        // A gap of many epochs: neither secret from before it survives.
        let before = try getToken(5)  // epoch 2
        _ = net.run(for: .seconds(60 * 60))
        #expect(!announce(before, 6))
        #expect(announce(try getToken(7), 8))
        #expect(node.stats.badTokens == 2)
    }

    @Test func tokenIssuerEpochs() {
        var secrets: UInt8 = 0
        func fresh() -> [UInt8] {
            secrets += 1
            return [UInt8](repeating: secrets, count: 32)
        }
        var t = TokenIssuer(secret: fresh(), previous: fresh(), now: .seconds(299), rotation: .seconds(300))
        func valid(_ tok: [UInt8], _ ip: UInt32, _ at: Nanos) -> Bool {
            t.isValid(tok, for: PeerAddress(ip: ip, port: 1), now: at, fresh: fresh)
        }
        let tok = t.token(for: PeerAddress(ip: 0x0A00_0001, port: 2), now: .seconds(299), fresh: fresh)
        #expect(valid(tok, 0x0A00_0001, .seconds(300)), "next epoch")
        #expect(!valid(tok, 0x0A00_0002, .seconds(300)), "another IP")
        #expect(valid(tok, 0x0A00_0001, .seconds(599)))
        #expect(!valid(tok, 0x0A00_0001, .seconds(600)), "issued 301 s ago but two epochs back")
        let tok2 = t.token(for: PeerAddress(ip: 0x0A00_0001, port: 3), now: .seconds(600), fresh: fresh)
        #expect(!valid(tok2, 0x0A00_0001, .seconds(1200)), "after a gap both secrets are new")
    }

    /// An announcer that never reaches anyone backs off 5 s, 10 s, ... up to the re-announce
    /// interval and stays there, however long it fails (the doubling used to wrap around).
    @Test func announceRetryBackOffIsCapped() {
        let net = SimNetwork(seed: 42, conditions: .perfect)
        var c = config(seed: 42)
        c.bootstrap = [PeerAddress(192, 0, 2, 1, port: 6881)]  // nobody there
        let node = DHTNode.alone(on: net.bind(PeerAddress(198, 51, 100, 1, port: 6881)), config: c)
        var times: [Nanos] = []
        node.keepAnnouncing(Topic.infoHash("alone"), port: 1) { _, stored in
            #expect(stored == 0)
            times.append(net.now)
        }
        _ = net.run(for: .seconds(30 * 3600), maxEvents: 10_000_000)
        let gaps = zip(times, times.dropFirst()).map { $1 - $0 }
        let interval = c.reannounceInterval
        #expect(times.count > 100 && times.count < 130, "\(times.count) attempts in 30 h")
        #expect(gaps.allSatisfy { $0 <= interval + .seconds(10) })
        #expect(gaps.suffix(80).allSatisfy { $0 >= interval }, "stays at the interval")
        #expect(zip(gaps, gaps.dropFirst()).allSatisfy { $1 + .seconds(1) >= $0 }, "never shrinks")
    }

    /// Transaction ids are 4 random bytes, not a counter a spoofer can guess.
    @Test func transactionIDsAreRandomFourBytes() {
        let net = SimNetwork(seed: 43, conditions: .perfect)
        let node = DHTNode.alone(on: net.bind(PeerAddress(198, 51, 100, 1, port: 6881)), config: config(seed: 43))
        let silent = Probe(net, PeerAddress(192, 0, 2, 1, port: 1))
        for _ in 0..<16 { node.query(KRPCQuery(method: .ping, id: node.id), to: silent.socket.localAddress) { _ in } }
        _ = net.run(for: .seconds(1))
        let tids = silent.received.map { $0.0.transactionID }
        #expect(tids.count == 16)
        #expect(tids.allSatisfy { $0.count == 4 })
        #expect(Set(tids.map { $0 }).count == 16)
        let values = tids.map { $0.reduce(UInt32(0)) { $0 << 8 | UInt32($1) } }
        let consecutive = zip(values, values.dropFirst()).filter { $1 &- $0 == 1 }.count
        #expect(consecutive == 0, "sequential ids: \(values)")
        // The same seed gives the same ids (simulations repeat).
        let net2 = SimNetwork(seed: 43, conditions: .perfect)
        let node2 = DHTNode.alone(on: net2.bind(PeerAddress(198, 51, 100, 1, port: 6881)), config: config(seed: 43))
        let silent2 = Probe(net2, PeerAddress(192, 0, 2, 1, port: 1))
        for _ in 0..<16 {
            node2.query(KRPCQuery(method: .ping, id: node2.id), to: silent2.socket.localAddress) { _ in }
        }
        _ = net2.run(for: .seconds(1))
        #expect(silent2.received.map { $0.0.transactionID } == tids)
    }

    /// A malformed query gets a short fixed error, never bigger than the query itself.
    @Test func malformedQueriesGetASmallFixedError() throws {
        let net = SimNetwork(seed: 44, conditions: .perfect)
        let node = DHTNode.alone(on: net.bind(PeerAddress(198, 51, 100, 1, port: 6881)), config: config(seed: 44))
        let raw = net.bind(PeerAddress(203, 0, 113, 9, port: 999))
        var replies: [[UInt8]] = []
        raw.onReceive = { p, _ in replies.append(p) }
        // get_peers with a 19-byte info_hash: the decoder's own message would be long.
        let bad = Array(
            "d1:ad2:id20:abcdefghij01234567899:info_hash19:abcdefghij012345678e1:q9:get_peers1:t4:aaaa1:y1:qe".utf8
        )
        raw.send(bad, to: node.localAddress)
        // A tiny malformed query: a fixed error would still be larger, so nothing is sent.
        raw.send(Array("d1:t1:x1:y1:q1:q1:ze".utf8), to: node.localAddress)
        _ = net.run(for: .seconds(1))
        #expect(node.stats.malformed == 2)
        let reply = try #require(replies.first)
        #expect(replies.count == 1)
        #expect(reply.count <= bad.count, "reply \(reply.count) bytes for a \(bad.count)-byte query")
        let m = try KRPCMessage.decode(reply)
        #expect(m.transactionID == Array("aaaa".utf8))
        #expect(m.body == .error(KRPCErrorBody(code: 203, message: "malformed")))
    }

    /// A well-formed query of an unknown method (51 bytes) gets one short error no larger than
    /// itself, and its sender is not pinged (that ping was unsolicited traffic, 128 bytes).
    @Test func unknownMethodsGetOneSmallErrorAndNoPing() throws {
        let net = SimNetwork(seed: 46, conditions: .perfect)
        let node = DHTNode.alone(on: net.bind(PeerAddress(198, 51, 100, 1, port: 6881)), config: config(seed: 46))
        let raw = net.bind(PeerAddress(203, 0, 113, 9, port: 999))
        var replies: [[UInt8]] = []
        raw.onReceive = { p, _ in replies.append(p) }
        let query = Array("d1:ad2:id20:abcdefghij0123456789e1:q3:foo1:t2:aa1:y1:qe".utf8)
        raw.send(query, to: node.localAddress)
        _ = net.run(for: .seconds(30))
        #expect(node.stats.unknownMethods == 1)
        let total = replies.reduce(0) { $0 + $1.count }
        #expect(
            replies.count == 1 && total <= query.count,
            "\(replies.count) replies, \(total) bytes for a \(query.count)-byte query"
        )
        let m = try KRPCMessage.decode(try #require(replies.first))
        guard case .error(let e) = m.body else {
            Issue.record("not an error: \(m.body)")
            return
        }
        #expect(e.code == 204 && m.transactionID == Array("aa".utf8))
        // The shortest well-formed unknown query (51 bytes): its error still fits.
        replies.removeAll()
        let short = Array("d1:ad2:id20:abcdefghij0123456789e1:q1:x1:t0:1:y1:qe".utf8)
        raw.send(short, to: node.localAddress)
        _ = net.run(for: .seconds(30))
        #expect(
            replies.count == 1 && replies.allSatisfy { $0.count <= short.count },
            "\(replies.map(\.count)) for \(short.count) bytes"
        )
        // A known query from the same sender is answered and its sender verified by a ping.
        raw.send(Array("d1:ad2:id20:abcdefghij0123456789e1:q4:ping1:t2:bb1:y1:qe".utf8), to: node.localAddress)
        _ = net.run(for: .seconds(1))
        #expect(replies.contains { (try? KRPCMessage.decode($0))?.transactionID == Array("bb".utf8) })
        #expect(
            replies.contains {
                if case .query(let q)? = (try? KRPCMessage.decode($0))?.body {
                    return q.method == .ping
                } else {
                    return false
                }
            }
        )
    }

    /// Promotion from the replacement cache respects the per-/24 limit and yields questionable
    /// entries (which the node pings), not good ones.
    @Test func promotedReplacementsRespectIPLimitsAndAreQuestionable() {
        let own = NodeID(hex: "8000000000000000000000000000000000000000")!
        var t = RoutingTable(ownID: own, k: 8, now: 0)
        var rng = SplitMixForTests(seed: 45)
        // Split once so that bucket 0 (the far half) is not the last bucket, then fill it.
        _ = t.insert(
            NodeInfo(id: own.randomInBucket(prefix: 3, using: &rng), address: PeerAddress(9, 9, 9, 9, port: 1)),
            responded: true,
            now: 0
        )
        var far: [NodeInfo] = []
        for i in 0..<8 {
            far.append(
                NodeInfo(
                    id: own.randomInBucket(prefix: 0, using: &rng),
                    address: PeerAddress(11, 0, UInt8(i), 1, port: 1)
                )
            )
            _ = t.insert(far[i], responded: true, now: 0)
        }
        #expect(t.buckets[0].entries.count == 8)
        // Three cached nodes from one /24 (each fine alone against the bucket as it was).
        var cached: [NodeInfo] = []
        for i in 0..<3 {
            cached.append(
                NodeInfo(
                    id: own.randomInBucket(prefix: 0, using: &rng),
                    address: PeerAddress(12, 0, 0, UInt8(i + 1), port: 1)
                )
            )
            #expect(t.insert(cached[i], responded: true, now: 0) == .cached(ping: nil))
        }
        let later: Nanos = .seconds(20 * 60)
        var promoted: [NodeInfo] = []
        for f in far.prefix(3) {
            t.markFailed(f.id, now: later)
            if let p = t.markFailed(f.id, now: later) { promoted.append(p) }
        }
        let fromSubnet = t.buckets[0].entries.filter {
            $0.info.address.ip >> 8 == PeerAddress(12, 0, 0, 0, port: 0).ip >> 8
        }
        #expect(fromSubnet.count == 2, "at most 2 per /24 in a bucket, also on promotion")
        #expect(promoted.count == 2)
        #expect(fromSubnet.allSatisfy { $0.status(now: later) == .questionable && $0.lastResponse == nil })
        // remove() promotes the same way: nothing left that the limits allow.
        #expect(t.remove(far[5].id) == nil)
        #expect(t.buckets[0].entries.count == 7)
    }

    /// The node pings a node it promoted from the cache.
    @Test func theNodePingsAPromotedReplacement() {
        let net = SimNetwork(seed: 46, conditions: .perfect)
        var c = config(seed: 46)
        c.retries = 0
        let node = DHTNode.alone(on: net.bind(PeerAddress(198, 51, 100, 1, port: 6881)), config: c)
        var rng = SplitMixForTests(seed: 46)
        _ = node.addNode(
            NodeInfo(id: node.id.randomInBucket(prefix: 4, using: &rng), address: PeerAddress(9, 9, 9, 9, port: 1))
        )
        var far: [Probe] = []
        var ids: [NodeID] = []
        for i in 0..<8 {
            far.append(Probe(net, PeerAddress(11, 0, UInt8(i), 1, port: 1)))
            ids.append(node.id.randomInBucket(prefix: 0, using: &rng))
            node.addNode(NodeInfo(id: ids[i], address: far[i].socket.localAddress))
        }
        let spare = Probe(net, PeerAddress(12, 0, 0, 1, port: 1))
        let spareID = node.id.randomInBucket(prefix: 0, using: &rng)
        #expect(node.addNode(NodeInfo(id: spareID, address: spare.socket.localAddress)) == .cached(ping: nil))
        // far[0] never answers two pings: it goes bad, the spare is promoted and pinged.
        node.query(KRPCQuery(method: .ping, id: node.id), to: far[0].socket.localAddress, expectedID: ids[0]) { _ in }
        node.query(KRPCQuery(method: .ping, id: node.id), to: far[0].socket.localAddress, expectedID: ids[0]) { _ in }
        _ = net.run(for: .seconds(5))
        #expect(node.table.entry(for: ids[0]) == nil)
        #expect(node.table.entry(for: spareID)?.lastResponse == nil)
        let pings = spare.received.filter {
            if case .query(let q) = $0.0.body { return q.method == .ping } else { return false }
        }
        #expect(pings.count == 1, "the promoted node is checked")
    }

    /// Real clients sometimes send keys out of order: accepted on receive, still strict otherwise,
    /// and re-encoded canonically.
    @Test func unsortedKeysAreAcceptedOnReceive() throws {
        let unsorted = Array("d1:y1:q1:t2:aa1:q4:ping1:ad2:id20:abcdefghij0123456789ee".utf8)
        #expect(throws: BencodeError.self) { try Bencode.decode(unsorted) }
        let m = try KRPCMessage.decode(unsorted)
        guard case .query(let q) = m.body else {
            Issue.record("not a query")
            return
        }
        #expect(q.method == .ping && m.transactionID == Array("aa".utf8))
        #expect(m.encoded() == Array("d1:ad2:id20:abcdefghij0123456789e1:q4:ping1:t2:aa1:y1:qe".utf8))
        // Still refused: duplicate keys (sorted or not), leading zeros, bad lengths.
        for bad in [
            "d1:y1:q1:t2:aa1:y1:q1:q4:ping1:ad2:id20:abcdefghij0123456789ee",
            "d1:t2:aa1:t2:bb1:y1:q1:q4:ping1:ad2:id20:abcdefghij0123456789ee",
            "d1:y1:q1:t02:aa1:q4:ping1:ad2:id20:abcdefghij0123456789ee",
            "d1:y1:q1:t2:aa1:q4:ping1:ad2:id19:abcdefghij012345678ee",
            "d1:y1:q1:t2:aa1:q4:ping1:ad2:id20:abcdefghij0123456789e1:vi01ee",
        ] {
            #expect(throws: KRPCDecodeError.self, "\(bad)") { try KRPCMessage.decode(Array(bad.utf8)) }
        }
        #expect(DHTFuzz.check(unsorted) == nil)
        // A node answers such a query.
        let net = SimNetwork(seed: 47, conditions: .perfect)
        let node = DHTNode.alone(on: net.bind(PeerAddress(198, 51, 100, 1, port: 6881)), config: config(seed: 47))
        let probe = Probe(net, PeerAddress(203, 0, 113, 5, port: 5))
        probe.socket.send(unsorted, to: node.localAddress)
        _ = net.run(for: .seconds(1))
        guard case .response? = probe.response(Array("aa".utf8))?.body else {
            Issue.record("no answer")
            return
        }
    }

    /// An id loaded from the state file gives way to a BEP 42 id; a pinned one does not.
    @Test func savedIDsAreReplacedByBEP42ButPinnedOnesAreNot() {
        let net = SimNetwork(seed: 48, conditions: .perfect)
        let saved = NodeID(hex: "6600000000000000000000000000000000000000")!
        var responders: [Probe] = []
        func run(_ configure: (inout DHTConfig) -> Void, at ip: UInt8) -> DHTNode {
            var c = config(seed: 48)
            configure(&c)
            let node = DHTNode.alone(on: net.bind(PeerAddress(198, 51, 100, ip, port: 6881)), config: c)
            #expect(node.id == saved)
            for i in 0..<4 {
                let p = Probe(net, PeerAddress(192, 0, ip, UInt8(10 + i), port: 6881))
                p.socket.onReceive = { [unowned p] payload, src in
                    guard let m = try? KRPCMessage.decode(payload) else { return }
                    let id = NodeID(bytes: [UInt8](repeating: UInt8(i + 1), count: 20))!
                    p.send(
                        KRPCMessage(
                            transactionID: m.transactionID,
                            body: .response(KRPCResponse(id: id)),
                            ip: PeerAddress(203, 0, 113, ip, port: 40000)
                        ),
                        to: src
                    )
                }
                responders.append(p)
                node.ping(p.socket.localAddress) { _ in }
            }
            _ = net.run(for: .seconds(1))
            return node
        }
        let loaded = run({ $0.savedNodeID = saved }, at: 1)
        #expect(loaded.id != saved && loaded.stats.idChanges == 1)
        #expect(BEP42.isValid(loaded.id, for: PeerAddress(203, 0, 113, 1, port: 0).ip))
        let pinned = run({ $0.nodeID = saved }, at: 2)
        #expect(pinned.id == saved && pinned.stats.idChanges == 0)
    }
}
