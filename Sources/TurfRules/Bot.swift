import Determinism
import Engine

/// A computer player. Deterministic: its choices depend only on the match seed, its player id and
/// the merged state it is shown, so a generated match is the same on every machine.
public struct Bot: Sendable {
    public enum Level: UInt8, CaseIterable, Sendable {
        /// Wanders: mostly straight on, turning at random.
        case easy = 0
        /// Hunts: looks ahead in each open direction for cells it does not own and live pickups.
        case hard = 1
    }

    public let level: Level
    private var rng: SplitMix64

    public init(level: Level, seed: UInt64, player: PlayerID) {
        self.level = level
        rng = SplitMix64(seed: seed, stream: 0xB07_0000 + UInt64(player))
    }

    /// Chooses the direction the avatar should want before its next move.
    public mutating func steer(_ avatar: inout Avatar, player: PlayerID, tick: Tick, world: TurfWorld) {
        guard let here = avatar.cell, tick >= avatar.nextMoveTick else { return }
        let map = world.map
        let open = Direction.allCases.filter { d in map.step(here, d).map(map.isFloor) ?? false }
        guard !open.isEmpty else { return }
        let forward = open.filter { $0 != avatar.heading.opposite }
        let choices = forward.isEmpty ? open : forward
        switch level {
        case .easy:
            if choices.contains(avatar.heading) && !rng.chance(1, in: 6) {
                avatar.wanted = avatar.heading
            } else {
                avatar.wanted = choices[rng.below(choices.count)]
            }
        case .hard:
            var best = choices[0]
            var bestScore = Int.min
            for d in choices {
                var score = Int(rng.below(3)) + (d == avatar.heading ? 2 : 0)
                var c = here
                for dist in 1...8 {
                    guard let s = map.step(c, d), map.isFloor(s) else { break }
                    c = s
                    let o = world.owner[c]
                    if o != player { score += (12 - dist) + (o == TurfWorld.noOwner ? 0 : 3) }
                    if let i = world.schedule.live(at: c, tick: tick), world.isLive(pickup: i, at: tick) { score += 60 }
                }
                if score > bestScore { bestScore = score; best = d }
            }
            // Nothing worth taking in sight: head for the nearest cell that is not ours.
            if bestScore < 12, let d = Bot.towardsNearest(from: here, player: player, world: world, limit: 800) {
                best = d
            }
            avatar.wanted = best
        }
    }

    /// The first step of a shortest path to the nearest floor cell not owned by `player`
    /// (breadth-first, visiting at most `limit` cells).
    static func towardsNearest(from start: Int, player: PlayerID, world: TurfWorld, limit: Int) -> Direction? {
        let map = world.map
        var firstStep: [Int: Direction] = [start: .up]
        var queue = [start]
        var head = 0
        while head < queue.count && queue.count < limit {
            let c = queue[head]
            head += 1
            for d in Direction.allCases {
                guard let n = map.step(c, d), map.isFloor(n), firstStep[n] == nil else { continue }
                let first = c == start ? d : firstStep[c]!
                if world.owner[n] != player { return first }
                firstStep[n] = first
                queue.append(n)
            }
        }
        return nil
    }
}

/// Drives one local player: a human (whose input sets `avatar.wanted`) or a bot.
public struct TurfController: PlayerController {
    public typealias Game = TurfWorld
    public var avatar = Avatar()
    public var bot: Bot?

    public init(bot: Bot? = nil) { self.bot = bot }

    public static func human() -> TurfController { TurfController() }

    /// Steers a human's avatar; the turn is taken at the next move where that way is open.
    public mutating func steer(_ d: Direction) { avatar.wanted = d }

    public mutating func step(tick: Tick, player: PlayerID, state: TurfWorld) -> [TurfOp] {
        if bot != nil { bot!.steer(&avatar, player: player, tick: tick, world: state) }
        guard let op = avatar.step(tick: tick, player: player, map: state.map, moveEvery: state.settings.moveEvery) else { return [] }
        return [op]
    }
}
