import Bencode
import DHTSim
import Determinism
import NetCore
import NetSim
import Testing

@testable import DHT

/// BEP 32 (IPv6): the codec's nodes6, want and 18-byte values, hostile IPv6 input, the IPv6 routing
/// table, BEP 42 ids for IPv6, a dual-stack node's answers, and a mixed network in virtual time.
@Suite struct IPv6Tests {
    typealias Probe = NodeTests.Probe

    static func v6(_ text: String, port: UInt16 = 6881) -> PeerAddress { PeerAddress(host: text, port: port)! }

    func id(_ byte: UInt8) -> NodeID { NodeID(bytes: [UInt8](repeating: byte, count: 20))! }

    func config(seed: UInt64) -> DHTConfig {
        var c = DHTConfig()
        c.seed = seed
        return c
    }

    /// A dual-stack node (`[::]`) on the simulated network, at `v4` and `v6`.
    func dualNode(_ net: SimNetwork, v4: PeerAddress, v6: PeerAddress, config: DHTConfig) -> DHTNode {
        DHTNode.alone(on: DualStackSimHost(network: net, v4: v4, v6: v6), config: config)
    }

    func response(_ m: KRPCMessage?) -> KRPCResponse? {
        if case .response(let r)? = m?.body { return r }
        return nil
    }

    // MARK: codec

    @Test func nodes6WantAndEighteenByteValuesRoundTrip() throws {
        let nodes = (1...2).map { NodeInfo(id: id(UInt8($0)), address: PeerAddress(10, 0, 0, UInt8($0), port: 6881)) }
        let nodes6 = (1...3).map { NodeInfo(id: id(UInt8(10 + $0)), address: Self.v6("2001:db8::\($0)", port: 7000)) }
        let values = [PeerAddress(1, 2, 3, 4, port: 5), Self.v6("2001:db8:ff::9", port: 9999)]
        let m = KRPCMessage(
            transactionID: [1, 2],
            body: .response(KRPCResponse(id: id(7), nodes: nodes, nodes6: nodes6, values: values, token: [9])),
            ip: Self.v6("2001:db8::99", port: 4000),
            version: Array("TF01".utf8)
        )
        let bytes = m.encoded()
        let raw = try Bencode.decode(bytes, limits: .krpc)
        #expect(raw["r"]?["nodes"]?.bytesValue?.count == 2 * 26)
        #expect(raw["r"]?["nodes6"]?.bytesValue?.count == 3 * 38, "38-byte entries: id, 16 address bytes, port")
        #expect(raw["r"]?["values"]?.listValue?.map { $0.bytesValue?.count } == [6, 18])
        #expect(raw["ip"]?.bytesValue?.count == 18)
        let d = try KRPCMessage.decode(bytes)
        #expect(d == m)
        #expect(response(d)?.nodes6 == nodes6 && response(d)?.values == values)
        #expect(d.ip == Self.v6("2001:db8::99", port: 4000))

        // want: a list of "n4" / "n6" in the arguments.
        let q = KRPCMessage(
            transactionID: [3],
            body: .query(KRPCQuery(method: .findNode, id: id(1), target: id(2), want: [.v6, .v4]))
        ).encoded()
        #expect(String(decoding: q, as: UTF8.self).contains("4:wantl2:n42:n6e"))
        guard case .query(let dq) = try KRPCMessage.decode(q).body else {
            Issue.record("not a query")
            return
        }
        #expect(dq.want == [.v4, .v6])
        // Strings other than n4 and n6, and non-strings, are ignored (BEP 32); an empty list asks
        // for no nodes at all.
        for (list, want) in [
            (BValue.list([.string("n6"), .string("n9"), .int(3)]), Set<AddressFamily>([.v6])),
            (.list([]), []),
        ] {
            let wire = query("find_node", [("target", .bytes(id(2).bytes)), ("want", list)])
            guard case .query(let wq) = try KRPCMessage.decode(wire).body else {
                Issue.record("not a query")
                return
            }
            #expect(wq.want == want)
        }
    }

    func query(_ method: String, _ args: [(String, BValue)]) -> [UInt8] {
        Bencode.encode(
            .dictionary([
                ("a", .dictionary([("id", .bytes(id(1).bytes))] + args)), ("q", .string(method)), ("t", .string("aa")),
                ("y", .string("q")),
            ])
        )
    }

    func reply(_ fields: [(String, BValue)], ip: [UInt8]? = nil) -> [UInt8] {
        var d: [(String, BValue)] = [
            ("r", .dictionary([("id", .bytes(id(1).bytes))] + fields)), ("t", .string("aa")), ("y", .string("r")),
        ]
        if let ip { d.append(("ip", .bytes(ip))) }
        return Bencode.encode(.dictionary(d))
    }

    /// Malformed BEP 32 fields make the whole message malformed (as a bad `nodes` does).
    @Test func malformedIPv6FieldsAreRefused() {
        let bad: [[UInt8]] = [
            reply([("nodes6", .bytes([UInt8](repeating: 1, count: 37)))]),  // not whole entries
            reply([("nodes6", .bytes([UInt8](repeating: 1, count: 26)))]),  // an IPv4 entry in nodes6
            reply([("nodes6", .int(38))]),
            reply([("values", .list([.bytes([UInt8](repeating: 1, count: 17))]))]),
            query("find_node", [("target", .bytes(id(2).bytes)), ("want", .string("n6"))]),  // want not a list
            query(
                "turf_knocked",
                [
                    ("info_hash", .bytes(id(2).bytes)), ("blob", .bytes([1])),
                    ("src", .bytes([UInt8](repeating: 1, count: 10))),
                ]
            ),
        ]
        for b in bad { #expect(throws: KRPCDecodeError.self) { try KRPCMessage.decode(b) } }
        // A `nodes` of 38-byte entries that is no multiple of 26 is refused too.
        #expect(throws: KRPCDecodeError.self) {
            try KRPCMessage.decode(reply([("nodes", .bytes([UInt8](repeating: 1, count: 38)))]))
        }
        // An `ip` of another length is ignored, not fatal; an 18-byte `src` is a knock from IPv6.
        #expect((try? KRPCMessage.decode(reply([], ip: [1, 2, 3])))?.ip == nil)
        let knocked = query(
            "turf_knocked",
            [
                ("info_hash", .bytes(id(2).bytes)), ("blob", .bytes([1])),
                ("src", .bytes(Self.v6("2001:db8::5").compact)),
            ]
        )
        #expect((try? KRPCMessage.decode(knocked)) != nil)
    }

    /// Entries of `nodes6` that cannot be IPv6 nodes are left out and counted, and the rest of
    /// the answer is used; a lookup never queries them.
    @Test func unusableNodes6EntriesAreDroppedAndCounted() throws {
        func entry(_ b: UInt8, _ a: PeerAddress) -> [UInt8] { id(b).bytes + a.compact }
        let good = Self.v6("2001:db8:2::2")
        // Entries: good, an IPv4-mapped address (an IPv4 node, which belongs in `nodes`), the
        // unspecified address, multicast, good.
        let wire = reply([
            (
                "nodes6",
                .bytes(
                    entry(2, good) + id(3).bytes + IPv6Address(mapping: 0xCB00_7105).bytes + [0x1A, 0xE1]
                        + entry(4, Self.v6("::")) + entry(5, Self.v6("ff02::1")) + entry(6, Self.v6("2001:db8:3::3"))
                )
            )
        ])
        let r = try #require(response(try KRPCMessage.decode(wire)))
        #expect(r.nodes6.map(\.address) == [good, Self.v6("2001:db8:3::3")])
        #expect(r.droppedNodes == 3)

        // The same answer to a node's lookup: counted there, and only the good ones are asked.
        let net = SimNetwork(seed: 1, conditions: LinkConditions(latency: .milliseconds(5)))
        let probe = Probe(net, Self.v6("2001:db8:1::1"))
        var c = config(seed: 3)
        c.bootstrap = [probe.socket.localAddress]
        let node = DHTNode.alone(on: net.bind(Self.v6("2001:db8:9::1")), config: c)
        node.findNode(id(0x80)) { _ in }
        _ = net.run(for: .milliseconds(50))
        let q = try #require(probe.received.first)
        probe.socket.send(
            Bencode.encode(
                .dictionary([
                    ("r", try Bencode.decode(wire, limits: .krpc)["r"]!), ("t", .bytes(q.0.transactionID)),
                    ("y", .string("r")),
                ])
            ),
            to: node.localAddress
        )
        _ = net.run(for: .seconds(5))
        #expect(node.stats.droppedNodeEntries == 3)
        #expect(node.stats.malformed == 0)
        #expect(node.stats.queriesSent == 3, "the probe, then the two good entries")
    }

    // MARK: BEP 42 for IPv6

    /// Prefixes computed independently (Python, CRC-32C written from RFC 3720 and checked against
    /// its "123456789" vector) over the first 8 address bytes masked with 0x0103070f1f3f7fff,
    /// r in the top three bits.
    @Test(arguments: [
        ("2a01:4f8:c17:b8f::2", UInt8(1), "629be"),
        ("2001:db8:1234:5678::1", 6, "59ef4"),
        ("2600:1f18:6a0:9e00:1:2:3:4", 7, "0218f"),
    ])
    func bep42IPv6Vectors(ip: String, r: UInt8, prefix: String) {
        let a = Self.v6(ip, port: 1)
        let crc = BEP42.crc(a, r: r)
        let first = String(hex([UInt8(crc >> 24), UInt8((crc >> 16) & 0xFF), UInt8((crc >> 8) & 0xFF)]).prefix(5))
        #expect(first == prefix)
        var rng = SplitMixForTests(seed: UInt64(r))
        let nid = BEP42.nodeID(for: a, using: &rng)
        #expect(BEP42.isValid(nid, for: a))
        // Only the first 64 bits count: another interface id in the same /64 is as valid.
        #expect(BEP42.isValid(nid, for: PeerAddress(ip6: IPv6Address(hi: a.ip6!.hi, lo: 0x1234), port: 2)))
        #expect(!BEP42.isValid(nid, for: PeerAddress(ip6: IPv6Address(hi: a.ip6!.hi ^ (1 << 40), lo: 0), port: 2)))
    }

    @Test func bep42ExemptsNonGlobalIPv6() {
        for text in ["::1", "fe80::1", "fec0::1", "fd12:3456::1", "ff02::1"] {
            #expect(BEP42.isExempt(Self.v6(text)), "\(text)")
        }
        for text in ["2001:db8::1", "2a01:4f8::1"] { #expect(!BEP42.isExempt(Self.v6(text)), "\(text)") }
    }

    // MARK: routing table

    /// One node per /64 and two per /48 in a bucket (the IPv6 counterparts of one per IP and two
    /// per /24); loopback exempt; a table holds one family.
    @Test func ipv6TableLimitsPerSlash64AndSlash48() {
        let own = NodeID(hex: "8000000000000000000000000000000000000000")!
        var t = RoutingTable(ownID: own, family: .v6, k: 8, now: 0)
        var rng = SplitMixForTests(seed: 5)
        func far(_ text: String) -> NodeInfo {
            NodeInfo(id: own.randomInBucket(prefix: 0, using: &rng), address: Self.v6(text))
        }
        #expect(t.insert(far("2001:db8:1:1::1"), responded: true, now: 0) == .added)
        #expect(t.insert(far("2001:db8:1:1::2"), responded: true, now: 0) == .rejected("/64 already in bucket"))
        #expect(t.insert(far("2001:db8:1:2::1"), responded: true, now: 0) == .added)
        #expect(
            t.insert(far("2001:db8:1:3::1"), responded: true, now: 0)
                == .rejected("too many nodes from this /48 in bucket")
        )
        #expect(t.insert(far("2001:db8:2:1::1"), responded: true, now: 0) == .added)
        #expect(
            t.insert(
                NodeInfo(id: own.randomInBucket(prefix: 0, using: &rng), address: PeerAddress(11, 0, 0, 1, port: 1)),
                responded: true,
                now: 0
            ) == .rejected("other address family")
        )
        for port in UInt16(1)...3 { #expect(t.insert(far("::1").withPort(port), responded: true, now: 0) == .added) }
        #expect(t.count == 6)
        var t4 = RoutingTable(ownID: own, k: 8, now: 0)
        #expect(t4.insert(far("2001:db8:5::1"), responded: true, now: 0) == .rejected("other address family"))
    }

    @Test func stateFileKeepsBothTablesAndOldFilesStillLoad() throws {
        let net = SimNetwork(seed: 2, conditions: .perfect)
        let node = dualNode(
            net,
            v4: PeerAddress(198, 51, 100, 1, port: 6881),
            v6: Self.v6("2001:db8::1"),
            config: config(seed: 4)
        )
        for i in 0..<4 {
            node.addNode(NodeInfo(id: id(UInt8(0x10 + i)), address: PeerAddress(11, 0, UInt8(i), 1, port: 6881)))
            node.addNode(NodeInfo(id: id(UInt8(0x90 + i)), address: Self.v6("2001:db8:\(i + 1)::1")))
        }
        #expect(node.routingTableSizes == (4, 4))
        let saved = node.serializedState()
        let (sid, nodes) = try DHTNode.savedState(saved)
        #expect(sid == node.id)
        #expect(nodes.filter { !$0.address.isIPv6 }.count == 4 && nodes.filter(\.address.isIPv6).count == 4)
        #expect(try Bencode.decode(saved, limits: .init())["nodes6"]?.bytesValue?.count == 4 * 38)
        // A file written before BEP 32 support: {id, nodes, v}.
        let old = Bencode.encode(
            .dictionary([
                ("id", .bytes(id(1).bytes)),
                ("nodes", .bytes(NodeInfo.compact([NodeInfo(id: id(2), address: PeerAddress(11, 0, 0, 1, port: 1))]))),
                ("v", .int(1)),
            ])
        )
        #expect(try DHTNode.savedState(old).nodes.count == 1)
        // A damaged nodes6 makes the file damaged.
        let bad = Bencode.encode(
            .dictionary([
                ("id", .bytes(id(1).bytes)), ("nodes", .bytes([])), ("nodes6", .bytes([1, 2, 3])), ("v", .int(1)),
            ])
        )
        #expect(throws: (any Error).self) { try DHTNode.savedState(bad) }
        // A restarted dual-stack node puts each saved node back into its family's table.
        var c = config(seed: 5)
        c.nodeID = sid
        let restarted = dualNode(
            net,
            v4: PeerAddress(198, 51, 100, 2, port: 6881),
            v6: Self.v6("2001:db8::2"),
            config: c
        )
        restarted.start(savedNodes: nodes)
        _ = net.run(for: .seconds(10))
        #expect(restarted.stats.queriesSent >= 8, "each saved node of both families was asked")
    }

    // MARK: a dual-stack node's answers

    @Test func answersFollowWantAndTheQuerysFamily() throws {
        let net = SimNetwork(seed: 3, conditions: .perfect)
        let node = dualNode(
            net,
            v4: PeerAddress(198, 51, 100, 1, port: 6881),
            v6: Self.v6("2001:db8::1"),
            config: config(seed: 6)
        )
        for i in 0..<3 {
            node.addNode(NodeInfo(id: id(UInt8(0x10 + i)), address: PeerAddress(11, 0, UInt8(i), 1, port: 6881)))
            node.addNode(NodeInfo(id: id(UInt8(0x90 + i)), address: Self.v6("2001:db8:\(i + 1)::1")))
        }
        let p4 = Probe(net, PeerAddress(203, 0, 113, 5, port: 5555))
        let p6 = Probe(net, Self.v6("2001:db8:50::5", port: 5555))
        let me = id(0x42)
        let to4 = PeerAddress(198, 51, 100, 1, port: 6881)
        let to6 = Self.v6("2001:db8::1")
        let cases: [(Probe, PeerAddress, Set<AddressFamily>?, Int, Int)] = [
            (p4, to4, nil, 3, 0),  // no want: the family the query came over
            (p6, to6, nil, 0, 3),
            (p4, to4, [.v6], 0, 3),
            (p4, to4, [.v4, .v6], 3, 3),
            (p6, to6, [.v4], 3, 0),
            (p6, to6, [], 0, 0),
        ]
        for (i, (probe, to, want, _, _)) in cases.enumerated() {
            probe.query(KRPCQuery(method: .findNode, id: me, target: id(0x11), want: want), t: [UInt8(i)], to: to)
            probe.query(
                KRPCQuery(method: .getPeers, id: me, infoHash: id(0x11), want: want),
                t: [UInt8(100 + i)],
                to: to
            )
            probe.query(KRPCQuery(method: .get, id: me, target: id(0x11), want: want), t: [UInt8(200 + i)], to: to)
        }
        _ = net.run(for: .seconds(1))
        for (i, (probe, _, want, n4, n6)) in cases.enumerated() {
            for t in [UInt8(i), UInt8(100 + i), UInt8(200 + i)] {
                let r = try #require(response(probe.response([t])), "answer \(t)")
                #expect(r.nodes.count == n4 && r.nodes6.count == n6, "want \(String(describing: want)), query \(t)")
                #expect(r.nodes6.allSatisfy(\.address.isIPv6) && r.nodes.allSatisfy { !$0.address.isIPv6 })
            }
        }
        // Every answer carries the requester's address in its own family (BEP 42 `ip`).
        #expect(p6.response([1])?.ip == p6.socket.localAddress)
        #expect(p4.response([0])?.ip == p4.socket.localAddress)
    }

    /// Announces over IPv6 store IPv6 peers; get_peers hands each family only its own peers
    /// (BEP 32); tokens are bound to the whole IPv6 address; one entry per /64.
    @Test func announcedPeersAreStoredAndAnsweredByFamily() throws {
        let net = SimNetwork(seed: 4, conditions: .perfect)
        let node = dualNode(
            net,
            v4: PeerAddress(198, 51, 100, 1, port: 6881),
            v6: Self.v6("2001:db8::1"),
            config: config(seed: 7)
        )
        let to4 = PeerAddress(198, 51, 100, 1, port: 6881)
        let to6 = Self.v6("2001:db8::1")
        let h = Topic.infoHash("bep32")
        let a4 = Probe(net, PeerAddress(203, 0, 113, 5, port: 4000))
        let a6 = Probe(net, Self.v6("2001:db8:60::5", port: 4000))
        let sameSlash64 = Probe(net, Self.v6("2001:db8:60::6", port: 4001))
        let me = id(0x33)
        var t: UInt8 = 0
        func token(_ p: Probe, _ to: PeerAddress) throws -> [UInt8] {
            t += 1
            p.query(KRPCQuery(method: .getPeers, id: me, infoHash: h), t: [t], to: to)
            _ = net.run(for: .milliseconds(100))
            return try #require(response(p.response([t]))?.token)
        }
        func announce(_ p: Probe, _ to: PeerAddress, _ tok: [UInt8]) -> KRPCMessage? {
            t += 1
            p.query(
                KRPCQuery(method: .announcePeer, id: me, infoHash: h, port: 1, impliedPort: true, token: tok),
                t: [t],
                to: to
            )
            _ = net.run(for: .milliseconds(100))
            return p.response([t])
        }
        func values(_ p: Probe, _ to: PeerAddress) -> [PeerAddress]? {
            t += 1
            p.query(KRPCQuery(method: .getPeers, id: me, infoHash: h), t: [t], to: to)
            _ = net.run(for: .milliseconds(100))
            return response(p.response([t]))?.values
        }
        let tok6 = try token(a6, to6)
        // The token of one IPv6 address is refused from another, even in the same /64.
        #expect(announce(sameSlash64, to6, tok6)?.body == .error(KRPCErrorBody(code: 203, message: "bad token")))
        #expect(response(announce(a6, to6, tok6)) != nil)
        #expect(response(announce(a4, to4, try token(a4, to4))) != nil)
        // Each family gets its own peers: 6 bytes over IPv4, 18 over IPv6.
        #expect(values(a4, to4) == [PeerAddress(203, 0, 113, 5, port: 4000)])
        #expect(values(a6, to6) == [Self.v6("2001:db8:60::5", port: 4000)])
        // Another address of the same /64 replaces the entry (one per source, as one per IPv4 address).
        #expect(response(announce(sameSlash64, to6, try token(sameSlash64, to6))) != nil)
        #expect(values(a6, to6) == [Self.v6("2001:db8:60::6", port: 4001)])
        #expect(node.store.total == 2)
    }

    /// BEP 32: no answer over 1024 bytes. An IPv4 requester that wants both families' nodes of a
    /// busy topic gets fewer values instead; without `want` it gets the usual 50.
    @Test func answersStayWithin1024Bytes() throws {
        let net = SimNetwork(seed: 7, conditions: .perfect)
        let node = dualNode(
            net,
            v4: PeerAddress(198, 51, 100, 1, port: 6881),
            v6: Self.v6("2001:db8::1"),
            config: config(seed: 10)
        )
        for i in 0..<8 {
            node.addNode(NodeInfo(id: id(UInt8(0x10 + i)), address: PeerAddress(11, 0, UInt8(i), 1, port: 6881)))
            node.addNode(NodeInfo(id: id(UInt8(0x90 + i)), address: Self.v6("2001:db8:\(i + 1)::1")))
        }
        let h = Topic.infoHash("busy")
        var rng = SplitMixForTests(seed: 1)
        for i in 0..<120 {
            node.store.add(PeerAddress(ip: 0x0C00_0000 | UInt32(i) << 8, port: 1), for: h, now: net.now, using: &rng)
            node.store.add(Self.v6("2001:db8:\(String(0x100 + i, radix: 16))::1"), for: h, now: net.now, using: &rng)
        }
        let p4 = Probe(net, PeerAddress(203, 0, 113, 5, port: 5555))
        let p6 = Probe(net, Self.v6("2001:db8:50::5", port: 5555))
        let to4 = PeerAddress(198, 51, 100, 1, port: 6881)
        let to6 = Self.v6("2001:db8::1")
        p4.query(KRPCQuery(method: .getPeers, id: id(0x42), infoHash: h, want: [.v4, .v6]), t: [1], to: to4)
        p4.query(KRPCQuery(method: .getPeers, id: id(0x42), infoHash: h), t: [2], to: to4)
        p6.query(KRPCQuery(method: .getPeers, id: id(0x42), infoHash: h, want: [.v4, .v6]), t: [3], to: to6)
        _ = net.run(for: .seconds(1))
        let both4 = try #require(p4.response([1]))
        let plain4 = try #require(p4.response([2]))
        let both6 = try #require(p6.response([3]))
        for m in [both4, plain4, both6] { #expect(m.encoded().count <= 1024, "\(m.encoded().count) bytes") }
        let (b4, n4, b6) = (response(both4), response(plain4), response(both6))
        #expect(b4?.nodes.count == 8 && b4?.nodes6.count == 8)
        #expect((b4?.values.count ?? 0) >= 40 && (b4?.values.count ?? 0) < 50)
        #expect(n4?.values.count == 50)
        #expect(b6?.values.count == 12 && b6?.values.allSatisfy(\.isIPv6) == true)
    }

    /// Two addresses of one /64 share one query budget (per-source rate limit).
    @Test func rateLimitCountsPerSlash64() {
        let net = SimNetwork(seed: 5, conditions: .perfect)
        let node = DHTNode.alone(on: net.bind(Self.v6("2001:db8::1")), config: config(seed: 8))
        let a = Probe(net, Self.v6("2001:db8:70::1", port: 1))
        let b = Probe(net, Self.v6("2001:db8:70::2", port: 1))
        let other = Probe(net, Self.v6("2001:db8:71::1", port: 1))
        for i in 0..<40 {
            a.query(KRPCQuery(method: .ping, id: id(1)), t: [UInt8(i)], to: node.localAddress)
            b.query(KRPCQuery(method: .ping, id: id(2)), t: [UInt8(i)], to: node.localAddress)
        }
        other.query(KRPCQuery(method: .ping, id: id(3)), t: [1], to: node.localAddress)
        _ = net.run(for: .milliseconds(10))
        #expect(node.stats.rateLimited >= 25, "80 queries from one /64 against a burst of 50")
        #expect(other.response([1]) != nil, "another /64 is served")
    }

    // MARK: external address per family

    @Test func externalAddressIsLearnedPerFamilyAndOneBEP42IDServesBoth() {
        let net = SimNetwork(seed: 6, conditions: .perfect)
        let node = dualNode(
            net,
            v4: PeerAddress(198, 51, 100, 1, port: 6881),
            v6: Self.v6("2001:db8::1"),
            config: config(seed: 9)
        )
        let mine6 = Self.v6("2001:db8:abcd::1", port: 6881)
        for i in 1...3 { node.recordVote(mine6, from: Self.v6("2001:db8:\(i)::1")) }
        #expect(node.externalAddress6 == mine6)
        #expect(node.externalAddress == nil)
        #expect(node.natType6 == .consistent)
        // The IPv6 tally settled first: the id now matches the IPv6 address.
        #expect(node.stats.idChanges == 1)
        #expect(BEP42.isValid(node.id, for: mine6))
        // An IPv4 responder cannot see our IPv6 address (nor the reverse): ignored, counted.
        node.recordVote(mine6, from: PeerAddress(11, 0, 0, 1, port: 1))
        node.recordVote(PeerAddress(203, 0, 113, 9, port: 1), from: Self.v6("2001:db8:9::1"))
        #expect(node.stats.ipFamilyMismatches == 2)
        // The IPv4 tally settles later on another public address: the id already matches one
        // family's address, so it stays (no second rebuild and rejoin).
        let mine4 = PeerAddress(203, 0, 113, 9, port: 6881)
        for i in 1...3 { node.recordVote(mine4, from: PeerAddress(11, 0, UInt8(i), 1, port: 6881)) }
        #expect(node.externalAddress == mine4)
        #expect(node.stats.idChanges == 1 && node.stats.idChangesDeferred == 0)
    }

    // MARK: a mixed network in virtual time

    /// IPv4-only, IPv6-only and dual-stack nodes on one simulated network. The dual-stack nodes
    /// know only the router's IPv4 address, so their IPv6 tables fill by asking for both
    /// families while joining (BEP 32 `want`). A dual-stack host's announce is found at its IPv4
    /// address by IPv4 nodes, at its IPv6 address by IPv6 nodes, and at both by dual-stack ones.
    @Test func mixedNetworkFindsAnnouncesInBothFamilies() {
        let net = SimNetwork(seed: 9, conditions: LinkConditions(latency: .milliseconds(10)))
        let router4 = PeerAddress(198, 51, 100, 1, port: 6881)
        let router6 = Self.v6("2001:db8:100::1")
        func v4(_ i: Int) -> PeerAddress { PeerAddress(ip: 0xCB00_0001 &+ UInt32(i) << 8, port: 6881) }
        func v6(_ i: Int) -> PeerAddress { Self.v6("2001:db8:\(String(i + 1, radix: 16))::1") }
        var all: [DHTNode] = []
        var c = config(seed: 100)
        let router = dualNode(net, v4: router4, v6: router6, config: c)
        all.append(router)
        var dual: [DHTNode] = []
        var only4: [DHTNode] = []
        var only6: [DHTNode] = []
        for i in 0..<30 {
            c = config(seed: 200 + UInt64(i))
            switch i % 3 {
            case 0:
                c.bootstrap = [router4]
                dual.append(dualNode(net, v4: v4(i), v6: v6(i), config: c))
                all.append(dual.last!)
            case 1:
                c.bootstrap = [router4]
                only4.append(DHTNode.alone(on: net.bind(v4(i)), config: c))
                all.append(only4.last!)
            default:
                c.bootstrap = [router6]
                only6.append(DHTNode.alone(on: net.bind(v6(i)), config: c))
                all.append(only6.last!)
            }
        }
        router.startMaintenance()
        for (i, n) in all.enumerated().dropFirst() { net.schedule(after: .milliseconds(200 * i)) { n.start() } }
        // Early dual-stack joiners met no IPv6 node yet: maintenance's join for an empty family
        // (after a minute) asks for IPv6 nodes again.
        _ = net.run(for: .seconds(150))
        #expect(
            dual.allSatisfy { $0.routingTableSizes.v4 >= 8 && $0.routingTableSizes.v6 >= 8 },
            "\(dual.map(\.routingTableSizes))"
        )
        #expect(only4.allSatisfy { $0.routingTableSizes.v4 >= 8 && $0.routingTableSizes.v6 == 0 })
        #expect(only6.allSatisfy { $0.routingTableSizes.v6 >= 8 && $0.routingTableSizes.v4 == 0 })
        #expect(router.routingTableSizes.v6 >= 8)

        let host = dual[1]
        let h = Topic.infoHash("mixed")
        var stored = 0
        host.announce(h, port: 1, impliedPort: true) { _, n in stored = n }
        _ = net.run(for: .seconds(10))
        #expect(stored >= 12, "stored on the closest nodes of both families")
        var found: [String: [PeerAddress]] = [:]
        dual[4].getPeers(h) { found["dual"] = $0.peers }
        only4[3].getPeers(h) { found["v4"] = $0.peers }
        only6[3].getPeers(h) { found["v6"] = $0.peers }
        _ = net.run(for: .seconds(10))
        let at4 = v4(3 * 1)
        let at6 = v6(3 * 1)
        #expect(found["v4"] == [at4])
        #expect(found["v6"] == [at6])
        #expect(Set(found["dual"] ?? []) == [at4, at6])
        // The host learned both of its external addresses from the responders of each family.
        #expect(host.externalAddress == at4 && host.externalAddress6 == at6)
    }
}

extension NodeInfo {
    func withPort(_ port: UInt16) -> NodeInfo { NodeInfo(id: id, address: address.with(port: port)) }
}
