import Determinism
import Engine

/// The datagram layout (docs/netmatch.md):
///
///     packet = u8 magic (0xA7) · varint tick (ticks the sender has run)
///              · varint count per player the sender owns (config order): its ops through tick − 1
///              · u8 ackMask · varint ack per set bit (contiguous counts the sender holds)
///              · varint opCount · op* (OpCodec) · u8 statementCount · statement*
///              · u8 finals (bit p: the sender holds p's final statement)
///              · u8 equivocators (bit p: the sender holds a proof that p's owner equivocated)
///              · u8 timeCutMask · varint seq per set bit (where the sender cuts p's log by p's clock)
///              · u8 retracted (bit p: the sender took back ops p's owner sent it unsigned; its ack of p may drop)
///              · u8 settle (0, or 1 once the sender's match ended: u8 goneMask · u8 bestMask
///                · varint count per set bit, the count of its best statement of that player;
///                2: the same, then u64 finalHash, once it holds everything it settles on)
///              · [varint checkpointTick · u64 hash · u32 verdicts digest when it was taken
///                · u32 digest per player (first 4 bytes of its chain hash through the tick)]
///     statement = u8 player · varint count · varint asOfTick · chain[32] · signature[64]
struct Packet<Game: ReplicatedGame> {
    static var magic: UInt8 { 0xA7 }

    /// The ticks its sender had run when it sent `bytes` (nil if they are no packet): read before
    /// `receive`, with the arrival time, to measure the tick skew between peers. Sent right after
    /// a tick ran, a packet saying `tick` T left as its sender finished tick T − 1.
    static func tick(of bytes: [UInt8]) -> Tick? {
        var r = ByteReader(bytes)
        guard (try? r.u8("magic")) == magic, let t = try? r.count("tick", limit: Int(UInt32.max)) else { return nil }
        return Tick(t)
    }
    var tick: Tick
    var frontier: [Int]
    var acks: [(PlayerID, Int)]
    var ops: [Op<Game.Payload>]
    var statements: [SignedStatement]
    /// Players whose final statement (as of the match end, covering every op held) the sender holds.
    var finals: UInt8
    /// Players the sender knows to have equivocated.
    var equivocators: UInt8
    /// Where the sender cuts players' logs by their owners' signed clocks.
    var timeCuts: [(PlayerID, Int)]
    /// Players whose ops the sender took back (an owner lied to it): their acks may go down.
    var retracted: UInt8
    /// Sent once the sender's match ended: players it settles gone, its best statement counts.
    var settle: (gone: UInt8, best: [(PlayerID, Int)], final: (hash: UInt64, digests: [UInt32])?)?
    var checkpoint: NetMatch<Game>.Checkpoint?

    static func decode(_ bytes: [UInt8], config: MatchConfig, senderPlayers: [PlayerID], maxOps: Int) throws -> Packet {
        var r = ByteReader(bytes)
        guard try r.u8("magic") == magic else { throw ByteReadError(offset: 0, "not a netmatch packet") }
        let tick = Tick(try r.count("tick", limit: Int(config.lengthTicks) + 1))
        var frontier: [Int] = []
        for _ in senderPlayers { frontier.append(try r.count("frontier", limit: 1 << 28)) }
        let mask = try r.u8("ack mask")
        var acks: [(PlayerID, Int)] = []
        for p in 0..<8 where mask & (1 << UInt8(p)) != 0 {
            let a = try r.count("ack", limit: 1 << 28)
            if p < config.players.count { acks.append((PlayerID(p), a)) }
        }
        let ops = try OpCodec<Game>.decodeBatch(from: &r, config: config, maxOps: maxOps)
        let nst = Int(try r.u8("statement count"))
        guard nst <= 16 else { throw ByteReadError(offset: r.offset, "\(nst) statements") }
        var sts: [SignedStatement] = []
        for _ in 0..<nst { sts.append(try SignedStatement.decode(from: &r, config: config)) }
        let finals = try r.u8("finals")
        let equivocators = try r.u8("equivocators")
        let cutMask = try r.u8("time cut mask")
        var timeCuts: [(PlayerID, Int)] = []
        for p in 0..<8 where cutMask & (1 << UInt8(p)) != 0 {
            let c = try r.count("time cut", limit: 1 << 28)
            if p < config.players.count { timeCuts.append((PlayerID(p), c)) }
        }
        let retracted = try r.u8("retracted")
        var settle: (gone: UInt8, best: [(PlayerID, Int)], final: (hash: UInt64, digests: [UInt32])?)?
        switch try r.u8("settle flag") {
        case 0: break
        case let flag where flag == 1 || flag == 2:
            let gone = try r.u8("gone mask")
            let mask = try r.u8("best mask")
            var best: [(PlayerID, Int)] = []
            for p in 0..<8 where mask & (1 << UInt8(p)) != 0 {
                let n = try r.count("best count", limit: 1 << 28)
                if p < config.players.count { best.append((PlayerID(p), n)) }
            }
            var final: (UInt64, [UInt32])?
            if flag == 2 {
                let h = try r.u64("final hash")
                var digests: [UInt32] = []
                for _ in config.players { digests.append(try r.u32("final digest")) }
                final = (h, digests)
            }
            settle = (gone, best, final)
        case let f: throw ByteReadError(offset: r.offset, "settle flag \(f)")
        }
        var cp: NetMatch<Game>.Checkpoint?
        if !r.isAtEnd {
            let tick = Tick(try r.count("checkpoint tick", limit: Int(config.lengthTicks)))
            let hash = try r.u64("checkpoint hash")
            let verdicts = try r.u32("checkpoint verdicts")
            var digests: [UInt32] = []
            for _ in config.players { digests.append(try r.u32("checkpoint digest")) }
            cp = .init(tick: tick, hash: hash, verdicts: verdicts, digests: digests)
        }
        guard r.isAtEnd else { throw ByteReadError(offset: r.offset, "stray bytes") }
        return Packet(
            tick: tick,
            frontier: frontier,
            acks: acks,
            ops: ops,
            statements: sts,
            finals: finals,
            equivocators: equivocators,
            timeCuts: timeCuts,
            retracted: retracted,
            settle: settle,
            checkpoint: cp
        )
    }
}
