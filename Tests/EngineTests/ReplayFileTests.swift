import Determinism
import Engine
import Foundation
import Testing
@_spi(Fuzzing) import TurfRules

@Suite struct ReplayFileTests {
    @Test func roundTripsAndVerifies() throws {
        let replay = try smallReplay(seed: 1234, players: 8, seconds: 15, map: "courtyard")
        let bytes = ReplayFile.encode(replay)
        let back = try ReplayFile.decode(bytes, as: TurfWorld.self)
        #expect(back.config == replay.config)
        #expect(back.logs == replay.logs)
        #expect(back.checkpoints == replay.checkpoints)
        #expect(back.finalHash == replay.finalHash)
        #expect(back.checkpoints.count == 15)
        let (v, final) = try ReplayPlayer(back).verify()
        #expect(v.ok)
        #expect(v.checkpointsChecked == 15)
        #expect(final.state.scores.reduce(0, +) > 100)
        let (s, _) = try ReplayPlayer(back).verify(shuffleSeed: 77)
        #expect(s.ok)
        #expect(s.finalHash == v.finalHash)
    }

    @Test func generationIsDeterministic() throws {
        let a = ReplayFile.encode(try smallReplay(seed: 5, seconds: 8))
        let b = ReplayFile.encode(try smallReplay(seed: 5, seconds: 8))
        let c = ReplayFile.encode(try smallReplay(seed: 6, seconds: 8))
        #expect(a == b)
        #expect(a != c)
    }

    @Test func aTamperedOpIsCaughtAtTheFirstBadTick() throws {
        var replay = try smallReplay(seed: 8, seconds: 10)
        // Re-point one op of player 2 at tick ~150 to another floor cell; keep the recorded hashes.
        let i = replay.logs[2].firstIndex { $0.tick >= 150 }!
        let map = try TurfWorld.settings(for: replay.config).map
        let old = replay.logs[2][i]
        let other = map.floorCells.first {
            UInt32($0)
                != {
                    if case .move(let c) = old.payload { return c }
                    return 0
                }()
        }!
        replay.logs[2][i].payload = .move(cell: UInt32(other))
        let bytes = ReplayFile.encode(replay)  // consistent checksums: the file is well-formed
        let (v, _) = try ReplayPlayer(try ReplayFile.decode(bytes, as: TurfWorld.self)).verify()
        #expect(!v.ok)
        let expected =
            (old.tick / replay.config.checkpointInterval + (old.tick % replay.config.checkpointInterval == 0 ? 0 : 1))
            * replay.config.checkpointInterval
        #expect(v.firstBadTick == max(expected, replay.config.checkpointInterval))
    }

    @Test func everyTruncationIsAnErrorWithAnOffset() throws {
        let bytes = ReplayFile.encode(try smallReplay(seed: 3, players: 2, seconds: 3))
        for n in 0..<bytes.count {
            do {
                _ = try ReplayFile.decode(Array(bytes[0..<n]), as: TurfWorld.self)
                Issue.record("a replay truncated to \(n) of \(bytes.count) bytes was accepted")
            } catch let e as ReplayFormatError {
                #expect(e.offset <= n)
                #expect(e.description.contains("at byte"))
            }
        }
    }

    @Test func flippedBytesAndRandomGarbageNeverCrash() throws {
        let bytes = ReplayFile.encode(try smallReplay(seed: 4, players: 3, seconds: 4))
        var rng = SplitMix64(seed: 99)
        var rejected = 0
        for _ in 0..<3000 {
            var b = bytes
            let flips = 1 + rng.below(4)
            for _ in 0..<flips { b[rng.below(b.count)] ^= UInt8(1 + rng.below(255)) }
            do {
                let r = try ReplayFile.decode(b, as: TurfWorld.self)
                _ = try ReplayPlayer(r).verify()  // whatever decoded must still replay safely
            } catch is ReplayFormatError { rejected += 1 } catch is ConfigError { rejected += 1 } catch is MapError {
                rejected += 1
            }
        }
        #expect(rejected == 3000)  // every section is checksummed: every corruption is caught
        for len in [0, 1, 7, 8, 9, 10, 64, 4096] {
            let garbage = (0..<len).map { _ in UInt8(truncatingIfNeeded: rng.next()) }
            #expect(throws: ReplayFormatError.self) { try ReplayFile.decode(garbage, as: TurfWorld.self) }
        }
    }
}

@Suite struct ReplayFuzzCorpusTests {
    /// The fuzz target's own check, over its seed corpus and seeded mutations of it (the libFuzzer
    /// run itself is `make fuzz`).
    @Test func corpusAndMutationsKeepEveryPromise() throws {
        let dir = repoRoot.appendingPathComponent("Fuzz/Corpus/replay")
        let seeds = try FileManager.default.contentsOfDirectory(atPath: dir.path).sorted()
            .map { [UInt8](try Data(contentsOf: dir.appendingPathComponent($0))) }
        #expect(seeds.count >= 3)
        #expect(seeds.contains { $0.starts(with: ReplayJournal.magic) }, "the corpus should hold a journal")
        var rng = SplitMix64(seed: 2026)
        var checked = 0
        for seed in seeds where !seed.isEmpty {
            #expect(ReplayFuzz.check(seed) == nil)
            for _ in 0..<1500 {
                var m = seed
                switch rng.below(4) {
                case 0: m[rng.below(m.count)] ^= UInt8(1 + rng.below(255))
                case 1: m = Array(m.prefix(rng.below(m.count + 1)))
                case 2: m.insert(UInt8(truncatingIfNeeded: rng.next()), at: rng.below(m.count + 1))
                default:
                    let i = rng.below(m.count)
                    let j = rng.below(m.count)
                    m.swapAt(i, j)
                }
                #expect(ReplayFuzz.check(m) == nil)
                checked += 1
            }
        }
        #expect(checked >= 4500)
    }
}
