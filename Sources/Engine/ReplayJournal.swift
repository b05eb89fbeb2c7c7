import Determinism

/// The journal of a match in progress: written as the match runs, so that a crash or a kill -9
/// loses at most the last few ticks instead of the whole match (a power cut: what the shell had
/// not yet flushed to disk; turf's shell flushes every 10 s).
///
/// The file is the replay container (docs/replay-format.md) with its own magic, `TURFJRNL`: the
/// header and the config section, then one `journalOps` section per flush, each holding the ops
/// merged since the previous flush, each checksummed. There is no end section: a writer only ever
/// appends, so after a crash the file is a run of whole sections, perhaps followed by one torn
/// one. `recover` keeps every whole section and discards the torn tail, and rebuilds the match by
/// merging the ops into a fresh replica, exactly as the live peer did.
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
        /// Bytes after the last whole section (a write torn by the crash, or damage), not used.
        public var discardedBytes: Int
        /// Why reading stopped before the end of the file, when it did.
        public var stoppedBy: ReplayFormatError?
        /// The latest tick of any recovered op.
        public var lastTick: Tick
    }

    /// Rebuilds the match from a journal. Throws only when the header or the config cannot be
    /// read (then there is no match to rebuild); damage after that ends the recovery there.
    public static func recover<Game: ReplicatedGame>(_ bytes: [UInt8], as: Game.Type = Game.self) throws -> Recovery<Game> {
        guard bytes.count >= magic.count + 2 else {
            throw ReplayFormatError(offset: bytes.count, "not a turf journal: file is \(bytes.count) bytes, shorter than the header")
        }
        guard Array(bytes[0..<magic.count]) == magic else {
            throw ReplayFormatError(offset: 0, "not a turf journal: bad magic (expected \"TURFJRNL\")")
        }
        var r = ByteReader(bytes, offset: magic.count)
        let v = try readable { try r.u16("journal version") }
        guard readableVersions.contains(v) else {
            throw ReplayFormatError(offset: magic.count, "unsupported journal version \(v) (this turf reads versions \(readableVersions.lowerBound) to \(readableVersions.upperBound))")
        }
        let (configTag, configBody) = try readable { try ReplayFile.readSection(&r) }
        guard configTag == .config else { throw ReplayFormatError(offset: magic.count + 2, "journal does not start with its config") }
        var cb = configBody
        let config = try readable { try MatchConfig.decode(from: &cb, version: v) }
        guard config.gameID == Game.gameID else {
            throw ReplayFormatError(offset: magic.count + 2, "journal is for game '\(config.gameID)', not '\(Game.gameID)'")
        }
        var replica = try Replica<Game>(config: config)
        var chunks = 0, lastTick: Tick = 0
        var stoppedBy: ReplayFormatError?
        var goodEnd = r.offset
        while !r.isAtEnd {
            do {
                let at = r.offset
                let (tag, body) = try readable { try ReplayFile.readSection(&r) }
                guard tag == .journalOps else { throw ReplayFormatError(offset: at, "unexpected \(tag.name) section in a journal") }
                var b = body
                let ops = try readable { try ReplayFile.decodeOps(from: &b, as: Game.self, config: config, limit: b.remaining) }
                try readable { try ReplayFile.expectEnd(b, tag) }
                for op in ops {
                    replica.receive(op)
                    lastTick = max(lastTick, op.tick)
                }
                chunks += 1
                goodEnd = r.offset
            } catch let e as ReplayFormatError {
                stoppedBy = e
                break
            }
        }
        let replay = try Replay<Game>(config: config, logs: replica.allLogs, equivocations: replica.equivocations)
        return Recovery(replay: replay, chunks: chunks, discardedBytes: bytes.count - goodEnd,
                        stoppedBy: stoppedBy, lastTick: lastTick)
    }

    /// Turns the byte reader's errors into format errors with the same offset.
    private static func readable<T>(_ body: () throws -> T) throws -> T {
        do { return try body() } catch let e as ByteReadError { throw ReplayFormatError(offset: e.offset, e.message) }
    }
}
