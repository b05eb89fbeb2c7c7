import Foundation
import NetChaos
import NetCore
import Testing
import TurfRules

/// The repository root, found from this file's path (the maps are in Assets/).
private let repoRoot = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
    .deletingLastPathComponent()

private func settings() throws -> TurfSettings {
    let url = repoRoot.appendingPathComponent("Assets/maps/dojo.map")
    return TurfSettings(map: try ArenaMap(parsing: String(contentsOf: url, encoding: .utf8), file: url.path))
}

/// Chaos through the real stack (issue #9): 8 peers with Noise sessions, the lobby in the real
/// codec, NetMatch on the unreliable channels, on SimNetwork with 30% loss, 10% duplicates,
/// reordering, jitter and a 5 s partition of one peer (in turn, host included).
@Suite struct SessionChaosTests {
    /// One seeded run, inspected: the lobby completed with a full mesh, and the conditions did
    /// happen (loss, duplicates, a partition that ate datagrams, relays, reliable retransmissions).
    @Test func oneRunConvergesUnderRealChaos() throws {
        let r = try SessionChaos(settings: try settings(), peers: 8, seconds: 7, seed: 42).run()
        #expect(r.lobbyOK, "\(r.failure ?? "")")
        #expect(r.converged, "\(r.failure ?? "")")
        #expect(r.signaturesOK)
        #expect(Set(r.finalHashes).count == 1 && r.finalHashes.count == 8)
        #expect(r.sessionsAtStart == Array(repeating: 7, count: 8))
        // 28 sessions, each handshake counted on both sides.
        #expect(r.handshakesCompleted >= 56)
        #expect(r.network.lost > r.network.sent / 5)
        #expect(r.network.duplicated > 0)
        #expect(r.partitionedDatagrams > 0)
        #expect(r.network.oversized == 0)
        #expect(r.relayed > 0)
        #expect(r.reliableRetransmissions > 0)
        #expect(r.opsHeld > 8 * 8 * 10)
    }

    /// A run repeats exactly from its seed: the transport's randomness (ephemeral keys, session
    /// indices, cookie secrets, retry jitter) is seeded from it like the conditioner and the match,
    /// so the same datagrams are sent, lost and delivered at the same virtual times.
    @Test func oneSeedRunTwiceTakesTheSamePath() throws {
        var c = SessionChaos.Conditions()
        c.partitionPeer = 2
        let chaos = SessionChaos(settings: try settings(), peers: 5, seconds: 1, seed: 1234, conditions: c)
        let a = try chaos.run()
        let b = try chaos.run()
        #expect(a.converged, "\(a.failure ?? "")")
        #expect(a.finalHashes == b.finalHashes)
        #expect(a.network == b.network)
        #expect(a.endNanos == b.endNanos)
        #expect(a.handshakesCompleted == b.handshakesCompleted && a.redials == b.redials)
        #expect(a.relayed == b.relayed && a.reliableRetransmissions == b.reliableRetransmissions)
    }

    /// Without the partition's heal the partitioned peer cannot converge within the bound: the
    /// verdict can say no (the check is not vacuous).
    @Test func aPermanentPartitionDoesNotConverge() throws {
        var c = SessionChaos.Conditions()
        c.partitionPeer = 3
        c.partitionNanos = 1_000_000_000_000
        // It must get past the lobby: a start still in retransmission would never arrive.
        c.partitionAfterStart = true
        let r = try SessionChaos(settings: try settings(), peers: 4, seconds: 2, seed: 7, conditions: c).run()
        #expect(r.lobbyOK, "\(r.failure ?? "")")
        #expect(!r.converged)
    }

    /// A hundred seeded runs, each a short match (1 s of game time: a run's cost is mostly the
    /// lobby, about 13 s of virtual time at this loss, and the 5 s partition, which starts 0.5 s
    /// in, outlasts the match and heals while the peers settle), one peer partitioned in turn, the
    /// host included. The partition inside a longer match is `oneRunConvergesUnderRealChaos`.
    /// `turf bench netmatch --chaos-runs 1000 --chaos-stack sessions` runs a thousand.
    /// The same runs with the partition starting only after the partitioned peer's start (issue
    /// #17: seed 46 so timed once settled with a hash the others did not share). Settling now
    /// requires every peer's final hash to equal ours, so no peer says converged alone.
    @Test(arguments: 0..<UInt64(100))
    func chaosRunsConvergeWithThePartitionAfterTheStart(seed: UInt64) throws {
        var c = SessionChaos.Conditions()
        c.partitionPeer = Int(seed % 8)
        c.partitionAfterStart = true
        let r = try SessionChaos(settings: try settings(), peers: 8, seconds: 1, seed: 1000 + seed, conditions: c).run()
        #expect(r.converged, "seed \(seed): \(r.failure ?? "")")
        #expect(Set(r.finalHashes).count == 1, "seed \(seed): \(r.finalHashes)")
    }

    /// A partitioned peer that starts late (its start retransmitted past the match's end) is cut
    /// off from its start on; it gets most final statements in the datagrams that waited for it,
    /// and its links go down just before the heal. In between it used to settle alone, the players
    /// whose finals it lacked gone (a minority), with nobody connected to disagree: its log of
    /// them went past the signatures it held (the mark of seed 86's one failure above, in one
    /// process of many before runs repeated across processes). A partition of 5.2 s widens that
    /// window: these seeds all failed so.
    @Test(arguments: [UInt64(4046), 4123, 4142, 4163])
    func aLateStartedPartitionedPeerDoesNotSettleAloneBeforeTheHeal(seed: UInt64) throws {
        var c = SessionChaos.Conditions()
        c.partitionPeer = Int(seed % 8)
        c.partitionAfterStart = true
        c.partitionNanos = 5_200_000_000
        let r = try SessionChaos(settings: try settings(), peers: 8, seconds: 1, seed: 1000 + seed, conditions: c).run()
        #expect(r.lateStarts > 0)
        #expect(r.converged && r.signaturesOK, "seed \(seed): \(r.failure ?? "")")
        #expect(Set(r.finalHashes).count == 1, "seed \(seed): \(r.finalHashes)")
    }

    @Test(arguments: 0..<UInt64(100))
    func chaosRunsConverge(seed: UInt64) throws {
        var c = SessionChaos.Conditions()
        c.partitionPeer = Int(seed % 8)
        let r = try SessionChaos(settings: try settings(), peers: 8, seconds: 1, seed: 1000 + seed, conditions: c).run()
        #expect(r.converged, "seed \(seed): \(r.failure ?? "")")
        #expect(r.lobbyOK && r.sessionsAtStart == Array(repeating: 7, count: 8))
        #expect(r.partitionedDatagrams > 0 && r.network.lost > 0)
    }
}
