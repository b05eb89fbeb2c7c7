import Determinism
import Engine
import Foundation
import Testing
@_spi(Fuzzing) import TurfRules

/// Ops and files built to hurt: they must be rejected the same way everywhere, cost O(1), and
/// never trap.
@Suite struct HostileOpsTests {
    /// An invalid op that reuses a valid op's (player, seq): before validity came first, the
    /// replica that saw the valid op first counted it as an equivocation (and in the hash) while
    /// the other rejected it, so their hashes differed.
    @Test func anInvalidOpReusingASeqIsRejectedInEveryOrder() throws {
        let replay = try smallReplay(seed: 9, seconds: 4)
        let map = try TurfWorld.settings(for: replay.config).map
        let wall = UInt32(map.cells.firstIndex(of: .wall)!)
        let valid = replay.logs[1][3]
        let invalid = Op(player: valid.player, seq: valid.seq, tick: valid.tick + 1, payload: TurfOp.move(cell: wall))
        var a = try Replica<TurfWorld>(config: replay.config)
        var b = try Replica<TurfWorld>(config: replay.config)
        #expect(a.receive(valid) == .merged)
        #expect(a.receive(invalid) == .rejected)
        #expect(b.receive(invalid) == .rejected)
        #expect(b.receive(valid) == .merged)
        #expect(a.hash == b.hash)
        #expect(a.canonicalState == b.canonicalState)
        #expect(a.equivocations.isEmpty && b.equivocations.isEmpty)
    }

    /// Seqs far ahead of what a player has sent are kept aside, not as a gap of nil slots, and
    /// are folded into the log when the log grows past them; duplicates are still found.
    @Test func farAheadSeqsAreStoredSparselyAndFoldedIn() throws {
        let replay = try smallReplay(seed: 11, players: 2, seconds: 4)
        let cell = UInt32(try TurfWorld.settings(for: replay.config).map.floorCells[5])
        func op(_ seq: UInt32, _ tick: Tick = 10) -> Op<TurfOp> {
            Op(player: 0, seq: seq, tick: tick, payload: .move(cell: cell))
        }
        var r = try Replica<TurfWorld>(config: replay.config)
        let huge = op((1 << 28) - 1)
        #expect(r.receive(huge) == .merged)  // would have appended 268 million slots
        #expect(r.receive(huge) == .duplicate)
        #expect(r.receive(op(1500)) == .merged)  // beyond 2 × 1 + 1024: kept aside too
        #expect(r.contiguousCount(for: 0) == 0)
        for s in 0..<1600 { r.receive(op(UInt32(s))) }  // the log grows over seq 1500
        #expect(r.receive(op(1500)) == .duplicate)
        #expect(r.stats.merged == 1601)
        #expect(r.contiguousCount(for: 0) == 1600)
        let log = r.allLogs[0]
        #expect(log.count == 1601)
        let expectedSeqs: [UInt32] = Array(0..<1600) + [UInt32((1 << 28) - 1)]
        #expect(log.map(\.seq) == expectedSeqs)
        // The same ops in another order give the same replica.
        var s = try Replica<TurfWorld>(config: replay.config)
        for op in log.reversed() { s.receive(op) }
        #expect(s.hash == r.hash)
        #expect(s.allLogs == r.allLogs)
    }

    /// A repeated equivocation is a duplicate, found without scanning every equivocation.
    @Test func repeatedEquivocationsAreDuplicates() throws {
        let replay = try smallReplay(seed: 12, players: 2, seconds: 4)
        let floor = try TurfWorld.settings(for: replay.config).map.floorCells
        var r = try Replica<TurfWorld>(config: replay.config)
        for op in replay.logs[0] { r.receive(op) }
        let base = replay.logs[0][0]
        var forged: [Op<TurfOp>] = []
        for i in 0..<500 {
            forged.append(
                Op(player: 0, seq: base.seq, tick: base.tick, payload: .move(cell: UInt32(floor[i % floor.count])))
            )
        }
        forged = forged.filter { $0 != base }
        func cellOf(_ op: Op<TurfOp>) -> UInt32 {
            if case .move(let c) = op.payload { return c }
            return 0
        }
        let distinct = Set(forged.map(cellOf)).count
        for op in forged + forged { r.receive(op) }
        #expect(r.stats.equivocations == UInt64(distinct))
        #expect(r.equivocations.count == distinct)
        #expect(r.stats.duplicates >= UInt64(forged.count))
    }

    /// Hand-made replay sections whose deltas overflow are format errors with an offset.
    @Test func overflowingDeltasInAReplayAreErrorsNotTraps() throws {
        let good = ReplayFile.encode(try smallReplay(seed: 3, players: 2, seconds: 3))
        // Replace player 0's op log with two ops whose tick deltas overflow Int64.
        var r = ByteReader(good, offset: ReplayFile.magic.count + 2)
        var sections: [(UInt8, [UInt8])] = []
        while !r.isAtEnd {
            let tag = try r.u8()
            let n = Int(try r.u32())
            sections.append((tag, Array(try r.take(n))))
            _ = try r.u64()
        }
        func file(_ replace: (UInt8, [UInt8]) -> [UInt8]?) -> [UInt8] {
            var w = ByteWriter()
            w.bytes(ReplayFile.magic)
            w.u16(ReplayFile.version)
            for (tag, body) in sections {
                let b = replace(tag, body) ?? body
                w.u8(tag)
                w.u32(UInt32(b.count))
                w.bytes(b)
                w.u64(0)
            }
            return ReplayFile.resealed(w.bytes)
        }
        var log = ByteWriter()
        log.u8(0)
        log.varint(2)
        log.varint(0)
        log.varint(10)
        log.varint(2 << 1)  // tick 5
        log.varint(0)
        log.varint(UInt64.max - 1)
        log.varint(2 << 1)  // + Int64.max: overflow
        let tickOverflow = file { tag, body in tag == 2 && body.first == 0 ? log.bytes : nil }
        #expect(throws: ReplayFormatError.self) { try ReplayFile.decode(tickOverflow, as: TurfWorld.self) }
        var cps = ByteWriter()
        cps.varint(2)
        cps.varint(30)
        cps.u64(1)
        cps.varint(UInt64.max - 10)
        cps.u64(2)
        let checkpointOverflow = file { tag, _ in tag == 3 ? cps.bytes : nil }
        #expect(throws: ReplayFormatError.self) { try ReplayFile.decode(checkpointOverflow, as: TurfWorld.self) }
        #expect(ReplayFuzz.check(tickOverflow) == nil && ReplayFuzz.check(checkpointOverflow) == nil)
    }

    /// Settings that would make the pickup schedule enormous, or overflow its arithmetic, are
    /// refused when the config is read; a length that overflows is refused, not wrapped.
    @Test func hostileSettingsAndLengthsAreRefused() throws {
        var settings = TurfSettings(map: try loadMap("dojo"))
        let players = [PlayerInfo(name: "a", kind: .bot, level: 0), PlayerInfo(name: "b", kind: .bot, level: 0)]
        settings.pickupInterval = 1
        #expect(throws: ConfigError.self) {
            try Replica<TurfWorld>(config: settings.matchConfig(seed: 1, players: players))
        }
        settings.pickupInterval = 60
        settings.pickupLifetime = .max
        let ok = settings.matchConfig(seed: 1, players: players)
        let world = try Replica<TurfWorld>(config: ok).state
        #expect(world.schedule.pickups.allSatisfy { $0.expiry == ok.lengthTicks + 1 })
        settings.pickupLifetime = 240
        let long = settings.matchConfig(seed: 1, players: players, seconds: 1440 * 60, tickRate: 60000)
        #expect(throws: ConfigError.self) { try Replica<TurfWorld>(config: long) }
        var many = ok
        many.checkpointInterval = 1
        many.lengthTicks = 5_000_000
        #expect(throws: ConfigError.self) { try Replica<TurfWorld>(config: many) }
    }

    /// A name longer than a replay may hold is refused before a match is played: `turf demo
    /// --name` with 12 emoji sequences (300 bytes) used to play and save a replay that could not
    /// be read back.
    @Test func namesAReplayCouldNotHoldAreRefusedBeforeTheMatch() throws {
        let settings = TurfSettings(map: try loadMap("dojo"))
        let family = "\u{1F468}\u{200D}\u{1F469}\u{200D}\u{1F467}\u{200D}\u{1F466}"
        let long = [
            PlayerInfo(name: String(repeating: family, count: 12), kind: .human), PlayerInfo(name: "b", kind: .bot),
        ]
        #expect(throws: ConfigError.self) {
            try Replica<TurfWorld>(config: settings.matchConfig(seed: 1, players: long))
        }
        let fits = [
            PlayerInfo(name: String(repeating: "é", count: 32), kind: .human), PlayerInfo(name: "b", kind: .bot),
        ]
        let config = settings.matchConfig(seed: 1, players: fits)
        _ = try Replica<TurfWorld>(config: config)
        let replay = try TurfReplay(config: config, logs: [[], []])
        #expect(try ReplayFile.decode(ReplayFile.encode(replay), as: TurfWorld.self).config == config)
    }
}
