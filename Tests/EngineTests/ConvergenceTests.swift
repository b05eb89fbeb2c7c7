import Determinism
import Engine
import PropertyBased
import Testing
import TurfRules

/// The world is a join-semilattice: any order of delivery, with duplicates, gives byte-identical
/// states and equal hashes; the state join is commutative, associative and idempotent.
@Suite struct ConvergenceTests {
    @Test func anyDeliveryOrderWithDuplicatesGivesTheSameState() async throws {
        await propertyCheck(count: 25, input: Gen.int(in: 0...Int(Int32.max)), Gen.int(in: 0...Int(Int32.max))) {
            matchSeed,
            orderSeed in
            let replay = try! smallReplay(seed: UInt64(matchSeed), seconds: 6)
            let ops = replay.logs.flatMap { $0 }
            var inOrder = try! Replica<TurfWorld>(config: replay.config)
            for op in ops { inOrder.receive(op) }

            var rng = SplitMix64(seed: UInt64(orderSeed))
            var delivery = ops + (0..<ops.count / 2).map { _ in ops[rng.below(ops.count)] }
            delivery.shuffle(using: &rng)
            var shuffled = try! Replica<TurfWorld>(config: replay.config)
            for op in delivery { shuffled.receive(op) }

            #expect(shuffled.canonicalState == inOrder.canonicalState)
            #expect(shuffled.hash == inOrder.hash)
            #expect(shuffled.hash == replay.finalHash)
            #expect(shuffled.state.scores == inOrder.state.scores)
            #expect(shuffled.stats.duplicates == UInt64(ops.count / 2))
        }
    }

    /// Splits one match's ops into three random subsets and checks the lattice laws on the states
    /// merged from them, and that joining equals merging the union. (The game's state, not a
    /// `Replica`: a replica applies each log in seq order, so it would hold only prefixes.)
    @Test func joinIsCommutativeAssociativeIdempotentAndMatchesTheUnion() async throws {
        await propertyCheck(count: 25, input: Gen.int(in: 0...Int(Int32.max))) { seed in
            let replay = try! smallReplay(seed: UInt64(seed), seconds: 6)
            var rng = SplitMix64(seed: UInt64(seed), stream: 7)
            let empty = try! Replica<TurfWorld>(config: replay.config).state
            var parts = [empty, empty, empty]
            var all = empty
            for op in replay.logs.flatMap({ $0 }) {
                _ = parts[rng.below(3)].merge(op)
                _ = all.merge(op)
            }
            let (a, b, c) = (parts[0], parts[1], parts[2])
            func join(_ x: TurfWorld, _ y: TurfWorld) -> TurfWorld {
                var z = x
                z.join(y)
                return z
            }

            #expect(join(a, b).canonicalBytes() == join(b, a).canonicalBytes())
            #expect(join(join(a, b), c).canonicalBytes() == join(a, join(b, c)).canonicalBytes())
            #expect(join(a, a).canonicalBytes() == a.canonicalBytes())
            #expect(join(a, a).stateHash == a.stateHash)
            let union = join(join(a, b), c)
            #expect(union.canonicalBytes() == all.canonicalBytes())
            #expect(union.stateHash == all.stateHash)
            #expect(union.scores == all.scores)
            #expect(union.owner == all.owner)
        }
    }

    @Test func aLateOpIsMergedWithoutResimulatingAndStillConverges() throws {
        let replay = try smallReplay(seed: 42, seconds: 20)
        var replica = try Replica<TurfWorld>(config: replay.config)
        let player0 = replay.logs[0]
        // delivered after the rest of the match: up to 19 s late
        let held = player0.filter { $0.tick >= 30 && $0.tick < 60 }
        for op in try ReplayPlayer(replay).ordered where !held.contains(op) { replica.receive(op) }
        #expect(replica.hash != replay.finalHash)
        for op in held { #expect(replica.receive(op) == .merged) }
        #expect(replica.hash == replay.finalHash)
    }

    @Test func invalidAndEquivocatingOpsAreCountedAndConvergenceHolds() throws {
        let replay = try smallReplay(seed: 9, seconds: 4)
        let map = try TurfWorld.settings(for: replay.config).map
        let wall = UInt32(map.cells.firstIndex(of: .wall)!)
        let ops = replay.logs.flatMap { $0 }
        let forged = Op(player: 1, seq: 3, tick: 50, payload: TurfOp.move(cell: UInt32(map.floorCells[10])))
        let hostile: [Op<TurfOp>] = [
            Op(player: 0, seq: 999, tick: 10, payload: .move(cell: wall)),  // into a wall
            Op(player: 7, seq: 0, tick: 1, payload: .move(cell: 30)),  // no such player
            Op(player: 0, seq: 998, tick: 10, payload: .move(cell: 1_000_000)),  // off the map
            Op(player: 0, seq: 997, tick: 1_000_000, payload: .move(cell: 30)),  // after the end
            forged,  // reuses 1/3
        ]
        var a = try Replica<TurfWorld>(config: replay.config)
        var b = try Replica<TurfWorld>(config: replay.config)
        for op in ops + hostile { a.receive(op) }
        for op in (hostile + ops).reversed() { b.receive(op) }
        #expect(a.stats.rejected == 4)
        #expect(a.stats.equivocations == 1)
        #expect(b.stats.rejected == 4)
        #expect(b.stats.equivocations == 1)
        #expect(a.canonicalState == b.canonicalState)
        #expect(a.hash == b.hash)
    }
}
