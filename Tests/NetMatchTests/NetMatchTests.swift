import Determinism
import Engine
import Foundation
import Keys
import NetMatchSim
import Sodium
import Testing
import TurfRules

@testable import NetMatch

/// Fixtures: turf matches whose players are owned by generated keys, one player per peer.
enum Fixture {
    static let mapText: String = {
        let url = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
            .deletingLastPathComponent().appendingPathComponent("Assets/maps/dojo.map")
        return (try? String(contentsOf: url, encoding: .utf8)) ?? ""
    }()

    static func keys(_ n: Int, seed: UInt8 = 1) -> [Ed25519.KeyPair] {
        (0..<n).map { i in try! Ed25519.KeyPair(seed: [UInt8](repeating: seed &+ UInt8(i) &* 7, count: 31) + [UInt8(i)])
        }
    }

    static func config(keys: [Ed25519.KeyPair], seconds: Int, seed: UInt64 = 7) throws -> MatchConfig {
        let settings = TurfSettings(map: try ArenaMap(parsing: mapText, file: "dojo.map"))
        var players = TurfMatch.players(humans: [], total: keys.count)
        for i in players.indices { players[i].owner = PeerKey(bytes: keys[i].publicKey) }
        return settings.matchConfig(seed: seed, players: players, seconds: seconds)
    }

    static func sim(peers: Int, seconds: Int, seed: UInt64, conditions: NetMatchSim<TurfController>.Conditions)
        throws -> NetMatchSim<TurfController>
    {
        let keys = keys(peers)
        let config = try config(keys: keys, seconds: seconds)
        return NetMatchSim(config: config, keys: keys, conditions: conditions, seed: seed) { owner in
            TurfMatch.controllers(config: config, ownedBy: owner)
        }
    }
}

@Suite struct NetMatchTests {
    @Test func testTwoPeersOnAPerfectLinkConvergeWithSignatures() throws {
        var c = NetMatchSim<TurfController>.Conditions()
        c.jitterNanos = 0
        let r = try Fixture.sim(peers: 2, seconds: 4, seed: 1, conditions: c).run()
        #expect(r.signaturesOK)
        #expect(r.converged, "\(r.finalHashes)")
        #expect(!(r.opLagMs.isEmpty))
        #expect(r.events.flatMap { $0 } == [])
    }

    /// Chaos: 8 peers, 30% loss, 10% duplicates, reordering (jitter of 0–100 ms, three ticks), one
    /// peer (in turn) partitioned from everyone for 5 s: every seeded run ends with identical
    /// hashes equal to the union of the owners' logs, with signatures covering every op. One test
    /// case per seed (`turf bench netmatch --chaos-runs 1000` runs a thousand).
    @Test(arguments: 0..<UInt64(100))
    func chaosEightPeersConverge(seed: UInt64) throws {
        var c = NetMatchSim<TurfController>.Conditions()
        c.loss = 0.3
        c.duplicate = 0.1
        c.jitterNanos = 100_000_000
        c.partition = (peer: Int(seed % 8), from: 500_000_000, to: 5_500_000_000)
        let r = try Fixture.sim(peers: 8, seconds: 6, seed: seed, conditions: c).run()
        #expect(r.converged, "seed \(seed): \(r.finalHashes)")
        #expect(r.events[Int(seed % 8)].contains { if case .linkDown = $0 { return true } else { return false } })
    }

    /// A peer crashes mid-match (or just before the end) and never comes back: every survivor
    /// settles it gone, and they all keep the same verified prefix of its log (the ops its best
    /// statement held by any survivor covers), so their hashes are equal, equal to the union of
    /// the owners' logs with the gone one cut there, and every kept op is covered by a signature.
    /// 3 to 5 peers, with and without 25% loss and reordering.
    @Test(arguments: 0..<UInt64(24))
    func aCrashedPeerIsSettledGoneAndSurvivorsAgree(seed: UInt64) throws {
        let peers = 3 + Int(seed % 3)
        var c = NetMatchSim<TurfController>.Conditions()
        if seed % 2 == 1 {
            c.loss = 0.25
            c.duplicate = 0.05
            c.jitterNanos = 60_000_000
        }
        let dead = Int(seed % UInt64(peers))
        let at: UInt64 = seed % 4 == 3 ? 5_900_000_000 : 1_500_000_000 + seed * 97_000_000
        c.crash = (peer: dead, at: at)
        let r = try Fixture.sim(peers: peers, seconds: 6, seed: seed, conditions: c).run()
        let converged = r.converged
        #expect(converged, "seed \(seed): \(r.finalHashes) settled \(r.settled) gone \(r.gone)")
        #expect(r.signaturesOK)
        for i in 0..<peers where i != dead {
            #expect(r.gone[i] == [PlayerID(dead)], "seed \(seed) peer \(i)")
            #expect(r.finalHashes[i] == r.finalHashes[(dead + 1) % peers])
        }
    }

    /// Without a crash nobody is settled gone, even with a relayed pair.
    @Test func testNoCrashMeansNoGonePlayers() throws {
        var c = NetMatchSim<TurfController>.Conditions()
        c.cutPairs = [(0, 2)]
        c.loss = 0.1
        let r = try Fixture.sim(peers: 3, seconds: 4, seed: 5, conditions: c).run()
        #expect(r.converged)
        #expect(r.settled == [true, true, true])
        #expect(r.gone == [[], [], []])
    }

    /// A peer whose loop jumped past the match's end (it started late, or stalled until the end)
    /// ran no last tick; it still signs its final statement, so both peers settle. Found by the
    /// session chaos runs (NetChaos), where a start message delayed by loss arrived after a short
    /// match was over.
    @Test func aPeerThatSkipsPastTheEndStillSignsItsFinalStatementAndSettles() throws {
        let keys = Fixture.keys(2)
        let config = try Fixture.config(keys: keys, seconds: 1)
        var late = try NetMatch<TurfWorld>(config: config, identity: keys[0], now: 0)
        var ran = try NetMatch<TurfWorld>(config: config, identity: keys[1], now: 0)
        for t in 0...config.lengthTicks { ran.addLocal([], ranTick: t, now: UInt64(t) * 33_000_000) }
        late.didSkip(to: config.lengthTicks + 1)
        let finalSigned = late.statements.contains { $0.player == 0 && $0.asOfTick == config.lengthTicks }
        #expect(finalSigned)
        var now: UInt64 = 2_000_000_000
        for _ in 0..<20 {
            now += 100_000_000
            for d in late.poll(now: now) { ran.receive(d.bytes, from: PeerKey(bytes: keys[0].publicKey)!, now: now) }
            for d in ran.poll(now: now) { late.receive(d.bytes, from: PeerKey(bytes: keys[1].publicKey)!, now: now) }
        }
        let settled = (late: late.isSettled, ran: ran.isSettled)
        #expect(settled.late && settled.ran)
    }

    /// A peer cut off from everyone does not settle a silent owner gone on its own, even when it
    /// holds every other final statement (a minority silent): with nobody connected to report the
    /// same players gone, it would save a log cut where nobody else cut it. Found by the session
    /// chaos runs (issue: seed 86 failed once): a partitioned peer that started late got most finals
    /// before the cut, its links went down just before the heal, and it settled in between.
    @Test func aPeerCutOffFromEveryoneSettlesNobodyGoneAlone() throws {
        let keys = Fixture.keys(3)
        let config = try Fixture.config(keys: keys, seconds: 1)
        let owners = keys.map { PeerKey(bytes: $0.publicKey)! }
        var nets = try keys.map { try NetMatch<TurfWorld>(config: config, identity: $0, now: 0) }
        for i in nets.indices {
            for t in 0...config.lengthTicks { nets[i].addLocal([], ranTick: t, now: UInt64(t) * 33_000_000) }
        }
        var now: UInt64 = 1_100_000_000
        /// One round: every peer polls; what goes between two peers of `linked` arrives.
        func round(_ linked: Set<Int>) {
            now += 100_000_000
            for i in nets.indices {
                for d in nets[i].poll(now: now) {
                    guard let j = owners.firstIndex(of: d.to), linked.contains(i), linked.contains(j) else { continue }
                    nets[j].receive(d.bytes, from: owners[i], now: now)
                }
            }
        }
        // Peers 0 and 1 hear each other (each holds the other's final statement); 2 is silent.
        for _ in 0..<10 { round([0, 1]) }
        let finals = nets[0].finalsHeld
        #expect(finals == 0b011)
        // Then 0 hears nobody: its links go down, player 2 is gone there, 1 is not (final held).
        for _ in 0..<60 { round([]) }
        let cutOff = (nets[0].isConnected(owners[1]), nets[0].isConnected(owners[2]), nets[0].gonePlayers)
        #expect(cutOff == (false, false, [2]))
        let settledAlone = nets[0].isSettled
        #expect(!settledAlone)
        // Once everyone hears everyone, all three settle with nobody gone.
        for _ in 0..<30 { round([0, 1, 2]) }
        let settled = nets.map { $0.isSettled && $0.gonePlayers.isEmpty }
        #expect(settled == [true, true, true])
    }

    @Test func testRelayCarriesOpsWhenADirectLinkIsDown() throws {
        var c = NetMatchSim<TurfController>.Conditions()
        c.cutPairs = [(0, 2)]
        let r = try Fixture.sim(peers: 3, seconds: 5, seed: 3, conditions: c).run()
        #expect(r.converged, "\(r.finalHashes)")
        #expect(r.events[0].contains(.linkDown(PeerKey(bytes: Fixture.keys(3)[2].publicKey)!)))
        #expect(r.relayed > 0)
    }

    @Test func testAForcedDesyncIsCaughtAtItsTick() throws {
        var sim = try Fixture.sim(peers: 3, seconds: 5, seed: 4, conditions: .init())
        sim.prepare = { i, net in if i == 1 { net.testingCorruptCheckpoint = 60 } }
        let r = try sim.run()
        let peer1 = PeerKey(bytes: Fixture.keys(3)[1].publicKey)!
        let seen = r.events[0].compactMap { e -> (Tick, PeerKey)? in
            if case .desync(let t, let p, _, _) = e { return (t, p) } else { return nil }
        }
        #expect(seen.map { $0.0 } == [60])
        #expect(seen.map { $0.1 } == [peer1])
        // Without the hook, nobody reports one.
        let clean = try Fixture.sim(peers: 3, seconds: 5, seed: 4, conditions: .init()).run()
        #expect(!(clean.events.flatMap { $0 }.contains { if case .desync = $0 { return true } else { return false } }))
    }

    /// A relay that alters an op of a third player under its owner's genuine statement: the
    /// statement does not cover it, so the op is dropped and counted; nobody is blamed (the relay
    /// cannot be told from an owner that signed another history); the real op still merges. A
    /// relay that forges the signature itself is named.
    @Test func testForgedRelayedOpIsRejected() throws {
        let keys = Fixture.keys(3)
        let config = try Fixture.config(keys: keys, seconds: 5)
        let owners = keys.map { PeerKey(bytes: $0.publicKey)! }
        var a = try NetMatch<TurfWorld>(config: config, identity: keys[0], now: 0)
        var c = try NetMatch<TurfWorld>(config: config, identity: keys[2], now: 0)
        let real = Op<TurfWorld.Payload>(player: 0, seq: 0, tick: 0, payload: TurfOp.move(cell: 5))
        a.addLocal([real], ranTick: 0, now: 0)  // signs: count 1 as of tick 0
        let st = a.statements[0]
        #expect(st.count == 1)
        var forged = real
        forged.payload = .move(cell: 6)
        // B relays the forged op and A's genuine statement to C.
        c.receive(packet(config: config, ops: [forged], statements: [st]), from: owners[1], now: 1)
        #expect(c.takeAccepted() == [])
        #expect(c.drops.conflictingStatements == 1)
        #expect(c.drops.badSignatures == 0)
        #expect(c.takeEvents() == [])
        // A statement whose signature does not verify: the peer that sent it made it up.
        var bad = st
        bad.signature[3] ^= 1
        c.receive(packet(config: config, ops: [real], statements: [bad]), from: owners[1], now: 1)
        #expect(c.takeAccepted() == [])
        #expect(c.drops.badSignatures == 1)
        #expect(c.takeEvents() == [.badSignature(player: 0, from: owners[1])])
        // The genuine op relayed with the statement verifies.
        c.receive(packet(config: config, ops: [real], statements: [st]), from: owners[1], now: 2)
        #expect(c.takeAccepted() == [real])
        #expect(c.statements == [st])
        // A relayed op with no statement waits; it is never merged unsigned.
        var d = try NetMatch<TurfWorld>(config: config, identity: keys[2], now: 0)
        d.receive(packet(config: config, ops: [real], statements: []), from: owners[1], now: 1)
        #expect(d.takeAccepted() == [])
        // Directly from its owner, the op merges at once.
        for (to, bytes) in a.poll(now: 3) where to == owners[2] { d.receive(bytes, from: owners[0], now: 3) }
        #expect(d.takeAccepted() == [real])
    }

    @Test func testHostileBytesAreDroppedAndCounted() throws {
        let keys = Fixture.keys(2)
        let config = try Fixture.config(keys: keys, seconds: 5)
        let owners = keys.map { PeerKey(bytes: $0.publicKey)! }
        var b = try NetMatch<TurfWorld>(config: config, identity: keys[1], now: 0)
        var rng = SplitMix64(seed: 9)
        for _ in 0..<2000 {
            let bytes = (0..<rng.below(60)).map { _ in UInt8(truncatingIfNeeded: rng.next()) }
            b.receive(bytes, from: owners[0], now: 0)
        }
        #expect(b.drops.malformed > 1900)
        // An unknown peer.
        b.receive([0xA7, 0], from: PeerKey(bytes: [UInt8](repeating: 9, count: 32))!, now: 0)
        #expect(b.drops.unknownPeer == 1)
        // Ops far ahead of what is held: dropped, not stored.
        let far = Op<TurfWorld.Payload>(player: 0, seq: 100_000, tick: 0, payload: TurfOp.move(cell: 5))
        b.receive(packet(config: config, ops: [far], statements: [], frontier: [0]), from: owners[0], now: 0)
        #expect(b.drops.farAhead == 1)
        // Our own player's ops echoed back are ignored.
        let mine = Op<TurfWorld.Payload>(player: 1, seq: 0, tick: 0, payload: TurfOp.move(cell: 5))
        b.receive(packet(config: config, ops: [mine], statements: [], frontier: [0]), from: owners[0], now: 0)
        #expect(b.drops.ownOpsEchoed == 1)
        #expect(b.takeAccepted() == [])
        // Settle reports: an unknown flag, a count past the bound, a truncated one: malformed.
        let before = b.drops.malformed
        var base = packet(config: config, ops: [], statements: [], frontier: [0])
        base.removeLast()  // the settle flag
        for tail: [UInt8] in [[2], [1, 0, 1, 0xFF, 0xFF, 0xFF, 0xFF, 0x7F], [1, 0]] {
            b.receive(base + tail, from: owners[0], now: 0)
        }
        #expect(b.drops.malformed == before + 3)
        // A well-formed one naming a player past the config's is ignored, not stored.
        b.receive(base + [1, 0b1000_0000, 0b1000_0000, 5], from: owners[0], now: 0)
        #expect(b.drops.malformed == before + 3)
    }

    @Test func testSilentLinkGoesDownAfterFiveSecondsAndComesBack() throws {
        let keys = Fixture.keys(2)
        let config = try Fixture.config(keys: keys, seconds: 30)
        let owners = keys.map { PeerKey(bytes: $0.publicKey)! }
        var a = try NetMatch<TurfWorld>(config: config, identity: keys[0], now: 0)
        var b = try NetMatch<TurfWorld>(config: config, identity: keys[1], now: 0)
        _ = a.poll(now: 4_900_000_000)
        #expect(a.takeEvents() == [])
        let out = a.poll(now: 5_000_000_001)
        #expect(a.takeEvents() == [.linkDown(owners[1])])
        #expect(!(a.isConnected(owners[1])))
        for (_, bytes) in b.poll(now: 5_000_000_001) { a.receive(bytes, from: owners[1], now: 5_000_000_002) }
        #expect(a.takeEvents() == [.linkUp(owners[1])])
        // Stats count every datagram with its headers.
        let s = a.stats(for: owners[1])!
        #expect(s.datagramsSent == UInt64(out.count) + 1)
        #expect(s.datagramsReceived == 1)
        #expect(s.bytesReceived > 65)
    }

    @Test func testSignatureCheckOfARecording() throws {
        let keys = Fixture.keys(2)
        let config = try Fixture.config(keys: keys, seconds: 5)
        var a = try NetMatch<TurfWorld>(config: config, identity: keys[0], now: 0)
        let ops = (0..<5).map {
            Op<TurfWorld.Payload>(
                player: 0,
                seq: UInt32($0),
                tick: Tick($0),
                payload: TurfOp.move(cell: 5 + UInt32($0))
            )
        }
        for op in ops { a.addLocal([op], ranTick: op.tick, now: 0) }
        a.addLocal([], ranTick: 15, now: 0)
        let sts = a.statements
        #expect(OpChain.check(config: config, logs: [ops, []], statements: sts, as: TurfWorld.self) == nil)
        var bad = ops
        bad[2].payload = .move(cell: 40)
        #expect(OpChain.check(config: config, logs: [bad, []], statements: sts, as: TurfWorld.self) != nil)
        #expect(
            OpChain.check(
                config: config,
                logs: [ops + [Op(player: 0, seq: 5, tick: 16, payload: .move(cell: 3))], []],
                statements: sts,
                as: TurfWorld.self
            ) != nil
        )
    }

    /// A spectator is a watcher of the peer it is linked to: it gets every op held there at once,
    /// a third player's with the statement covering it, verifies them, and relays nothing; ops it
    /// sends are dropped and counted.
    @Test func testAWatcherHearsEveryOpSignedAndItsOpsAreDropped() throws {
        let keys = Fixture.keys(3)
        let config = try Fixture.config(keys: Array(keys[0..<2]), seconds: 5)
        let owners = keys.map { PeerKey(bytes: $0.publicKey)! }
        var a = try NetMatch<TurfWorld>(config: config, identity: keys[0], now: 0, watchers: [owners[2]])
        var b = try NetMatch<TurfWorld>(config: config, identity: keys[1], now: 0)
        var w = try NetMatch<TurfWorld>(config: config, identity: keys[2], now: 0)
        #expect(a.watchers == [owners[2]] && w.ownPlayers.isEmpty)
        let opA = Op<TurfWorld.Payload>(player: 0, seq: 0, tick: 0, payload: TurfOp.move(cell: 5))
        let opB = Op<TurfWorld.Payload>(player: 1, seq: 0, tick: 0, payload: TurfOp.move(cell: 9))
        b.addLocal([opB], ranTick: 0, now: 0)
        for (to, bytes) in b.poll(now: 0) where to == owners[0] { a.receive(bytes, from: owners[1], now: 1) }
        #expect(a.takeAccepted() == [opB])
        a.addLocal([opA], ranTick: 0, now: 1)
        _ = a.takeAccepted()
        // No relay delay for a watcher: the first packet carries both ops; B's statement comes
        // with the relayed op (statements of relayed players go at most every 300 ms).
        var toWatcher = 0
        for now: UInt64 in [1, 400_000_000] {
            for (to, bytes) in a.poll(now: now) where to == owners[2] {
                toWatcher += 1
                w.receive(bytes, from: owners[0], now: now)
            }
        }
        #expect(toWatcher >= 2)
        #expect(Set(w.takeAccepted().map { $0.player }) == [0, 1])
        #expect(w.drops.badSignatures == 0)
        // The watcher relays nothing back, and an op it sends anyway is refused.
        #expect(
            w.poll(now: 10_000_000_000).allSatisfy { to, bytes in
                (try? Packet<TurfWorld>.decode(bytes, config: config, senderPlayers: [], maxOps: 16))?.ops.isEmpty
                    ?? false
            }
        )
        a.receive(packet(config: config, ops: [opB], statements: [], frontier: []), from: owners[2], now: 3)
        #expect(a.drops.watcherOps == 1)
        #expect(a.takeAccepted() == [])
    }

    /// A spectator arriving mid-match: it restores the host's copy of the match, the host adds it
    /// as a watcher holding that copy (`addWatcher`), and from then on it is sent only the ops that
    /// came after, with the statements covering them, which verify at the spectator.
    @Test func testALateWatcherGetsOnlyWhatItLacksAndVerifiesIt() throws {
        let keys = Fixture.keys(3)
        let config = try Fixture.config(keys: Array(keys[0..<2]), seconds: 5)
        let owners = keys.map { PeerKey(bytes: $0.publicKey)! }
        var a = try NetMatch<TurfWorld>(config: config, identity: keys[0], now: 0)
        var b = try NetMatch<TurfWorld>(config: config, identity: keys[1], now: 0)
        var held: [Op<TurfWorld.Payload>] = []
        var w: NetMatch<TurfWorld>?
        var sent: [Op<TurfWorld.Payload>] = []
        /// A's datagrams to the spectator (none before it is a watcher), into its NetMatch.
        func toWatcher(_ now: UInt64) throws {
            for (to, bytes) in a.poll(now: now) where to == owners[2] {
                sent += try Packet<TurfWorld>.decode(bytes, config: config, senderPlayers: [0], maxOps: 64).ops
                w?.receive(bytes, from: owners[0], now: now)
            }
        }
        // One op each at ticks 0, 15, 30 (before the spectator) and 45 (after): owners sign every
        // 15 ticks, so a statement covers each.
        func play(_ i: Int) throws -> [Op<TurfWorld.Payload>] {
            let t = Tick(15 * i)
            let now = UInt64(i + 1) * 1_000_000_000
            let ops = (0..<2).map {
                Op<TurfWorld.Payload>(
                    player: PlayerID($0),
                    seq: UInt32(i),
                    tick: t,
                    payload: TurfOp.move(cell: UInt32(5 + i))
                )
            }
            b.addLocal([ops[1]], ranTick: t, now: now)
            for (to, bytes) in b.poll(now: now) where to == owners[0] { a.receive(bytes, from: owners[1], now: now) }
            a.addLocal([ops[0]], ranTick: t, now: now)
            try toWatcher(now)
            return ops
        }
        for i in 0..<3 { held += try play(i) }
        _ = a.takeAccepted()
        #expect(a.acceptedCount(1) == 3 && sent.isEmpty)
        w = try NetMatch<TurfWorld>(config: config, identity: keys[2], now: 3_500_000_000)
        w!.restore(held, now: 3_500_000_000)
        a.addWatcher(owners[2], holding: [3, 3], now: 3_500_000_000)
        #expect(a.watchers == [owners[2]])
        let later = try play(3)
        try toWatcher(4_500_000_000)
        // Only the two new ops (each datagram with fresh ops goes out twice), none it holds.
        #expect(sent.allSatisfy { later.contains($0) } && later.allSatisfy { sent.contains($0) }, "\(sent)")
        var watcher = try #require(w)
        let taken = watcher.takeAccepted()
        #expect(taken.count == 2 && later.allSatisfy { taken.contains($0) }, "\(taken)")
        #expect(watcher.acceptedCount(0) == 4 && watcher.acceptedCount(1) == 4)
        #expect(watcher.drops.badSignatures == 0)
        // The host's own player and the relayed one: a statement covering all four ops verified.
        #expect(watcher.statements.filter { $0.count == 4 }.count == 2, "\(watcher.statements)")
    }

    /// A rejoining peer restores its own earlier ops from a snapshot: its log resumes at the right
    /// seq and its next statement covers the whole log, so peers holding the originals verify it.
    @Test func testARestoredLogResumesAndItsStatementVerifiesAtPeers() throws {
        let keys = Fixture.keys(2)
        let config = try Fixture.config(keys: keys, seconds: 5)
        let owners = keys.map { PeerKey(bytes: $0.publicKey)! }
        var a = try NetMatch<TurfWorld>(config: config, identity: keys[0], now: 0)
        let first = (0..<3).map {
            Op<TurfWorld.Payload>(player: 1, seq: UInt32($0), tick: Tick($0), payload: TurfOp.move(cell: 5 + $0))
        }
        var before = try NetMatch<TurfWorld>(config: config, identity: keys[1], now: 0)
        for (i, op) in first.enumerated() {
            before.addLocal([op], ranTick: Tick(i), now: 0)
            for (_, bytes) in before.poll(now: UInt64(i) * 40_000_000) { a.receive(bytes, from: owners[1], now: 0) }
        }
        #expect(a.acceptedCount(1) == 3)
        // B crashed; it comes back with the ops a snapshot gave it, and plays on.
        var again = try NetMatch<TurfWorld>(config: config, identity: keys[1], now: 0)
        again.restore(first, now: 0)
        #expect(again.acceptedCount(1) == 3)
        let next = Op<TurfWorld.Payload>(player: 1, seq: 3, tick: 15, payload: TurfOp.move(cell: 11))
        again.addLocal([next], ranTick: 15, now: 1)
        #expect(again.statements.first { $0.player == 1 }?.count == 4)
        for (_, bytes) in again.poll(now: 2) { a.receive(bytes, from: owners[1], now: 2) }
        #expect(a.acceptedCount(1) == 4)
        #expect(a.drops.badSignatures == 0)
        #expect(a.statements.first { $0.player == 1 }?.count == 4)
    }

    private func packet(
        config: MatchConfig,
        ops: [Op<TurfWorld.Payload>],
        statements: [SignedStatement],
        frontier: [Int] = [0]
    ) -> [UInt8] {
        var w = ByteWriter()
        w.u8(0xA7)
        w.varint(0)
        for f in frontier { w.varint(UInt64(f)) }
        w.u8(0)
        OpCodec<TurfWorld>.encodeBatch(ops, into: &w)
        w.u8(UInt8(statements.count))
        for s in statements { s.encode(into: &w) }
        w.u8(0)  // finals
        w.u8(0)  // equivocators
        w.u8(0)  // time cuts
        w.u8(0)  // retracted
        w.u8(0)  // no settle report
        return w.bytes
    }
}

/// Equivocation (docs/netmatch.md): an owner that tells peers different, validly signed histories
/// is proven to have done so by two of its statements of one tick, named on every honest peer, and
/// its whole log is void there, so every honest peer ends on one final hash.
@Suite struct EquivocationTests {
    func sim(peers: Int, seconds: Int, seed: UInt64, loss: Double = 0, partition: Bool = false) throws
        -> NetMatchSim<TurfController>.Result
    {
        var c = NetMatchSim<TurfController>.Conditions()
        c.loss = loss
        if loss > 0 {
            c.duplicate = 0.1
            c.jitterNanos = 100_000_000
        }
        if partition { c.partition = (peer: 2, from: 1_000_000_000, to: 3_000_000_000) }
        var sim = try Fixture.sim(peers: peers, seconds: seconds, seed: seed, conditions: c)
        // Peer 0 tells peer 2 (its link 1) another history of its player from seq 10 on.
        sim.prepare = { i, net in if i == 0 { net.testingEquivocate = (fromSeq: 10, links: [1]) } }
        return try sim.run()
    }

    func check(_ r: NetMatchSim<TurfController>.Result, peers: Int) {
        let cheater = PeerKey(bytes: Fixture.keys(peers)[0].publicKey)!
        #expect(r.converged, "\(r.finalHashes)")
        for i in 1..<peers {
            #expect(r.settled[i])
            #expect(r.finalHashes[i] == r.finalHashes[1])
            #expect(r.events[i].contains { if case .equivocation(player: 0, _) = $0 { true } else { false } })
            // Nobody honest is blamed: no bad signature, no desync naming an honest peer.
            for e in r.events[i] {
                switch e {
                case .badSignature: Issue.record("peer \(i): \(e)")
                case .desync(_, let peer, _, _), .finalMismatch(let peer, _, _):
                    #expect(peer == cheater, "peer \(i): \(e)")
                default: break
                }
            }
        }
    }

    @Test func aPerLinkEquivocatorIsProvenNamedAndVoided() throws {
        let r = try sim(peers: 3, seconds: 5, seed: 2)
        check(r, peers: 3)
        // Without the switch, the same match has no verdict.
        let clean = try Fixture.sim(peers: 3, seconds: 5, seed: 2, conditions: .init()).run()
        #expect(clean.converged)
        #expect(!clean.events.flatMap { $0 }.contains { if case .equivocation = $0 { true } else { false } })
    }

    @Test(arguments: 0..<UInt64(8))
    func underLossAndAPartitionEveryHonestPeerEndsOnOneHash(seed: UInt64) throws {
        check(try sim(peers: 4, seconds: 4, seed: seed, loss: 0.2, partition: true), peers: 4)
    }

    /// An owner that sends one peer another history *unsigned* (its statements there stay over
    /// the real one): that peer catches the lie itself (its own session carried both), takes those
    /// ops back and takes the signed ones from the others; every honest peer ends on the owner's
    /// signed history, and nobody honest is blamed.
    @Test(arguments: [false, true])
    func anUnsignedLieIsTakenBackAndTheSignedHistoryWins(chaos: Bool) throws {
        var c = NetMatchSim<TurfController>.Conditions()
        if chaos {
            c.loss = 0.2
            c.duplicate = 0.1
            c.jitterNanos = 100_000_000
        }
        var sim = try Fixture.sim(peers: 3, seconds: 5, seed: 5, conditions: c)
        sim.prepare = { i, net in
            guard i == 0 else { return }
            net.testingEquivocate = (fromSeq: 10, links: [1])
            net.testingEquivocateUnsigned = true
        }
        let r = try sim.run()
        #expect(r.converged, "\(r.finalHashes)")
        #expect(r.settled[1] && r.settled[2])
        #expect(r.events[2].contains { if case .unsignedLie(player: 0) = $0 { true } else { false } }, "\(r.events[2])")
        for i in 1..<3 {
            for e in r.events[i] {
                switch e {
                case .badSignature, .desync, .finalMismatch: Issue.record("peer \(i): \(e)")
                default: break
                }
            }
        }
    }

    /// The proof is two statements; it verifies with the owner's key and fails once altered.
    @Test func aProofVerifiesAndATamperedOneDoesNot() throws {
        let keys = Fixture.keys(2)
        let config = try Fixture.config(keys: keys, seconds: 2)
        var a = try NetMatch<TurfWorld>(config: config, identity: keys[0], now: 0)
        var b = try NetMatch<TurfWorld>(config: config, identity: keys[0], now: 0)
        a.addLocal([Op(player: 0, seq: 0, tick: 0, payload: .move(cell: 5))], ranTick: 0, now: 0)
        b.addLocal([Op(player: 0, seq: 0, tick: 0, payload: .move(cell: 6))], ranTick: 0, now: 0)
        let proof = SignedStatement.encodeProof(a.statements[0], b.statements[0])
        #expect(SignedStatement.checkProof(proof, player: 0, config: config))
        #expect(!SignedStatement.checkProof(proof, player: 1, config: config))
        var bad = proof
        bad[bad.count - 1] ^= 1
        #expect(!SignedStatement.checkProof(bad, player: 0, config: config))
        // The same statement twice proves nothing.
        #expect(
            !SignedStatement.checkProof(
                SignedStatement.encodeProof(a.statements[0], a.statements[0]),
                player: 0,
                config: config
            )
        )
    }
}

/// A modified client in virtual time: peer 0 rewrites its own ops from seq 20 on before they are
/// signed and sent (its own match applied the originals). Every honest peer cuts its log at seq 20
/// with the rule, and the honest peers end on one hash, with and without loss and a partition.
@Suite struct ModifiedClientTests {
    static func rewrite(_ cheat: String) -> @Sendable (Op<TurfOp>) -> Op<TurfOp> {
        { op in
            guard op.seq >= 20 else { return op }
            var o = op
            switch cheat {
            case "teleport": if op.seq == 20 { o.payload = .move(cell: 111) }  // player 2's spawn: 33 columns away
            case "speed": o.tick -= 2
            case "late": o.tick = Tick(op.seq - 19)
            case "future": o.tick = min(o.tick + 30, 150)  // ahead of the statements' clock (5 s: 150 ticks)
            default: break
            }
            return o
        }
    }

    @Test(arguments: ["teleport", "speed", "late", "future", "lagswitch"], [false, true])
    func everyHonestPeerCutsTheCheaterAndTheyAgree(cheat: String, chaos: Bool) throws {
        var c = NetMatchSim<TurfController>.Conditions()
        if chaos {
            c.loss = 0.2
            c.duplicate = 0.1
            c.jitterNanos = 100_000_000
            c.partition = (peer: 2, from: 1_000_000_000, to: 3_000_000_000)
        }
        var sim = try Fixture.sim(peers: 3, seconds: 5, seed: 3, conditions: c)
        let f = Self.rewrite(cheat)
        sim.prepare = { i, net in
            guard i == 0 else { return }
            // A lag switch: its moves from seq 20 go out 20 ticks late, stamped when made.
            if cheat == "lagswitch" { net.testingHold = (fromSeq: 20, ticks: 20) } else { net.testingRewriteOwn = f }
        }
        let r = try sim.run()
        let rule = cheat == "lagswitch" ? "late" : cheat
        for i in 1..<3 {
            #expect(r.settled[i], "peer \(i)")
            #expect(r.finalHashes[i] == r.finalHashes[1])
            #expect(r.cheats[i].map(\.rule) == [rule], "peer \(i): \(r.cheats[i])")
            #expect(r.cheats[i].map(\.player) == [0])
            #expect(r.cheats[i].map(\.seq) == [20])
            #expect(!r.events[i].contains { if case .desync = $0 { true } else { false } }, "\(r.events[i])")
            #expect(!r.events[i].contains { if case .badSignature = $0 { true } else { false } })
        }
    }

    /// 0 honest players flagged: the same conditions with nobody cheating find no cheat.
    @Test(arguments: 0..<UInt64(6))
    func honestPeersOnBadLinksAreNeverFlagged(seed: UInt64) throws {
        var c = NetMatchSim<TurfController>.Conditions()
        c.loss = 0.2
        c.duplicate = 0.1
        c.jitterNanos = 100_000_000
        c.oneWayNanos = 150_000_000
        c.partition = (peer: Int(seed % 4), from: 1_000_000_000, to: 6_000_000_000)
        let r = try Fixture.sim(peers: 4, seconds: 8, seed: seed, conditions: c).run()
        #expect(r.converged, "\(r.finalHashes)")
        #expect(r.cheats.allSatisfy { $0.isEmpty }, "\(r.cheats)")
    }
}

@Suite struct NetMatchReplayTests {
    /// A networked match's replay records the signatures; they survive the file format and verify;
    /// a tampered op is named.
    @Test func testReplayRecordsAndChecksSignatures() throws {
        let keys = Fixture.keys(2)
        let config = try Fixture.config(keys: keys, seconds: 2)
        var a = try NetMatch<TurfWorld>(config: config, identity: keys[0], now: 0)
        var match = try LocalMatch(
            config: config,
            controllers: TurfMatch.controllers(config: config, ownedBy: PeerKey(bytes: keys[0].publicKey))
        )
        match.recordOutbox = true
        while !match.isOver {
            let t = match.tick
            match.step()
            a.addLocal(match.outbox, ranTick: t, now: 0)
            match.outbox.removeAll()
        }
        var replay = try match.recording()
        replay.signatures = a.recordedSignatures
        #expect(replay.signatures.count == 1)
        let decoded = try ReplayFile.decode(ReplayFile.encode(replay), as: TurfWorld.self)
        #expect(decoded.signatures == replay.signatures)
        #expect(
            OpChain.check(config: config, logs: decoded.logs, signatures: decoded.signatures, as: TurfWorld.self) == nil
        )
        var tampered = decoded.logs
        tampered[0][3].payload = .move(cell: 1)
        #expect(
            OpChain.check(config: config, logs: tampered, signatures: decoded.signatures, as: TurfWorld.self)
                == "op 0/\(decoded.logs[0].count - 1): signature of player 0 does not verify"
        )
        // A replay without the section reads with no signatures.
        replay.signatures = []
        #expect(try ReplayFile.decode(ReplayFile.encode(replay), as: TurfWorld.self).signatures.isEmpty)
    }
}
