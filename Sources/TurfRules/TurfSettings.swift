import Determinism
import Engine

/// turf's part of a match config: the map and the tunables. Encoded into `MatchConfig.settings`.
public struct TurfSettings: Equatable, Sendable {
    public var map: ArenaMap
    /// An avatar moves one cell every this many ticks (4 at 30 Hz = 7.5 cells/s).
    public var moveEvery: UInt8
    /// A pickup spawns every this many ticks (0: no pickups).
    public var pickupInterval: Tick
    /// A pickup can be collected for this many ticks after it spawns.
    public var pickupLifetime: Tick
    /// A collected pickup paints every floor cell within this Chebyshev radius.
    public var splatRadius: UInt8

    public init(
        map: ArenaMap,
        moveEvery: UInt8 = 4,
        pickupInterval: Tick = 300,
        pickupLifetime: Tick = 240,
        splatRadius: UInt8 = 2
    ) {
        self.map = map
        self.moveEvery = moveEvery
        self.pickupInterval = pickupInterval
        self.pickupLifetime = pickupLifetime
        self.splatRadius = splatRadius
    }

    static let formatVersion: UInt8 = 1

    public func encoded() -> [UInt8] {
        var w = ByteWriter()
        w.u8(TurfSettings.formatVersion)
        w.string(map.source)
        w.u8(moveEvery)
        w.u32(pickupInterval)
        w.u32(pickupLifetime)
        w.u8(splatRadius)
        return w.bytes
    }

    public static func decode(_ bytes: [UInt8]) throws -> TurfSettings {
        var r = ByteReader(bytes)
        let v = try r.u8("settings version")
        guard v == formatVersion else {
            throw ConfigError.invalid("turf settings version \(v) (expected \(formatVersion))")
        }
        let text = try r.string("map text", limit: ArenaMap.maxSourceBytes)
        let map = try ArenaMap(parsing: text, file: "<map recorded in the match>")
        let s = TurfSettings(
            map: map,
            moveEvery: try r.u8("move interval"),
            pickupInterval: try r.u32("pickup interval"),
            pickupLifetime: try r.u32("pickup lifetime"),
            splatRadius: try r.u8("splat radius")
        )
        guard s.moveEvery >= 1 else { throw ConfigError.invalid("move interval 0") }
        guard s.splatRadius <= 8 else { throw ConfigError.invalid("splat radius \(s.splatRadius) (at most 8)") }
        guard s.pickupInterval == 0 || s.pickupInterval >= TurfSettings.minPickupInterval else {
            throw ConfigError.invalid(
                "pickup interval \(s.pickupInterval) ticks (0 for none, else at least \(TurfSettings.minPickupInterval))"
            )
        }
        guard s.pickupLifetime >= 1 else { throw ConfigError.invalid("pickup lifetime 0") }
        guard r.isAtEnd else { throw ConfigError.invalid("\(r.remaining) stray bytes after turf settings") }
        return s
    }

    /// The pickup schedule is built whole when a match or replay is loaded: one entry per pickup,
    /// and per pickup the floor cells its splat paints (each stored twice: the pickup's area and
    /// the per-cell index), so its memory is pickups × splat area; a paint or claim of a cell costs
    /// O(log pickups) whatever the schedule (a binary search in `live`, TurfWorld's splat trees). The longest match (4
    /// hours at 30 Hz, `MatchConfig.maxLengthTicks`) with the default settings (one pickup every
    /// 300 ticks, splat radius 2) has 1,439 pickups and 36k splat cells; these bounds leave
    /// headroom for busier settings (a pickup every 44 ticks for 4 hours, or radius 8 every 125)
    /// and keep the schedule and the world's splat trees under ~32 MB whatever a file says.
    public static let maxPickups = 10_000
    /// Bound on pickups × (2 × splatRadius + 1)², the splat cells the schedule may hold.
    public static let maxSplatCells = 1_000_000

    /// The number of pickups a match of `lengthTicks` ticks schedules.
    public func pickupCount(lengthTicks: Tick) -> Int {
        pickupInterval == 0 ? 0 : Int((max(lengthTicks, 1) - 1) / pickupInterval)
    }

    /// Refuses settings whose pickup schedule, for a match of this length, would be larger than
    /// `maxPickups` / `maxSplatCells` (checked from the settings alone, before anything is built).
    public func checkWork(lengthTicks: Tick) throws {
        let pickups = pickupCount(lengthTicks: lengthTicks)
        guard pickups <= TurfSettings.maxPickups else {
            throw ConfigError.invalid(
                "\(pickups) pickups in \(lengthTicks) ticks (one every \(pickupInterval) ticks; at most \(TurfSettings.maxPickups))"
            )
        }
        let side = 2 * Int(splatRadius) + 1
        guard pickups * side * side <= TurfSettings.maxSplatCells else {
            throw ConfigError.invalid(
                "\(pickups) pickups of splat radius \(splatRadius) cover up to \(pickups * side * side) cells (at most \(TurfSettings.maxSplatCells))"
            )
        }
    }

    /// At most one pickup every this many ticks, so the schedule (one entry per pickup, built
    /// when a match or replay is loaded) stays small whatever a replay file says.
    public static let minPickupInterval: UInt32 = 10

    /// A match config for turf with these settings. A length beyond what a config may hold is
    /// clamped to a value that `validate()` then rejects, never wrapped round.
    public func matchConfig(
        seed: UInt64,
        players: [PlayerInfo],
        seconds: Int = 90,
        tickRate: UInt16 = 30,
        checkpointInterval: Tick? = nil
    ) -> MatchConfig {
        let ticks = UInt64(max(0, seconds)).multipliedReportingOverflow(by: UInt64(tickRate))
        return MatchConfig(
            gameID: TurfWorld.gameID,
            seed: seed,
            tickRate: tickRate,
            lengthTicks: ticks.overflow ? .max : Tick(min(ticks.partialValue, UInt64(Tick.max))),
            checkpointInterval: checkpointInterval ?? Tick(tickRate),
            players: players,
            settings: encoded()
        )
    }
}

/// Where and when pickups appear: a pure function of the match seed, the map and the length.
public struct PickupSchedule: Sendable {
    public struct Pickup: Equatable, Sendable {
        public var cell: Int
        public var spawn: Tick
        public var expiry: Tick  // exclusive
        /// Floor cells painted when it is collected.
        public var area: [Int]
    }

    public let pickups: [Pickup]
    /// For each cell, the pickups that can be collected there (most cells: none), as a compressed
    /// sparse row: the pickups at cell c are atList[atStart[c] ..< atStart[c + 1]].
    let atStart: [Int32]
    let atList: [Int32]
    /// For each cell, the pickups whose splat covers it, in the same layout.
    let coverStart: [Int32]
    let coverList: [Int32]
    /// For each pickup i and each m < pickups[i].area.count, the index j into coverList of pickup
    /// i in the covering list of area[m]: areaSlot[areaStart[i] + m]. Lets a claim update the
    /// per-cell splat trees (TurfWorld) without searching.
    let areaStart: [Int32]
    let areaSlot: [Int32]

    public init(seed: UInt64, settings: TurfSettings, lengthTicks: Tick) {
        let map = settings.map
        var rng = SplitMix64(seed: seed, stream: 0x9_1C4_0905)
        var list: [Pickup] = []
        let spawnSet = Set(map.spawns)
        let candidates = map.floorCells.filter { !spawnSet.contains($0) }
        if settings.pickupInterval > 0 && !candidates.isEmpty {
            var t = settings.pickupInterval
            while t < lengthTicks {
                let cell = candidates[rng.below(candidates.count)]
                let r = Int(settings.splatRadius)
                var area: [Int] = []
                let cx = map.x(cell)
                let cy = map.y(cell)
                for y in max(0, cy - r)...min(map.height - 1, cy + r) {
                    for x in max(0, cx - r)...min(map.width - 1, cx + r) where map.isFloor(map.index(x, y)) {
                        area.append(map.index(x, y))
                    }
                }
                let expiry = min(UInt64(lengthTicks) + 1, UInt64(t) + UInt64(settings.pickupLifetime))
                list.append(Pickup(cell: cell, spawn: t, expiry: Tick(expiry), area: area))
                let (next, overflow) = t.addingReportingOverflow(settings.pickupInterval)
                if overflow { break }
                t = next
            }
        }
        pickups = list
        (atStart, atList) = PickupSchedule.rows(
            cells: map.cells.count,
            list.enumerated().map { ($0.offset, [$0.element.cell]) }
        )
        (coverStart, coverList) = PickupSchedule.rows(
            cells: map.cells.count,
            list.enumerated().map { ($0.offset, $0.element.area) }
        )
        // Where each (pickup, area cell) sits in coverList: cells' covering lists are filled in
        // pickup order, so walking the pickups in order and counting per cell finds each slot.
        var next = coverStart
        var slots = [Int32](repeating: 0, count: coverList.count)
        var starts = [Int32](repeating: 0, count: list.count + 1)
        var n = 0
        for (i, p) in list.enumerated() {
            starts[i] = Int32(n)
            for c in p.area {
                slots[n] = next[c]
                next[c] += 1
                n += 1
            }
        }
        starts[list.count] = Int32(n)
        areaStart = starts
        areaSlot = slots
    }

    private static func rows(cells: Int, _ entries: [(Int, [Int])]) -> ([Int32], [Int32]) {
        var count = [Int32](repeating: 0, count: cells + 1)
        for (_, cs) in entries { for c in cs { count[c + 1] += 1 } }
        for i in 1...cells { count[i] += count[i - 1] }
        var fill = count
        var list = [Int32](repeating: 0, count: Int(count[cells]))
        for (i, cs) in entries {
            for c in cs {
                list[Int(fill[c])] = Int32(i)
                fill[c] += 1
            }
        }
        return (count, list)
    }

    /// The pickups whose splat covers `cell`: `coveringPickup(j)` for j in this range. (Index
    /// ranges rather than slices: no reference counting on the merge path.)
    @inline(__always)
    public func coveringRange(_ cell: Int) -> Range<Int> { Int(coverStart[cell])..<Int(coverStart[cell + 1]) }

    @inline(__always)
    public func coveringPickup(_ j: Int) -> Int { Int(coverList[j]) }

    /// The number of (pickup, covered cell) pairs: coverList.count.
    public var coverCount: Int { coverList.count }

    /// The start of cell's covering range, and the slot in coverList of pickup i's m-th area cell.
    @inline(__always) func coverBase(_ cell: Int) -> Int { Int(coverStart[cell]) }
    @inline(__always) func slot(pickup i: Int, areaIndex m: Int) -> Int { Int(areaSlot[Int(areaStart[i]) + m]) }

    /// The pickup live at `cell` at `tick`, if any: the first at the cell (in spawn order) with
    /// spawn <= tick < expiry. Spawns rise with the pickup index and expiries never fall, so the
    /// pickups at a cell not yet expired are a suffix of its list and those spawned a prefix: the
    /// answer is the first not expired, if it has spawned. Binary search, so a cell holding
    /// thousands of pickups costs a dozen steps (`steps` counts them, for the work tests).
    @inline(__always)
    public func live(at cell: Int, tick: Tick, steps: inout Int) -> Int? {
        var lo = Int(atStart[cell])
        var hi = Int(atStart[cell + 1])
        while lo < hi {
            steps += 1
            let mid = (lo + hi) >> 1
            if pickups[Int(atList[mid])].expiry > tick { hi = mid } else { lo = mid + 1 }
        }
        guard lo < Int(atStart[cell + 1]) else { return nil }
        let i = Int(atList[lo])
        return pickups[i].spawn <= tick ? i : nil
    }

    public func live(at cell: Int, tick: Tick) -> Int? {
        var steps = 0
        return live(at: cell, tick: tick, steps: &steps)
    }
}
