import ArgumentParser
import Engine
import Foundation
import NetCore
import TextOutput
import TurfRules

/// `turf bench replay --json`: headless replay throughput of a generated 8-player match.
struct BenchReplay: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "replay",
        abstract: "Replay throughput: generate an 8-player match, verify it headlessly."
    )

    @Option(
        help: Limits.benchMinutes.help("Match length in minutes.", default: 60),
        transform: Limits.benchMinutes.parse
    )
    var minutes: Double = 60
    @Option(help: Limits.benchPlayers.help("Players.", default: 8), transform: Limits.benchPlayers.parse)
    var players: Int = 8
    @Option(help: "Map name or path.") var map: String = "warren"
    @Option(help: "Seed.") var seed: UInt64 = 2026
    @Option(help: Limits.runs.help("Timed runs, the median reported.", default: 5), transform: Limits.runs.parse)
    var runs: Int = 5
    @Flag(help: "Print JSON (the only output format).") var json = false

    func run() throws {
        let settings = TurfSettings(map: try MapLibrary.load(map))
        let g0 = monotonicNanos()
        let generated = try TurfMatch.generate(
            settings: settings,
            players: players,
            seconds: Int(minutes * 60),
            seed: seed
        )
        let generateS = Double(monotonicNanos() - g0) / 1e9
        let bytes = ReplayFile.encode(generated)

        var decodeTimes: [Double] = []
        var replayTimes: [Double] = []
        var verification: ReplayVerification?
        for _ in 0..<max(1, runs) {
            let d0 = monotonicNanos()
            let replay = try ReplayFile.decode(bytes, as: TurfWorld.self)
            let player = try ReplayPlayer(replay)
            let d1 = monotonicNanos()
            let (v, _) = try player.verify()
            let d2 = monotonicNanos()
            guard v.ok else {
                throw CLIError(
                    "benchmark replay failed verification at tick \(v.firstBadTick.map(String.init) ?? "end")"
                )
            }
            verification = v
            decodeTimes.append(Double(d1 - d0) / 1e9)
            replayTimes.append(Double(d2 - d1) / 1e9)
        }
        let s0 = monotonicNanos()
        let (shuffled, _) = try ReplayPlayer(try ReplayFile.decode(bytes, as: TurfWorld.self)).verify(shuffleSeed: seed)
        let shuffledS = Double(monotonicNanos() - s0) / 1e9
        let v = verification!  // `!`: the loop above ran at least once and set it
        let replayS = BenchSupport.median(replayTimes)
        // The legality check alone (docs/engine.md, "Legality"): every op against its predecessor,
        // as the replica does once per op; part of replay_s above, measured here on its own.
        let world = try Replica<TurfWorld>(config: generated.config).state
        var illegal = 0
        var checks = 0
        let l0 = monotonicNanos()
        for _ in 0..<20 {
            for log in generated.logs {
                var previous: Op<TurfOp>?
                for op in log {
                    if world.violation(op, after: previous) != nil { illegal += 1 }
                    previous = op
                    checks += 1
                }
            }
        }
        let legalityNs = Double(monotonicNanos() - l0) / Double(max(1, checks))
        guard illegal == 0 else { throw CLIError("the benchmark's bot match broke the rules \(illegal) times") }
        var j = JSONObject()
        j.add("benchmark", "replay")
        j.add("players", players)
        j.add("minutes", minutes)
        j.add("map", settings.map.name)
        j.add("ticks", Int(v.ticks))
        j.add("ops", v.ops)
        j.add("checkpoints_verified", v.checkpointsChecked)
        j.add("file_bytes", bytes.count)
        j.add("generate_s", generateS)
        j.add("decode_s", BenchSupport.median(decodeTimes))
        j.add("replay_s", replayS)
        j.add("replay_with_decode_s", BenchSupport.median(zip(decodeTimes, replayTimes).map { $0 + $1 }))
        j.add("ops_per_sec", Double(v.ops) / replayS)
        j.add("legality_ns_per_op", legalityNs)
        j.add("ticks_per_sec", Double(v.ticks) / replayS)
        j.add("shuffled_s", shuffledS)
        j.add("shuffled_ok", shuffled.ok && shuffled.finalHash == v.finalHash)
        j.add("final_hash", hex64(v.finalHash))
        j.add("runs", replayTimes.count)
        print(j.text)
    }
}

/// `turf bench late-op --json`: the cost of merging a remote op on time vs 1000 ticks late.
///
/// For each of `samples` points T in a generated match, two replicas are built (untimed) from all
/// ops with tick ≤ T except one window of ops: for "on time", the ops of the last `window` ticks
/// before T; for "late", the ops of the `window` ticks ending 1000 ticks before T. Then only the
/// merging of the held-back window is timed. Same machine, same run, same kind of ops.
struct BenchLateOp: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "late-op",
        abstract: "Merge cost of an on-time op vs one 1000 ticks late."
    )

    @Option(
        help: Limits.benchMinutes.help("Match length in minutes.", default: 10),
        transform: Limits.benchMinutes.parse
    )
    var minutes: Double = 10
    @Option(help: Limits.lateness.help("How late the late ops are.", default: 1000), transform: Limits.lateness.parse)
    var lateness: Int = 1000
    @Option(help: Limits.lateSamples.help("Sample points.", default: 60), transform: Limits.lateSamples.parse)
    var samples: Int = 60
    @Option(help: Limits.lateWindow.help("Window of held-back ops.", default: 90), transform: Limits.lateWindow.parse)
    var window: Int = 90
    @Option(
        help: Limits.runs.help("Repetitions, the fastest kept per scenario.", default: 5),
        transform: Limits.runs.parse
    )
    var runs: Int = 5
    @Option(help: "Map name or path.") var map: String = "warren"
    @Flag(help: "Print JSON (the only output format).") var json = false

    func run() throws {
        let settings = TurfSettings(map: try MapLibrary.load(map))
        let replay = try TurfMatch.generate(settings: settings, players: 8, seconds: Int(minutes * 60), seed: 77)
        let player = try ReplayPlayer(replay)
        let ops = player.ordered
        let length = Int(replay.config.lengthTicks)
        guard length > lateness + 2 * window + 10 else { throw CLIError("match too short for lateness \(lateness)") }
        let first = lateness + window + 1
        let points = (0..<samples).map { first + ($0 * (length - first - 1)) / max(1, samples - 1) }

        func timedMerge(upTo t: Int, holding held: Range<Int>) throws -> (nanos: UInt64, count: Int) {
            var r = try Replica<TurfWorld>(config: replay.config)
            let end = player.tickStart[t + 1]
            var batch: [Op<TurfOp>] = []
            for i in 0..<end {
                let op = ops[i]
                if held.contains(Int(op.tick)) { batch.append(op) } else { r.receive(op) }
            }
            let t0 = monotonicNanos()
            for op in batch { r.receive(op) }
            let t1 = monotonicNanos()
            guard r.stats.rejected == 0 else { throw CLIError("benchmark ops were rejected") }
            return (t1 - t0, batch.count)
        }

        var best = (ontime: Double.infinity, late: Double.infinity)
        var counts = (ontime: 0, late: 0)
        for _ in 0..<max(1, runs) {
            var on: (UInt64, Int) = (0, 0)
            var late: (UInt64, Int) = (0, 0)
            for t in points {
                let a = try timedMerge(upTo: t, holding: (t - window + 1)..<(t + 1))
                let b = try timedMerge(upTo: t, holding: (t - lateness - window + 1)..<(t - lateness + 1))
                on.0 += a.nanos
                on.1 += a.count
                late.0 += b.nanos
                late.1 += b.count
            }
            best.ontime = min(best.ontime, Double(on.0) / Double(max(1, on.1)))
            best.late = min(best.late, Double(late.0) / Double(max(1, late.1)))
            counts = (on.1, late.1)
        }
        var j = JSONObject()
        j.add("benchmark", "late-op")
        j.add("lateness_ticks", lateness)
        j.add("ontime_ops", counts.ontime)
        j.add("late_ops", counts.late)
        j.add("ontime_ns_per_op", best.ontime)
        j.add("late_ns_per_op", best.late)
        j.add("late_to_ontime_ratio", best.late / best.ontime)
        print(j.text)
    }
}
