import Bencode
import NetCore
import NetSim
import Sodium
import Testing

@testable import DHT

/// BEP 44: immutable and signed mutable items.
@Suite struct ItemTests {
    @Test func sha1KnownAnswers() {
        #expect(hex(SHA1.hash(Array("abc".utf8))) == "a9993e364706816aba3e25717850c26c9cd0d89d")
        #expect(hex(SHA1.hash([])) == "da39a3ee5e6b4b0d3255bfef95601890afd80709")
        #expect(
            hex(SHA1.hash(Array("abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq".utf8)))
                == "84983e441c3bd26ebaae4aa1f95129e5e54670f1"
        )
    }

    /// The mutable-item test vectors of BEP 44 (signatures verify, targets match).
    @Test func bep44Vectors() {
        let v = BValue.string("Hello World!")
        // SHA-1 of "12:Hello World!", checked with python3 hashlib.
        #expect(DHTItem.immutableTarget(v).hexString == "e5f96f6f38320f0f33959cb4d3d656452117aadb")
        let pk = unhex("77ff84905a91936367c01360803104f92432fcd904a43511876df5cdf3e7e548")!
        let m1 = MutableItem(
            publicKey: pk,
            salt: [],
            seq: 1,
            value: v,
            signature: unhex(
                "305ac8aeb6c9c151fa120f120ea2cfb923564e11552d06a5d856091e5e853cff1260d3f39e4999684aa92eb73ffd136e6f4f3ecbfda0ce53a1608ecd7ae21f01"
            )!
        )
        #expect(m1.isValid)
        #expect(m1.target.hexString == "4a533d47ec9c7d95b1ad75f576cffc641853b750")
        #expect(MutableItem.signable(salt: [], seq: 1, value: v) == Array("3:seqi1e1:v12:Hello World!".utf8))
        let m2 = MutableItem(
            publicKey: pk,
            salt: Array("foobar".utf8),
            seq: 1,
            value: v,
            signature: unhex(
                "6834284b6b24c3204eb2fea824d82f88883a3d95e8b4a21b8c0ded553d17d17ddf9a8a7104b1258f30bed3787e6cb896fca78c58f8e03b5f18f14951a87d9a08"
            )!
        )
        #expect(m2.isValid)
        #expect(m2.target.hexString == "411eba73b6f087ca51a3795d9c8c938d365e32c1")
        var forged = m1
        forged.seq = 2
        #expect(!forged.isValid)
    }

    func network(_ n: Int, seed: UInt64) -> (SimNetwork, [DHTNode]) {
        let net = SimNetwork(seed: seed, conditions: LinkConditions(latency: .milliseconds(10)))
        var nodes: [DHTNode] = []
        for i in 0..<n {
            var c = DHTConfig()
            c.seed = seed &* 100 &+ UInt64(i)
            c.bootstrap = i == 0 ? [] : [PeerAddress(198, 18, 0, 0, port: 6881)]
            nodes.append(DHTNode.alone(on: net.bind(PeerAddress(198, 18, UInt8(i), 0, port: 6881)), config: c))
        }
        for (i, x) in nodes.enumerated() { net.schedule(after: .milliseconds(100 * i)) { x.start() } }
        _ = net.run(for: .seconds(10))
        return (net, nodes)
    }

    @Test func putAndGetSignedLobbyDescriptors() {
        let (net, nodes) = network(24, seed: 21)
        let key = try! Ed25519.KeyPair(seed: [UInt8](repeating: 42, count: 32))
        let salt = Array("lobby".utf8)
        let v1 = BValue.dictionary([("addr", .string("203.0.113.7:4000")), ("players", .int(2))])
        var stored = 0
        nodes[3].put(.mutable(MutableItem(signedBy: key, salt: salt, seq: 1, value: v1))) { stored = $0 }
        _ = net.run(for: .seconds(10))
        #expect(stored >= 6)
        var got: MutableItem?
        nodes[17].getMutable(publicKey: key.publicKey, salt: salt) { got = $0 }
        _ = net.run(for: .seconds(10))
        #expect(got?.value == v1 && got?.seq == 1)
        // A newer version replaces it; an older one is refused (302).
        let v2 = BValue.dictionary([("addr", .string("203.0.113.7:4000")), ("players", .int(3))])
        var storedV2 = 0
        nodes[5].put(.mutable(MutableItem(signedBy: key, salt: salt, seq: 2, value: v2))) { storedV2 = $0 }
        _ = net.run(for: .seconds(10))
        #expect(storedV2 >= 6)
        let rejectedBefore = nodes.reduce(0) { $0 + $1.stats.itemsRejected }
        nodes[6].put(.mutable(MutableItem(signedBy: key, salt: salt, seq: 1, value: v1))) { stored = $0 }
        _ = net.run(for: .seconds(10))
        let rejected = nodes.reduce(0) { $0 + $1.stats.itemsRejected } - rejectedBefore
        #expect(rejected >= 5, "nodes holding seq 2 refuse seq 1 (302)")
        nodes[20].getMutable(publicKey: key.publicKey, salt: salt) { got = $0 }
        _ = net.run(for: .seconds(10))
        #expect(got?.seq == 2 && got?.value == v2)
        // Immutable items.
        let blob = BValue.string("a rules file")
        nodes[8].put(.immutable(blob)) { stored = $0 }
        _ = net.run(for: .seconds(10))
        var back: BValue?
        nodes[12].getImmutable(DHTItem.immutableTarget(blob)) { back = $0 }
        _ = net.run(for: .seconds(10))
        #expect(back == blob)
    }

    @Test func badPutsGetTheBEP44Errors() throws {
        let net = SimNetwork(seed: 22, conditions: .perfect)
        var c = DHTConfig()
        c.seed = 22
        let node = DHTNode.alone(on: net.bind(PeerAddress(198, 51, 100, 1, port: 6881)), config: c)
        let probe = NodeTests.Probe(net, PeerAddress(203, 0, 113, 5, port: 41000))
        let me = NodeID(hex: "4400000000000000000000000000000000000000")!
        let key = Ed25519.KeyPair.generate()
        let good = MutableItem(signedBy: key, seq: 5, value: .string("x"))
        probe.query(KRPCQuery(method: .get, id: me, target: good.target), t: [1], to: node.localAddress)
        _ = net.run(for: .seconds(1))
        guard case .response(let r)? = probe.response([1])?.body, let token = r.token else {
            Issue.record("no token")
            return
        }
        func put(_ t: UInt8, _ m: MutableItem, salt: [UInt8]? = nil, cas: Int64? = nil, v: BValue? = nil)
            -> KRPCErrorBody?
        {
            var extra: [(String, BValue)] = [
                ("k", .bytes(m.publicKey)), ("seq", .int(m.seq)), ("sig", .bytes(m.signature)), ("v", v ?? m.value),
            ]
            if let salt { extra.append(("salt", .bytes(salt))) }
            if let cas { extra.append(("cas", .int(cas))) }
            probe.query(KRPCQuery(method: .put, id: me, token: token, extra: extra), t: [t], to: node.localAddress)
            _ = net.run(for: .seconds(1))
            if case .error(let e)? = probe.response([t])?.body { return e }
            return nil
        }
        #expect(put(2, good) == nil)
        #expect(put(3, good, v: .string("tampered"))?.code == 206)
        #expect(put(4, good, salt: [UInt8](repeating: 1, count: 65))?.code == 207)
        #expect(
            put(5, MutableItem(signedBy: key, seq: 6, value: .bytes([UInt8](repeating: 0, count: 1000))))?.code == 205
        )
        #expect(put(6, MutableItem(signedBy: key, seq: 4, value: .string("old")))?.code == 302)
        #expect(put(7, MutableItem(signedBy: key, seq: 7, value: .string("new")), cas: 3)?.code == 301)
        #expect(put(8, MutableItem(signedBy: key, seq: 7, value: .string("new")), cas: 5) == nil)
        // get with a seq we already have returns only the number.
        probe.query(
            KRPCQuery(method: .get, id: me, target: good.target, extra: [("seq", .int(7))]),
            t: [9],
            to: node.localAddress
        )
        _ = net.run(for: .seconds(1))
        guard case .response(let r9)? = probe.response([9])?.body else {
            Issue.record("no answer")
            return
        }
        #expect(r9.body["seq"]?.intValue == 7 && r9.body["v"] == nil)
        #expect(node.stats.itemsStored == 2 && node.stats.itemsRejected == 5)
    }
}
