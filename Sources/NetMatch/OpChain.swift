import Determinism
import Engine
import Keys
import Sodium

/// A player's signed op log (docs/netmatch.md, "Signed op logs").
///
/// Every op is covered by its owner's Ed25519 signature over a running hash of the log:
///
///     h_0 = 32 zero bytes
///     h_n = BLAKE2b-256(h_{n-1} ‖ op_{n-1})                (op bytes as `OpCodec.encode` writes them)
///     statement = "turf/oplog/1" ‖ u64 matchDigest ‖ u8 player ‖ u32 count n ‖ u32 asOfTick ‖ h_n
///
/// A signed statement says: "player's first n ops are exactly these, and they are every op it made
/// at ticks ≤ asOfTick". One signature covers any number of ops; an owner signs about twice a
/// second, not per op.
public struct SignedStatement: Equatable, Sendable {
    public var player: PlayerID
    public var count: UInt32
    public var asOfTick: Tick
    public var signature: [UInt8]
    /// h_count, the chain hash the signature is over. On the wire it travels with the statement, so
    /// a receiver can check the signature on its own (a forged statement blames the peer that sent
    /// it) and tell it from a genuine statement over another history (an equivocating owner).
    /// Empty where it is computed from the ops instead (a replay's recorded signatures).
    public var chain: [UInt8]

    public init(player: PlayerID, count: UInt32, asOfTick: Tick, signature: [UInt8], chain: [UInt8] = []) {
        self.player = player
        self.count = count
        self.asOfTick = asOfTick
        self.signature = signature
        self.chain = chain
    }

    /// Whether the signature is the owner's over the statement's own chain hash.
    public func verifiesOnItsOwn(digest: UInt64, owner: PeerKey) -> Bool {
        chain.count == OpChain.hashLength && verify(digest: digest, chain: chain, owner: owner)
    }

    /// Two statements of one player as of one tick over different histories: both say "these are
    /// every op it made through asOfTick", so an owner that signed both told peers different
    /// things (equivocation). A proof once both verify on their own.
    public func contradicts(_ other: SignedStatement) -> Bool {
        player == other.player && asOfTick == other.asOfTick && (count != other.count || chain != other.chain)
    }

    public static let domain: [UInt8] = Array("turf/oplog/1".utf8)

    /// The bytes that are signed.
    public static func message(digest: UInt64, player: PlayerID, count: UInt32, asOfTick: Tick, chain: [UInt8])
        -> [UInt8]
    {
        var w = ByteWriter(capacity: 64)
        w.bytes(domain)
        w.u64(digest)
        w.u8(player)
        w.u32(count)
        w.u32(asOfTick)
        w.bytes(chain)
        return w.bytes
    }

    public func verify(digest: UInt64, chain: [UInt8], owner: PeerKey) -> Bool {
        Ed25519.verify(
            signature: signature,
            message: Self.message(digest: digest, player: player, count: count, asOfTick: asOfTick, chain: chain),
            publicKey: owner.bytes
        )
    }

    /// Wire form: u8 player · varint count · varint asOfTick · chain[32] · signature[64].
    public func encode(into w: inout ByteWriter) {
        w.u8(player)
        w.varint(UInt64(count))
        w.varint(UInt64(asOfTick))
        w.bytes(chain.count == OpChain.hashLength ? chain : OpChain.initial)
        w.bytes(signature)
    }

    /// The first op its owner stamped against its own signed clock, by this statement alone
    /// (docs/netmatch.md, "Time"). The statement says the first `count` ops are every op made
    /// through `asOfTick`, so:
    /// - `future`: an op among the first `count` stamped after `asOfTick` (the first such, found
    ///   by a binary search over ticks, which rise along a legal log);
    /// - `late`: op `count` itself stamped at or before `asOfTick` (published after the owner had
    ///   said it had made no more ops through that tick: withheld and backdated, a lag switch).
    /// `tick(s)` gives op s's tick, or nil when it is not held. The same function decides it on
    /// every peer and in a replay.
    public func timeViolation(tick: (Int) -> Tick?) -> (seq: Int, rule: String)? {
        let n = Int(count)
        if n > 0, let last = tick(n - 1), last > asOfTick {
            var lo = 0
            var hi = n - 1  // the answer is in lo...hi: op hi is stamped after asOfTick
            while lo < hi {
                let mid = (lo + hi) / 2
                if let t = tick(mid), t > asOfTick { hi = mid } else { lo = mid + 1 }
            }
            return (lo, "future")
        }
        if let next = tick(n), next <= asOfTick { return (n, "late") }
        return nil
    }

    /// Checks a time verdict against a recording: `proof` is one statement that verifies with the
    /// owner's key over the log's first `count` ops, and shows the op at `seq` breaking `rule`.
    public static func checkTimeProof<Game: ReplicatedGame>(
        _ proof: [UInt8],
        player: PlayerID,
        seq: UInt32,
        rule: String,
        config: MatchConfig,
        log: [Op<Game.Payload>],
        as: Game.Type
    ) -> Bool {
        var r = ByteReader(proof)
        guard let st = try? decode(from: &r, config: config), r.isAtEnd, st.player == player,
            Int(player) < config.players.count, let owner = config.players[Int(player)].owner,
            Int(st.count) <= log.count, OpChain.hash(log.prefix(Int(st.count)), as: Game.self) == st.chain,
            st.verifiesOnItsOwn(digest: config.digest, owner: owner)
        else { return false }
        let v = st.timeViolation { s in s < log.count && log[s].seq == UInt32(s) ? log[s].tick : nil }
        return v?.seq == Int(seq) && v?.rule == rule
    }

    /// One statement as bytes (a time verdict's proof).
    public func encoded() -> [UInt8] {
        var w = ByteWriter(capacity: 110)
        encode(into: &w)
        return w.bytes
    }

    /// An equivocation proof (two contradicting statements) as bytes: what a replay records.
    public static func encodeProof(_ a: SignedStatement, _ b: SignedStatement) -> [UInt8] {
        var w = ByteWriter(capacity: 2 * 110)
        a.encode(into: &w)
        b.encode(into: &w)
        return w.bytes
    }

    /// Checks an equivocation proof against the config: two statements of `player` that contradict
    /// each other and both verify on their own with its owner's key.
    public static func checkProof(_ bytes: [UInt8], player: PlayerID, config: MatchConfig) -> Bool {
        var r = ByteReader(bytes)
        guard let a = try? decode(from: &r, config: config), let b = try? decode(from: &r, config: config), r.isAtEnd,
            a.player == player, a.contradicts(b), Int(player) < config.players.count,
            let owner = config.players[Int(player)].owner
        else { return false }
        return a.verifiesOnItsOwn(digest: config.digest, owner: owner)
            && b.verifiesOnItsOwn(digest: config.digest, owner: owner)
    }

    public static func decode(from r: inout ByteReader, config: MatchConfig) throws -> SignedStatement {
        let at = r.offset
        let p = try r.u8("statement player")
        guard Int(p) < config.players.count else {
            throw ByteReadError(offset: at, "statement for unknown player \(p)")
        }
        let n = try r.count("statement count", limit: (1 << 28))
        let t = try r.count("statement tick", limit: Int(config.lengthTicks))
        let chain = Array(try r.take(OpChain.hashLength, "statement chain"))
        let sig = Array(try r.take(Ed25519.signatureLength, "signature"))
        return SignedStatement(player: p, count: UInt32(n), asOfTick: Tick(t), signature: sig, chain: chain)
    }
}

public enum OpChain {
    public static let hashLength = 32
    public static let initial = [UInt8](repeating: 0, count: hashLength)

    /// h_n from h_{n-1} and the encoded op.
    public static func next(_ previous: [UInt8], opBytes: [UInt8]) -> [UInt8] {
        var buf = previous
        buf.append(contentsOf: opBytes)
        return (try? BLAKE2b.hash(buf, outputLength: hashLength))!
    }

    public static func encode<Game: ReplicatedGame>(_ op: Op<Game.Payload>, as: Game.Type) -> [UInt8] {
        var w = ByteWriter(capacity: 12)
        OpCodec<Game>.encode(op, into: &w)
        return w.bytes
    }

    /// h_n over a whole log (ops in seq order from seq 0, no gaps). Nil if the log has a gap.
    public static func hash<Game: ReplicatedGame, C: Collection>(_ log: C, as: Game.Type) -> [UInt8]?
    where C.Element == Op<Game.Payload> {
        var h = initial
        var expected: UInt32 = 0
        for op in log {
            guard op.seq == expected else { return nil }
            h = next(h, opBytes: encode(op, as: Game.self))
            expected += 1
        }
        return h
    }

    /// Checks a replay's recorded signatures (`Replay.signatures`); see `check(config:logs:statements:as:)`.
    public static func check<Game: ReplicatedGame>(
        config: MatchConfig,
        logs: [[Op<Game.Payload>]],
        signatures: [Replay<Game>.Signature],
        as: Game.Type
    ) -> String? {
        check(
            config: config,
            logs: logs,
            statements: signatures.map {
                SignedStatement(player: $0.player, count: $0.count, asOfTick: $0.asOfTick, signature: $0.signature)
            },
            as: Game.self
        )
    }

    /// Checks a recording's signatures: for each player that has an owner, `statements` must hold
    /// one whose count covers every op of its log, and it must verify. Returns nil if all is well
    /// or a description naming the first bad op.
    public static func check<Game: ReplicatedGame>(
        config: MatchConfig,
        logs: [[Op<Game.Payload>]],
        statements: [SignedStatement],
        as: Game.Type
    ) -> String? {
        let digest = config.digest
        for (p, info) in config.players.enumerated() {
            guard let owner = info.owner else { continue }
            let log = p < logs.count ? logs[p] : []
            guard let st = statements.last(where: { Int($0.player) == p }) else {
                return log.isEmpty ? nil : "op \(p)/\(log[0].seq): no signature for player \(p)"
            }
            guard Int(st.count) <= log.count else {
                return "player \(p): signature covers \(st.count) ops, the log holds \(log.count)"
            }
            var h = initial
            for (i, op) in log.prefix(Int(st.count)).enumerated() {
                guard op.seq == UInt32(i) else { return "op \(p)/\(i): missing from the signed log" }
                h = next(h, opBytes: encode(op, as: Game.self))
            }
            guard st.verify(digest: digest, chain: h, owner: owner) else {
                return "op \(p)/\(max(0, Int(st.count) - 1)): signature of player \(p) does not verify"
            }
            if log.count > Int(st.count) { return "op \(p)/\(log[Int(st.count)].seq): not covered by a signature" }
        }
        return nil
    }
}
