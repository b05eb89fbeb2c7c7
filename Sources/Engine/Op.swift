import Determinism

/// A player's index in a match: 0 ..< players.count (at most `MatchConfig.maxPlayers`).
public typealias PlayerID = UInt8

/// A simulation tick. Tick 0 is the first tick of the match.
public typealias Tick = UInt32

/// One entry of a player's append-only op log. `(player, seq)` names it; seq counts from 0 with no
/// gaps in its owner's log; `tick` is the tick at which its owner made it. The payload is the game's.
public struct Op<Payload: Equatable & Sendable>: Equatable, Sendable {
    public var player: PlayerID
    public var seq: UInt32
    public var tick: Tick
    public var payload: Payload

    public init(player: PlayerID, seq: UInt32, tick: Tick, payload: Payload) {
        self.player = player
        self.seq = seq
        self.tick = tick
        self.payload = payload
    }
}
