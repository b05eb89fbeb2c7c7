import ArgumentParser
import Foundation
import InternetSim
import NetStack
import TextOutput

/// `turf bench internet`: turf's players on a simulated internet (docs/benchmarks.md).
struct BenchInternet: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "internet",
        abstract:
            "Simulate players behind NATs on a Mainline-like DHT; report join success, join times, paths and relay load."
    )

    @Option(
        help: Limits.internetNodes.help("Plain Mainline DHT nodes.", default: 100_000),
        transform: Limits.internetNodes.parse
    )
    var nodes = 100_000
    @Option(
        help: Limits.internetPlayers.help("Players (hosting and joining lobbies of 2-8).", default: 10_000),
        transform: Limits.internetPlayers.parse
    )
    var players = 10_000
    @Option(
        help: Limits.internetWindow.help("Virtual seconds over which lobbies open.", default: 300),
        transform: Limits.internetWindow.parse
    )
    var window = 300
    @Option(
        name: .customLong("match-seconds"),
        help: Limits.matchSeconds.help("Seconds of match traffic on each relayed session.", default: 60),
        transform: Limits.matchSeconds.parse
    )
    var matchSeconds = 60
    @Option(
        help: Limits.volunteers.help("Volunteer relays (turf dht serve --relay).", default: 0),
        transform: Limits.volunteers.parse
    )
    var volunteers = 0
    @Option(
        name: .customLong("churn-per-hour"),
        help: Limits.churnPerHour.help("Fraction of DHT nodes replaced per hour.", default: 0.2),
        transform: Limits.churnPerHour.parse
    )
    var churnPerHour = 0.2
    @Option(
        name: .customLong("same-home"),
        help: Limits.share.help("Share of joiners in their host's home (LAN).", default: 0.03),
        transform: Limits.share.parse
    )
    var sameHome = 0.03
    @Option(
        name: .customLong("relay-shards"),
        help: ArgumentHelp(
            "Shard levels of player relays, comma-separated (each 2-4096; 1 or none: the single info-hash alone; default \(RelayFrame.playerRelayShardLevels.map(String.init).joined(separator: ",")))."
        ),
        transform: BenchInternet.parseShardLevels
    )
    var relayShards = RelayFrame.playerRelayShardLevels
    @Option(
        name: .customLong("relay-after-ms"),
        help: Limits.relayAfterMs.help(
            "Milliseconds without a session before a joiner tries relays (default: turf's, 500)."
        ),
        transform: Limits.relayAfterMs.parse
    )
    var relayAfterMs: Int?
    @Flag(
        name: .customLong("unreachable-relays"),
        help:
            "Players behind a consistent NAT relay even when it filters strangers (turf relays only once a stranger's datagram came in)."
    )
    var unreachableRelays = false
    @Flag(
        name: .customLong("no-relay-holders"),
        help: "Relays do not announce the lobbies they hold; joiners rank relays alone (turf announces them)."
    )
    var noRelayHolders = false
    @Flag(name: .customLong("no-player-relays"), help: "Players do not relay for each other.")
    var noPlayerRelays = false
    @Option(help: "Seed of the simulation (same seed, same figures).") var seed: UInt64 = 1
    @Flag(help: "Print one JSON object.") var json = false

    /// `--relay-shards`: "16,256", or "1" / "none" for none.
    @Sendable static func parseShardLevels(_ s: String) throws -> [Int] {
        if s == "1" || s == "none" { return [] }
        let levels = try s.split(separator: ",", omittingEmptySubsequences: false).map { part -> Int in
            guard let n = Int(part), Limits.relayShards.contains(n), n > 1 else {
                throw ValidationError("--relay-shards: each level must be 2-4096 (or 1 / none alone)")
            }
            return n
        }
        guard levels.count <= 4 else { throw ValidationError("--relay-shards: at most 4 levels") }
        return levels
    }

    func run() throws {
        var p = InternetSimulation.Parameters()
        p.nodes = nodes
        p.players = players
        p.windowSeconds = window
        p.matchSeconds = matchSeconds
        p.volunteers = volunteers
        p.churnPerHour = churnPerHour
        p.sameHome = sameHome
        p.playerRelays = !noPlayerRelays
        p.relayShards = relayShards
        p.relayAfterMs = relayAfterMs
        p.reachableRelaysOnly = !unreachableRelays
        p.relayHolders = !noRelayHolders
        p.seed = seed
        let t0 = Date()
        let (r, b) = try InternetSimulation(p).run()
        let wall = Date().timeIntervalSince(t0)
        if json {
            var j = JSONObject()
            j.add("benchmark", "internet")
            j.merge(try JSONObject(encoding: r))
            func object(_ d: [String: Int]) -> JSONObject {
                var o = JSONObject()
                for (k, v) in d.sorted(by: { $0.key < $1.key }) { o.add(k, v) }
                return o
            }
            j.add("paths", object(b.paths))
            j.add("nat_mix", object(b.nat_mix))
            j.add("relayed_joins_by_pair", object(b.relayed_joins_by_pair))
            j.add("failed_joins_by_pair", object(b.failed_joins_by_pair))
            j.add("failure_reasons", object(b.failure_reasons))
            j.add("relayed_joins_by_round", object(b.relayed_joins_by_round))
            j.add("connect_ms_p50_by_path", object(b.connect_ms_p50_by_path))
            j.add("connect_ms_p95_by_path", object(b.connect_ms_p95_by_path))
            j.add("player_relays_enabled", !noPlayerRelays)
            j.add("relay_shards", relayShards.map(String.init).joined(separator: ","))
            j.add("relay_after_ms", relayAfterMs)
            j.add("reachable_relays_only", !unreachableRelays)
            j.add("relay_holders", !noRelayHolders)
            j.add("wall_seconds", (wall * 100).rounded() / 100)
            print(j.text)
        } else {
            print(
                """
                Simulated internet: \(r.nodes) DHT nodes, \(r.players) players in \(r.lobbies) lobbies, \
                \(r.volunteers) volunteer relays, \(r.player_relays) player relays
                joins: \(r.joins), success rate \(r.join_success_rate); join ms p50 \(r.join_ms_p50), \
                p95 \(r.join_ms_p95), p99 \(r.join_ms_p99)
                paths: \(b.paths.sorted { $0.key < $1.key }.map { "\($0.key) \($0.value)" }.joined(separator: ", "))
                relay bytes/s max \(r.relay_bytes_per_sec_max) (quota \(r.relay_quota_total_bytes_per_sec)); \
                over quota \(r.relays_over_quota); DHT messages per join \(r.dht_messages_per_join)
                wall \(String(format: "%.1f", wall)) s, virtual \(r.virtual_seconds) s
                """
            )
        }
    }
}
