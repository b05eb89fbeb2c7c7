import ArgumentParser
import DHT
import DHTSim
import Foundation
import TextOutput

extension DHTSimulation.Bootstrap: ExpressibleByArgument {}

/// `turf bench dht`: the Mainline DHT at scale on the simulated network (docs/benchmarks.md).
struct BenchDHT: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "dht",
        abstract: "Simulate N DHT nodes with churn; report lookup success, rounds, messages and latency."
    )

    @Option(
        help:
            "How the network is built: 'protocol' (nodes join through the protocol with empty tables; hosts keep re-announcing) or 'oracle' (prebuilt converged tables, one announce; for comparison)."
    )
    var bootstrap: DHTSimulation.Bootstrap = .protocol
    @Option(help: Limits.dhtNodes.help("Number of simulated nodes.", default: 10000), transform: Limits.dhtNodes.parse)
    var nodes = 10_000
    @Option(
        help: Limits.churn.help("Fraction of nodes replaced during the run.", default: 0.2),
        transform: Limits.churn.parse
    )
    var churn = 0.2
    @Option(
        name: .customLong("hop-ms"),
        help: Limits.hopMs.help("One-way latency of every hop.", default: 50),
        transform: Limits.hopMs.parse
    )
    var hopMs = 50
    @Option(
        help: Limits.topics.help("Topics announced before the lookups, below half of --nodes.", default: 100),
        transform: Limits.topics.parse
    )
    var topics = 100
    @Option(help: Limits.lookups.help("Lookups measured.", default: 2000), transform: Limits.lookups.parse)
    var lookups = 2000
    @Option(
        help: Limits.simSeconds.help(
            "Virtual seconds over which churn and lookups are spread (default 3000 in protocol mode, 600 in oracle mode)."
        ),
        transform: Limits.simSeconds.parse
    )
    var window: Int?
    @Option(
        name: .customLong("join-seconds"),
        help: Limits.simSeconds.help(
            "Protocol mode: virtual seconds over which the initial nodes join.",
            default: 1200
        ),
        transform: Limits.simSeconds.parse
    )
    var joinSeconds = 1200
    @Option(help: Limits.loss.help("Probability that any datagram is lost.", default: 0), transform: Limits.loss.parse)
    var loss = 0.0
    @Option(help: "Seed of the simulation (same seed, same figures).") var seed: UInt64 = 1
    @Flag(help: "Print one JSON object.") var json = false

    func validate() throws {
        guard topics * 2 < nodes else { throw ValidationError("--topics must be below half of --nodes") }
    }

    func run() throws {
        var p = DHTSimulation.Parameters()
        p.bootstrap = bootstrap
        p.nodes = nodes
        p.joinSeconds = joinSeconds
        p.churn = churn
        p.hopMs = hopMs
        p.topics = topics
        p.lookups = lookups
        p.windowSeconds = window
        p.seed = seed
        p.loss = loss
        let t0 = Date()
        let r = DHTSimulation(p).run()
        let wall = Date().timeIntervalSince(t0)
        if json {
            var j = JSONObject()
            j.add("benchmark", "dht")
            j.merge(try JSONObject(encoding: r))
            j.add("wall_seconds", (wall * 100).rounded() / 100)
            print(j.text)
        } else {
            print(
                """
                DHT simulation (\(r.mode) bootstrap): \(r.nodes) nodes, churn \(r.churn) (\(r.nodes_left) left, \(r.joins_completed)/\(r.nodes_joined) joined), \
                hop \(r.hop_ms) ms
                lookups: \(r.lookups_completed)/\(r.lookups) completed, success rate \(r.success_rate) over \(r.lookups_measured) \
                (\(r.lookups_announcer_gone) of topics whose announcer left, not counted)
                rounds p50 \(r.rounds_p50), p99 \(r.rounds_p99); messages per lookup \(r.messages_per_lookup) (p99 \(r.messages_p99))
                latency p50 \(r.latency_ms_p50) ms, p99 \(r.latency_ms_p99) ms; wall \(String(format: "%.1f", wall)) s
                """
            )
        }
    }
}
