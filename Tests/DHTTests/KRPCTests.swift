import Bencode
import NetCore
import Testing

@testable import DHT

@Suite struct KRPCTests {
    func b(_ s: String) -> [UInt8] { Array(s.utf8) }

    @Test func decodesBEP5Examples() throws {
        // The examples from BEP 5, verbatim.
        let ping = try KRPCMessage.decode(b("d1:ad2:id20:abcdefghij0123456789e1:q4:ping1:t2:aa1:y1:qe"))
        #expect(ping.transactionID == b("aa"))
        guard case .query(let q) = ping.body else {
            Issue.record("not a query")
            return
        }
        #expect(q.method == .ping)
        #expect(q.id == NodeID(bytes: b("abcdefghij0123456789")))

        let announce = try KRPCMessage.decode(
            b(
                "d1:ad2:id20:abcdefghij01234567899:info_hash20:mnopqrstuvwxyz1234564:porti6881e5:token8:aoeusnthe1:q13:announce_peer1:t2:aa1:y1:qe"
            )
        )
        guard case .query(let a) = announce.body else {
            Issue.record("not a query")
            return
        }
        #expect(a.port == 6881 && a.token == b("aoeusnth") && !a.impliedPort)
        #expect(a.infoHash == NodeID(bytes: b("mnopqrstuvwxyz123456")))

        let values = try KRPCMessage.decode(
            b("d1:rd2:id20:abcdefghij01234567895:token8:aoeusnth6:valuesl6:axje.u6:idhtnmee1:t2:aa1:y1:re")
        )
        guard case .response(let r) = values.body else {
            Issue.record("not a response")
            return
        }
        #expect(r.values.count == 2 && r.token == b("aoeusnth"))
        #expect(r.values[0] == PeerAddress(compact: b("axje.u")))

        let err = try KRPCMessage.decode(b("d1:eli201e23:A Generic Error Ocurrede1:t2:aa1:y1:ee"))
        #expect(err.body == .error(KRPCErrorBody(code: 201, message: "A Generic Error Ocurred")))
    }

    /// Method names map to the typed method and back; any other name is kept as unknown, and a
    /// known method without its arguments is refused by the decoder (so the node never sees one).
    @Test func methodsAreTyped() throws {
        let names = [
            "ping": KRPCMethod.ping, "find_node": .findNode, "get_peers": .getPeers,
            "announce_peer": .announcePeer, "get": .get, "put": .put,
        ]
        for (name, method) in names {
            #expect(KRPCMethod(name: name) == method)
            #expect(method.name == name)
        }
        #expect(KRPCMethod(name: "vote") == .unknown("vote"))
        let unknown = try KRPCMessage.decode(b("d1:ad2:id20:abcdefghij0123456789e1:q4:vote1:t2:aa1:y1:qe"))
        guard case .query(let q) = unknown.body else {
            Issue.record("not a query")
            return
        }
        #expect(q.method == .unknown("vote"))
        #expect(try KRPCMessage.decode(unknown.encoded()) == unknown)
        #expect(throws: KRPCDecodeError.self) {
            _ = try KRPCMessage.decode(b("d1:ad2:id20:abcdefghij0123456789e1:q9:find_node1:t2:aa1:y1:qe"))
        }
    }

    @Test func encodesWhatItDecodes() throws {
        let id = NodeID(bytes: [UInt8](repeating: 7, count: 20))!
        let nodes = (0..<3).map {
            NodeInfo(
                id: NodeID(bytes: [UInt8](repeating: UInt8($0), count: 20))!,
                address: PeerAddress(10, 0, 0, UInt8($0), port: 6881)
            )
        }
        let m = KRPCMessage(
            transactionID: [1, 2],
            body: .response(
                KRPCResponse(id: id, nodes: nodes, values: [PeerAddress(1, 2, 3, 4, port: 5)], token: [9, 9])
            ),
            ip: PeerAddress(203, 0, 113, 9, port: 4000),
            version: b("TF01")
        )
        let d = try KRPCMessage.decode(m.encoded())
        #expect(d == m)
        #expect(d.ip == PeerAddress(203, 0, 113, 9, port: 4000))
        let q = KRPCMessage(
            transactionID: [3],
            body: .query(
                KRPCQuery(
                    method: .announcePeer,
                    id: id,
                    infoHash: id,
                    port: 0,
                    impliedPort: true,
                    token: [1],
                    readOnly: true
                )
            )
        )
        let dq = try KRPCMessage.decode(q.encoded())
        guard case .query(let qq) = dq.body else {
            Issue.record("not a query")
            return
        }
        #expect(qq.impliedPort && qq.readOnly && qq.token == [1])
    }

    @Test(arguments: [
        "le",
        "d1:t2:aae",
        "d1:t2:aa1:y1:xe",
        "d1:t2:aa1:y1:q1:q4:pinge",
        "d1:ad2:id3:abce1:q4:ping1:t2:aa1:y1:qe",
        "d1:ad2:id20:abcdefghij0123456789e1:q9:find_node1:t2:aa1:y1:qe",
        "d1:rd2:id20:abcdefghij01234567895:nodes5:abcdee1:t2:aa1:y1:re",
        "d1:rd2:id20:abcdefghij01234567896:valuesl3:abcee1:t2:aa1:y1:re",
        "d1:eli201ee1:t2:aa1:y1:ee",
        "d1:ad2:id20:abcdefghij01234567899:info_hash20:mnopqrstuvwxyz1234564:porti99999e5:token1:xe1:q13:announce_peer1:t2:aa1:y1:qe",
    ])
    func rejectsMalformedMessages(_ text: String) {
        #expect(throws: KRPCDecodeError.self) { try KRPCMessage.decode(Array(text.utf8)) }
    }

    @Test func nodeIDBitsAndDistance() {
        let a = NodeID(hex: "8000000000000000000000000000000000000001")!
        #expect(a.bit(0) && !a.bit(1) && a.bit(159))
        #expect(a.setting(bit: 0, to: false).leadingZeroBitCount == 159)
        #expect(NodeID.zero.leadingZeroBitCount == 160)
        #expect(a.hexString == "8000000000000000000000000000000000000001")
        var rng = SplitMixForTests(seed: 3)
        for p in [0, 5, 63, 64, 100, 127, 128, 150, 159] {
            let r = a.randomInBucket(prefix: p, using: &rng)
            #expect(a.commonPrefixLength(with: r) == p)
        }
        #expect(
            closer(
                NodeID(hex: "0000000000000000000000000000000000000001")!,
                NodeID(hex: "0000000000000000000000000000000000000002")!,
                to: .zero
            )
        )
    }

    /// BEP 42's test vectors: IP, random byte, and the id prefix they must produce.
    @Test(arguments: [
        ("124.31.75.21", UInt8(1), "5fbfb"),
        ("21.75.31.124", 86, "5a3ce"),
        ("65.23.51.170", 22, "a5d43"),
        ("84.124.73.14", 65, "1b032"),
        ("43.213.53.83", 90, "e56f6"),
    ])
    func bep42Vectors(ip: String, r: UInt8, prefix: String) {
        let addr = PeerAddress.parseIPv4(ip)!
        let crc = BEP42.crc(ip: addr, r: r)
        let first = String(hex([UInt8(crc >> 24), UInt8((crc >> 16) & 0xFF), UInt8((crc >> 8) & 0xFF)]).prefix(5))
        // The 21st bit onwards is random, so compare the first 20 bits exactly.
        #expect(first == prefix)
        var rng = SplitMixForTests(seed: UInt64(r))
        let id = BEP42.nodeID(for: addr, using: &rng)
        #expect(BEP42.isValid(id, for: addr))
        #expect(!BEP42.isValid(id, for: addr ^ 0x0100_0000))
        #expect(BEP42.isExempt(PeerAddress.parseIPv4("192.168.1.1")!) && !BEP42.isExempt(addr))
    }

    @Test func crc32cKnownAnswer() {
        #expect(CRC32C.checksum(Array("123456789".utf8)) == 0xE306_9283)
    }

    @Test func topicInfoHashIsBLAKE2b160OfTheNamespacedTopic() {
        // Computed independently: python3 -c 'import hashlib; print(hashlib.blake2b(b"turf:dht-topic:v1:hello", digest_size=20).hexdigest())'
        #expect(Topic.infoHash("hello").hexString == "c35ee8023b5cbc8578f04713d05f98c44a837c1f")
        #expect(Topic.infoHash("hello") != Topic.infoHash("Hello"))
    }
}

/// A tiny deterministic generator for tests that need a RandomNumberGenerator.
struct SplitMixForTests: RandomNumberGenerator {
    var s: UInt64
    init(seed: UInt64) { s = seed }
    mutating func next() -> UInt64 {
        s &+= 0x9E37_79B9_7F4A_7C15
        var z = s
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}
