import Determinism
import Engine
import Testing
import TurfRules

/// The rules are law (docs/engine.md, "Legality"): each player's log is applied in seq order and
/// stops at its first illegal op, identically whatever order the ops arrive in.
@Suite struct LegalityTests {
    /// An honest bot match with player 1's log rewritten by `cheat` from seq `at` on.
    func cheated(
        seed: UInt64 = 7,
        player: Int = 1,
        at: Int = 20,
        _ cheat: (inout [Op<TurfOp>], ArenaMap, Int) -> Void
    ) throws -> (honest: TurfReplay, cheat: TurfReplay) {
        let honest = try smallReplay(seed: seed, seconds: 12)
        var logs = honest.logs
        let map = try TurfSettings.decode(honest.config.settings).map
        cheat(&logs[player], map, at)
        return (honest, try TurfReplay(config: honest.config, logs: logs))
    }

    /// The replica of `replay`'s ops, delivered in a seeded shuffle with duplicates.
    func shuffled(_ replay: TurfReplay, seed: UInt64) throws -> Replica<TurfWorld> {
        var rng = SplitMix64(seed: seed, stream: 3)
        var ops = replay.logs.flatMap { $0 } + replay.equivocations
        ops += (0..<ops.count / 3).map { _ in ops[rng.below(ops.count)] }
        ops.shuffle(using: &rng)
        var r = try Replica<TurfWorld>(config: replay.config)
        for op in ops { r.receive(op) }
        return r
    }

    /// Player 1's log cut at `at`: what every replica must end with.
    func expected(_ honest: TurfReplay, player: Int = 1, at: Int) throws -> Replica<TurfWorld> {
        var r = try Replica<TurfWorld>(config: honest.config)
        for (p, log) in honest.logs.enumerated() {
            for op in log where p != player || Int(op.seq) < at { r.receive(op) }
        }
        return r
    }

    func check(_ pair: (honest: TurfReplay, cheat: TurfReplay), at: Int, rule: String) throws {
        let inOrder = try ReplayPlayer(pair.cheat).run()
        #expect(inOrder.cheats.map(\.rule) == [rule])
        #expect(inOrder.cheats.first?.player == 1)
        #expect(inOrder.cheats.first.map { Int($0.seq) } == at)
        let cut = try expected(pair.honest, at: at)
        // Only the legal prefix counts: the cheater's avatar stops at its last legal op, its
        // illegal cells are not painted, and the state is the honest one cut there.
        #expect(inOrder.hash == cut.hash)
        #expect(inOrder.state.canonicalBytes() == cut.state.canonicalBytes())
        #expect(inOrder.appliedCount(for: 1) == at)
        for seed in 1...5 as ClosedRange<UInt64> {
            let r = try shuffled(pair.cheat, seed: seed)
            #expect(r.hash == inOrder.hash)
            #expect(r.cheats == inOrder.cheats)
        }
        // The recorded checkpoints re-derive the same way in any delivery order.
        #expect(try ReplayPlayer(pair.cheat).verify(shuffleSeed: 9).0.ok)
    }

    @Test func anHonestMatchHasNoCheats() throws {
        for seed in [1, 2, 3] as [UInt64] {
            let replay = try smallReplay(seed: seed, seconds: 12)
            let r = try ReplayPlayer(replay).run()
            #expect(r.cheats.isEmpty)
            #expect(r.stats.illegal == 0)
            for p in 0..<replay.logs.count { #expect(r.appliedCount(for: PlayerID(p)) == replay.logs[p].count) }
        }
    }

    /// A log delivered backwards: every op arrives with a seq far ahead of what is held (kept
    /// aside), and the applied prefix still grows through all of them once seq 0 arrives.
    @Test func aLogDeliveredBackwardsIsAppliedWhole() throws {
        let replay = try smallReplay(seed: 4, players: 2, seconds: 180)
        #expect(replay.logs[0].count > 1100)
        var r = try Replica<TurfWorld>(config: replay.config)
        for log in replay.logs { for op in log.reversed() { r.receive(op) } }
        let inOrder = try ReplayPlayer(replay).run()
        #expect(r.hash == inOrder.hash)
        #expect(r.appliedCount(for: 0) == replay.logs[0].count)
    }

    @Test func teleportIsCutAtTheFirstFarMove() throws {
        let pair = try cheated { log, map, at in
            // A move to a floor cell far from where the avatar stood, then the honest path on.
            let far = map.floorCells.first { c in
                guard case .move(let from) = log[at - 1].payload else { return false }
                let dx = abs(map.x(c) - map.x(Int(from)))
                let dy = abs(map.y(c) - map.y(Int(from)))
                return dx + dy > 5
            }!
            log[at].payload = .move(cell: UInt32(far))
        }
        try check(pair, at: 20, rule: "teleport")
    }

    @Test func aFirstMoveAwayFromTheSpawnIsATeleport() throws {
        let pair = try cheated(at: 0) { log, map, _ in
            log[0].payload = .move(cell: UInt32(map.spawns[3]))
        }
        try check(pair, at: 0, rule: "teleport")
    }

    @Test func movingFasterThanTheRulesIsSpeed() throws {
        let pair = try cheated { log, _, at in
            // The same path, every op from `at` on made one tick after the previous one.
            for i in at..<log.count { log[i].tick = log[i - 1].tick + 1 }
        }
        try check(pair, at: 20, rule: "speed")
    }

    @Test func paintingThePastIsLate() throws {
        let pair = try cheated { log, _, at in
            // From `at` on, the path is stamped back at tick 1.
            for i in at..<log.count { log[i].tick = 1 + Tick(i - at) * 4 }
        }
        try check(pair, at: 20, rule: "late")
    }

    /// Two different ops for one (player, seq): its owner told peers different things, so its
    /// whole log is void (the verdict a proof from signed statements gives, docs/netmatch.md).
    @Test func anEquivocationVoidsTheWholeLog() throws {
        let honest = try smallReplay(seed: 7, seconds: 12)
        var other = honest.logs[1][20]
        other.tick += 1
        let cheat = try TurfReplay(config: honest.config, logs: honest.logs, equivocations: [other])
        let r = try ReplayPlayer(cheat).run()
        #expect(r.cheats == [.init(player: 1, seq: 0, tick: honest.logs[1][20].tick, rule: "equivocation")])
        #expect(r.hash == (try expected(honest, at: 0)).hash)
        #expect(r.appliedCount(for: 1) == 0)
        #expect(r.state.position(of: 1) == nil)
        for seed in 1...5 as ClosedRange<UInt64> { #expect(try shuffled(cheat, seed: seed).hash == r.hash) }
    }

    /// Ops taken back (their sender lied, docs/netmatch.md) are forgotten: the state is the one
    /// without them, and other ops for those seqs are no equivocation.
    @Test func retractedOpsAreForgottenAndOthersTakeTheirSeqs() throws {
        let honest = try smallReplay(seed: 8, seconds: 12)
        var r = try ReplayPlayer(honest).run()
        r.retract(1, from: 20)
        #expect(r.hash == (try expected(honest, at: 20)).hash)
        #expect(r.heldCount(for: 1) == 20)
        for op in honest.logs[1][20...] { #expect(r.receive(op) == .merged) }
        #expect(r.hash == (try ReplayPlayer(honest).run()).hash)
        #expect(r.stats.equivocations == 0)
    }

    /// A pickup goes only to a legal move: a teleport onto a live pickup claims nothing.
    @Test func aTeleportOntoAPickupClaimsNothing() throws {
        let honest = try smallReplay(seed: 11, seconds: 12)
        let world = try ReplayPlayer(honest).run().state
        let pickup = try #require(world.schedule.pickups.first)
        var logs = honest.logs
        // Player 1's first op after the pickup spawns jumps onto it.
        let i = try #require(logs[1].firstIndex { $0.tick >= pickup.spawn && $0.seq > 0 })
        logs[1][i].payload = .move(cell: UInt32(pickup.cell))
        let cheat = try TurfReplay(config: honest.config, logs: logs)
        let r = try ReplayPlayer(cheat).run()
        #expect(r.cheats.first?.rule == "teleport")
        #expect(r.state.canonicalBytes() == (try expected(honest, at: i)).state.canonicalBytes())
        #expect(r.state.collector(of: 0) != 1)
    }

    /// A rejoining peer's avatar resumes where its log stands, so its next op is legal.
    @Test func aRejoinerResumesLegally() throws {
        let replay = try smallReplay(seed: 5, seconds: 12)
        var full = try TurfMatch.local(config: replay.config)
        for _ in 0..<150 { full.step() }
        let snap = full.replica.snapshot()
        var rejoined = try TurfMatch.local(config: replay.config)
        try rejoined.merge(snap)
        while rejoined.tick < 150 { rejoined.skip(to: 150) }
        rejoined.runToEnd()
        #expect(rejoined.replica.cheats.isEmpty)
        for p in 0..<4 { #expect(rejoined.replica.appliedCount(for: PlayerID(p)) > snap.logs[p].count) }
    }
}
