import Determinism
import Engine

/// A turf op. Owners compute their own moves against the static map and publish where they went.
public enum TurfOp: Equatable, Sendable {
    /// The owner's avatar entered `cell` (an index into the map) at the op's tick. The first op of
    /// every player is its arrival at its spawn point at tick 0.
    case move(cell: UInt32)
}

/// turf's world: a join-semilattice over the union of all players' op logs (docs/engine.md).
///
/// Lattice state (everything else is derived from it):
/// - per cell, the paint register `direct[c]`: the max over the move ops into c of the key
///   (tick + 1, fair tie-break, player);
/// - per pickup, the claim register `winner[p]`: the min over the move ops that entered its cell
///   while it was live, of (tick + 1, fair tie-break, player);
/// - per player, the position register: the max over its ops of (seq, tick, cell).
/// Derived: a cell's owner is the player of the max of its paint register and the splat keys of the
/// won pickups covering it; scores count owned cells. Every merge is O(1) in the op's lateness.
public struct TurfWorld: ReplicatedGame {
    public typealias Payload = TurfOp
    public typealias Settings = TurfSettings

    public static let gameID = "turf/2"
    public static let noOwner: UInt8 = 0xFF

    public let settings: TurfSettings
    public let map: ArenaMap
    public let schedule: PickupSchedule
    public let seed: UInt64
    public let playerCount: Int

    /// Paint register per cell (0 = never painted).
    public private(set) var direct: [UInt64]
    /// Claim register per pickup (0 = unclaimed).
    public private(set) var winner: [UInt64]
    /// Position register per player: (seq << 32 | tick), and the cell (UInt32.max before spawning).
    public private(set) var positionKey: [UInt64]
    public private(set) var position: [UInt32]
    /// Derived: owner per cell, cells per player.
    public private(set) var owner: [UInt8]
    public private(set) var scores: [Int]
    private var hashSum: UInt64 = 0
    /// Derived: per cell, a max tree over the splat keys the pickups covering it would paint there
    /// (0 while unclaimed), so a cell's owner is found in O(1) and a claim updates each cell of
    /// its area in O(log covering). Cell c's tree has k = its covering count leaves; its node n
    /// (1 ≤ n < 2k: root 1, leaves k ..< 2k in covering order, node n = max(2n, 2n + 1)) is at
    /// splatTree[2 × coverBase(c) + n]. Without it a merge scanned every pickup covering its cell
    /// and a claim every pickup covering each cell of its area: with thousands of pickups piled
    /// up, a crafted file of a million ops took minutes (docs/untrusted-input.md).
    private var splatTree: [UInt64]
    /// Steps done by merges: binary-search probes and splat-tree nodes visited. Only read by
    /// tests, which bound the work a crafted worst case costs per op.
    public private(set) var mergeSteps: Int = 0

    public static func settings(for config: MatchConfig) throws -> TurfSettings {
        let s = try TurfSettings.decode(config.settings)
        guard config.players.count <= s.map.spawns.count else {
            throw ConfigError.invalid(
                "\(config.players.count) players but map '\(s.map.name)' has \(s.map.spawns.count) spawn points"
            )
        }
        try s.checkWork(lengthTicks: config.lengthTicks)
        return s
    }

    public init(config: MatchConfig, settings: TurfSettings) {
        self.settings = settings
        map = settings.map
        seed = config.seed
        playerCount = config.players.count
        schedule = PickupSchedule(seed: config.seed, settings: settings, lengthTicks: config.lengthTicks)
        let n = map.cells.count
        direct = Array(repeating: 0, count: n)
        owner = Array(repeating: TurfWorld.noOwner, count: n)
        winner = Array(repeating: 0, count: schedule.pickups.count)
        positionKey = Array(repeating: 0, count: playerCount)
        position = Array(repeating: UInt32.max, count: playerCount)
        scores = Array(repeating: 0, count: playerCount)
        splatTree = Array(repeating: 0, count: 2 * schedule.coverCount)
    }

    // MARK: keys

    /// A paint key: later ticks win; at the same tick, a hash of (seed, cell, tick, player) decides,
    /// so no player id is favoured; the player id in the low byte keeps keys distinct.
    @inline(__always)
    func paintKey(cell: Int, tick: Tick, player: PlayerID) -> UInt64 {
        let tie = StableHash.mix(
            seed &+ UInt64(cell) &* 0x9E37_79B9_7F4A_7C15 &+ UInt64(tick) &* 0xC2B2_AE3D_27D4_EB4F &+ UInt64(player)
        )
        return (UInt64(tick) + 1) << 32 | (tie & 0xFF_FFFF) << 8 | UInt64(player)
    }

    @inline(__always)
    func claimKey(pickup: Int, tick: Tick, player: PlayerID) -> UInt64 {
        let tie = StableHash.mix(
            ~seed &+ UInt64(pickup) &* 0x9E37_79B9_7F4A_7C15 &+ UInt64(tick) &* 0xC2B2_AE3D_27D4_EB4F &+ UInt64(player)
        )
        return (UInt64(tick) + 1) << 32 | (tie & 0xFF_FFFF) << 8 | UInt64(player)
    }

    @inline(__always) static func keyOwner(_ k: UInt64) -> UInt8 { k == 0 ? noOwner : UInt8(k & 0xFF) }
    @inline(__always) static func keyTick(_ k: UInt64) -> Tick { Tick((k >> 32) - 1) }

    // MARK: merge

    /// A move is valid when its player exists and its cell is floor.
    public func accepts(_ op: Op<TurfOp>) -> Bool {
        switch op.payload {
        case .move(let cell32):
            return Int(op.player) < playerCount && Int(cell32) < map.cells.count && map.isFloor(Int(cell32))
        }
    }

    /// turf's legality contract (docs/engine.md, "Legality"), over each player's own log:
    /// - seq 0 enters the player's spawn cell (at any tick: a member whose start came late spawns late);
    /// - each next op is at least `moveEvery` ticks after the previous one ("speed"; a tick before
    ///   the previous op's is "late": a move published after its owner had moved on) and
    ///   enters a cell one step (up, down, left, right) from it ("teleport").
    /// Pickups follow: only applied (legal) moves can claim one.
    public func violation(_ op: Op<TurfOp>, after previous: Op<TurfOp>?) -> String? {
        guard case .move(let to) = op.payload else { return nil }
        guard let previous else { return Int(to) == map.spawns[Int(op.player)] ? nil : "teleport" }
        guard case .move(let from) = previous.payload else { return nil }
        if op.tick < previous.tick { return "late" }
        if op.tick - previous.tick < Tick(settings.moveEvery) { return "speed" }
        let f = Int(from)
        let t = Int(to)
        let w = map.width
        let adjacent = t == f - w || t == f + w || (t == f + 1 && t % w != 0) || (t == f - 1 && f % w != 0)
        return adjacent ? nil : "teleport"
    }

    public mutating func merge(_ op: Op<TurfOp>) -> Bool {
        guard accepts(op) else { return false }
        switch op.payload {
        case .move(let cell32):
            let cell = Int(cell32)
            // Position register: max (seq, tick, cell).
            let pk = UInt64(op.seq) << 32 | UInt64(op.tick)
            let p = Int(op.player)
            if pk > positionKey[p] || (pk == positionKey[p] && (position[p] == .max || cell32 > position[p])) {
                hashSum &-= positionComponent(p)
                positionKey[p] = pk
                position[p] = cell32
                hashSum &+= positionComponent(p)
            }
            // Paint register.
            let key = paintKey(cell: cell, tick: op.tick, player: op.player)
            if key > direct[cell] {
                hashSum &-= TurfWorld.component(direct[cell], UInt64(cell), tag: 1)
                direct[cell] = key
                hashSum &+= TurfWorld.component(key, UInt64(cell), tag: 1)
                refreshOwner(cell)
            }
            // Pickup claim.
            if let i = schedule.live(at: cell, tick: op.tick, steps: &mergeSteps) {
                let k = claimKey(pickup: i, tick: op.tick, player: op.player)
                if winner[i] == 0 || k < winner[i] {
                    hashSum &-= TurfWorld.component(winner[i], UInt64(i), tag: 2)
                    winner[i] = k
                    hashSum &+= TurfWorld.component(k, UInt64(i), tag: 2)
                    let area = schedule.pickups[i].area
                    for m in area.indices {
                        let c = area[m]
                        setSplat(
                            cell: c,
                            slot: schedule.slot(pickup: i, areaIndex: m),
                            key: splatKey(cell: c, winner: k)
                        )
                        refreshOwner(c)
                    }
                }
            }
            return true
        }
    }

    public mutating func join(_ other: TurfWorld) {
        precondition(
            other.direct.count == direct.count && other.playerCount == playerCount && other.seed == seed,
            "join of states from different matches"
        )
        for c in direct.indices where other.direct[c] > direct[c] { direct[c] = other.direct[c] }
        for i in winner.indices where other.winner[i] != 0 && (winner[i] == 0 || other.winner[i] < winner[i]) {
            winner[i] = other.winner[i]
        }
        for p in 0..<playerCount {
            let mine = (positionKey[p], position[p] == .max ? -1 : Int64(position[p]))
            let theirs = (other.positionKey[p], other.position[p] == .max ? -1 : Int64(other.position[p]))
            if theirs > mine {
                positionKey[p] = other.positionKey[p]
                position[p] = other.position[p]
            }
        }
        rederive()
    }

    /// Recomputes the splat trees, owners, scores and the hash from the registers (O(cells +
    /// covered cells)).
    private mutating func rederive() {
        scores = Array(repeating: 0, count: playerCount)
        hashSum = 0
        for c in direct.indices {
            let base = schedule.coverBase(c)
            let k = schedule.coveringRange(c).count
            for j in 0..<k {
                splatTree[2 * base + k + j] = splatKey(cell: c, winner: winner[schedule.coveringPickup(base + j)])
            }
            var n = k - 1
            while n >= 1 {
                splatTree[2 * base + n] = max(splatTree[2 * base + 2 * n], splatTree[2 * base + 2 * n + 1])
                n -= 1
            }
        }
        for c in direct.indices {
            let o = TurfWorld.keyOwner(effectiveKey(c))
            owner[c] = o
            if o != TurfWorld.noOwner { scores[Int(o)] += 1 }
            hashSum &+= TurfWorld.component(direct[c], UInt64(c), tag: 1)
        }
        for i in winner.indices { hashSum &+= TurfWorld.component(winner[i], UInt64(i), tag: 2) }
        for p in 0..<playerCount { hashSum &+= positionComponent(p) }
    }

    /// The key pickup claim `w` paints on a cell of its splat (0: unclaimed, paints nothing).
    @inline(__always)
    func splatKey(cell: Int, winner w: UInt64) -> UInt64 {
        w == 0 ? 0 : paintKey(cell: cell, tick: TurfWorld.keyTick(w), player: UInt8(w & 0xFF))
    }

    /// The key that decides a cell's owner: its paint register, or a covering splat that is later
    /// (the root of the cell's splat tree: the latest splat of the pickups covering it).
    @inline(__always)
    func effectiveKey(_ cell: Int) -> UInt64 {
        let k = schedule.coveringRange(cell).count
        return k == 0 ? direct[cell] : max(direct[cell], splatTree[2 * schedule.coverBase(cell) + 1])
    }

    /// Sets the leaf of coverList slot `slot` in cell's splat tree and recomputes its ancestors,
    /// stopping where a node keeps its value (those above keep theirs too).
    @inline(__always)
    private mutating func setSplat(cell: Int, slot: Int, key: UInt64) {
        let base = 2 * schedule.coverBase(cell)
        let k = schedule.coveringRange(cell).count
        var n = k + slot - schedule.coverBase(cell)
        splatTree[base + n] = key
        mergeSteps += 1
        while n > 1 {
            n >>= 1
            mergeSteps += 1
            let v = max(splatTree[base + 2 * n], splatTree[base + 2 * n + 1])
            if splatTree[base + n] == v { break }
            splatTree[base + n] = v
        }
    }

    @inline(__always)
    private mutating func refreshOwner(_ cell: Int) {
        let o = TurfWorld.keyOwner(effectiveKey(cell))
        let old = owner[cell]
        guard o != old else { return }
        if old != TurfWorld.noOwner { scores[Int(old)] -= 1 }
        if o != TurfWorld.noOwner { scores[Int(o)] += 1 }
        owner[cell] = o
    }

    // MARK: hashing

    /// Each register contributes mix(register, index, tag) to a sum, so a merge updates the hash in
    /// O(1): subtract the old contribution, add the new one. An empty register contributes 0.
    @inline(__always)
    static func component(_ key: UInt64, _ index: UInt64, tag: UInt64) -> UInt64 {
        key == 0 ? 0 : StableHash.mix(key ^ StableHash.mix(index &+ tag << 40))
    }

    @inline(__always)
    private func positionComponent(_ p: Int) -> UInt64 {
        // The key (seq << 32 | tick) and the cell are hashed as separate words: no bit of either is
        // lost or overlaps the other.
        position[p] == .max
            ? 0 : TurfWorld.component(StableHash.combine(positionKey[p], UInt64(position[p]) &+ 1), UInt64(p), tag: 3)
    }

    public var stateHash: UInt64 { StableHash.combine(hashSum, UInt64(map.cells.count) << 8 | UInt64(playerCount)) }

    public func canonicalBytes() -> [UInt8] {
        var w = ByteWriter(capacity: direct.count * 8 + 64)
        for k in direct { w.u64(k) }
        for k in winner { w.u64(k) }
        for p in 0..<playerCount {
            w.u64(positionKey[p])
            w.u32(position[p])
        }
        return w.bytes
    }

    // MARK: queries

    public func isLive(pickup i: Int, at tick: Tick) -> Bool {
        let p = schedule.pickups[i]
        guard p.spawn <= tick && tick < p.expiry else { return false }
        return winner[i] == 0 || TurfWorld.keyTick(winner[i]) > tick
    }

    /// The player who collected pickup `i`, if anyone has yet.
    public func collector(of i: Int) -> PlayerID? { winner[i] == 0 ? nil : PlayerID(winner[i] & 0xFF) }

    public func position(of p: PlayerID) -> Int? {
        let c = position[Int(p)]
        return c == .max ? nil : Int(c)
    }

    // MARK: encoding

    public static func hash(_ payload: TurfOp) -> UInt64 {
        switch payload {
        case .move(let cell): return UInt64(cell) << 1
        }
    }

    public static func encode(_ payload: TurfOp, into w: inout ByteWriter) {
        switch payload {
        case .move(let cell): w.varint(UInt64(cell) << 1)  // low bit 0: move (room for more kinds)
        }
    }

    public static func decode(from r: inout ByteReader) throws -> TurfOp {
        let at = r.offset
        let v = try r.varint("op payload")
        guard v & 1 == 0 else { throw ByteReadError(offset: at, "unknown op kind \(v & 1)") }
        guard v >> 1 <= UInt64(UInt32.max) else { throw ByteReadError(offset: at, "cell index out of range") }
        return .move(cell: UInt32(v >> 1))
    }
}
