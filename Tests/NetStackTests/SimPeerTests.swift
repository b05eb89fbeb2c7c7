import DHT
import NetCore
import NetSim
import NetStack
import Testing
import Transport

/// The same wiring on the simulated network (what the chaos tests of host/join will use).
@Suite struct SimPeerTests {
    /// Three peers on SimNetwork: a router, a host that announces, a joiner that finds the host
    /// by topic and opens an XX session to it. The session's first byte and the DHT's share each
    /// peer's one socket; the host's demultiplexer delivered both and dropped nothing.
    @Test func announceLookupAndSessionOnOneSocket() throws {
        let net = SimNetwork(seed: 88, conditions: LinkConditions(latency: .milliseconds(20)))
        func peer(_ ip: UInt8, bootstrap: [PeerAddress], identity: Identity?) -> Peer {
            simPeer(net, PeerAddress(10, 0, 0, ip, port: 6881), bootstrap: bootstrap, identity: identity)
        }
        let router = peer(1, bootstrap: [], identity: nil)
        let host = peer(2, bootstrap: [router.localAddress], identity: .generate())
        let joiner = peer(3, bootstrap: [router.localAddress], identity: .generate())
        router.start()
        let topic = Topic.infoHash("sim peers")
        var stored: Int?
        host.start { _ in host.dht.announce(topic, port: 1, impliedPort: true) { _, n in stored = n } }
        #expect(net.run(until: net.now + .seconds(30), while: { stored == nil }))
        #expect(stored == 1)

        var found: [PeerAddress]?
        joiner.start { _ in joiner.dht.getPeers(topic) { found = $0.peers } }
        #expect(net.run(until: net.now + .seconds(30), while: { found == nil }))
        #expect(found == [host.localAddress])

        var inbound: Session?
        host.sessions?.onInbound = { inbound = $0 }
        let s = try #require(joiner.sessions).connect(to: try #require(found?.first), mode: .discovered)
        #expect(net.run(until: net.now + .seconds(30), while: { !(s.isEstablished && inbound?.isEstablished == true) }))
        #expect(s.remoteKey == host.sessions?.identity.publicKey)
        #expect(host.dht.stats.received > 0)
        #expect(host.sessions?.stats.handshakesCompleted == 1)
        #expect(host.demux.dropped == 0)
        // The router has no session manager: it never saw a session packet, and its DHT answered.
        #expect(router.sessions == nil)
        #expect(router.dht.stats.queriesAnswered > 0)
    }
}
