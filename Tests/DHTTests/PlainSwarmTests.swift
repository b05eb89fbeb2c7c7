import DHT
import DHTSim
import Determinism
import NetCore
import NetSim
import Testing

/// `bench internet`'s cheap Mainline (PlainSwarm, PlainResponder): real DHT nodes announce and
/// find through plain nodes whose tables are modelled, and the plain nodes know nothing of turf.
@Suite struct PlainSwarmTests {
    private func node(_ net: SimNetwork, _ swarm: PlainSwarm, _ i: Int) -> DHTNode {
        var c = DHTConfig()
        c.seed = StableHash.of(99, UInt64(i))
        c.bep42NodeIDs = false
        c.bootstrap = []
        let s = net.bind(PeerAddress(ip: 0xC612_0001 &+ UInt32(i), port: 7000))
        let n = DHTNode(host: s, demux: Demultiplexer(socket: s), config: c)
        n.start(savedNodes: swarm.table(for: n.id, key: UInt64(i)))
        return n
    }

    @Test func realNodesAnnounceAndFindThroughPlainNodes() {
        let net = SimNetwork(seed: 3, conditions: LinkConditions(latency: .milliseconds(40)))
        var c = PlainSwarm.Config()
        c.nodes = 3000
        c.seed = 3
        let swarm = PlainSwarm(net: net, config: c)
        let nodes = (0..<12).map { node(net, swarm, $0) }
        _ = net.run(for: .seconds(10))
        let topics = (0..<6).map { Topic.infoHash("plain-\($0)") }
        var stored: [Int] = []
        for (t, h) in topics.enumerated() { nodes[t].announce(h, port: 7000) { _, n in stored.append(n) } }
        _ = net.run(for: .seconds(10))
        #expect(stored.count == 6 && stored.allSatisfy { $0 >= 4 })
        var found = 0
        var messages = 0
        for (t, h) in topics.enumerated() {
            nodes[6 + t].getPeers(h) { r in
                if r.peers.contains(nodes[t].localAddress.with(port: 7000)) { found += 1 }
                messages += r.messages
            }
        }
        _ = net.run(for: .seconds(20))
        #expect(found == 6)
        #expect(messages / 6 < 80)
        #expect(swarm.stats.stored >= 24)
        // The plain nodes told the real ones where they are seen from (BEP 42 `ip`).
        #expect(nodes[0].externalAddress == nodes[0].localAddress)
    }

    @Test func plainNodesAnswerTurfsExtensionsWithMethodUnknown() {
        var r = PlainResponder(id: NodeID(a: 1, b: 2, c: 3), secret: 1)
        // A query of a method it does not know (the simulation's `dht_plain_unknown_method` counts
        // the real `turf_knock`s that reach plain nodes).
        let knock = Array("d1:ad2:id20:aaaaaaaaaaaaaaaaaaaae1:q11:turf_future1:t2:xy1:y1:qe".utf8)
        let (reply, outcome) = r.answer(knock, from: PeerAddress(11, 0, 0, 9, port: 1), now: 0) { _ in [] }
        #expect(outcome == .unknownMethod)
        #expect(reply.map { String(decoding: $0, as: UTF8.self).contains("i204e") } == true)
        let ping = Array("d1:ad2:id20:aaaaaaaaaaaaaaaaaaaae1:q4:ping1:t2:xy1:y1:qe".utf8)
        #expect(r.answer(ping, from: PeerAddress(11, 0, 0, 9, port: 1), now: 0) { _ in [] }.outcome == .answered)
    }

    /// Churn: nodes leave and join over the window; a node that left stays listed (stale) for a while.
    @Test func churnReplacesNodes() {
        let net = SimNetwork(seed: 4)
        var c = PlainSwarm.Config()
        c.nodes = 2000
        c.churnPerHour = 0.6
        c.windowSeconds = 600
        c.seed = 4
        let swarm = PlainSwarm(net: net, config: c)
        _ = net.run(for: .seconds(600))
        #expect(swarm.stats.left == 200 && swarm.stats.joined == 200)
        #expect(swarm.aliveCount == 2000)
    }
}
