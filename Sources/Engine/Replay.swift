import Determinism

/// A recorded match: its config, every player's op log, and state hashes every
/// `config.checkpointInterval` ticks plus the final one. Format: docs/replay-format.md.
public struct Replay<Game: ReplicatedGame> {
    public var config: MatchConfig
    /// Per player, ops in seq order (seqs may have gaps where ops never arrived).
    public var logs: [[Op<Game.Payload>]]
    /// Ops that reused a (player, seq) with different content, merged all the same.
    public var equivocations: [Op<Game.Payload>]
    public var checkpoints: [Checkpoint]
    public var finalHash: UInt64
    /// A networked match's signed op-log statements, at most one per player (the owner's
    /// signature over its log's running hash; checked by `NetMatch.OpChain.check`). Empty for a
    /// local match. Recorded in the optional signatures section (docs/replay-format.md).
    public var signatures: [Signature] = []
    /// Players whose whole log is void by a verdict from signed evidence the engine does not read
    /// (an equivocation proof: two contradicting signed statements, checked by the networking
    /// layer, `SignedStatement.checkProof`). Recorded in the optional verdicts section, so the file
    /// alone re-derives the same match; the replay applies them before any op.
    public var verdicts: [Verdict] = []

    public struct Verdict: Equatable, Sendable {
        public var player: PlayerID
        /// The first seq the verdict cuts (0: the whole log).
        public var seq: UInt32 = 0
        public var tick: Tick
        public var rule: String
        /// The evidence, opaque to the engine (at most `maxProofBytes`).
        public var proof: [UInt8]
        public static var maxProofBytes: Int { 1024 }
        public init(player: PlayerID, seq: UInt32 = 0, tick: Tick, rule: String, proof: [UInt8]) {
            self.player = player
            self.seq = seq
            self.tick = tick
            self.rule = rule
            self.proof = proof
        }
    }

    /// One player's signed statement: its first `count` ops are every op it made at ticks ≤
    /// `asOfTick`, signed (64 bytes, Ed25519) by the player's owner. Opaque to the engine.
    public struct Signature: Equatable, Sendable {
        public var player: PlayerID
        public var count: UInt32
        public var asOfTick: Tick
        public var signature: [UInt8]
        public static var signatureLength: Int { 64 }
        public init(player: PlayerID, count: UInt32, asOfTick: Tick, signature: [UInt8]) {
            self.player = player
            self.count = count
            self.asOfTick = asOfTick
            self.signature = signature
        }
    }

    public struct Checkpoint: Equatable, Sendable {
        public var tick: Tick
        public var hash: UInt64
        public init(tick: Tick, hash: UInt64) {
            self.tick = tick
            self.hash = hash
        }
    }

    public var opCount: Int { logs.reduce(0) { $0 + $1.count } + equivocations.count }

    /// Records a match from a replica's logs, deriving checkpoint and final hashes by re-merging
    /// the ops in tick order (so a networked match, whose ops arrived late and out of order, gets
    /// the same checkpoints as a local one).
    public init(
        config: MatchConfig,
        logs: [[Op<Game.Payload>]],
        equivocations: [Op<Game.Payload>] = [],
        verdicts: [Verdict] = []
    ) throws {
        self.config = config
        self.logs = logs
        self.equivocations = equivocations
        self.verdicts = verdicts
        checkpoints = []
        finalHash = 0
        var cps: [Checkpoint] = []
        let end = try ReplayPlayer<Game>(self).run { tick, hash in cps.append(Checkpoint(tick: tick, hash: hash)) }
        checkpoints = cps
        finalHash = end.hash
    }

    public init(
        config: MatchConfig,
        logs: [[Op<Game.Payload>]],
        equivocations: [Op<Game.Payload>],
        checkpoints: [Checkpoint],
        finalHash: UInt64
    ) {
        self.config = config
        self.logs = logs
        self.equivocations = equivocations
        self.checkpoints = checkpoints
        self.finalHash = finalHash
    }

    /// The ticks at which checkpoints are taken.
    public static func checkpointTicks(_ config: MatchConfig) -> StrideThrough<Tick> {
        stride(from: config.checkpointInterval, through: config.lengthTicks, by: Int(config.checkpointInterval))
    }
}

/// Re-derives a match from its logs: merges ops in tick order, or in a seeded shuffled order with
/// duplicates, and reports the hash at each checkpoint tick.
public struct ReplayPlayer<Game: ReplicatedGame> {
    public let replay: Replay<Game>
    /// All ops ordered by (tick, player, seq).
    public let ordered: [Op<Game.Payload>]
    /// `tickStart[t]` = index in `ordered` of the first op with tick ≥ t; length lengthTicks + 2.
    public let tickStart: [Int]

    public init(_ replay: Replay<Game>) throws {
        self.replay = replay
        let length = Int(replay.config.lengthTicks)
        var counts = [Int](repeating: 0, count: length + 2)
        var all = replay.logs.flatMap { $0 }
        all.append(contentsOf: replay.equivocations)
        for op in all {
            guard Int(op.tick) <= length else {
                throw ConfigError.invalid(
                    "op \(op.player)/\(op.seq) at tick \(op.tick) is after the match end \(length)"
                )
            }
            counts[Int(op.tick) + 1] += 1
        }
        for i in 1..<counts.count { counts[i] += counts[i - 1] }
        tickStart = counts
        var fill = counts
        var sorted = [Op<Game.Payload>?](repeating: nil, count: all.count)
        // Counting sort by tick; logs are visited player by player in seq order, so ties stay in
        // (player, seq) order.
        for op in all {
            sorted[fill[Int(op.tick)]] = op
            fill[Int(op.tick)] += 1
        }
        ordered = sorted.map { $0! }
    }

    /// Merges every op in tick order; calls `checkpoint(tick, hash)` at each checkpoint tick, with
    /// the state merged from exactly the ops with tick ≤ that tick. Returns the final replica.
    /// A replica of the match with the recorded verdicts applied (before any op).
    public func emptyReplica() throws -> Replica<Game> {
        var replica = try Replica<Game>(config: replay.config)
        for v in replay.verdicts { replica.applyVerdict(v.player, fromSeq: v.seq, rule: v.rule, tick: v.tick) }
        return replica
    }

    public func run(checkpoint: (Tick, UInt64) -> Void = { _, _ in }) throws -> Replica<Game> {
        var replica = try emptyReplica()
        var next = 0
        for cp in Replay<Game>.checkpointTicks(replay.config) {
            let end = tickStart[Int(cp) + 1]
            while next < end {
                replica.receive(ordered[next])
                next += 1
            }
            checkpoint(cp, replica.hash)
        }
        while next < ordered.count {
            replica.receive(ordered[next])
            next += 1
        }
        return replica
    }

    /// The replica at `tick`: the merge of every op with tick ≤ `tick` (seeking).
    public func state(at tick: Tick) throws -> Replica<Game> {
        var replica = try emptyReplica()
        let end = tickStart[min(Int(tick), Int(replay.config.lengthTicks)) + 1]
        for i in 0..<end { replica.receive(ordered[i]) }
        return replica
    }

    /// Delivers ops in a seeded random order with duplicates. Within each checkpoint window the
    /// window's ops arrive shuffled, interleaved with re-deliveries of random earlier ops; the
    /// checkpoint hash is taken at the window's end. A second pass merges all ops (and ~25%
    /// duplicates) in one global shuffle, for the final hash.
    /// Returns the per-checkpoint hashes, the windowed final hash and the global-shuffle hash.
    public func runShuffled(seed: UInt64, checkpoint: (Tick, UInt64) -> Void = { _, _ in })
        throws -> (windowed: Replica<Game>, global: Replica<Game>)
    {
        var rng = SplitMix64(seed: seed, stream: 0x5_4FF1E)
        var replica = try emptyReplica()
        var start = 0
        var order: [Int] = []
        func deliverWindow(upTo end: Int) {
            order.removeAll(keepingCapacity: true)
            order.append(contentsOf: start..<end)
            let dups = (end - start) / 4
            if end > 0 { for _ in 0..<dups { order.append(rng.below(end)) } }
            order.shuffle(using: &rng)
            for i in order { replica.receive(ordered[i]) }
            start = end
        }
        for cp in Replay<Game>.checkpointTicks(replay.config) {
            deliverWindow(upTo: tickStart[Int(cp) + 1])
            checkpoint(cp, replica.hash)
        }
        deliverWindow(upTo: ordered.count)

        var global = try emptyReplica()
        var all = Array(0..<ordered.count)
        if !ordered.isEmpty { for _ in 0..<(ordered.count / 4) { all.append(rng.below(ordered.count)) } }
        all.shuffle(using: &rng)
        for i in all { global.receive(ordered[i]) }
        return (replica, global)
    }
}
