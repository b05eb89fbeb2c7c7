import Engine
import Foundation
import Keys
import NetMatch
import Transport
import TurfRules

/// The test-only switches of a networked match (docs/lobby.md, "Test-only switches"): read from
/// the environment at the match start, for the CLI tests only.
extension NetRuntime {
    /// Test-only (docs/lobby.md, "Test-only switches"): `TURF_TESTING_CORRUPT_CHECKPOINT=T` flips
    /// this peer's checkpoint hash at tick T (a forced desync); `TURF_TESTING_FORGE_RELAY=1` makes
    /// this peer forge the first third-party op it relays on each link; `TURF_TESTING_NO_MESH=1`
    /// makes a member keep no direct session to other members (its pairs go "relayed"), and
    /// `TURF_TESTING_NO_MESH=turf1KEY,…` none to those members only.
    static func testingSwitches(_ net: inout NetMatch<TurfWorld>) {
        let env = ProcessInfo.processInfo.environment
        if let t = env["TURF_TESTING_CORRUPT_CHECKPOINT"].flatMap({ UInt32($0) }) {
            net.testingCorruptCheckpoint = Tick(t)
        }
        if env["TURF_TESTING_FORGE_RELAY"] == "1" { net.testingForgeRelayed = true }
        // A modified client: `TURF_TESTING_CHEAT=teleport|speed|late|future` rewrites this peer's own
        // ops from seq 20 on before they are signed and sent, `lagswitch` sends them 20 ticks late
        // (docs/lobby.md, "Test-only switches").
        if let cheat = env["TURF_TESTING_CHEAT"], let settings = try? TurfSettings.decode(net.config.settings) {
            let far = UInt32(settings.map.spawns.last ?? 0)
            switch cheat {
            case "teleport":
                net.testingRewriteOwn = { op in
                    op.seq >= 20 && op.seq % 10 == 0
                        ? Op(player: op.player, seq: op.seq, tick: op.tick, payload: .move(cell: far)) : op
                }
            case "speed":
                net.testingRewriteOwn = { op in
                    op.seq >= 20 ? Op(player: op.player, seq: op.seq, tick: op.tick - 2, payload: op.payload) : op
                }
            case "future":
                let end = net.config.lengthTicks  // past the end, a datagram would be dropped whole
                net.testingRewriteOwn = { op in
                    op.seq >= 20
                        ? Op(player: op.player, seq: op.seq, tick: min(op.tick + 30, end), payload: op.payload) : op
                }
            case "lagswitch": net.testingHold = (fromSeq: 20, ticks: 20)
            case "late":
                net.testingRewriteOwn = { op in
                    op.seq >= 20 ? Op(player: op.player, seq: op.seq, tick: Tick(op.seq - 19), payload: op.payload) : op
                }
            default: break
            }
        }
    }

    /// Whether the test-only switch forbids a direct session to member `k`.
    static func testingNoMesh(with k: PeerKey) -> Bool {
        guard let v = ProcessInfo.processInfo.environment["TURF_TESTING_NO_MESH"], !v.isEmpty else { return false }
        return v == "1" || v.split(separator: ",").contains { PeerKey(text: String($0)) == k }
    }

    /// Test-only (docs/lobby.md, "Test-only switches"): `TURF_TESTING_LATE_START_MS=N` makes a
    /// joiner act on the start N ms late (at most a minute).
    static func testingHoldStart() -> UInt64? {
        ProcessInfo.processInfo.environment["TURF_TESTING_LATE_START_MS"]
            .flatMap { UInt64($0) }.map { min($0, 60_000) * 1_000_000 }
    }
}
