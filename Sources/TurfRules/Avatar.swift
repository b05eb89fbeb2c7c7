import Engine

/// A player's avatar as its owner simulates it: it keeps moving in its direction, one cell every
/// `moveEvery` ticks; a queued turn is taken as soon as the cell that way is open; walls stop it.
/// Only the static map is consulted, so the owner never waits for anyone (zero input delay).
public struct Avatar: Sendable, Equatable {
    public private(set) var cell: Int?
    public private(set) var heading: Direction
    /// The direction the player asked for; taken at the next move where that way is open.
    public var wanted: Direction
    public private(set) var nextMoveTick: Tick = 0

    public init(heading: Direction = .right) {
        self.heading = heading
        wanted = heading
    }

    /// Picks up where the player's log stands: at `cell`, where its last op (at `tick`) put it,
    /// heading on. Its next move is due `moveEvery` ticks after that op (a rejoining peer).
    public mutating func resume(at cell: Int, lastTick: Tick, moveEvery: UInt8) {
        self.cell = cell
        nextMoveTick = lastTick + Tick(moveEvery)
    }

    /// The move to make at `tick`, if any (the spawn at tick 0, then steps).
    public mutating func step(tick: Tick, player: PlayerID, map: ArenaMap, moveEvery: UInt8) -> TurfOp? {
        guard let here = cell else {
            let spawn = map.spawns[Int(player)]
            cell = spawn
            nextMoveTick = tick + Tick(moveEvery)
            // Face the longest open run from the spawn point.
            heading = Direction.allCases.max { run(from: spawn, $0, map) < run(from: spawn, $1, map) }!
            wanted = heading
            return .move(cell: UInt32(spawn))
        }
        guard tick >= nextMoveTick else { return nil }
        var next: Int?
        if let c = map.step(here, wanted), map.isFloor(c) {
            heading = wanted
            next = c
        } else if let c = map.step(here, heading), map.isFloor(c) {
            next = c
        }
        guard let to = next else { return nil }  // blocked: wait, ready to move as soon as it turns
        cell = to
        nextMoveTick = tick + Tick(moveEvery)
        return .move(cell: UInt32(to))
    }

    func run(from cell: Int, _ d: Direction, _ map: ArenaMap) -> Int {
        var n = 0
        var c = cell
        while n < 64, let s = map.step(c, d), map.isFloor(s) {
            n += 1
            c = s
        }
        return n
    }
}
