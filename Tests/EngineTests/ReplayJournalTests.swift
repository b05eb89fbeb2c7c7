import Determinism
import Engine
import Foundation
import Testing
import TurfRules

/// The journal a match in progress writes, and its recovery after a crash.
@Suite struct ReplayJournalTests {
    /// Runs a match that owns only player 0 and receives everyone else's ops late, twice and out of
    /// order, journaling every `every` ticks as the demo does. Returns the journal and the match.
    func journaledMatch(every: Tick = 10, stopAt: Tick? = nil) throws -> ([UInt8], [Int], TurfLocalMatch, TurfReplay) {
        let source = try smallReplay(seed: 42, players: 4, seconds: 10)
        var match = try TurfLocalMatch(config: source.config,
                                       controllers: [0: TurfController(bot: Bot(level: .hard, seed: source.config.seed, player: 0))])
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

    /// Damage in the middle: the chunks before it are kept, the error names the offset.
    @Test func aCorruptChunkEndsRecoveryThere() throws {
        let (journal, boundaries, _, _) = try journaledMatch(every: 30)
        #expect(boundaries.count > 5)
        var bad = journal
        bad[boundaries[3] + 20] ^= 0x40
        let rec = try ReplayJournal.recover(bad, as: TurfWorld.self)
        #expect(rec.chunks == 3)
        #expect(rec.stoppedBy?.offset == boundaries[3])
        #expect(rec.stoppedBy?.description.contains("checksum") == true)
        #expect(rec.discardedBytes == journal.count - boundaries[3])
        #expect(try ReplayPlayer(rec.replay).verify().0.ok)
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
