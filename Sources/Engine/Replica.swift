import Determinism

/// One peer's copy of a match: the union of every player's op log, and the game state merged from
/// it. Local ops are applied at once (zero input delay); remote ops are merged on arrival in O(1),
/// whatever their lateness, in any order, any number of times.
///
/// Each player's log is applied in seq order, every op checked against its predecessor
/// (`ReplicatedGame.violation(_:after:)`): an op whose predecessor has not arrived yet is held
/// until it does, and the log stops for good at its first illegal op or at the first seq its
/// owner equivocated on (two different ops for one seq). What is past that *cut* is kept (a
/// recording holds the evidence) but never applied, so every replica that holds the same ops
/// applies the same prefix of each log, whatever the order they came in.
public struct Replica<Game: ReplicatedGame> {
    public let config: MatchConfig
    public private(set) var state: Game
    private let settings: Game.Settings
    /// Per player, the ops received so far, indexed by seq (nil where a gap has not arrived yet).
    /// Kept dense only while a seq stays near the ops actually received (see `denseLimit`); a seq
    /// far ahead of them goes to `far`, so one hostile op with a huge seq costs one entry, not a
    /// gap of hundreds of millions of slots.
    private var dense: [[Op<Game.Payload>?]]
    private var far: [[UInt32: Op<Game.Payload>]]
    private var received: [Int]
    /// Per player, how many ops from seq 0 are applied to `state` (legal, in order, below the cut).
    private var applied: [Int]
    /// Per player, why and where its log stops (nil: it does not).
    private var cuts: [Cheat?]
    /// Ops that reuse an already-received (player, seq) with different content: a buggy or hostile
    /// peer. Kept as evidence (a recording holds them); the owner's log is cut at the lowest such seq.
    public private(set) var equivocations: [Op<Game.Payload>] = []
    /// Indices into `equivocations` by op hash, so a duplicate equivocation is found in O(1).
    private var equivocationIndex: [UInt64: [Int]] = [:]
    public private(set) var stats = Stats()
    private var nextLocalSeq: [UInt32]
    /// Sum of a hash of every applied op: the op set's contribution to `hash`.
    private var opSetHash: UInt64 = 0

    public struct Stats: Equatable, Sendable {
        /// Ops held (new (player, seq) with valid content), applied or waiting or past a cut.
        public var merged: UInt64 = 0
        public var duplicates: UInt64 = 0
        public var rejected: UInt64 = 0
        public var equivocations: UInt64 = 0
        /// Logs stopped at an illegal op (at most one per player).
        public var illegal: UInt64 = 0
        /// Times the state was re-derived because an equivocation cut ops already applied.
        public var rebuilds: UInt64 = 0
    }

    /// Where a player's log stops and why: the first op that broke a rule of the game, or the
    /// first seq its owner equivocated on (`rule` "equivocation").
    public struct Cheat: Equatable, Sendable {
        public var player: PlayerID
        public var seq: UInt32
        public var tick: Tick
        public var rule: String
        public init(player: PlayerID, seq: UInt32, tick: Tick, rule: String) {
            self.player = player
            self.seq = seq
            self.tick = tick
            self.rule = rule
        }
    }

    public init(config: MatchConfig) throws {
        try config.validate()
        guard config.gameID == Game.gameID else {
            throw ConfigError.invalid("match is for game '\(config.gameID)', these rules are '\(Game.gameID)'")
        }
        self.config = config
        settings = try Game.settings(for: config)
        state = Game(config: config, settings: settings)
        dense = Array(repeating: [], count: config.players.count)
        applied = Array(repeating: 0, count: config.players.count)
        cuts = Array(repeating: nil, count: config.players.count)
        far = Array(repeating: [:], count: config.players.count)
        received = Array(repeating: 0, count: config.players.count)
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

    /// Merges every op of a snapshot of this match (ops already held are duplicates; the result is
    /// the union, as for any delivery). The next local seq of every player moves past the highest
    /// seq the snapshot holds for it, so a peer that rejoins after a crash resumes its own log
    /// where it stopped and never reuses a seq (an equivocation). Throws if the snapshot is of
    /// another match.
    public mutating func merge(_ snapshot: ReplicaSnapshot<Game>) throws {
        guard snapshot.configDigest == config.digest else {
            throw ConfigError.invalid("snapshot of another match (config digest differs)")
        }
        guard snapshot.logs.count <= dense.count else {
            throw ConfigError.invalid("snapshot has \(snapshot.logs.count) op logs, the match \(dense.count) players")
        }
        for log in snapshot.logs { for op in log { receive(op) } }
        for op in snapshot.equivocations { receive(op) }
        for log in snapshot.logs {
            for op in log where Int(op.player) < dense.count && op.seq < (1 << 28) {
                nextLocalSeq[Int(op.player)] = max(nextLocalSeq[Int(op.player)], op.seq + 1)
            }
        }
    }

    public enum Outcome: Equatable { case merged, duplicate, rejected, equivocation }

    /// Merges an op from anywhere. Idempotent; order-independent; O(1) however late it arrives
    /// (an equivocation that cuts ops already applied re-derives the state once: O(ops)).
    ///
    /// Validity is decided first, from the op and the config alone, so an invalid op is rejected
    /// by every replica whether or not another op with its (player, seq) arrived earlier. A valid
    /// new op is held (`.merged`) and applied once its predecessors are, if it is legal after them.
    @discardableResult
    public mutating func receive(_ op: Op<Game.Payload>) -> Outcome {
        let p = Int(op.player)
        guard p < dense.count, op.tick <= config.lengthTicks, op.seq < (1 << 28), state.accepts(op) else {
            stats.rejected += 1
            return .rejected
        }
        let s = Int(op.seq)
        if let existing = s < dense[p].count ? dense[p][s] : far[p][op.seq] {
            if existing == op {
                stats.duplicates += 1
                return .duplicate
            }
            let h = Replica.opHash(op)
            if let seen = equivocationIndex[h], seen.contains(where: { equivocations[$0] == op }) {
                stats.duplicates += 1
                return .duplicate
            }
            stats.equivocations += 1
            equivocationIndex[h, default: []].append(equivocations.count)
            equivocations.append(op)
            // An owner that made two ops for one seq told peers different things: nothing it signed
            // can be trusted, so its whole log is void (the same verdict a proof from signed
            // statements gives, docs/engine.md "Legality").
            cut(p, at: Cheat(player: op.player, seq: 0, tick: min(existing.tick, op.tick), rule: "equivocation"))
            return .equivocation
        }
        store(op, player: p, seq: s)
        stats.merged += 1
        advance(p)
        return .merged
    }

    /// Applies player p's held ops in seq order from where it stands, each checked against its
    /// predecessor, up to a gap, the cut, or the first illegal op (which becomes the cut).
    private mutating func advance(_ p: Int) {
        let stop = cuts[p].map { Int($0.seq) } ?? Int.max
        while applied[p] < stop {
            // The next op may still sit in `far` (it arrived when its seq looked far ahead):
            // the applied prefix is contiguous, so it joins the dense log here.
            if applied[p] == dense[p].count, let op = far[p].removeValue(forKey: UInt32(applied[p])) {
                dense[p].append(op)
            }
            guard applied[p] < dense[p].count, let op = dense[p][applied[p]] else { return }
            let previous = applied[p] > 0 ? dense[p][applied[p] - 1] : nil
            if let rule = state.violation(op, after: previous) {
                stats.illegal += 1
                cuts[p] = Cheat(player: op.player, seq: op.seq, tick: op.tick, rule: rule)
                return
            }
            _ = state.merge(op)
            opSetHash &+= Replica.opHash(op)
            applied[p] += 1
        }
    }

    /// Stops player p's log at `cheat.seq` if that is before where it stops now. Ops already
    /// applied from there on are taken out by re-deriving the state from the applied prefixes.
    private mutating func cut(_ p: Int, at cheat: Cheat) {
        if let c = cuts[p], c.seq <= cheat.seq { return }
        cuts[p] = cheat
        guard applied[p] > Int(cheat.seq) else { return }
        applied[p] = Int(cheat.seq)
        rederive()
    }

    /// Re-derives the state and the op-set hash from the applied prefixes (after a cut or a
    /// retraction took applied ops out; the lattice cannot un-merge). O(ops applied).
    private mutating func rederive() {
        stats.rebuilds += 1
        state = Game(config: config, settings: settings)
        opSetHash = 0
        for q in dense.indices {
            for i in 0..<applied[q] {
                let op = dense[q][i]!  // `!`: the first applied[q] seqs are held (they were applied)
                _ = state.merge(op)
                opSetHash &+= Replica.opHash(op)
            }
        }
    }

    /// Voids a player's whole log (`rule` says why, `tick` when it was proven): a verdict from
    /// signed evidence the engine does not read itself, such as an equivocation proven by two
    /// contradicting signed statements (docs/netmatch.md). Idempotent; O(ops) once.
    public mutating func exclude(_ player: PlayerID, rule: String, tick: Tick) {
        applyVerdict(player, fromSeq: 0, rule: rule, tick: tick)
    }

    /// Stops a player's log at `seq` on a verdict from signed evidence (`rule` says why, `tick`
    /// is the op's): an earlier cut stands. Idempotent; re-derives the state once if applied ops
    /// are cut.
    public mutating func applyVerdict(_ player: PlayerID, fromSeq seq: UInt32, rule: String, tick: Tick) {
        guard Int(player) < cuts.count else { return }
        cut(Int(player), at: Cheat(player: player, seq: seq, tick: tick, rule: rule))
    }

    /// Forgets a player's held ops from `seq` on (they were taken back: their sender lied and
    /// the signed ones will come instead), re-deriving the state if any were applied. A cut at or
    /// past `seq` goes too (the ops it judged are gone); one before stays. O(ops).
    public mutating func retract(_ player: PlayerID, from seq: UInt32) {
        let p = Int(player)
        guard p < dense.count else { return }
        let s = Int(seq)
        if dense[p].count > s { dense[p].removeSubrange(s...) }
        far[p] = far[p].filter { $0.key < seq }
        received[p] = dense[p].reduce(0) { $0 + ($1 == nil ? 0 : 1) } + far[p].count
        if let c = cuts[p], c.seq >= seq { cuts[p] = nil }
        guard applied[p] > s else { return }
        applied[p] = s
        rederive()
    }

    /// Per player, where its log stops and why, in player order: what a replay reports as cheats.
    public var cheats: [Cheat] { cuts.compactMap { $0 } }

    /// Where player's log stops (nil: it does not).
    public func cut(of player: PlayerID) -> Cheat? { Int(player) < cuts.count ? cuts[Int(player)] : nil }

    /// How many of player's ops (from seq 0) are applied to the state.
    public func appliedCount(for player: PlayerID) -> Int { Int(player) < applied.count ? applied[Int(player)] : 0 }

    /// The newest op applied for `player` (where its avatar stands, for a game like turf).
    public func lastApplied(of player: PlayerID) -> Op<Game.Payload>? {
        let p = Int(player)
        guard p < applied.count, applied[p] > 0 else { return nil }
        return dense[p][applied[p] - 1]
    }

    /// How far the dense log of a player may reach: twice the ops received from it, plus slack.
    /// Honest logs are contiguous, so they always fit; memory stays O(ops received).
    @inline(__always)
    private func denseLimit(_ p: Int) -> Int { 2 * received[p] + 1024 }

    private mutating func store(_ op: Op<Game.Payload>, player p: Int, seq s: Int) {
        received[p] += 1
        if s < dense[p].count {
            dense[p][s] = op
        } else if s < denseLimit(p) {
            // Grow to s, pulling in any far entries the dense range now covers (each slot is
            // looked up once over the replica's life: O(1) amortised per op).
            let hasFar = !far[p].isEmpty
            while dense[p].count < s {
                let q = UInt32(dense[p].count)
                dense[p].append(hasFar ? far[p].removeValue(forKey: q) : nil)
            }
            dense[p].append(op)
        } else {
            far[p][UInt32(s)] = op
        }
    }

    @inline(__always)
    private static func opHash(_ op: Op<Game.Payload>) -> UInt64 {
        // Constants keep an all-zero op (player 0, seq 0, tick 0, payload hash 0) from hashing to 0.
        StableHash.mix(
            StableHash.mix((UInt64(op.player) << 32 | UInt64(op.seq)) &+ 0x9E37_79B9_7F4A_7C15)
                ^ (UInt64(op.tick) &+ StableHash.mix(Game.hash(op.payload) &+ 0xD6E8_FEB8_6659_FD93))
        )
    }

    /// The contiguous prefix of a player's log (what a peer can acknowledge).
    public func contiguousCount(for player: PlayerID) -> Int {
        let log = dense[Int(player)]
        return log.firstIndex(where: { $0 == nil }) ?? log.count
    }

    /// The ops held for `player` with seq ≥ `seq`, in seq order, at most `limit` of them: what to
    /// (re)send to a peer that has acknowledged `seq` ops of this player. Gaps are skipped. Costs
    /// O(ops returned) for the contiguous part of the log.
    public func ops(of player: PlayerID, from seq: UInt32, limit: Int = .max) -> [Op<Game.Payload>] {
        let p = Int(player)
        guard p < dense.count, limit > 0 else { return [] }
        var out: [Op<Game.Payload>] = []
        var s = Int(seq)
        while s < dense[p].count && out.count < limit {
            if let op = dense[p][s] { out.append(op) }
            s += 1
        }
        // Far entries all lie past the dense range (it pulls them in as it grows past them).
        if out.count < limit && !far[p].isEmpty {
            for op in far[p].values.filter({ $0.seq >= seq }).sorted(by: { $0.seq < $1.seq }) {
                guard out.count < limit else { break }
                out.append(op)
            }
        }
        return out
    }

    /// How many ops of `player` are held (whatever their seqs).
    public func heldCount(for player: PlayerID) -> Int {
        Int(player) < received.count ? received[Int(player)] : 0
    }

    /// Every op received, grouped by player in seq order: what a replay records.
    public var allLogs: [[Op<Game.Payload>]] {
        (0..<dense.count).map { p in
            let near = dense[p].compactMap { $0 }
            guard !far[p].isEmpty else { return near }
            return near + far[p].values.sorted { $0.seq < $1.seq }
        }
    }
}
