import Determinism

/// A replay that cannot be read: what is wrong and at which byte.
public struct ReplayFormatError: Error, Equatable, CustomStringConvertible {
    public var offset: Int
    public var message: String
    public var description: String { "\(message) (at byte \(offset))" }
    public init(offset: Int, _ message: String) {
        self.offset = offset
        self.message = message
    }
}

/// The binary replay format, version 2 (docs/replay-format.md). Version 1 files (whose config
/// had no owner keys) are still read.
///
///     file     = magic "TURFRPLY" · u16 version · section* · end-section
///     section  = u8 tag · u32 length · body[length] · u64 checksum(tag, length, body)
///
/// Every section is checksummed, so a flipped bit anywhere is reported with the offset of the
/// section it hit; a truncated file is reported with the offset where bytes ran out.
public enum ReplayFile {
    public static let magic: [UInt8] = Array("TURFRPLY".utf8)
    /// The version written. Version 2 records each player's owner key in the config section.
    public static let version: UInt16 = 2
    /// Versions read: 1 differs only in its config section's player records.
    public static let readableVersions: ClosedRange<UInt16> = 1...2

    enum Tag: UInt8 {
        case config = 1, log = 2, checkpoints = 3, final = 4, equivocations = 5, journalOps = 6, signatures = 7,
            verdicts = 8, end = 0xFF
        var name: String {
            switch self {
            case .config: return "config"
            case .log: return "op log"
            case .checkpoints: return "checkpoints"
            case .final: return "final hash"
            case .equivocations: return "equivocations"
            case .journalOps: return "journal ops"
            case .signatures: return "signatures"
            case .verdicts: return "verdicts"
            case .end: return "end"
            }
        }
    }

    static let maxSection = 1 << 30

    // MARK: writing

    public static func encode<Game: ReplicatedGame>(_ replay: Replay<Game>) -> [UInt8] {
        var out = ByteWriter(capacity: 64 + replay.opCount * 4)
        out.bytes(magic)
        out.u16(version)

        var w = ByteWriter()
        replay.config.encode(into: &w)
        section(.config, w.bytes, into: &out)

        for (player, log) in replay.logs.enumerated() {
            var w = ByteWriter(capacity: 16 + log.count * 4)
            OpCodec<Game>.encodeLog(player: PlayerID(player), log, into: &w)
            section(.log, w.bytes, into: &out)
        }

        if !replay.equivocations.isEmpty {
            var w = ByteWriter()
            encodeOps(replay.equivocations, as: Game.self, into: &w)
            section(.equivocations, w.bytes, into: &out)
        }

        if !replay.signatures.isEmpty {
            var w = ByteWriter()
            w.varint(UInt64(replay.signatures.count))
            for s in replay.signatures {
                w.u8(s.player)
                w.varint(UInt64(s.count))
                w.varint(UInt64(s.asOfTick))
                w.bytes(s.signature)
            }
            section(.signatures, w.bytes, into: &out)
        }

        if !replay.verdicts.isEmpty {
            var w = ByteWriter()
            w.varint(UInt64(replay.verdicts.count))
            for v in replay.verdicts {
                w.u8(v.player)
                w.varint(UInt64(v.seq))
                w.varint(UInt64(v.tick))
                w.string(v.rule)
                w.varint(UInt64(v.proof.count))
                w.bytes(v.proof)
            }
            section(.verdicts, w.bytes, into: &out)
        }

        w = ByteWriter(capacity: 16 + replay.checkpoints.count * 10)
        w.varint(UInt64(replay.checkpoints.count))
        var prev: Tick = 0
        for cp in replay.checkpoints {
            w.varint(UInt64(cp.tick &- prev))
            w.u64(cp.hash)
            prev = cp.tick
        }
        section(.checkpoints, w.bytes, into: &out)

        w = ByteWriter()
        w.u64(replay.finalHash)
        w.varint(UInt64(replay.opCount))
        section(.final, w.bytes, into: &out)
        section(.end, [], into: &out)
        return out.bytes
    }

    /// A list of ops, each stored whole (`OpCodec` batch): for ops that are not one player's log in
    /// seq order (equivocations, journal chunks).
    static func encodeOps<Game: ReplicatedGame>(_ ops: [Op<Game.Payload>], as: Game.Type, into w: inout ByteWriter) {
        OpCodec<Game>.encodeBatch(ops, into: &w)
    }

    static func decodeOps<Game: ReplicatedGame>(
        from b: inout ByteReader,
        as: Game.Type,
        config: MatchConfig,
        limit: Int
    ) throws -> [Op<Game.Payload>] {
        try OpCodec<Game>.decodeBatch(from: &b, config: config, maxOps: limit)
    }

    /// The same bytes with every section's checksum recomputed, as far as the framing can be
    /// followed (replays and journals alike). For fuzzing: a random change to a section body would
    /// otherwise be caught by its checksum and never reach the parser behind it.
    public static func resealed(_ bytes: [UInt8]) -> [UInt8] {
        var out = bytes
        var at = magic.count + 2
        while at + 5 <= out.count {
            let length = Int(out[at + 1]) | Int(out[at + 2]) << 8 | Int(out[at + 3]) << 16 | Int(out[at + 4]) << 24
            let bodyAt = at + 5
            guard length <= out.count - bodyAt - 8 else { break }
            let sum = checksum(tag: out[at], body: out[bodyAt..<(bodyAt + length)])
            for i in 0..<8 { out[bodyAt + length + i] = UInt8(truncatingIfNeeded: sum >> (8 * UInt64(i))) }
            at = bodyAt + length + 8
        }
        return out
    }

    static func section(_ tag: Tag, _ body: [UInt8], into out: inout ByteWriter) {
        out.u8(tag.rawValue)
        out.u32(UInt32(body.count))
        out.bytes(body)
        out.u64(checksum(tag: tag.rawValue, body: body[...]))
    }

    static func checksum(tag: UInt8, body: ArraySlice<UInt8>) -> UInt64 {
        StableHash.combine(StableHash.bytes(body, seed: UInt64(tag) << 56), UInt64(body.count))
    }

    // MARK: reading

    /// Parses a replay. Never traps on bad input: every problem is a `ReplayFormatError` naming the
    /// byte offset.
    public static func decode<Game: ReplicatedGame>(_ bytes: [UInt8], as: Game.Type = Game.self) throws -> Replay<Game>
    {
        do { return try decodeUnchecked(bytes) } catch let e as ByteReadError {
            throw ReplayFormatError(offset: e.offset, e.message)
        }
    }

    private static func decodeUnchecked<Game: ReplicatedGame>(_ bytes: [UInt8]) throws -> Replay<Game> {
        var r = ByteReader(bytes)
        guard bytes.count >= magic.count else {
            throw ReplayFormatError(
                offset: bytes.count,
                "not a turf replay: file is \(bytes.count) bytes, shorter than the header"
            )
        }
        guard Array(try r.take(magic.count, "magic")) == magic else {
            throw ReplayFormatError(offset: 0, "not a turf replay: bad magic (expected \"TURFRPLY\")")
        }
        let versionAt = r.offset
        let v = try r.u16("format version")
        guard readableVersions.contains(v) else {
            throw ReplayFormatError(
                offset: versionAt,
                "unsupported replay format version \(v) (this turf reads versions \(readableVersions.lowerBound) to \(readableVersions.upperBound))"
            )
        }

        var config: MatchConfig?
        var logs: [[Op<Game.Payload>]?] = []
        var equivocations: [Op<Game.Payload>] = []
        var checkpoints: [Replay<Game>.Checkpoint]?
        var final: (hash: UInt64, ops: Int)?
        var signatures: [Replay<Game>.Signature] = []
        var verdicts: [Replay<Game>.Verdict]?

        while true {
            let sectionAt = r.offset
            var (tag, b) = try readSection(&r)
            let bodyAt = b.offset
            let length = b.remaining
            if tag != .config && tag != .end && config == nil {
                throw ReplayFormatError(offset: sectionAt, "\(tag.name) section before the config section")
            }
            switch tag {
            case .config:
                guard config == nil else { throw ReplayFormatError(offset: sectionAt, "second config section") }
                let c = try MatchConfig.decode(from: &b, version: v)
                guard c.gameID == Game.gameID else {
                    throw ReplayFormatError(offset: bodyAt, "replay is for game '\(c.gameID)', not '\(Game.gameID)'")
                }
                config = c
                logs = Array(repeating: nil, count: c.players.count)
            case .log:
                let playerAt = b.offset
                let (p, log) = try OpCodec<Game>.decodeLog(from: &b, config: config!, maxOps: length)
                guard logs[Int(p)] == nil else {
                    throw ReplayFormatError(offset: playerAt, "second op log for player \(p)")
                }
                try expectEnd(b, tag)
                logs[Int(p)] = log
            case .equivocations:
                equivocations += try decodeOps(from: &b, as: Game.self, config: config!, limit: length)
                try expectEnd(b, tag)
            case .signatures:
                guard signatures.isEmpty else {
                    throw ReplayFormatError(offset: sectionAt, "second signatures section")
                }
                let n = try b.count("signature count", limit: config!.players.count)
                var seen = Set<PlayerID>()
                for _ in 0..<n {
                    let at = b.offset
                    let p = try b.u8("signature player")
                    guard Int(p) < config!.players.count, seen.insert(p).inserted else {
                        throw ReplayFormatError(offset: at, "signature for player \(p): unknown or repeated")
                    }
                    let count = try b.count("signed op count", limit: 1 << 28)
                    let tick = try b.count("signed as-of tick", limit: Int(config!.lengthTicks))
                    let sig = Array(try b.take(Replay<Game>.Signature.signatureLength, "signature"))
                    signatures.append(.init(player: p, count: UInt32(count), asOfTick: Tick(tick), signature: sig))
                }
                try expectEnd(b, tag)
            case .verdicts:
                guard verdicts == nil else { throw ReplayFormatError(offset: sectionAt, "second verdicts section") }
                let n = try b.count("verdict count", limit: config!.players.count)
                var vs: [Replay<Game>.Verdict] = []
                for _ in 0..<n {
                    let at = b.offset
                    let p = try b.u8("verdict player")
                    guard Int(p) < config!.players.count, !vs.contains(where: { $0.player == p }) else {
                        throw ReplayFormatError(offset: at, "verdict for player \(p): unknown or repeated")
                    }
                    let seq = try b.count("verdict seq", limit: 1 << 28)
                    let tick = try b.count("verdict tick", limit: Int(config!.lengthTicks))
                    let rule = try b.string("verdict rule", limit: 32)
                    let size = try b.count("proof size", limit: Replay<Game>.Verdict.maxProofBytes)
                    let proof = Array(try b.take(size, "proof"))
                    vs.append(.init(player: p, seq: UInt32(seq), tick: Tick(tick), rule: rule, proof: proof))
                }
                try expectEnd(b, tag)
                verdicts = vs
            case .checkpoints:
                let n = try b.count("checkpoint count", limit: length / 9)
                var cps: [Replay<Game>.Checkpoint] = []
                cps.reserveCapacity(n)
                var tick: UInt64 = 0
                for _ in 0..<n {
                    let (t, overflow) = tick.addingReportingOverflow(try b.varint("checkpoint tick"))
                    tick = t
                    guard !overflow, tick <= UInt64(config!.lengthTicks) else {
                        throw ReplayFormatError(offset: b.offset, "checkpoint tick \(tick) after the match end")
                    }
                    cps.append(.init(tick: Tick(tick), hash: try b.u64("checkpoint hash")))
                }
                try expectEnd(b, tag)
                checkpoints = cps
            case .final:
                final = (try b.u64("final hash"), try b.count("op count", limit: Int.max))
                try expectEnd(b, tag)
            case .journalOps:
                throw ReplayFormatError(offset: sectionAt, "a journal section in a replay file")
            case .end:
                guard let config, let checkpoints, let final else {
                    throw ReplayFormatError(
                        offset: sectionAt,
                        "replay ends before its \(config == nil ? "config" : checkpoints == nil ? "checkpoints" : "final hash") section"
                    )
                }
                guard r.isAtEnd else {
                    throw ReplayFormatError(offset: r.offset, "\(r.remaining) unexpected bytes after the end section")
                }
                var replay = Replay<Game>(
                    config: config,
                    logs: logs.map { $0 ?? [] },
                    equivocations: equivocations,
                    checkpoints: checkpoints,
                    finalHash: final.hash
                )
                replay.signatures = signatures
                replay.verdicts = verdicts ?? []
                guard replay.opCount == final.ops else {
                    throw ReplayFormatError(
                        offset: sectionAt,
                        "the final section promises \(final.ops) ops, the logs hold \(replay.opCount)"
                    )
                }
                return replay
            }
        }
    }

    /// Reads one framed section and checks its checksum; returns its tag and a reader over its body.
    static func readSection(_ r: inout ByteReader) throws -> (Tag, ByteReader) {
        let at = r.offset
        let tagByte = try r.u8("section tag")
        guard let tag = Tag(rawValue: tagByte) else {
            throw ReplayFormatError(offset: at, "unknown section tag 0x\(String(tagByte, radix: 16))")
        }
        let length = Int(try r.u32("\(tag.name) section length"))
        guard length <= maxSection else {
            throw ReplayFormatError(offset: at + 1, "\(tag.name) section length \(length) is implausible")
        }
        let bodyAt = r.offset
        let body = try r.take(length, "\(tag.name) section (\(length) bytes)")
        let sum = try r.u64("\(tag.name) section checksum")
        guard sum == checksum(tag: tagByte, body: body) else {
            throw ReplayFormatError(
                offset: at,
                "corrupt \(tag.name) section: checksum mismatch over bytes \(at)..<\(bodyAt + length + 8)"
            )
        }
        return (tag, ByteReader(r.bytes, offset: bodyAt, end: bodyAt + length))
    }

    static func expectEnd(_ b: ByteReader, _ tag: Tag) throws {
        guard b.isAtEnd else {
            throw ReplayFormatError(
                offset: b.offset,
                "\(b.remaining) stray bytes at the end of the \(tag.name) section"
            )
        }
    }
}

/// The outcome of re-deriving a replay and checking it against its recorded hashes.
public struct ReplayVerification: Equatable, Sendable {
    public var ticks: Tick
    public var ops: Int
    public var checkpointsChecked: Int
    public var finalHash: UInt64
    /// The first checkpoint tick whose hash differs, if any.
    public var firstBadTick: Tick?
    public var finalMatches: Bool
    public var ok: Bool { firstBadTick == nil && finalMatches }
}

extension ReplayPlayer {
    /// Re-derives the match in tick order (or shuffled with duplicates, given a seed) and compares
    /// every checkpoint and the final hash with the recorded ones.
    public func verify(shuffleSeed: UInt64? = nil, progress: (Int) -> Void = { _ in }) throws -> (
        ReplayVerification, Replica<Game>
    ) {
        let recorded = replay.checkpoints
        var idx = 0
        var firstBad: Tick?
        var checked = 0
        let expected = Array(Replay<Game>.checkpointTicks(replay.config))
        let compare = { (tick: Tick, hash: UInt64) in
            checked += 1
            if checked & 63 == 0 { progress(checked) }
            if firstBad == nil {
                if idx >= recorded.count || recorded[idx].tick != tick || recorded[idx].hash != hash { firstBad = tick }
            }
            idx += 1
        }
        let final: Replica<Game>
        var finalMatches: Bool
        if let seed = shuffleSeed {
            let (windowed, global) = try runShuffled(seed: seed, checkpoint: compare)
            final = windowed
            finalMatches = windowed.hash == replay.finalHash && global.hash == replay.finalHash
            if global.canonicalState != windowed.canonicalState { finalMatches = false }
        } else {
            final = try run(checkpoint: compare)
            finalMatches = final.hash == replay.finalHash
        }
        if firstBad == nil && recorded.count != expected.count {
            firstBad = expected.count > recorded.count ? expected[recorded.count] : replay.config.lengthTicks
        }
        return (
            ReplayVerification(
                ticks: replay.config.lengthTicks,
                ops: ordered.count,
                checkpointsChecked: checked,
                finalHash: final.hash,
                firstBadTick: firstBad,
                finalMatches: finalMatches
            ), final
        )
    }
}

extension Replica {
    /// The game state's canonical bytes.
    public var canonicalState: [UInt8] { state.canonicalBytes() }
}
