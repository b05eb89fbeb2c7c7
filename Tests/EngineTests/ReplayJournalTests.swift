import Determinism
import Engine
import Foundation
import Testing
@_spi(Fuzzing) import TurfRules

/// The journal a match in progress writes, and its recovery after a crash.
@Suite struct ReplayJournalTests {
    /// Runs a match that owns only player 0 and receives everyone else's ops late, twice and out of
    /// order, journaling every `every` ticks as the demo does. Returns the journal and the match.
    func journaledMatch(every: Tick = 10, stopAt: Tick? = nil) throws -> ([UInt8], [Int], TurfLocalMatch, TurfReplay) {
        let source = try smallReplay(seed: 42, players: 4, seconds: 10)
        var match = try TurfLocalMatch(
            config: source.config,
            controllers: [0: TurfController(bot: Bot(level: .hard, seed: source.config.seed, player: 0))]
        )
        match.recordJournal = true
        let remote = source.logs[1...].flatMap { $0 }
        var rng = SplitMix64(seed: 9)
        var journal = ReplayJournal.header(source.config)
        var boundaries = [journal.count]
        let end = stopAt ?? source.config.lengthTicks + 1
        while !match.isOver && match.tick < end {
            // Ops arrive up to 40 ticks late, some twice.
            for op in remote where op.tick + Tick(rng.next() % 40) == match.tick {
                match.deliver(op)
                if rng.next() % 4 == 0 { match.deliver(op) }
            }
            match.step()
            if match.tick % every == 0 && !match.journal.isEmpty {
                journal += ReplayJournal.chunk(match.journal, as: TurfWorld.self)
                match.journal.removeAll()
                boundaries.append(journal.count)
            }
        }
        if !match.journal.isEmpty {
            journal += ReplayJournal.chunk(match.journal, as: TurfWorld.self)
            match.journal.removeAll()
            boundaries.append(journal.count)
        }
        return (journal, boundaries, match, source)
    }

    @Test func recoveryRebuildsTheWholeMatch() throws {
        let (journal, boundaries, match, _) = try journaledMatch()
        let rec = try ReplayJournal.recover(journal, as: TurfWorld.self)
        let recorded = try match.recording()
        #expect(rec.chunks == boundaries.count - 1)
        #expect(rec.discardedBytes == 0 && rec.stoppedBy == nil)
        #expect(rec.replay.logs == recorded.logs)
        #expect(rec.replay.checkpoints == recorded.checkpoints)
        #expect(rec.replay.finalHash == recorded.finalHash)
        #expect(rec.replay.opCount > 150)
        let (v, _) = try ReplayPlayer(rec.replay).verify()
        #expect(v.ok)
    }

    /// Duplicates that arrive are merged once and journaled once.
    @Test func duplicatesAreNotJournaled() throws {
        let (journal, _, match, _) = try journaledMatch()
        let rec = try ReplayJournal.recover(journal, as: TurfWorld.self)
        #expect(match.replica.stats.duplicates > 0)
        #expect(UInt64(rec.replay.opCount) == match.replica.stats.merged + match.replica.stats.equivocations)
    }

    /// A crash mid-match: the journal holds the match up to the last flush, and the recovered
    /// replay verifies.
    @Test func aMatchCutShortRecoversToItsLastFlush() throws {
        let (journal, _, match, _) = try journaledMatch(stopAt: 137)
        let rec = try ReplayJournal.recover(journal, as: TurfWorld.self)
        #expect(rec.lastTick <= 136 && rec.lastTick >= 130)
        #expect(rec.replay.opCount == (try match.recording()).opCount)
        #expect(try ReplayPlayer(rec.replay).verify().0.ok)
    }

    /// A write torn anywhere: recovery keeps every whole chunk before the cut, never traps, and
    /// only a cut inside the header leaves nothing to recover.
    @Test func everyTruncationRecoversTheWholeChunksBeforeIt() throws {
        let (journal, boundaries, _, _) = try journaledMatch(every: 30)
        var previousOps = -1
        for n in 0...journal.count {
            let cut = Array(journal[0..<n])
            if n < boundaries[0] {
                #expect(throws: ReplayFormatError.self) { try ReplayJournal.recover(cut, as: TurfWorld.self) }
                continue
            }
            let rec = try ReplayJournal.recover(cut, as: TurfWorld.self)
            let whole = boundaries.filter { $0 <= n }.count - 1
            #expect(rec.chunks == whole)
            #expect(rec.discardedBytes == n - boundaries[whole])
            #expect((rec.stoppedBy != nil) == (rec.discardedBytes > 0))
            #expect(rec.replay.opCount >= previousOps)
            previousOps = rec.replay.opCount
        }
    }

    /// Damage in the middle: only the damaged chunk is lost; every chunk after it, each with its
    /// own checksum, is still recovered, and the damaged range is reported.
    @Test func aCorruptChunkIsSkippedAndEveryOtherChunkKept() throws {
        let (journal, boundaries, _, _) = try journaledMatch(every: 30)
        #expect(boundaries.count > 5)
        let whole = try ReplayJournal.recover(journal, as: TurfWorld.self)
        var bad = journal
        bad[boundaries[3] + 20] ^= 0x40
        let rec = try ReplayJournal.recover(bad, as: TurfWorld.self)
        #expect(rec.chunks == boundaries.count - 2)
        #expect(rec.damaged == [boundaries[3]..<boundaries[4]])
        #expect(rec.isDamaged)
        #expect(rec.stoppedBy?.offset == boundaries[3])
        #expect(rec.stoppedBy?.description.contains("checksum") == true)
        #expect(rec.discardedBytes == boundaries[4] - boundaries[3])
        #expect(rec.lastTick == whole.lastTick)
        #expect(rec.replay.opCount < whole.replay.opCount)
        #expect(try ReplayPlayer(rec.replay).verify().0.ok)
    }

    /// A flipped bit in the first ops section, anywhere in it (its tag, its length, its body or
    /// its checksum), loses that section only: recovery finds the next whole one and goes on.
    @Test func aFlipInTheFirstChunkLosesOnlyThatChunk() throws {
        let (journal, boundaries, _, _) = try journaledMatch(every: 30)
        let first = boundaries[0]..<boundaries[1]
        var rng = SplitMix64(seed: 7)
        let positions =
            [
                first.lowerBound, first.lowerBound + 1, first.lowerBound + 3, first.lowerBound + 4,
                first.upperBound - 1,
            ] + (0..<12).map { _ in first.lowerBound + rng.below(first.count) }
        for at in positions {
            for bit in [0, 3, 7] {
                var bad = journal
                bad[at] ^= UInt8(1) << UInt8(bit)
                let rec = try ReplayJournal.recover(bad, as: TurfWorld.self)
                #expect(rec.chunks == boundaries.count - 2, "flip at \(at) bit \(bit): \(rec.chunks) chunks")
                #expect(rec.damaged == [first], "flip at \(at) bit \(bit): \(rec.damaged)")
                #expect(try ReplayPlayer(rec.replay).verify().0.ok)
            }
        }
    }

    /// Garbage between chunks (bytes that are no section) is skipped and reported as damage; a
    /// torn tail alone is not damage.
    @Test func garbageBetweenChunksIsSkippedAndATornTailIsNotDamage() throws {
        let (journal, boundaries, _, _) = try journaledMatch(every: 30)
        let garbage = [UInt8](repeating: 0xA5, count: 37)
        let spliced = Array(journal[..<boundaries[2]]) + garbage + Array(journal[boundaries[2]...])
        let rec = try ReplayJournal.recover(spliced, as: TurfWorld.self)
        #expect(rec.chunks == boundaries.count - 1)
        #expect(rec.damaged == [boundaries[2]..<(boundaries[2] + garbage.count)])
        let torn = try ReplayJournal.recover(Array(journal.dropLast(3)), as: TurfWorld.self)
        #expect(!torn.isDamaged && torn.discardedBytes > 0 && torn.stoppedBy != nil)
    }

    @Test func notAJournalIsAClearError() throws {
        let replay = ReplayFile.encode(try smallReplay(seed: 3, players: 2, seconds: 3))
        #expect(throws: ReplayFormatError.self) { try ReplayJournal.recover(replay, as: TurfWorld.self) }
        #expect(throws: ReplayFormatError.self) { try ReplayJournal.recover([], as: TurfWorld.self) }
        var rng = SplitMix64(seed: 5)
        for _ in 0..<500 {
            var j = ReplayJournal.header(try smallReplay(seed: 3, players: 2, seconds: 3).config)
            j += (0..<Int(rng.next() % 200)).map { _ in UInt8(truncatingIfNeeded: rng.next()) }
            if let rec = try? ReplayJournal.recover(j, as: TurfWorld.self) { #expect(rec.chunks <= 1) }
        }
    }
}

@Suite struct JournalFuzzCorpusTests {
    /// The journal fuzz target's own check over its seed corpus (Fuzz/Corpus/journal) and seeded
    /// mutations of it: flips, cuts, splices and repeated sections (the libFuzzer run is `make fuzz`).
    @Test func corpusAndMutationsKeepEveryPromise() throws {
        let dir = repoRoot.appendingPathComponent("Fuzz/Corpus/journal")
        let seeds = try FileManager.default.contentsOfDirectory(atPath: dir.path).sorted()
            .map { [UInt8](try Data(contentsOf: dir.appendingPathComponent($0))) }
        #expect(seeds.count >= 2)
        var rng = SplitMix64(seed: 0x10A7)
        var damaged = 0
        var checked = 0
        for seed in seeds where !seed.isEmpty {
            #expect(JournalFuzz.check(seed) == nil)
            for _ in 0..<600 {
                var m = seed
                switch rng.below(4) {
                case 0: m[rng.below(m.count)] ^= UInt8(1 + rng.below(255))
                case 1: m = Array(m.prefix(rng.below(m.count + 1)))
                case 2:
                    let i = rng.below(m.count)
                    let n = min(m.count - i, 1 + rng.below(64))
                    m.insert(contentsOf: m[i..<(i + n)], at: rng.below(m.count + 1))
                default: m.insert(UInt8(truncatingIfNeeded: rng.next()), at: rng.below(m.count + 1))
                }
                #expect(JournalFuzz.check(m) == nil)
                if (try? ReplayJournal.recover(m, as: TurfWorld.self))?.isDamaged == true { damaged += 1 }
                checked += 1
            }
        }
        #expect(checked >= 1200 && damaged > 100, "\(checked) checked, \(damaged) damaged")
    }
}
