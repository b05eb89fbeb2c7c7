import Determinism

/// The byte forms of ops, shared by replays, journals, snapshots and the network
/// (docs/replay-format.md, "Ops on the wire"). All integers little-endian; varints unsigned LEB128.
///
///     op     = u8 player · varint seq · varint tick · payload        (each op whole: any order)
///     batch  = varint count · op*
///     log    = u8 player · varint count · (varint seqGap · varint zigzag(tickDelta) · payload)*
///
/// A `log` is one player's ops in seq order, delta-coded (a replay's op-log section, a snapshot).
/// The payload is the game's (`ReplicatedGame.encode`). Decoding checks what the engine can check
/// from the config alone (the player exists, seq < 2²⁸, tick within the match) and throws a
/// `ByteReadError` naming the byte offset; whether an op is valid for the game is left to
/// `Replica.receive`, which rejects and counts it.
public enum OpCodec<Game: ReplicatedGame> {
    public typealias GameOp = Op<Game.Payload>

    /// Seqs at or above this are refused (as `Replica.receive` refuses them).
    public static var seqLimit: UInt32 { 1 << 28 }

    public static func encode(_ op: GameOp, into w: inout ByteWriter) {
        w.u8(op.player)
        w.varint(UInt64(op.seq))
        w.varint(UInt64(op.tick))
        Game.encode(op.payload, into: &w)
    }

    public static func decode(from r: inout ByteReader, config: MatchConfig) throws -> GameOp {
        let opAt = r.offset
        let p = try r.u8("player")
        guard Int(p) < config.players.count else { throw ByteReadError(offset: opAt, "op by unknown player \(p)") }
        let seq = try r.count("seq", limit: Int(seqLimit) - 1)
        let tick = try r.count("tick", limit: Int(config.lengthTicks))
        return Op(player: p, seq: UInt32(seq), tick: Tick(tick), payload: try Game.decode(from: &r))
    }

    /// A batch of ops, each whole, in the order given.
    public static func encodeBatch<C: Collection>(_ ops: C, into w: inout ByteWriter) where C.Element == GameOp {
        w.varint(UInt64(ops.count))
        for op in ops { encode(op, into: &w) }
    }

    public static func encodeBatch<C: Collection>(_ ops: C) -> [UInt8] where C.Element == GameOp {
        var w = ByteWriter(capacity: 4 + ops.count * 6)
        encodeBatch(ops, into: &w)
        return w.bytes
    }

    /// The longest prefix of `ops` whose batch fits in `maxBytes` (for a datagram: what a packet
    /// to a peer can carry). Returns the batch and how many ops it holds (0 if not even one fits:
    /// then the batch is the one byte of an empty count).
    public static func encodeBatch<C: Collection>(_ ops: C, maxBytes: Int) -> (bytes: [UInt8], count: Int)
    where C.Element == GameOp {
        var body = ByteWriter(capacity: min(maxBytes, 4 + ops.count * 6))
        var count = 0
        for op in ops {
            let before = body.bytes.count
            encode(op, into: &body)
            if varintSize(UInt64(count + 1)) + body.bytes.count > maxBytes {
                body.bytes.removeSubrange(before...)
                break
            }
            count += 1
        }
        var w = ByteWriter(capacity: body.bytes.count + 4)
        w.varint(UInt64(count))
        w.bytes(body.bytes)
        return (w.bytes, count)
    }

    /// Decodes a batch of at most `maxOps` ops (and never more than the bytes left could hold).
    public static func decodeBatch(from r: inout ByteReader, config: MatchConfig, maxOps: Int) throws -> [GameOp] {
        let n = try r.count("op count", limit: max(0, min(maxOps, r.remaining)))
        var ops: [GameOp] = []
        ops.reserveCapacity(n)
        for _ in 0..<n { ops.append(try decode(from: &r, config: config)) }
        return ops
    }

    /// Decodes a whole buffer holding one batch; stray bytes after it are an error.
    public static func decodeBatch(_ bytes: [UInt8], config: MatchConfig, maxOps: Int) throws -> [GameOp] {
        var r = ByteReader(bytes)
        let ops = try decodeBatch(from: &r, config: config, maxOps: maxOps)
        guard r.isAtEnd else { throw ByteReadError(offset: r.offset, "\(r.remaining) stray bytes after the op batch") }
        return ops
    }

    /// One player's log, ops in seq order (gaps allowed), delta-coded.
    public static func encodeLog<C: Collection>(player: PlayerID, _ log: C, into w: inout ByteWriter)
    where C.Element == GameOp {
        w.u8(player)
        w.varint(UInt64(log.count))
        var prevSeq: Int64 = -1
        var prevTick: Int64 = 0
        for op in log {
            w.varint(UInt64(Int64(op.seq) - prevSeq - 1))
            w.varint(zigzag(Int64(op.tick) - prevTick))
            Game.encode(op.payload, into: &w)
            prevSeq = Int64(op.seq)
            prevTick = Int64(op.tick)
        }
    }

    /// Decodes one player's log of at most `maxOps` ops; returns the player and its ops.
    public static func decodeLog(from r: inout ByteReader, config: MatchConfig, maxOps: Int) throws -> (
        PlayerID, [GameOp]
    ) {
        let playerAt = r.offset
        let p = Int(try r.u8("log player"))
        guard p < config.players.count else {
            throw ByteReadError(offset: playerAt, "op log for player \(p), but the match has \(config.players.count)")
        }
        let n = try r.count("op count", limit: max(0, min(maxOps, r.remaining)))  // every op takes at least one byte
        var log: [GameOp] = []
        log.reserveCapacity(n)
        var seq: Int64 = -1
        var tick: Int64 = 0
        for _ in 0..<n {
            let opAt = r.offset
            seq += Int64(try r.count("seq gap", limit: Int(seqLimit))) + 1
            guard seq < Int64(seqLimit) else {
                throw ByteReadError(offset: opAt, "op \(p)/\(seq): seq past \(seqLimit - 1)")
            }
            let (t, overflow) = tick.addingReportingOverflow(unzigzag(try r.varint("tick delta")))
            tick = t
            guard !overflow, tick >= 0, tick <= Int64(config.lengthTicks) else {
                throw ByteReadError(
                    offset: opAt,
                    "op \(p)/\(seq) has tick \(tick) outside the match (0...\(config.lengthTicks))"
                )
            }
            let payload = try Game.decode(from: &r)
            log.append(Op(player: PlayerID(p), seq: UInt32(seq), tick: Tick(tick), payload: payload))
        }
        return (PlayerID(p), log)
    }

    @inline(__always) static func zigzag(_ v: Int64) -> UInt64 { UInt64(bitPattern: (v << 1) ^ (v >> 63)) }
    @inline(__always) static func unzigzag(_ v: UInt64) -> Int64 {
        Int64(bitPattern: v >> 1) ^ -Int64(bitPattern: v & 1)
    }

    @inline(__always) static func varintSize(_ v: UInt64) -> Int {
        var n = 1
        var x = v >> 7
        while x != 0 {
            n += 1
            x >>= 7
        }
        return n
    }
}
