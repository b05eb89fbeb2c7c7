import Determinism

/// What a peer that joins a running match late (or rejoins after a crash) needs: every op log a
/// replica holds, and the equivocations. State is never sent: the joiner merges the ops, so it
/// checks them as any op is checked and its state hash is that of the replica the snapshot came
/// from (op logs are small: about 4 bytes an op, some 130 KB for 8 players after 10 minutes).
///
/// Byte form (all ops as `OpCodec` writes them):
///
///     snapshot = u8 version (1) · u64 configDigest · u8 logCount · log* · batch (equivocations)
///
/// `configDigest` is `MatchConfig.digest`: a snapshot is only ever merged into a replica of the
/// same match. Decoding is bounded: at most `maxOps` ops in all, never more than the bytes could
/// hold, one log per player at most; every problem is a `ByteReadError` with its byte offset.
public struct ReplicaSnapshot<Game: ReplicatedGame>: Equatable {
    public typealias GameOp = Op<Game.Payload>
    public static var version: UInt8 { 1 }
    /// The default bound on ops in a decoded snapshot: 4 M ops, some 20 hours of an 8-player
    /// turf match; a bigger snapshot is refused before it is held in memory as ops.
    public static var defaultMaxOps: Int { 1 << 22 }

    public var configDigest: UInt64
    /// Per player (index = player id), its ops in seq order (gaps where ops never arrived).
    public var logs: [[GameOp]]
    public var equivocations: [GameOp]

    public init(configDigest: UInt64, logs: [[GameOp]], equivocations: [GameOp]) {
        self.configDigest = configDigest
        self.logs = logs
        self.equivocations = equivocations
    }

    public var opCount: Int { logs.reduce(0) { $0 + $1.count } + equivocations.count }

    public func encode() -> [UInt8] {
        var w = ByteWriter(capacity: 16 + opCount * 5)
        w.u8(Self.version)
        w.u64(configDigest)
        w.u8(UInt8(logs.count))
        for (p, log) in logs.enumerated() { OpCodec<Game>.encodeLog(player: PlayerID(p), log, into: &w) }
        OpCodec<Game>.encodeBatch(equivocations, into: &w)
        return w.bytes
    }

    /// Decodes a snapshot of the match `config` describes.
    public static func decode(_ bytes: [UInt8], config: MatchConfig, maxOps: Int = defaultMaxOps) throws -> Self {
        var r = ByteReader(bytes)
        let v = try r.u8("snapshot version")
        guard v == version else {
            throw ByteReadError(offset: 0, "unsupported snapshot version \(v) (this reads \(version))")
        }
        let digestAt = r.offset
        let digest = try r.u64("config digest")
        guard digest == config.digest else {
            throw ByteReadError(offset: digestAt, "snapshot of another match (config digest differs)")
        }
        let countAt = r.offset
        let n = Int(try r.u8("log count"))
        guard n <= config.players.count else {
            throw ByteReadError(offset: countAt, "\(n) op logs, but the match has \(config.players.count) players")
        }
        var logs = [[GameOp]](repeating: [], count: config.players.count)
        var seen = [Bool](repeating: false, count: config.players.count)
        var budget = maxOps
        for _ in 0..<n {
            let at = r.offset
            let (p, log) = try OpCodec<Game>.decodeLog(from: &r, config: config, maxOps: budget)
            guard !seen[Int(p)] else { throw ByteReadError(offset: at, "second op log for player \(p)") }
            seen[Int(p)] = true
            logs[Int(p)] = log
            budget -= log.count
        }
        let equivocations = try OpCodec<Game>.decodeBatch(from: &r, config: config, maxOps: budget)
        guard r.isAtEnd else { throw ByteReadError(offset: r.offset, "\(r.remaining) stray bytes after the snapshot") }
        return Self(configDigest: digest, logs: logs, equivocations: equivocations)
    }
}

extension Replica {
    /// Every op held: for a late joiner (`Replica(config:snapshot:)`) or a rejoining peer.
    public func snapshot() -> ReplicaSnapshot<Game> {
        ReplicaSnapshot(configDigest: config.digest, logs: allLogs, equivocations: equivocations)
    }

    /// A replica built from a snapshot of the match `config` describes: same ops, same state hash.
    public init(config: MatchConfig, snapshot: ReplicaSnapshot<Game>) throws {
        try self.init(config: config)
        try merge(snapshot)
    }
}
