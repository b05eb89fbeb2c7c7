import ArgumentParser
@_spi(Simulation) import DHT
import Foundation

/// `turf bench dht`: the Mainline DHT at scale on the simulated network (docs/benchmarks.md).
struct BenchDHT: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "dht",
        abstract: "Simulate N DHT nodes with churn; report lookup success, rounds, messages and latency.")

    @Option(help: ArgumentHelp("How the network is built: 'protocol' (nodes join through the protocol with empty tables; hosts keep re-announcing) or 'oracle' (prebuilt converged tables, one announce; for comparison).", valueName: "protocol|oracle"))
    var bootstrap = "protocol"
    @Option(help: "Number of simulated nodes.") var nodes = 10_000
    @Option(help: "Fraction of nodes replaced during the run (0...1).") var churn = 0.2
    @Option(name: .customLong("hop-ms"), help: "One-way latency of every hop, in milliseconds.") var hopMs = 50
    @Option(help: "Topics announced before the lookups.") var topics = 100
    @Option(help: "Lookups measured.") var lookups = 2000
    @Option(help: "Virtual seconds over which churn and lookups are spread (default 3000 in protocol mode, 600 in oracle mode).") var window: Int?
    @Option(name: .customLong("join-seconds"), help: "Protocol mode: virtual seconds over which the initial nodes join.") var joinSeconds = 1200
    @Option(help: "Probability that any datagram is lost (0...0.5).") var loss = 0.0
    @Option(help: "Seed of the simulation (same seed, same figures).") var seed: UInt64 = 1
    @Flag(help: "Print one JSON object.") var json = false

    func validate() throws {
        guard nodes >= 20 else { throw ValidationError("--nodes must be at least 20") }
        guard (0...0.9).contains(churn) else { throw ValidationError("--churn must be in 0...0.9") }
        guard (0...0.5).contains(loss) else { throw ValidationError("--loss must be in 0...0.5") }
        guard DHTSimulation.Bootstrap(rawValue: bootstrap) != nil else {
            throw ValidationError("--bootstrap must be 'protocol' or 'oracle'")
        }
        guard hopMs >= 0, topics >= 1, lookups >= 1, (window ?? 1) >= 1, joinSeconds >= 1 else { throw ValidationError("bad parameters") }
        guard topics * 2 < nodes else { throw ValidationError("--topics must be below half of --nodes") }
    }

    func run() throws {
        var p = DHTSimulation.Parameters()
        p.bootstrap = DHTSimulation.Bootstrap(rawValue: bootstrap)!
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
            struct Out: Encodable {
                var benchmark = "dht"
                var report: DHTSimulation.Report
                var wall_seconds: Double
                func encode(to e: Encoder) throws {
                    try report.encode(to: e)
                    var c = e.container(keyedBy: K.self)
                    try c.encode(benchmark, forKey: .benchmark)
                    try c.encode((wall_seconds * 100).rounded() / 100, forKey: .wall_seconds)
                }
                enum K: String, CodingKey { case benchmark, wall_seconds }
            }
            let enc = JSONEncoder()
            enc.outputFormatting = [.sortedKeys]
            print(String(decoding: try enc.encode(Out(report: r, wall_seconds: wall)), as: UTF8.self))
        } else {
            print("""
            DHT simulation (\(r.mode) bootstrap): \(r.nodes) nodes, churn \(r.churn) (\(r.nodes_left) left, \(r.joins_completed)/\(r.nodes_joined) joined), \
            hop \(r.hop_ms) ms
            lookups: \(r.lookups_completed)/\(r.lookups) completed, success rate \(r.success_rate) over \(r.lookups_measured) \
            (\(r.lookups_announcer_gone) of topics whose announcer left, not counted)
            rounds p50 \(r.rounds_p50), p99 \(r.rounds_p99); messages per lookup \(r.messages_per_lookup) (p99 \(r.messages_p99))
            latency p50 \(r.latency_ms_p50) ms, p99 \(r.latency_ms_p99) ms; wall \(String(format: "%.1f", wall)) s
            """)
        }
    }
}
