import ArgumentParser
import Engine
import Foundation
import Keys
import NetChaos
import NetCore
import NetMatch
import NetMatchSim
import Sodium
import TextOutput
import TurfRules

/// `turf bench netmatch --json`: a whole networked bot match, every peer running the real
/// `NetMatch`, over the in-memory network in virtual time (seeded loss, jitter); then, with
/// `--chaos-runs N`, N short chaos matches (30% loss, duplicates, reordering, a 5 s partition):
/// by default over that in-memory network (`--chaos-stack sim`), or with `--chaos-stack sessions`
/// through the real stack on SimNetwork (Noise sessions, the lobby, NetMatch on the unreliable
/// channels: `SessionChaos`).
struct BenchNetMatch: ParsableCommand {
    /// What the chaos runs run on.
    enum ChaosStack: String, CaseIterable, ExpressibleByArgument {
        /// `NetMatchSim`: NetMatch peers over an in-memory packet model (no transport, no lobby).
        case sim
        /// `SessionChaos`: `Peer`s with Noise sessions, the lobby codec, NetMatch, on SimNetwork.
        case sessions
    }

    static let configuration = CommandConfiguration(
        commandName: "netmatch",
        abstract: "Replication: bytes per link, op lag, convergence, chaos runs (virtual time)."
    )

    @Option(help: "Players, one per peer (2...8).") var players: Int = 8
    @Option(help: "Match length in minutes (0.1...60).") var minutes: Double = 5
    @Option(help: "Round-trip time in ms (0...2000).") var rttMs: Double = 80
    @Option(help: "Jitter in ms, added uniformly to each datagram's one-way delay (0...1000).") var jitterMs: Double =
        10
    @Option(help: "Loss rate per datagram (0...0.9).") var loss: Double = 0.05
    @Option(help: "Chaos runs after the main run (0...100000).") var chaosRuns: Int = 0
    @Option(help: "What the chaos runs run on: sim (NetMatch over a packet model) or sessions (the real stack).")
    var chaosStack: ChaosStack = .sim
    @Option(help: "Game seconds of each chaos run (1...60).") var chaosSeconds: Int = 7
    @Option(help: "Round-trip time of the chaos runs in ms (0...2000).") var chaosRttMs: Double = 80
    @Option(help: "Map name or path.") var map: String = "warren"
    @Option(help: "Seed.") var seed: UInt64 = 2026
    @Flag(help: "Print JSON (the only output format).") var json = false

    func validate() throws {
        guard (2...8).contains(players) else { throw ValidationError("--players must be 2...8") }
        guard minutes >= 0.1 && minutes <= 60 else { throw ValidationError("--minutes must be 0.1...60") }
        guard rttMs >= 0 && rttMs <= 2000 else { throw ValidationError("--rtt-ms must be 0...2000") }
        guard jitterMs >= 0 && jitterMs <= 1000 else { throw ValidationError("--jitter-ms must be 0...1000") }
        guard loss >= 0 && loss <= 0.9 else { throw ValidationError("--loss must be 0...0.9") }
        guard (0...100_000).contains(chaosRuns) else { throw ValidationError("--chaos-runs must be 0...100000") }
        guard (1...60).contains(chaosSeconds) else { throw ValidationError("--chaos-seconds must be 1...60") }
        guard (0...2000).contains(chaosRttMs) else { throw ValidationError("--chaos-rtt-ms must be 0...2000") }
    }

    func run() throws {
        let settings = TurfSettings(map: try MapLibrary.load(map))
        // try!: fixed 32-byte seeds, valid by construction (a wrong length is the only error).
        let keys = (0..<players).map { i in try! Ed25519.KeyPair(seed: [UInt8](repeating: UInt8(i + 1), count: 32)) }
        var c = NetMatchSim<TurfController>.Conditions()
        c.oneWayNanos = UInt64(rttMs / 2 * 1e6)
        c.jitterNanos = UInt64(jitterMs * 1e6)
        c.loss = loss
        let w0 = monotonicNanos()
        let main = try sim(settings: settings, keys: keys, seconds: Int(minutes * 60), seed: seed, conditions: c).run()
        let wallS = Double(monotonicNanos() - w0) / 1e9

        var chaosConverged = 0
        var chaosVerifications: UInt64 = 0
        var chaosBad: UInt64 = 0
        // Honest players flagged: every chaos peer is honest, so any cheat found, or any desync
        // or bad-signature event, is a false positive.
        var chaosFlagged = 0
        var sessionFigures = JSONObject()
        let c0 = monotonicNanos()
        if chaosStack == .sessions { sessionFigures = try sessionChaos(settings: settings, converged: &chaosConverged) }
        for run in 0..<(chaosStack == .sim ? chaosRuns : 0) {
            var cc = NetMatchSim<TurfController>.Conditions()
            cc.loss = 0.3
            cc.duplicate = 0.1
            cc.jitterNanos = 100_000_000
            cc.partition = (peer: run % players, from: 500_000_000, to: 5_500_000_000)
            cc.oneWayNanos = UInt64(chaosRttMs * 500_000)
            let r = try sim(
                settings: settings,
                keys: keys,
                seconds: chaosSeconds,
                seed: seed &+ UInt64(run),
                conditions: cc
            ).run()
            if r.converged { chaosConverged += 1 }
            chaosVerifications += r.drops.reduce(0) { $0 + $1.verifications }
            chaosBad += r.drops.reduce(0) { $0 + $1.badSignatures }
            chaosFlagged += r.cheats.reduce(0) { $0 + $1.count }
            for e in r.events.flatMap({ $0 }) {
                switch e {
                case .desync, .finalMismatch, .badSignature, .equivocation: chaosFlagged += 1
                default: break
                }
            }
        }
        let chaosS = Double(monotonicNanos() - c0) / 1e9

        var j = JSONObject()
        j.add("benchmark", "netmatch")
        j.add("players", players)
        j.add("minutes", minutes)
        j.add("rtt_ms", rttMs)
        j.add("jitter_ms", jitterMs)
        j.add("loss", loss)
        j.add("bytes_per_sec_per_link", main.maxBytesPerSecPerLink)
        j.add("op_lag_over_oneway_ms_p50", BenchSupport.percentile(main.opLagMs, 0.5))
        j.add("op_lag_over_oneway_ms_p99", BenchSupport.percentile(main.opLagMs, 0.99))
        j.add("op_lag_at_arrival_over_oneway_ms_p50", BenchSupport.percentile(main.opLagAtArrivalMs, 0.5))
        j.add("op_lag_at_arrival_over_oneway_ms_p99", BenchSupport.percentile(main.opLagAtArrivalMs, 0.99))
        j.add("remote_ops_merged", main.opLagMs.count)
        j.add("tick_skew_ms_max", main.maxTickSkewMs)
        j.add("converged", main.converged)
        j.add("signatures_ok", main.signaturesOK)
        j.add("relayed_ops", Int(main.relayed))
        j.add("signatures_verified", main.drops.reduce(0) { $0 + $1.verifications })
        j.add("signatures_made", main.drops.reduce(0) { $0 + $1.signings })
        let crypto = try signVerifyNanosPerOp(main)
        j.add("sign_verify_ns_per_op", crypto.perOp)
        j.add("chain_step_ns", crypto.chain)
        j.add("sign_ns", crypto.sign)
        j.add("verify_ns", crypto.verify)
        j.add("sim_wall_s", wallS)
        j.add("chaos_stack", chaosStack.rawValue)
        j.add("chaos_seconds", chaosSeconds)
        j.add("chaos_runs", chaosRuns)
        j.add("chaos_converged", chaosConverged)
        j.add("chaos_wall_s", chaosS)
        if chaosStack == .sim {
            j.add("chaos_signatures_verified", chaosVerifications)
            j.add("chaos_bad_signatures", chaosBad)
            j.add("chaos_rtt_ms", chaosRttMs)
            j.add("chaos_honest_flagged", chaosFlagged)
        } else {
            j.add("chaos_sessions", sessionFigures)
        }
        print(j.text)
    }

    /// The chaos runs through the real stack (`SessionChaos`): 8 peers (or `--players`), 30% loss,
    /// 10% duplicates, 10% reordered, jitter, one peer (in turn) partitioned for 5 s from 0.5 s
    /// into the match. Returns totals over the runs; counts the converged runs into `converged`.
    func sessionChaos(settings: TurfSettings, converged: inout Int) throws -> JSONObject {
        var lobbies = 0
        var lost: UInt64 = 0
        var sent: UInt64 = 0
        var partitioned: UInt64 = 0
        var relayed: UInt64 = 0
        var handshakes: UInt64 = 0
        var retransmissions: UInt64 = 0
        var lateStarts = 0
        var redials = 0
        var virtualNanos: UInt64 = 0
        var failures: [String] = []
        for run in 0..<chaosRuns {
            var c = SessionChaos.Conditions()
            c.partitionPeer = run % players
            let r = try SessionChaos(
                settings: settings,
                peers: players,
                seconds: chaosSeconds,
                seed: seed &+ UInt64(run),
                conditions: c
            ).run()
            if r.lobbyOK { lobbies += 1 }
            if r.converged {
                converged += 1
            } else if failures.count < 5 {
                failures.append("run \(run): \(r.failure ?? "?")")
            }
            sent += r.network.sent
            lost += r.network.lost
            partitioned += r.partitionedDatagrams
            relayed += r.relayed
            handshakes += r.handshakesCompleted
            retransmissions += r.reliableRetransmissions
            lateStarts += r.lateStarts
            redials += r.redials
            virtualNanos += r.endNanos
        }
        var j = JSONObject()
        j.add("lobbies_completed", lobbies)
        j.add("datagrams_sent", sent)
        j.add("datagrams_lost", lost)
        j.add("datagrams_partitioned", partitioned)
        j.add("relayed_ops", relayed)
        j.add("handshakes_completed", handshakes)
        j.add("reliable_retransmissions", retransmissions)
        j.add("late_starts", lateStarts)
        j.add("lobby_redials", redials)
        j.add("virtual_s_mean", Double(virtualNanos) / 1e9 / Double(max(1, chaosRuns)))
        j.add("first_failures", failures)
        return j
    }

    func sim(
        settings: TurfSettings,
        keys: [Ed25519.KeyPair],
        seconds: Int,
        seed: UInt64,
        conditions: NetMatchSim<TurfController>.Conditions
    ) throws -> NetMatchSim<TurfController> {
        var list = TurfMatch.players(humans: [], total: keys.count)
        for i in list.indices { list[i].owner = PeerKey(bytes: keys[i].publicKey) }
        let config = settings.matchConfig(seed: seed, players: list, seconds: seconds)
        return NetMatchSim(config: config, keys: keys, conditions: conditions, seed: seed) { owner in
            TurfMatch.controllers(config: config, ownedBy: owner)
        }
    }

    /// The crypto cost per op on the receiving side of a match like the main run: per op, one
    /// BLAKE2b chain step; per statement (every 15 ticks per player), one Ed25519 verification;
    /// divided by the ops it covers. Timed on this machine.
    func signVerifyNanosPerOp(_ r: NetMatchSim<TurfController>.Result) throws -> (
        perOp: Double, chain: Double, sign: Double, verify: Double
    ) {
        let key = try Ed25519.KeyPair(seed: [UInt8](repeating: 9, count: 32))
        let op = [UInt8](repeating: 3, count: 9)
        var h = OpChain.initial
        let n = 20_000
        let t0 = monotonicNanos()
        for _ in 0..<n { h = OpChain.next(h, opBytes: op) }
        let chainNs = Double(monotonicNanos() - t0) / Double(n)
        let msg = SignedStatement.message(digest: 1, player: 0, count: 5, asOfTick: 5, chain: h)
        let sig = key.sign(msg)
        let m = 2000
        var ok = 0
        let t1 = monotonicNanos()
        for _ in 0..<m where Ed25519.verify(signature: sig, message: msg, publicKey: key.publicKey) { ok += 1 }
        let verifyNs = Double(monotonicNanos() - t1) / Double(m)
        let t2 = monotonicNanos()
        for _ in 0..<m { _ = key.sign(msg) }
        let signNs = Double(monotonicNanos() - t2) / Double(m)
        precondition(ok == m)
        // Ops per statement: a bot moves every 4 ticks, a statement every 15 ticks.
        let opsPerStatement = 15.0 / 4.0
        return (
            chainNs * 2 + (verifyNs + signNs / Double(max(1, players - 1))) / opsPerStatement, chainNs, signNs, verifyNs
        )
    }
}
