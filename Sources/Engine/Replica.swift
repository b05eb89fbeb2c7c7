import Determinism

/// One peer's copy of a match: the union of every player's op log, and the game state merged from
/// it. Local ops are applied at once (zero input delay); remote ops are merged on arrival in O(1),
/// whatever their lateness, in any order, any number of times.
public struct Replica<Game: ReplicatedGame> {
    public let config: MatchConfig
    public private(set) var state: Game
    /// Per player, the ops received so far, indexed by seq (nil where a gap has not arrived yet).
    public private(set) var logs: [[Op<Game.Payload>?]]
    /// Ops that reuse an already-received (player, seq) with different content: a buggy or hostile
    /// peer. They are merged too (the join does not care), so every replica still converges.
    public private(set) var equivocations: [Op<Game.Payload>] = []
    public private(set) var stats = Stats()
    private var nextLocalSeq: [UInt32]
    /// Sum of a hash of every distinct op: the op set's contribution to `hash`.
    private var opSetHash: UInt64 = 0

    public struct Stats: Equatable, Sendable {
        public var merged: UInt64 = 0
        public var duplicates: UInt64 = 0
        public var rejected: UInt64 = 0
        public var equivocations: UInt64 = 0
    }

    public init(config: MatchConfig) throws {
        try config.validate()
        guard config.gameID == Game.gameID else {
            throw ConfigError.invalid("match is for game '\(config.gameID)', these rules are '\(Game.gameID)'")
        }
        self.config = config
        state = Game(config: config, settings: try Game.settings(for: config))
        logs = Array(repeating: [], count: config.players.count)
        nextLocalSeq = Array(repeating: 0, count: config.players.count)
    }

    /// The hash of the whole replica: the game state and the set of ops it was merged from.
    public var hash: UInt64 { StableHash.combine(state.stateHash, opSetHash) }

    /// Makes and applies an op for a player this peer owns. Returns the op, to be sent to peers.
    @discardableResult
    public mutating func local(_ payload: Game.Payload, player: PlayerID, tick: Tick) -> Op<Game.Payload> {
        let op = Op(player: player, seq: nextLocalSeq[Int(player)], tick: tick, payload: payload)
        nextLocalSeq[Int(player)] += 1
        receive(op)
        return op
    }

    /// The next seq this peer will use for `player` (for resuming a log).
    public func nextSeq(for player: PlayerID) -> UInt32 { nextLocalSeq[Int(player)] }

    public enum Outcome: Equatable { case merged, duplicate, rejected, equivocation }

    /// Merges an op from anywhere. Idempotent; order-independent; O(1).
    @discardableResult
    public mutating func receive(_ op: Op<Game.Payload>) -> Outcome {
        let p = Int(op.player)
        guard p < logs.count, op.tick <= config.lengthTicks, op.seq < (1 << 28) else {
            stats.rejected += 1
            return .rejected
        }
        let s = Int(op.seq)
        if s < logs[p].count, let existing = logs[p][s] {
            if existing == op { stats.duplicates += 1; return .duplicate }
            if equivocations.contains(op) { stats.duplicates += 1; return .duplicate }
            stats.equivocations += 1
            equivocations.append(op)
            opSetHash &+= Replica.opHash(op)
            _ = state.merge(op)
            return .equivocation
        }
        guard state.merge(op) else { stats.rejected += 1; return .rejected }
        if s >= logs[p].count {
            while logs[p].count < s { logs[p].append(nil) }
            logs[p].append(op)
        } else {
            logs[p][s] = op
        }
        opSetHash &+= Replica.opHash(op)
        stats.merged += 1
        return .merged
    }

    @inline(__always)
    private static func opHash(_ op: Op<Game.Payload>) -> UInt64 {
        StableHash.mix(StableHash.mix(UInt64(op.player) << 32 | UInt64(op.seq)) ^ (UInt64(op.tick) &+ StableHash.mix(Game.hash(op.payload))))
    }

    /// The contiguous prefix of a player's log (what a peer can acknowledge).
    public func contiguousCount(for player: PlayerID) -> Int {
        let log = logs[Int(player)]
        return log.firstIndex(where: { $0 == nil }) ?? log.count
    }

    /// Every op received, grouped by player in seq order: what a replay records.
    public var allLogs: [[Op<Game.Payload>]] { logs.map { $0.compactMap { $0 } } }
}
