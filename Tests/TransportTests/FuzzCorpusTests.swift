import Foundation
import FuzzHarness
import Testing

/// The libFuzzer targets' parsers, run in the normal suite: every file of the regression corpus
/// in Fuzz/Corpus/, the built-in seeds, and seeded random mutations of them. Fast and
/// deterministic; `make fuzz` does the long, coverage-guided runs.
@Suite(.serialized) struct FuzzCorpusTests {
    static let corpusRoot = URL(fileURLWithPath: #filePath).deletingLastPathComponent()
        .deletingLastPathComponent().deletingLastPathComponent().appendingPathComponent("Fuzz/Corpus")

    static func corpus(_ target: FuzzHarness.Target) throws -> [[UInt8]] {
        let dir = corpusRoot.appendingPathComponent(target.rawValue)
        let names = try FileManager.default.contentsOfDirectory(atPath: dir.path).sorted()
        return try names.map { Array(try Data(contentsOf: dir.appendingPathComponent($0))) }
    }

    /// Bit flips, byte changes, truncation, duplication and splicing.
    static func mutate(_ input: [UInt8], _ rng: inout SplitMix64Test, with other: [UInt8]) -> [UInt8] {
        var b = input
        for _ in 0..<(1 + Int(rng.next() % 4)) {
            switch rng.next() % 6 {
            case 0 where !b.isEmpty: b[Int(rng.next() % UInt64(b.count))] ^= UInt8(1 << (rng.next() % 8))
            case 1 where !b.isEmpty: b[Int(rng.next() % UInt64(b.count))] = UInt8(truncatingIfNeeded: rng.next())
            case 2 where !b.isEmpty: b.removeLast(Int(rng.next() % UInt64(b.count)))
            case 3:
                b.insert(UInt8(truncatingIfNeeded: rng.next()), at: b.isEmpty ? 0 : Int(rng.next() % UInt64(b.count)))
            case 4 where !other.isEmpty:
                let cut = Int(rng.next() % UInt64(b.count + 1))
                let from = Int(rng.next() % UInt64(other.count))
                b = Array(b[..<cut]) + other[from...]
            default: b += b.prefix(8)
            }
        }
        return b
    }

    @Test(arguments: FuzzHarness.Target.allCases)
    func corpusAndMutationsDoNotCrash(target: FuzzHarness.Target) throws {
        let files = try Self.corpus(target)
        #expect(!files.isEmpty, "Fuzz/Corpus/\(target.rawValue) is empty")
        let inputs = files + FuzzHarness.seeds(target)
        var rng = SplitMix64Test(seed: 0xF022 &+ UInt64(target.rawValue.count))
        var runs = 0
        for input in inputs {
            FuzzHarness.run(target, input)
            runs += 1
        }
        let mutations = target == .noise ? 600 : 1500
        for _ in 0..<mutations {
            let a = inputs[Int(rng.next() % UInt64(inputs.count))]
            let b = inputs[Int(rng.next() % UInt64(inputs.count))]
            FuzzHarness.run(target, Self.mutate(a, &rng, with: b))
            runs += 1
        }
        // Also plain random bytes of every length up to a datagram.
        for n in stride(from: 0, through: 1300, by: 13) {
            FuzzHarness.run(target, (0..<n).map { _ in UInt8(truncatingIfNeeded: rng.next()) })
            runs += 1
        }
        print("FuzzCorpusTests: \(target.rawValue): \(files.count) corpus files, \(runs) inputs")
    }

    /// The built-in seeds are in the committed corpus (regenerate with TURF_WRITE_FUZZ_SEEDS=1).
    @Test(arguments: FuzzHarness.Target.allCases)
    func seedsAreCommitted(target: FuzzHarness.Target) throws {
        let dir = Self.corpusRoot.appendingPathComponent(target.rawValue)
        if ProcessInfo.processInfo.environment["TURF_WRITE_FUZZ_SEEDS"] == "1" {
            try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
            for (i, s) in FuzzHarness.seeds(target).enumerated() {
                try Data(s).write(to: dir.appendingPathComponent("seed-\(i)"))
            }
        }
        let corpus = Set(try Self.corpus(target))
        // Every seed, including sealed packets: the harness uses fixed keys and indices.
        #expect(FuzzHarness.seeds(target).allSatisfy { corpus.contains($0) })
    }

    /// An input gives the same outcome whenever it runs: fresh state with fixed keys and indices
    /// for every input, nothing carried over from the inputs before it.
    @Test func harnessIsReproducible() throws {
        #expect(FuzzHarness.seeds(.transport) == FuzzHarness.seeds(.transport))
        let frames = FuzzHarness.seeds(.frames)
        let packets = FuzzHarness.seeds(.transport)
        let first = frames.map { FuzzHarness.framesOutcome($0) } + packets.map { FuzzHarness.transportOutcome($0) }
        // Run everything again, in reverse order, after other inputs.
        for input in frames + packets {
            FuzzHarness.run(.frames, input)
            FuzzHarness.run(.transport, input)
        }
        let second = (frames.map { FuzzHarness.framesOutcome($0) } + packets.map { FuzzHarness.transportOutcome($0) })
        #expect(first == second)
        // The sealed reliable segment is delivered each time, not only the first (no leftover state).
        let segment = try #require(frames.first { $0.first == 4 && $0[5] == 1 })
        #expect(FuzzHarness.framesOutcome(segment)?.reliableDelivered == 1)
        #expect(FuzzHarness.framesOutcome(segment)?.reliableDelivered == 1)
        // The replayed sealed packet reaches the live session and authenticates.
        let last = try #require(packets.last)
        let sealed = try #require(FuzzHarness.transportOutcome(last))
        #expect(sealed.receiverCounters.packetsReceived >= 1 && sealed.receiverCounters.authFailures == 0, "\(sealed)")
    }
}
