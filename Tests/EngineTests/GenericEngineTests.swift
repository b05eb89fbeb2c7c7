import Determinism
import Engine
import Testing

/// The engine runs a game that is not turf: replica, local match, replay, replay file and
/// verification on `MaxBoard`, a board of max-registers (ToyGame.swift).
@Suite struct GenericEngineTests {
    @Test func aLocalMatchRecordsAReplayThatVerifiesInOrderAndShuffled() throws {
        var match = try maxBoardMatch(seed: 9)
        match.runToEnd()
        let replay = try match.recording()
        #expect(replay.opCount > 30)
        #expect(replay.finalHash == match.replica.hash)

        let bytes = ReplayFile.encode(replay)
        let decoded = try ReplayFile.decode(bytes, as: MaxBoard.self)
        #expect(decoded.logs == replay.logs)
        #expect(decoded.checkpoints == replay.checkpoints)
        let player = try ReplayPlayer(decoded)
        let (inOrder, state) = try player.verify()
        #expect(inOrder.ok)
        #expect(inOrder.checkpointsChecked == replay.checkpoints.count)
        #expect(state.canonicalState == match.replica.canonicalState)
        for seed: UInt64 in [1, 2, 3] {
            let (shuffled, s) = try player.verify(shuffleSeed: seed)
            #expect(shuffled.ok, "shuffle seed \(seed)")
            #expect(s.state == match.replica.state)
        }
        // Replays name their game: turf's decoder, or any other game's, refuses it.
        #expect(throws: (any Error).self) { _ = try ReplayPlayer(ReplayFile.decode(bytes, as: OtherGame.self)).run() }
    }

    @Test func aTamperedReplayIsCaughtAtItsFirstBadCheckpoint() throws {
        var match = try maxBoardMatch(seed: 4)
        match.runToEnd()
        var replay = try match.recording()
        let p = replay.logs.firstIndex { $0.count > 3 }!
        let victim = replay.logs[p].count / 2
        replay.logs[p][victim].payload.value += 7
        let (v, _) = try ReplayPlayer(replay).verify()
        #expect(!v.ok)
        let tick = replay.logs[p][victim].tick
        #expect(v.firstBadTick == Replay<MaxBoard>.checkpointTicks(replay.config).first { $0 >= tick })
    }

    @Test func replicasConvergeUnderShuffledDuplicatedDelivery() throws {
        var match = try maxBoardMatch(seed: 21, players: 5, slots: 4, ticks: 200)
        match.runToEnd()
        let ops = match.replica.allLogs.flatMap { $0 }
        for seed: UInt64 in 0..<8 {
            var rng = SplitMix64(seed: seed)
            var delivery = ops + (0..<ops.count / 3).map { _ in ops[rng.below(ops.count)] }
            delivery.shuffle(using: &rng)
            var r = try Replica<MaxBoard>(config: match.replica.config)
            for op in delivery { r.receive(op) }
            #expect(r.hash == match.replica.hash)
            #expect(r.canonicalState == match.replica.canonicalState)
            #expect(r.stats.duplicates == UInt64(ops.count / 3))
            #expect(r.stats.rejected == 0)
        }
        // The state join agrees with merging the union (split by owner: each log is applied in
        // seq order, so a replica holding every other op of a log applies only its first).
        var a = try Replica<MaxBoard>(config: match.replica.config)
        var b = a
        for op in ops { if op.player % 2 == 0 { a.receive(op) } else { b.receive(op) } }
        var joined = a.state
        joined.join(b.state)
        #expect(joined == match.replica.state)
    }

    @Test func invalidOpsAreRejectedByEveryReplica() throws {
        var r = try Replica<MaxBoard>(config: MaxBoard.config(seed: 1, players: 2, slots: 4, ticks: 50))
        // no such slot
        #expect(r.receive(Op(player: 0, seq: 0, tick: 1, payload: .init(slot: 4, value: 1))) == .rejected)
        // no such player
        #expect(r.receive(Op(player: 2, seq: 0, tick: 1, payload: .init(slot: 0, value: 1))) == .rejected)
        // after the end
        #expect(r.receive(Op(player: 0, seq: 0, tick: 51, payload: .init(slot: 0, value: 1))) == .rejected)
        #expect(r.receive(Op(player: 1, seq: 0, tick: 3, payload: .init(slot: 0, value: 5))) == .merged)
        #expect(r.receive(Op(player: 1, seq: 0, tick: 3, payload: .init(slot: 0, value: 5))) == .duplicate)
        #expect(r.state.holder(of: 0)! == (5, 1))
        // Two different ops for one (player, seq): the owner's log is cut there, both taken out.
        #expect(r.receive(Op(player: 1, seq: 0, tick: 3, payload: .init(slot: 0, value: 9))) == .equivocation)
        #expect(r.state.holder(of: 0) == nil)
        #expect(r.cheats == [.init(player: 1, seq: 0, tick: 3, rule: "equivocation")])
        #expect(r.stats.rejected == 3)
    }
}

/// A game with another id, to check replays are bound to their game.
private struct OtherGame: ReplicatedGame {
    static let gameID = "other/1"
    static func settings(for config: MatchConfig) throws -> Int { 0 }
    init(config: MatchConfig, settings: Int) {}
    func accepts(_ op: Op<UInt8>) -> Bool { true }
    func violation(_ op: Op<UInt8>, after previous: Op<UInt8>?) -> String? { nil }
    mutating func merge(_ op: Op<UInt8>) -> Bool { true }
    mutating func join(_ other: OtherGame) {}
    var stateHash: UInt64 { 0 }
    func canonicalBytes() -> [UInt8] { [] }
    static func hash(_ payload: UInt8) -> UInt64 { UInt64(payload) }
    static func encode(_ payload: UInt8, into w: inout ByteWriter) { w.u8(payload) }
    static func decode(from r: inout ByteReader) throws -> UInt8 { try r.u8() }
}
