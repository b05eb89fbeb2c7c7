import Determinism

/// What a game supplies to the engine. The engine knows nothing of any game's rules: it dedupes,
/// logs, schedules, hashes and records ops; the game defines what an op means and how states join.
///
/// The contract (checked by property tests for turf):
/// - `merge` is a join: merging a set of ops gives the same state whatever the order, and merging
///   an op twice is the same as merging it once.
/// - `merge` costs O(1) (bounded by constants of the game) however late the op arrives: it never
///   re-simulates past ticks.
/// - Whether an op is valid depends only on the op and the match config, never on what else has
///   been merged, so every replica rejects the same ops.
/// - Whether an op is *legal* (`violation(_:after:)`) depends only on the op, its predecessor in
///   the same owner's log and the config. The replica applies each player's log in seq order and
///   stops it at its first illegal op, so every replica (live, replay, journal, spectator) cuts a
///   cheater's log at the same place, and checking costs O(1) per op.
/// - `stateHash` is a pure function of the state, stable across runs and machines.
public protocol ReplicatedGame {
    associatedtype Payload: Equatable & Sendable
    associatedtype Settings

    /// Names the rules and their version; recorded in replays.
    static var gameID: String { get }

    /// Parses and validates the game-specific part of a match config.
    static func settings(for config: MatchConfig) throws -> Settings

    init(config: MatchConfig, settings: Settings)

    /// Whether an op is valid: a pure function of the op and the match config (never of what has
    /// been merged), so that every replica rejects the same ops. The replica asks before anything
    /// else, so an invalid op is rejected the same way whether or not its (player, seq) was seen.
    func accepts(_ op: Op<Payload>) -> Bool

    /// The rule `op` breaks when it follows `previous` in its owner's log (`previous` is nil when
    /// `op` is seq 0), or nil when it is legal. A pure function of the two ops and the match
    /// config, O(1): the replica calls it once per op, in seq order, and drops the op and every
    /// later op of that player if it names a rule (the log is valid up to its first illegal op).
    /// Rule names are short words a player reads in a cheat report ("teleport", "speed", …).
    func violation(_ op: Op<Payload>, after previous: Op<Payload>?) -> String?

    /// Joins one valid op into the state. Returns false (and changes nothing) if the op is invalid.
    mutating func merge(_ op: Op<Payload>) -> Bool

    /// The lattice join of two states of the same match: commutative, associative, idempotent, and
    /// equal to the state merged from the union of both op sets. Used for state sync (a snapshot
    /// for a late joiner) and checked by the property tests.
    mutating func join(_ other: Self)

    /// A hash of the whole state (stable, not Swift's seeded Hasher).
    var stateHash: UInt64 { get }

    /// The whole state as bytes, for byte-identical comparisons.
    func canonicalBytes() -> [UInt8]

    /// A stable 64-bit hash of a payload (for the op-set hash; no allocation).
    static func hash(_ payload: Payload) -> UInt64

    static func encode(_ payload: Payload, into writer: inout ByteWriter)
    static func decode(from reader: inout ByteReader) throws -> Payload
}

/// A deterministic producer of a local player's ops: a human's input handler or a bot. It runs on
/// its owner's machine only, once per tick, in player-id order (see `LocalMatch`).
public protocol PlayerController {
    associatedtype Game: ReplicatedGame
    /// Ops this player makes at `tick`, given the state as merged so far.
    mutating func step(tick: Tick, player: PlayerID, state: Game) -> [Game.Payload]

    /// Picks up a player's log where it stands: `last` is the newest op applied for `player` (a
    /// peer that rejoins after a crash resumes its own log from a snapshot), so the next op this
    /// controller makes is legal after it.
    mutating func resume(after last: Op<Game.Payload>, player: PlayerID, state: Game)
}
