import Engine
import Foundation
import Keys
import NetMatch
import Sodium
import Testing
import TurfRules

/// `turf replay --headless` checks a networked match's op-log signatures (docs/netmatch.md).
@Suite struct ReplaySignatureCLITests {
    /// A 2-peer match in virtual time; the replay of peer 0 with the statements it holds.
    static func signedReplay() throws -> TurfReplay {
        let keys = (0..<2).map { try! Ed25519.KeyPair(seed: [UInt8](repeating: UInt8(40 + $0), count: 32)) }
        let map = try ArenaMap(
            parsing: String(contentsOf: repoRoot.appendingPathComponent("Assets/maps/dojo.map"), encoding: .utf8)
        )
        var players = TurfMatch.players(humans: [], total: 2)
        for i in players.indices { players[i].owner = PeerKey(bytes: keys[i].publicKey) }
        let config = TurfSettings(map: map).matchConfig(seed: 5, players: players, seconds: 3)
        var nets = try keys.map { try NetMatch<TurfWorld>(config: config, identity: $0, now: 0) }
        var matches = try keys.map {
            try TurfLocalMatch(
                config: config,
                controllers: TurfMatch.controllers(config: config, ownedBy: PeerKey(bytes: $0.publicKey))
            )
        }
        var inbox: [[(PeerKey, [UInt8])]] = [[], []]
        var late: [Op<TurfOp>] = []
        for step in 0..<Int(config.lengthTicks) + 60 {
            let now = UInt64(step) * 33_333_333
            for i in 0..<2 {
                for (from, bytes) in inbox[i] { nets[i].receive(bytes, from: from, now: now) }
                inbox[i] = []
                let accepted = nets[i].takeAccepted()
                if matches[i].isOver {
                    if i == 0 { late += accepted }
                } else {
                    for op in accepted { matches[i].deliver(op) }
                    matches[i].recordOutbox = true
                    let t = matches[i].tick
                    matches[i].step()
                    nets[i].addLocal(matches[i].outbox, ranTick: t, now: now)
                    matches[i].outbox.removeAll()
                }
                for (to, bytes) in nets[i].poll(now: now) {
                    inbox[to == nets[0].me ? 0 : 1].append((nets[i].me, bytes))
                }
            }
        }
        var replica = matches[0].replica
        for op in late { replica.receive(op) }
        var replay = try TurfReplay(config: config, logs: replica.allLogs, equivocations: replica.equivocations)
        replay.signatures = nets[0].recordedSignatures
        return replay
    }

    @Test func signedReplayReportsOkAndABadSignatureIsNamed() throws {
        let replay = try Self.signedReplay()
        #expect(replay.signatures.count == 2)
        let good = ReplayCommandTests.tempPath("signed.turfreplay")
        let bad = ReplayCommandTests.tempPath("badsig.turfreplay")
        defer {
            unlink(good)
            unlink(bad)
        }
        try Data(ReplayFile.encode(replay)).write(to: URL(fileURLWithPath: good))
        let r = try run(turfBinary, ["replay", "--headless", good])
        #expect(r.status == 0, "\(r.stderr)")
        #expect(r.stdout.contains("\"signatures\":\"ok\""), "\(r.stdout)")

        var forged = replay
        forged.signatures[1].signature[0] ^= 1
        try Data(ReplayFile.encode(forged)).write(to: URL(fileURLWithPath: bad))
        let f = try run(turfBinary, ["replay", "--headless", bad])
        #expect(f.status == 1)
        #expect(f.stdout.contains("\"signatures\":\"op 1/"), "\(f.stdout)")
        #expect(f.stderr.contains("signature of player 1 does not verify"), "\(f.stderr)")
    }

    @Test func localRecordingsReportNone() throws {
        let path = try #require(ReplayCommandTests.recorded.first)
        let r = try run(turfBinary, ["replay", "--headless", path])
        #expect(r.stdout.contains("\"signatures\":\"none\""), "\(r.stdout)")
    }
}
