import Determinism
import Engine
import Testing
import TurfRules

/// The API replication builds on: the op codec, resending a player's ops from a seq, snapshots
/// for late joiners.
@Suite struct ReplicationAPITests {
    func finishedMatch(seed: UInt64 = 31, players: Int = 4, ticks: Tick = 200) throws -> LocalMatch<Bidder> {
        var match = try maxBoardMatch(seed: seed, players: players, slots: 8, ticks: ticks)
        match.runToEnd()
        return match
    }

    @Test func opsAndBatchesRoundTrip() throws {
        let match = try finishedMatch()
        let config = match.replica.config
        let ops = match.replica.allLogs.flatMap { $0 }
        #expect(ops.count > 100)
        for op in ops.prefix(20) {
            var w = ByteWriter()
            OpCodec<MaxBoard>.encode(op, into: &w)
            var r = ByteReader(w.bytes)
            #expect(try OpCodec<MaxBoard>.decode(from: &r, config: config) == op)
            #expect(r.isAtEnd)
        }
        let batch = OpCodec<MaxBoard>.encodeBatch(ops)
        #expect(try OpCodec<MaxBoard>.decodeBatch(batch, config: config, maxOps: ops.count) == ops)
        // The count is bounded: a batch of more ops than allowed is refused before decoding them.
        #expect(throws: ByteReadError.self) {
            try OpCodec<MaxBoard>.decodeBatch(batch, config: config, maxOps: ops.count - 1)
        }
        // Stray bytes after the batch are an error.
        #expect(throws: ByteReadError.self) {
            try OpCodec<MaxBoard>.decodeBatch(batch + [0], config: config, maxOps: ops.count)
        }

        // A log with gaps, delta-coded.
        let log = match.replica.allLogs[1].enumerated().filter { $0.offset % 3 != 1 }.map(\.element)
        var w = ByteWriter()
        OpCodec<MaxBoard>.encodeLog(player: 1, log, into: &w)
        var r = ByteReader(w.bytes)
        let (p, decoded) = try OpCodec<MaxBoard>.decodeLog(from: &r, config: config, maxOps: .max)
        #expect(p == 1 && decoded == log && r.isAtEnd)
    }

    /// Every prefix of a batch, and ops that the config rules out, fail with a byte offset inside
    /// the input: never a trap.
    @Test func badBatchesAreErrorsWithOffsets() throws {
        let match = try finishedMatch(players: 2, ticks: 60)
        let config = match.replica.config
        let batch = OpCodec<MaxBoard>.encodeBatch(match.replica.allLogs.flatMap { $0 })
        for n in 0..<batch.count {
            do {
                _ = try OpCodec<MaxBoard>.decodeBatch(Array(batch[0..<n]), config: config, maxOps: 1000)
                Issue.record("a truncated batch of \(n) bytes decoded")
            } catch let e as ByteReadError {
                #expect(e.offset <= n)
            }
        }
        let unknownPlayer = OpCodec<MaxBoard>.encodeBatch([
            Op(player: 2, seq: 0, tick: 1, payload: MaxBoard.Bid(slot: 0, value: 1))
        ])
        #expect(throws: ByteReadError(offset: 1, "op by unknown player 2")) {
            try OpCodec<MaxBoard>.decodeBatch(unknownPlayer, config: config, maxOps: 10)
        }
        // A negative bound is no bound to trap on: nothing is allowed.
        #expect(throws: ByteReadError.self) { try OpCodec<MaxBoard>.decodeBatch(batch, config: config, maxOps: -1) }
        let late = OpCodec<MaxBoard>.encodeBatch([
            Op(player: 0, seq: 0, tick: 61, payload: MaxBoard.Bid(slot: 0, value: 1))
        ])
        #expect(throws: ByteReadError.self) { try OpCodec<MaxBoard>.decodeBatch(late, config: config, maxOps: 10) }
    }

    /// What fits in a datagram: the longest prefix whose batch is within the budget.
    @Test func aBatchFillsAByteBudgetWithTheLongestPrefix() throws {
        let match = try finishedMatch()
        let config = match.replica.config
        let ops = match.replica.allLogs.flatMap { $0 }
        for budget in [1, 7, 64, 200, 1200] {
            let (bytes, count) = OpCodec<MaxBoard>.encodeBatch(ops, maxBytes: budget)
            #expect(bytes.count <= max(budget, 1))
            #expect(try OpCodec<MaxBoard>.decodeBatch(bytes, config: config, maxOps: .max) == Array(ops.prefix(count)))
            // One more op would not have fitted.
            if count < ops.count { #expect(OpCodec<MaxBoard>.encodeBatch(ops.prefix(count + 1)).count > budget) }
        }
        #expect(OpCodec<MaxBoard>.encodeBatch(ops, maxBytes: 1200).count > 100)
        #expect(OpCodec<MaxBoard>.encodeBatch(ops, maxBytes: 1 << 20).count == ops.count)
    }

    /// What a peer resends to one that acknowledged `seq` ops of a player: every op it holds from
    /// that seq on, in order, gaps skipped, far-ahead seqs included.
    @Test func opsOfAPlayerFromASeq() throws {
        let match = try finishedMatch()
        let all = match.replica.allLogs[2]
        #expect(all.count > 30)
        var r = try Replica<MaxBoard>(config: match.replica.config)
        // Every third op is missing (not arrived yet), and one hostile op sits far ahead.
        for op in all where op.seq % 3 != 2 { r.receive(op) }
        let far = Op(player: 2, seq: 100_000, tick: 5, payload: MaxBoard.Bid(slot: 1, value: 3))
        #expect(r.receive(far) == .merged)
        let held = all.filter { $0.seq % 3 != 2 } + [far]
        for from: UInt32 in [0, 1, 2, 17, UInt32(all.count), 100_000, 100_001] {
            #expect(r.ops(of: 2, from: from) == held.filter { $0.seq >= from }, "from \(from)")
        }
        #expect(r.ops(of: 2, from: 4, limit: 5) == Array(held.filter { $0.seq >= 4 }.prefix(5)))
        #expect(r.ops(of: 2, from: 0, limit: 0).isEmpty)
        #expect(r.ops(of: 9, from: 0).isEmpty)  // no such player
        #expect(r.heldCount(for: 2) == held.count)
        #expect(r.contiguousCount(for: 2) == 2)
    }

    /// A late joiner merges a snapshot and has the state hash of the replica it came from; its
    /// bytes round-trip.
    @Test func aReplicaRebuiltFromASnapshotHasTheSameHash() throws {
        let match = try finishedMatch()
        let snapshot = match.replica.snapshot()
        let bytes = snapshot.encode()
        let decoded = try ReplicaSnapshot<MaxBoard>.decode(bytes, config: match.replica.config)
        #expect(decoded == snapshot)
        #expect(decoded.opCount == match.replica.allLogs.reduce(0) { $0 + $1.count })
        let rebuilt = try Replica<MaxBoard>(config: match.replica.config, snapshot: decoded)
        #expect(rebuilt.hash == match.replica.hash)
        #expect(rebuilt.canonicalState == match.replica.canonicalState)
        #expect(rebuilt.allLogs == match.replica.allLogs)

        // turf, mid-match, with equivocations: the snapshot plus the ops after it equals the whole.
        let source = try smallReplay(seed: 4, players: 4, seconds: 8)
        let ordered = try ReplayPlayer(source).ordered
        var early = try Replica<TurfWorld>(config: source.config)
        for op in ordered where op.tick < 100 { early.receive(op) }
        var forged = try #require(ordered.first { $0.tick > 20 })
        forged.tick += 1
        early.receive(forged)
        #expect(early.equivocations.count == 1)
        let turfBytes = early.snapshot().encode()
        var joiner = try Replica<TurfWorld>(
            config: source.config,
            snapshot: try ReplicaSnapshot<TurfWorld>.decode(turfBytes, config: source.config)
        )
        #expect(joiner.hash == early.hash)
        #expect(joiner.equivocations == early.equivocations)
        var whole = early
        for op in ordered where op.tick >= 100 {
            whole.receive(op)
            joiner.receive(op)
        }
        #expect(joiner.hash == whole.hash)
    }

    /// A peer that crashed rejoins: it merges a snapshot holding its own log, and its next op
    /// continues that log (no seq reused: no equivocation).
    @Test func aRejoiningPeerResumesItsOwnLog() throws {
        let match = try finishedMatch(players: 2, ticks: 100)
        let own = match.replica.allLogs[0]
        var fresh = try Replica<MaxBoard>(config: match.replica.config)
        #expect(fresh.nextSeq(for: 0) == 0)
        try fresh.merge(match.replica.snapshot())
        #expect(fresh.nextSeq(for: 0) == UInt32(own.count))
        let next = fresh.local(MaxBoard.Bid(slot: 0, value: 99), player: 0, tick: 100)
        #expect(next.seq == UInt32(own.count))
        #expect(fresh.stats.equivocations == 0)
    }

    /// Snapshots are bounded and checked: another match's, one over the op bound, and every
    /// truncation are refused with an offset, never a trap.
    @Test func badSnapshotsAreRefused() throws {
        let match = try finishedMatch(players: 3, ticks: 80)
        let config = match.replica.config
        let bytes = match.replica.snapshot().encode()
        let total = match.replica.snapshot().opCount
        #expect(throws: ByteReadError.self) {
            try ReplicaSnapshot<MaxBoard>.decode(bytes, config: config, maxOps: total - 1)
        }
        #expect(try ReplicaSnapshot<MaxBoard>.decode(bytes, config: config, maxOps: total).opCount == total)
        var other = config
        other.seed += 1
        #expect(throws: ByteReadError(offset: 1, "snapshot of another match (config digest differs)")) {
            try ReplicaSnapshot<MaxBoard>.decode(bytes, config: other)
        }
        var r = try Replica<MaxBoard>(config: other)
        #expect(throws: ConfigError.self) { try r.merge(match.replica.snapshot()) }
        for n in 0..<bytes.count {
            do {
                _ = try ReplicaSnapshot<MaxBoard>.decode(Array(bytes[0..<n]), config: config)
                Issue.record("a truncated snapshot of \(n) bytes decoded")
            } catch let e as ByteReadError {
                #expect(e.offset <= n)
            }
        }
        var twice = bytes
        twice[9] = 4  // four logs in a three-player match
        #expect(throws: ByteReadError.self) { try ReplicaSnapshot<MaxBoard>.decode(twice, config: config) }
    }
}
