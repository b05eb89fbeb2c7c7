import DHT
import Testing

@Suite struct SimulationTests {
    @Test func fiveHundredNodesWithChurnFindTheirTopics() {
        var p = DHTSimulation.Parameters()
        p.nodes = 500
        p.churn = 0.2
        p.topics = 20
        p.lookups = 200
        p.windowSeconds = 300
        p.seed = 7
        let r = DHTSimulation(p).run()
        print(r)
        #expect(r.lookups_completed == 200)
        #expect(r.success_rate >= 0.99)
        #expect(r.messages_per_lookup <= 60)
        #expect(r.rounds_p99 <= 8)
        #expect(r.joins_completed == r.nodes_joined)
        #expect(r.announces_stored_mean >= 6)
    }
}
