import Testing

@testable import InternetSim

/// `turf bench internet` at a small scale (virtual time; a few seconds of wall time in debug).
@Suite struct InternetSimulationTests {
    static func small(seed: UInt64 = 5, playerRelays: Bool = true) -> InternetSimulation.Parameters {
        var p = InternetSimulation.Parameters()
        p.nodes = 2000
        p.players = 80
        p.windowSeconds = 30
        p.matchSeconds = 5
        p.seed = seed
        p.playerRelays = playerRelays
        return p
    }

    /// Same seed, same figures (the report and its breakdowns), and the quotas hold.
    @Test func sameSeedSameReportAndQuotasHold() throws {
        let a = try InternetSimulation(Self.small()).run()
        let b = try InternetSimulation(Self.small()).run()
        #expect(a.report == b.report)
        #expect(a.breakdown == b.breakdown)
        let r = a.report
        #expect(r.joins == 80 - r.lobbies)
        #expect(r.player_relays > 0)
        #expect(r.relays_over_quota == 0)
        #expect(r.players_over_share == 0)
        #expect(r.relay_bytes_per_sec_max <= r.relay_quota_total_bytes_per_sec + 64 * 1024)
        #expect(r.join_success_rate >= 0.9)
        #expect(a.breakdown.paths["relayed", default: 0] > 0)
        #expect(a.breakdown.paths["direct", default: 0] > 0)
        // Most of the DHT does not know turf: the fast knock's turf_knock gets "method unknown".
        #expect(r.dht_plain_unknown_method > 0)
    }

    /// With no relay anywhere (no volunteers, players do not relay), the pairs that cannot
    /// punch fail: fewer joins succeed, none relayed.
    @Test func withoutAnyRelayOnlyPunchedJoinsSucceed() throws {
        let r = try InternetSimulation(Self.small(playerRelays: false)).run()
        #expect(r.breakdown.paths["relayed", default: 0] == 0)
        #expect(r.report.player_relays == 0)
        #expect(r.report.join_success_rate < 1)
        #expect(r.breakdown.failure_reasons["no_relay_found", default: 0] > 0)
    }
}
