import Determinism
import Engine

/// A second, tiny game, to show the engine is generic (nothing here imports TurfRules): a board of
/// max-registers. Each op proposes a value for one slot; a slot holds the greatest proposal, ties
/// broken by player id. The settings are one byte, the number of slots (1...64).
struct MaxBoard: ReplicatedGame, Equatable {
    struct Bid: Equatable, Sendable {
        var slot: UInt8
        var value: UInt32
    }
    typealias Payload = Bid
    typealias Settings = Int

    static let gameID = "maxboard/1"
    static let maxValue: UInt32 = 1 << 24

    /// Per slot: value << 8 | player + 1 (0 = empty), so the max is the winning bid.
    private(set) var slots: [UInt64]

    static func settings(for config: MatchConfig) throws -> Int {
        guard config.settings.count == 1, (1...64).contains(config.settings[0]) else {
            throw ConfigError.invalid("maxboard settings must be one byte, 1...64 slots")
        }
        return Int(config.settings[0])
    }

    static func config(seed: UInt64, players: Int, slots: UInt8, ticks: Tick) -> MatchConfig {
        MatchConfig(
            gameID: gameID,
            seed: seed,
            tickRate: 10,
            lengthTicks: ticks,
            checkpointInterval: 10,
            players: (0..<players).map { PlayerInfo(name: "p\($0)", kind: .bot) },
            settings: [slots]
        )
    }

    init(config: MatchConfig, settings: Int) { slots = Array(repeating: 0, count: settings) }

    func accepts(_ op: Op<Bid>) -> Bool {
        Int(op.payload.slot) < slots.count && op.payload.value <= MaxBoard.maxValue
    }

    /// The toy's one rule: a player's bids never go back in time.
    func violation(_ op: Op<Bid>, after previous: Op<Bid>?) -> String? {
        guard let previous else { return nil }
        return op.tick < previous.tick ? "late" : nil
    }

    mutating func merge(_ op: Op<Bid>) -> Bool {
        guard accepts(op) else { return false }
        let key = UInt64(op.payload.value) << 8 | UInt64(op.player + 1)
        let i = Int(op.payload.slot)
        slots[i] = max(slots[i], key)
        return true
    }

    mutating func join(_ other: MaxBoard) {
        for i in slots.indices { slots[i] = max(slots[i], other.slots[i]) }
    }

    var stateHash: UInt64 {
        var h: UInt64 = 0
        for (i, v) in slots.enumerated() where v != 0 { h &+= StableHash.mix(v ^ StableHash.mix(UInt64(i))) }
        return h
    }

    func canonicalBytes() -> [UInt8] {
        var w = ByteWriter()
        for v in slots { w.u64(v) }
        return w.bytes
    }

    /// The value held in a slot and who holds it.
    func holder(of slot: Int) -> (value: UInt32, player: PlayerID)? {
        let v = slots[slot]
        return v == 0 ? nil : (UInt32(v >> 8), PlayerID((v & 0xFF) - 1))
    }

    static func hash(_ payload: Bid) -> UInt64 { UInt64(payload.slot) << 32 | UInt64(payload.value) }

    static func encode(_ payload: Bid, into w: inout ByteWriter) {
        w.u8(payload.slot)
        w.varint(UInt64(payload.value))
    }

    static func decode(from r: inout ByteReader) throws -> Bid {
        let slot = try r.u8("slot")
        let at = r.offset
        let value = try r.varint("value")
        guard value <= UInt64(maxValue) else { throw ByteReadError(offset: at, "bid \(value) too large") }
        return Bid(slot: slot, value: UInt32(value))
    }
}

/// A seeded bidder: every few ticks it bids on a random slot. Records the ticks it was asked about.
struct Bidder: PlayerController {
    typealias Game = MaxBoard
    var rng: SplitMix64
    var askedTicks: [Tick] = []

    init(seed: UInt64, player: PlayerID) { rng = SplitMix64(seed: seed, stream: UInt64(player)) }

    mutating func step(tick: Tick, player: PlayerID, state: MaxBoard) -> [MaxBoard.Bid] {
        askedTicks.append(tick)
        guard rng.chance(1, in: 3) else { return [] }
        let slot = rng.below(state.slots.count)
        let current = state.holder(of: slot)?.value ?? 0
        return [MaxBoard.Bid(slot: UInt8(slot), value: min(MaxBoard.maxValue, current + 1 + UInt32(rng.below(100))))]
    }

    mutating func resume(after last: Op<MaxBoard.Bid>, player: PlayerID, state: MaxBoard) {}
}

func maxBoardMatch(seed: UInt64, players: Int = 3, slots: UInt8 = 8, ticks: Tick = 120) throws -> LocalMatch<Bidder> {
    let config = MaxBoard.config(seed: seed, players: players, slots: slots, ticks: ticks)
    var controllers: [PlayerID: Bidder] = [:]
    for p in 0..<players { controllers[PlayerID(p)] = Bidder(seed: seed, player: PlayerID(p)) }
    return try LocalMatch(config: config, controllers: controllers)
}
