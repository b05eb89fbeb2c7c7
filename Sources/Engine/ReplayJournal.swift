import Determinism

/// The journal of a match in progress: written as the match runs, so that a crash or a kill -9
/// loses at most the last few ticks instead of the whole match (a power cut: what the shell had
/// not yet flushed to disk; turf's shell flushes every 10 s).
///
/// The file is the replay container (docs/replay-format.md) with its own magic, `TURFJRNL`: the
/// header and the config section, then one `journalOps` section per flush, each holding the ops
/// merged since the previous flush, each checksummed. There is no end section: a writer only ever
/// appends, so after a crash the file is a run of whole sections, perhaps followed by one torn
/// one. `recover` keeps every section that verifies (skipping damaged ones, however many), discards
/// the torn tail, and rebuilds the match by merging the ops into a fresh replica, exactly as the
/// live peer did.
public enum ReplayJournal {
    public static let magic: [UInt8] = Array("TURFJRNL".utf8)
    /// The version written; its config section follows `MatchConfig.encodingVersion`. Version 1
    /// journals (config without owner keys) are still recovered.
    public static let version: UInt16 = 2
    public static let readableVersions: ClosedRange<UInt16> = 1...2

    /// The bytes a journal starts with.
    public static func header(_ config: MatchConfig) -> [UInt8] {
        var out = ByteWriter()
        out.bytes(magic)
        out.u16(version)
        var w = ByteWriter()
        config.encode(into: &w)
        ReplayFile.section(.config, w.bytes, into: &out)
        return out.bytes
    }

    /// One flush: the ops merged since the last one (any order; duplicates are harmless).
    public static func chunk<Game: ReplicatedGame>(_ ops: [Op<Game.Payload>], as: Game.Type = Game.self) -> [UInt8] {
        var w = ByteWriter(capacity: 8 + ops.count * 6)
        ReplayFile.encodeOps(ops, as: Game.self, into: &w)
        var out = ByteWriter(capacity: w.bytes.count + 13)
        ReplayFile.section(.journalOps, w.bytes, into: &out)
        return out.bytes
    }

    /// What `recover` found.
    public struct Recovery<Game: ReplicatedGame> {
        /// The match as far as the journal goes, with its checkpoints re-derived.
        public var replay: Replay<Game>
        /// Whole op sections read.
        public var chunks: Int
        /// Bytes not used: damaged sections skipped, and a torn tail.
        public var discardedBytes: Int
        /// Byte ranges skipped because they were damaged (a section that fails its checksum or
        /// does not parse, or bytes that are no section at all), in file order. A torn tail (the
        /// last section cut short, nothing whole after it) is the normal mark of a crash, not
        /// damage: it is counted in `discardedBytes` only.
        public var damaged: [Range<Int>]
        /// The first problem met, when there was one (damage, or the torn tail).
        public var stoppedBy: ReplayFormatError?
        /// The latest tick of any recovered op.
        public var lastTick: Tick
        /// Whether any part of the journal was damaged (so the file is evidence worth keeping).
        public var isDamaged: Bool { !damaged.isEmpty }
    }

    /// Bounds the bytes checksummed while looking for the next whole section after damage, as a
    /// multiple of the file size, so a crafted journal cannot make recovery quadratic.
    static let resyncWorkFactor = 4

    /// Rebuilds the match from a journal. Throws only when the header or the config cannot be
    /// read (then there is no match to rebuild). After that, every section that verifies is used,
    /// wherever it is: a damaged section is skipped by its length when its frame is intact, and
    /// otherwise recovery scans forward for the next section whose checksum holds.
    public static func recover<Game: ReplicatedGame>(_ bytes: [UInt8], as: Game.Type = Game.self) throws -> Recovery<
        Game
    > {
        guard bytes.count >= magic.count + 2 else {
            throw ReplayFormatError(
                offset: bytes.count,
                "not a turf journal: file is \(bytes.count) bytes, shorter than the header"
            )
        }
        guard Array(bytes[0..<magic.count]) == magic else {
            throw ReplayFormatError(offset: 0, "not a turf journal: bad magic (expected \"TURFJRNL\")")
        }
        var r = ByteReader(bytes, offset: magic.count)
        let v = try readable { try r.u16("journal version") }
        guard readableVersions.contains(v) else {
            throw ReplayFormatError(
                offset: magic.count,
                "unsupported journal version \(v) (this turf reads versions \(readableVersions.lowerBound) to \(readableVersions.upperBound))"
            )
        }
        let (configTag, configBody) = try readable { try ReplayFile.readSection(&r) }
        guard configTag == .config else {
            throw ReplayFormatError(offset: magic.count + 2, "journal does not start with its config")
        }
        var cb = configBody
        let config = try readable { try MatchConfig.decode(from: &cb, version: v) }
        guard config.gameID == Game.gameID else {
            throw ReplayFormatError(
                offset: magic.count + 2,
                "journal is for game '\(config.gameID)', not '\(Game.gameID)'"
            )
        }
        // The replica that merges the ops is gone before the replay re-derives its checkpoints
        // (with a replica of its own): one copy of the match in memory at a time.
        let scan = try merge(bytes, from: r.offset, config: config, as: Game.self)
        let replay = try Replay<Game>(config: config, logs: scan.logs, equivocations: scan.equivocations)
        return Recovery(
            replay: replay,
            chunks: scan.chunks,
            discardedBytes: scan.discarded,
            damaged: scan.damaged,
            stoppedBy: scan.stoppedBy,
            lastTick: scan.lastTick
        )
    }

    private struct Scan<Payload: Equatable & Sendable> {
        var logs: [[Op<Payload>]] = []
        var equivocations: [Op<Payload>] = []
        var chunks = 0, lastTick: Tick = 0, discarded = 0
        var damaged: [Range<Int>] = []
        var stoppedBy: ReplayFormatError?
    }

    /// Merges every section from `start` on that verifies into a fresh replica, skipping damage.
    private static func merge<Game: ReplicatedGame>(
        _ bytes: [UInt8],
        from start: Int,
        config: MatchConfig,
        as: Game.Type
    ) throws -> Scan<Game.Payload> {
        var replica = try Replica<Game>(config: config)
        var scan = Scan<Game.Payload>()
        var resyncBudget = bytes.count * resyncWorkFactor
        var at = start
        while at < bytes.count {
            switch chunk(bytes, at: at, config: config, as: Game.self) {
            case .ops(let ops, let end):
                for op in ops {
                    replica.receive(op)
                    scan.lastTick = max(scan.lastTick, op.tick)
                }
                scan.chunks += 1
                at = end
            case .bad(let error, let end):
                // The frame holds (tag, length and checksum agree), the contents do not: skip it.
                if scan.stoppedBy == nil { scan.stoppedBy = error }
                scan.damaged.append(at..<end)
                scan.discarded += end - at
                at = end
            case .unframed(let error):
                // No whole section starts here: find the next one that does.
                if scan.stoppedBy == nil { scan.stoppedBy = error }
                let next = nextSection(bytes, after: at, budget: &resyncBudget)
                if next < bytes.count || !isTruncation(error) { scan.damaged.append(at..<next) }
                scan.discarded += next - at
                at = next
            }
        }
        scan.logs = replica.allLogs
        scan.equivocations = replica.equivocations
        return scan
    }

    private enum Chunk<Payload: Equatable & Sendable> {
        case ops([Op<Payload>], end: Int)
        case bad(ReplayFormatError, end: Int)
        case unframed(ReplayFormatError)
    }

    /// Reads the journal-ops section at `at`.
    private static func chunk<Game: ReplicatedGame>(
        _ bytes: [UInt8],
        at: Int,
        config: MatchConfig,
        as: Game.Type
    ) -> Chunk<Game.Payload> {
        var r = ByteReader(bytes, offset: at)
        let tag: ReplayFile.Tag
        let body: ByteReader
        do { (tag, body) = try readable { try ReplayFile.readSection(&r) } } catch let e as ReplayFormatError {
            return .unframed(e)
        } catch { return .unframed(ReplayFormatError(offset: at, "\(error)")) }
        do {
            guard tag == .journalOps else {
                throw ReplayFormatError(offset: at, "unexpected \(tag.name) section in a journal")
            }
            var b = body
            let ops = try readable {
                try ReplayFile.decodeOps(from: &b, as: Game.self, config: config, limit: b.remaining)
            }
            try readable { try ReplayFile.expectEnd(b, tag) }
            return .ops(ops, end: r.offset)
        } catch let e as ReplayFormatError {
            return .bad(e, end: r.offset)
        } catch {
            return .bad(ReplayFormatError(offset: at, "\(error)"), end: r.offset)
        }
    }

    /// The offset of the next whole journal-ops section after `at` (its checksum holds), or the
    /// end of the file. Only offsets holding the journal-ops tag and a length that fits are
    /// checksummed, and no more than `budget` bytes in all.
    private static func nextSection(_ bytes: [UInt8], after at: Int, budget: inout Int) -> Int {
        var i = at + 1
        let tag = ReplayFile.Tag.journalOps.rawValue
        while i + 13 <= bytes.count {
            if bytes[i] == tag {
                let length =
                    Int(bytes[i + 1]) | Int(bytes[i + 2]) << 8 | Int(bytes[i + 3]) << 16 | Int(bytes[i + 4]) << 24
                if length <= bytes.count - i - 13 {
                    guard budget >= length else { return bytes.count }
                    budget -= length
                    var r = ByteReader(bytes, offset: i)
                    if (try? ReplayFile.readSection(&r)) != nil { return i }
                }
            }
            i += 1
        }
        return bytes.count
    }

    /// Whether a framing error is the file ending inside a section (a torn last write).
    private static func isTruncation(_ e: ReplayFormatError) -> Bool {
        e.message.hasPrefix("truncated:")
    }

    /// Turns the byte reader's errors into format errors with the same offset.
    private static func readable<T>(_ body: () throws -> T) throws -> T {
        do { return try body() } catch let e as ByteReadError { throw ReplayFormatError(offset: e.offset, e.message) }
    }
}
