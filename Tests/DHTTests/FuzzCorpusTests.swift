import Bencode
import DHTSim
import Determinism
import NetCore
import NetSim
import Testing

@_spi(Fuzzing) @testable import DHT

/// The parsers over a corpus of valid KRPC messages plus seeded random mutations (the same check
/// the libFuzzer target in Fuzz/ runs): no crash, and the strict codec's promises hold.
@Suite struct FuzzCorpusTests {
    static func corpus() -> [[UInt8]] {
        let id = NodeID(hex: "0123456789abcdef0123456789abcdef01234567")!
        let h = Topic.infoHash("corpus")
        let nodes = (0..<4).map {
            NodeInfo(
                id: NodeID(bytes: [UInt8](repeating: UInt8($0 * 40), count: 20))!,
                address: PeerAddress(10, 0, 0, UInt8($0), port: 6881)
            )
        }
        let nodes6 = (0..<3).map {
            NodeInfo(
                id: NodeID(bytes: [UInt8](repeating: UInt8(200 - $0 * 40), count: 20))!,
                address: PeerAddress(host: "2001:db8::\($0 + 1)", port: 6881)!
            )
        }
        let msgs: [KRPCMessage] = [
            KRPCMessage(transactionID: [1, 2], body: .query(KRPCQuery(method: .ping, id: id))),
            KRPCMessage(
                transactionID: [1, 3],
                body: .query(KRPCQuery(method: .findNode, id: id, target: h)),
                version: Array("TF01".utf8)
            ),
            KRPCMessage(
                transactionID: [1, 4],
                body: .query(KRPCQuery(method: .getPeers, id: id, infoHash: h, readOnly: true))
            ),
            KRPCMessage(
                transactionID: [1, 5],
                body: .query(
                    KRPCQuery(
                        method: .announcePeer,
                        id: id,
                        infoHash: h,
                        port: 6881,
                        impliedPort: true,
                        token: [1, 2, 3, 4, 5, 6, 7, 8]
                    )
                )
            ),
            KRPCMessage(
                transactionID: [1, 6],
                body: .response(KRPCResponse(id: id)),
                ip: PeerAddress(203, 0, 113, 1, port: 4000)
            ),
            KRPCMessage(transactionID: [1, 7], body: .response(KRPCResponse(id: id, nodes: nodes, token: [9, 9, 9]))),
            KRPCMessage(
                transactionID: [1, 8],
                body: .response(
                    KRPCResponse(
                        id: id,
                        values: [PeerAddress(1, 2, 3, 4, port: 5), PeerAddress(6, 7, 8, 9, port: 10)],
                        token: [1]
                    )
                )
            ),
            KRPCMessage(transactionID: [1, 9], body: .error(KRPCErrorBody(code: 203, message: "bad token"))),
            // The knock's messages (docs/dht.md, "Knocking").
            KRPCMessage(
                transactionID: [1, 10],
                body: .query(
                    KRPCQuery(
                        method: .knock,
                        id: id,
                        infoHash: h,
                        token: [1, 2, 3],
                        extra: [("blob", .bytes([7, 7]))]
                    )
                )
            ),
            KRPCMessage(
                transactionID: [1, 11],
                body: .query(
                    KRPCQuery(
                        method: .knocked,
                        id: id,
                        infoHash: h,
                        extra: [("blob", .bytes([7])), ("src", .bytes(PeerAddress(10, 0, 0, 1, port: 2).compact))]
                    )
                )
            ),
            // BEP 32: want, nodes6, 18-byte values, ip and src.
            KRPCMessage(
                transactionID: [1, 12],
                body: .query(KRPCQuery(method: .getPeers, id: id, infoHash: h, want: [.v4, .v6]))
            ),
            KRPCMessage(
                transactionID: [1, 13],
                body: .response(
                    KRPCResponse(
                        id: id,
                        nodes: nodes,
                        nodes6: nodes6,
                        values: [PeerAddress(1, 2, 3, 4, port: 5), PeerAddress(host: "2001:db8::7", port: 7)!],
                        token: [2]
                    )
                ),
                ip: PeerAddress(host: "2001:db8::1", port: 4000)
            ),
            KRPCMessage(
                transactionID: [1, 14],
                body: .query(
                    KRPCQuery(
                        method: .knocked,
                        id: id,
                        infoHash: h,
                        extra: [
                            ("blob", .bytes([7])), ("src", .bytes(PeerAddress(host: "2001:db8::9", port: 2)!.compact)),
                        ]
                    )
                )
            ),
        ]
        return msgs.map { $0.encoded() } + [Array("li1ei-2e3:abcd1:ale1:bdeee".utf8), Array("i0e".utf8)]
    }

    @Test func corpusIsAccepted() {
        for c in Self.corpus() {
            #expect(DHTFuzz.check(c) == nil)
            #expect((try? Bencode.decode(c)) != nil)
        }
    }

    @Test func seededMutationsNeverBreakTheParsers() {
        var rng = SplitMix64(seed: 0xF022)
        // Plus a query with its keys out of order, which only the KRPC decoder's lenient path takes.
        let corpus = Self.corpus() + [Array("d1:y1:q1:t2:aa1:q4:ping1:ad2:id20:abcdefghij0123456789ee".utf8)]
        var accepted = 0
        var rejected = 0
        let interesting: [UInt8] = Array("deil:0123456789-".utf8) + [0, 0xFF]
        for _ in 0..<30_000 {
            var x = corpus[rng.below(corpus.count)]
            for _ in 0...rng.below(4) {
                switch rng.below(7) {
                case 0 where !x.isEmpty: x[rng.below(x.count)] ^= UInt8(1) << UInt8(rng.below(8))
                case 1 where !x.isEmpty: x[rng.below(x.count)] = interesting[rng.below(interesting.count)]
                case 2: x.insert(interesting[rng.below(interesting.count)], at: rng.below(x.count + 1))
                case 3 where !x.isEmpty: x.remove(at: rng.below(x.count))
                case 4: x = Array(x.prefix(rng.below(x.count + 1)))
                case 5:
                    let other = corpus[rng.below(corpus.count)]
                    let cut = rng.below(x.count + 1)
                    let from = rng.below(other.count + 1)
                    x = Array(x.prefix(cut)) + Array(other.suffix(from: from))
                default:
                    if !x.isEmpty {
                        let i = rng.below(x.count)
                        let n = min(x.count - i, 1 + rng.below(8))
                        x.insert(contentsOf: x[i..<(i + n)], at: i)
                    }
                }
            }
            if let problem = DHTFuzz.check(x) {
                Issue.record("\(problem) for input \(hex(x))")
                return
            }
            if (try? KRPCMessage.decode(x)) != nil { accepted += 1 } else { rejected += 1 }
        }
        // Both paths were exercised.
        #expect(accepted > 100 && rejected > 10_000, "accepted \(accepted), rejected \(rejected)")
    }

    @Test func feedingMutationsToALiveNodeIsHarmless() {
        let net = SimNetwork(seed: 1, conditions: .perfect)
        var c = DHTConfig()
        c.seed = 1
        c.queryRate = 1e9
        c.queryBurst = 1e9
        let node = DHTNode.alone(on: net.bind(PeerAddress(198, 51, 100, 1, port: 6881)), config: c)
        var rng = SplitMix64(seed: 77)
        let corpus = Self.corpus()
        for i in 0..<5000 {
            var x = corpus[rng.below(corpus.count)]
            x[rng.below(x.count)] = UInt8(truncatingIfNeeded: rng.next())
            node.receive(x, from: PeerAddress(ip: 0xCB00_7100 | UInt32(i % 200), port: UInt16(1000 + i % 7)))
        }
        _ = net.run(for: .seconds(5))
        #expect(node.stats.received == 5000)
        #expect(
            node.stats.malformed + node.stats.queriesAnswered + node.stats.errorsSent + node.stats.unexpectedResponses
                + node.stats.badTokens >= 4000
        )
        #expect(node.table.count <= 8 * 160)
    }

    /// The same against a dual-stack node, from IPv4 and IPv6 sources alike.
    @Test func feedingMutationsToADualStackNodeIsHarmless() {
        let net = SimNetwork(seed: 2, conditions: .perfect)
        var c = DHTConfig()
        c.seed = 2
        c.queryRate = 1e9
        c.queryBurst = 1e9
        let host = DualStackSimHost(
            network: net,
            v4: PeerAddress(198, 51, 100, 1, port: 6881),
            v6: PeerAddress(host: "2001:db8::1", port: 6881)!
        )
        let node = DHTNode.alone(on: host, config: c)
        var rng = SplitMix64(seed: 78)
        let corpus = Self.corpus()
        for i in 0..<5000 {
            var x = corpus[rng.below(corpus.count)]
            x[rng.below(x.count)] = UInt8(truncatingIfNeeded: rng.next())
            let source =
                i % 2 == 0
                ? PeerAddress(ip: 0xCB00_7100 | UInt32(i % 200), port: UInt16(1000 + i % 7))
                : PeerAddress(ip6: IPv6Address(hi: 0x2001_0DB8_0000_0000 | UInt64(i % 200) << 16, lo: 1), port: 1000)
            node.receive(x, from: source)
        }
        _ = net.run(for: .seconds(5))
        #expect(node.stats.received == 5000)
        #expect(node.table.count <= 8 * 160 && node.table6.count <= 8 * 160)
        #expect(node.table6.allEntries.allSatisfy { $0.info.address.isIPv6 })
        #expect(node.table.allEntries.allSatisfy { !$0.info.address.isIPv6 })
    }
}
