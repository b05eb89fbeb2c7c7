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
            avatar.wanted = hardChoice(
                here: here,
                heading: avatar.heading,
                choices: choices,
                player: player,
                tick: tick,
                world: world
            )
        }
    }

    /// How close another avatar must be (Manhattan) before a hard bot steers away from it.
    static let crowdRadius = 6

    /// The hard bot's choice. It scores each open direction by what an 8-cell ray would paint
    /// (nearer cells worth more, live pickups far more), but discounts cells another avatar is
    /// nearer to (it will likely get there first, and two bots on one strip waste each other's
    /// moves), and steers away from avatars within `crowdRadius`, so bots spread over the arena
    /// instead of chasing each other. Repainting another player's cell earns only a small bonus:
    /// a large one made hard bots trail whoever had just painted. With nothing in sight it walks
    /// towards the nearest cell it does not own, preferring cells away from the others.
    /// Cost per move: 4 rays of 8 cells against at most 7 avatars, plus a bounded search.
    private mutating func hardChoice(
        here: Int,
        heading: Direction,
        choices: [Direction],
        player: PlayerID,
        tick: Tick,
        world: TurfWorld
    ) -> Direction {
        let map = world.map
        var others: [(x: Int, y: Int)] = []
        for p in 0..<world.playerCount where p != Int(player) {
            if let c = world.position(of: PlayerID(p)) { others.append((map.x(c), map.y(c))) }
        }
        func nearestOther(_ c: Int) -> Int {
            let x = map.x(c)
            let y = map.y(c)
            var best = Int.max
            for o in others { best = min(best, abs(o.x - x) + abs(o.y - y)) }
            return best
        }
        var best = choices[0]
        var bestScore = Int.min
        var bestFresh = 0
        let here0 = nearestOther(here)
        for d in choices {
            var gain = 0
            var fresh = 0
            var c = here
            for dist in 1...8 {
                guard let s = map.step(c, d), map.isFloor(s) else { break }
                c = s
                let contested = nearestOther(c) < dist
                let o = world.owner[c]
                if o == TurfWorld.noOwner {
                    let v = 12 - dist
                    gain += contested ? v / 4 : v
                    fresh += v
                } else if o != player {
                    gain += (12 - dist) / (contested ? 8 : 3)
                }
                if let i = world.schedule.live(at: c, tick: tick), world.isLive(pickup: i, at: tick) {
                    gain += contested ? 15 : 60
                }
            }
            var score = gain + Int(rng.below(3)) + (d == heading ? 2 : 0)
            if here0 <= Bot.crowdRadius, let n = map.step(here, d), nearestOther(n) < here0 {
                score -= 4 * (Bot.crowdRadius + 1 - here0)
            }
            if score > bestScore {
                bestScore = score
                best = d
                bestFresh = fresh
            }
        }
        // Nothing worth taking in sight: head for a cell that is not ours, near us and away from others.
        if bestFresh < 12,
            let d = Bot.towardsOpenGround(
                from: here,
                player: player,
                world: world,
                limit: 800,
                nearestOther: nearestOther
            )
        {
            best = d
        }
        return best
    }

    /// The first step of a shortest path to the floor cell not owned by `player` that minimises its
    /// path length plus a penalty for being near another avatar (breadth-first, visiting at most
    /// `limit` cells, stopping once no farther cell can do better).
    static func towardsOpenGround(
        from start: Int,
        player: PlayerID,
        world: TurfWorld,
        limit: Int,
        nearestOther: (Int) -> Int
    ) -> Direction? {
        let map = world.map
        var firstStep: [Int: (Direction, Int)] = [start: (.up, 0)]
        var queue = [start]
        var head = 0
        var best: (Direction, Int)?
        while head < queue.count && queue.count < limit {
            let c = queue[head]
            head += 1
            let (_, dc) = firstStep[c]!  // `!`s: every cell queued got its first step when queued
            if let b = best, dc + 1 >= b.1 { break }
            for d in Direction.allCases {
                guard let n = map.step(c, d), map.isFloor(n), firstStep[n] == nil else { continue }
                // `!`: every cell dequeued other than the start was given its first step when it was queued.
                let first = c == start ? d : firstStep[c]!.0
                firstStep[n] = (first, dc + 1)
                if world.owner[n] == TurfWorld.noOwner {
                    let score = dc + 1 + 3 * max(0, 8 - nearestOther(n))
                    if score < best?.1 ?? .max { best = (first, score) }
                } else {
                    queue.append(n)
                }
            }
        }
        return best?.0
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

    public mutating func resume(after last: Op<TurfOp>, player: PlayerID, state: TurfWorld) {
        guard case .move(let cell) = last.payload else { return }
        avatar.resume(at: Int(cell), lastTick: last.tick, moveEvery: state.settings.moveEvery)
    }

    public mutating func step(tick: Tick, player: PlayerID, state: TurfWorld) -> [TurfOp] {
        bot?.steer(&avatar, player: player, tick: tick, world: state)
        guard let op = avatar.step(tick: tick, player: player, map: state.map, moveEvery: state.settings.moveEvery)
        else { return [] }
        return [op]
    }
}
