import DHT
import DHTSim
import Testing

@Suite struct SimulationTests {
    /// The honest mode: every node joins through the protocol with an empty table, hosts keep
    /// announcing across a re-announce and the 30-minute storage expiry, 20% churn in the window.
    /// Virtual time only; the seed fixes every figure.
    @Test func threeHundredNodesJoinedThroughTheProtocolFindTheirTopics() {
        var p = DHTSimulation.Parameters()
        p.bootstrap = .protocol
        p.nodes = 300
        p.churn = 0.2
        p.topics = 20
        p.lookups = 300
        p.seed = 7
        let r = DHTSimulation(p).run()
        print(r)
        #expect(r.mode == "protocol")
        #expect(r.window_seconds >= 45 * 60)
        #expect(r.lookups_completed == 300)
        #expect(r.lookups_measured + r.lookups_announcer_gone == 300)
        #expect(r.lookups_measured >= 200)
        #expect(r.success_rate >= 0.999)
        #expect(r.messages_per_lookup <= 60)
        #expect(r.rounds_p99 <= 8)
        #expect(r.joins_completed == r.nodes + r.nodes_joined)
        #expect(r.nodes_left == 60 && r.nodes_joined == 60)
        // At least one re-announce per topic whose host stayed (every 15 minutes in the window).
        #expect(r.announce_rounds >= 2 * (r.topics - r.announcers_left))
        #expect(r.announces_stored_mean >= 6)
    }

    /// BEP 32: a mixed network (40% dual-stack, 30% IPv6-only, 30% IPv4-only) built through the
    /// protocol, with churn. Dual-stack nodes bootstrap through the routers' IPv4 addresses only;
    /// every lookup finds its (dual-stack) host at an address of a family the looker has.
    @Test func aMixedIPv4AndIPv6NetworkFindsItsTopics() {
        var p = DHTSimulation.Parameters()
        p.bootstrap = .protocol
        p.nodes = 300
        p.churn = 0.2
        p.topics = 20
        p.lookups = 300
        p.seed = 7
        p.dualStackShare = 0.4
        p.ipv6OnlyShare = 0.3
        let r = DHTSimulation(p).run()
        print(r)
        #expect(r.lookups_completed == 300)
        #expect(r.lookups_measured >= 200)
        #expect(r.success_rate >= 0.99)
        #expect(r.joins_completed == r.nodes + r.nodes_joined)
        #expect(r.announces_stored_mean >= 8, "a dual-stack host stores on the closest nodes of both families")
        #expect(r.messages_per_lookup <= 90)
    }

    /// The old mode, kept for comparison: prebuilt converged tables, one announce per topic.
    @Test func fiveHundredNodesWithOracleTablesFindTheirTopics() {
        var p = DHTSimulation.Parameters()
        p.bootstrap = .oracle
        p.nodes = 500
        p.churn = 0.2
        p.topics = 20
        p.lookups = 200
        p.windowSeconds = 300
        p.seed = 7
        let r = DHTSimulation(p).run()
        print(r)
        #expect(r.mode == "oracle")
        #expect(r.lookups_completed == 200)
        #expect(r.lookups_measured == 200)
        #expect(r.success_rate >= 0.99)
        #expect(r.messages_per_lookup <= 60)
        #expect(r.rounds_p99 <= 8)
        #expect(r.joins_completed == r.nodes_joined)
        #expect(r.announces_stored_mean >= 6)
    }
}
