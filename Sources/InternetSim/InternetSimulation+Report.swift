import DHTSim
import NetCore
import NetSim
import NetStack

extension InternetSimulation {
    /// The figures of a finished run. A join counts from the start of its topic lookup to its
    /// session with the host being up (Noise handshake done, on whichever path won); one that
    /// found no lobby in 15 s or no session by the connect deadline failed.
    func report(
        net: SimNetwork,
        swarm: PlainSwarm,
        lobbies: Int,
        joins: [SimJoin],
        natCounts: [String: Int],
        natOf: [PlayerNAT],
        lobbyOf: [[Int]],
        relayServers: [(server: RelayServer, player: Bool)],
        relayRates: (perSecond: UInt64, per10: UInt64, over: Int, overPlayers: Int)
    ) -> (report: Report, breakdown: Breakdown) {
        var hostOf: [Int: Int] = [:]
        for l in lobbyOf { for i in l.dropFirst() { hostOf[i] = l[0] } }
        let finished = joins.filter { $0.outcome != nil }
        let ok = finished.filter { $0.outcome == .connected }
        func pct(_ q: Double, of values: [Double]) -> Double {
            let ms = values.sorted()
            guard !ms.isEmpty else { return 0 }
            let v = ms[min(ms.count - 1, max(0, Int((Double(ms.count) * q).rounded(.up)) - 1))]
            return (v * 10).rounded() / 10
        }
        let joinMs = ok.map { Double($0.joinNanos) / 1e6 }
        func pct(_ q: Double) -> Double { pct(q, of: joinMs) }
        // The two phases: finding the lobby, then connecting (by the path that won).
        let findMs = ok.compactMap { j in j.foundAt.map { Double($0 &- j.began) / 1e6 } }
        var connectMs: [String: [Double]] = [:]
        for j in ok {
            if let path = j.path, let f = j.foundAt {
                connectMs[path, default: []].append(Double(j.finishedAt &- f) / 1e6)
            }
        }
        var paths: [String: Int] = ["direct": 0, "lan": 0, "relayed": 0]
        var relayedPairs: [String: Int] = [:]
        var failedPairs: [String: Int] = [:]
        for j in joins {
            let pair = "\(natOf[j.player.index].rawValue)->\(natOf[hostOf[j.player.index] ?? 0].rawValue)"
            if j.outcome == .connected, let path = j.path {
                paths[path, default: 0] += 1
                if path == "relayed" { relayedPairs[pair, default: 0] += 1 }
            } else {
                failedPairs[pair, default: 0] += 1
            }
        }
        let messages = joins.isEmpty ? 0 : Double(joins.reduce(UInt64(0)) { $0 + $1.dhtMessages }) / Double(joins.count)
        let quota = RelayServer.Config.player
        let r = Report(
            nodes: p.nodes,
            players: p.players,
            seed: p.seed,
            lobbies: lobbies,
            joins: joins.count,
            join_success_rate: joins.isEmpty ? 0 : (Double(ok.count) / Double(joins.count) * 10_000).rounded() / 10_000,
            join_ms_p50: pct(0.5),
            join_ms_p95: pct(0.95),
            join_ms_p99: pct(0.99),
            find_ms_p50: pct(0.5, of: findMs),
            find_ms_p95: pct(0.95, of: findMs),
            failures_not_found: joins.filter { $0.outcome == .notFound }.count,
            failures_timed_out: joins.count - ok.count - joins.filter { $0.outcome == .notFound }.count,
            volunteers: p.volunteers,
            player_relays: relayServers.filter(\.player).count,
            relay_bytes_per_sec_max: Int(relayRates.perSecond),
            relay_bytes_per_10s_mean_max: Int(relayRates.per10),
            relay_quota_total_bytes_per_sec: quota.totalBytesPerSecond ?? 0,
            relay_quota_per_client_bytes_per_sec: quota.bytesPerSecondPerClient,
            relays_over_quota: relayRates.over,
            players_over_share: relayRates.overPlayers,
            relay_frames_dropped_by_quota: relayServers.reduce(0) {
                $0 + $1.server.stats.byteQuota + $1.server.stats.totalQuota
            },
            dht_messages_per_join: (messages * 10).rounded() / 10,
            dht_plain_queries: swarm.stats.queries,
            dht_plain_unknown_method: swarm.stats.unknownMethod,
            dht_nodes_left: swarm.stats.left,
            dht_nodes_joined: swarm.stats.joined,
            datagrams_total: net.stats.sent,
            datagrams_filtered_by_nat: net.stats.filtered,
            virtual_seconds: Double(net.now) / 1e9
        )
        let b = Breakdown(
            paths: paths,
            nat_mix: natCounts,
            relayed_joins_by_pair: relayedPairs,
            failed_joins_by_pair: failedPairs,
            failure_reasons: joins.compactMap(\.failure).reduce(into: [:]) { $0[$1, default: 0] += 1 },
            relayed_joins_by_round: ok.compactMap(\.relayRound).reduce(into: [:]) { $0["\($1)", default: 0] += 1 },
            connect_ms_p50_by_path: connectMs.mapValues { Int(pct(0.5, of: $0)) },
            connect_ms_p95_by_path: connectMs.mapValues { Int(pct(0.95, of: $0)) }
        )
        return (r, b)
    }
}
