import Determinism
import Engine
import Keys
import Sodium

/// Tunables of a `NetMatch`. The defaults are the ones docs/netmatch.md describes and
/// `turf bench netmatch` measures.
public struct NetMatchOptions: Sendable {
    /// Largest datagram payload handed to a link (the unreliable channel's message limit is ~1150).
    public var maxDatagram = 1100
    /// Bytes a link adds to every datagram, counted in the link stats: 28 IPv4/UDP + the
    /// transport's 14-byte header, 16-byte tag and 7-byte unreliable frame (docs/transport.md).
    public var datagramOverhead = 65
    /// A link with nothing to say sends a keepalive (acks) this often.
    public var keepaliveNanos: UInt64 = 250_000_000
    /// A link silent this long is disconnected.
    public var disconnectNanos: UInt64 = 5_000_000_000
    /// An owner signs a statement for its players every this many ticks (and at the match end).
    public var signEveryTicks: Tick = 15
    /// RTT assumed for a link until `noteRTT` says otherwise.
    public var defaultRTTNanos: UInt64 = 100_000_000
    /// A datagram carrying ops never sent before is sent twice, back to back (else the second copy
    /// goes out on the next tick).
    public var duplicateFresh = true
    /// Ops of a player held beyond its contiguous count: more are dropped and counted.
    public var maxAheadOps = 2048
    /// Checkpoint hashes remembered for comparison with peers'.
    public var checkpointMemory = 256
    public init() {}
}

/// Something a `NetMatch` reports (`takeEvents`).
public enum NetMatchEvent: Equatable, Sendable {
    /// A link has been silent for `disconnectNanos` (its players' avatars stay; ops forwarded by
    /// others still merge).
    case linkDown(PeerKey)
    case linkUp(PeerKey)
    /// A peer's state hash at checkpoint `tick` differs from ours: the first bad tick seen.
    case desync(tick: Tick, peer: PeerKey, ours: UInt64, theirs: UInt64)
    /// A signed statement for `player`, relayed by `from`, did not verify: its ops were dropped.
    case badSignature(player: PlayerID, from: PeerKey)
    /// After the end, `peer` holds the same players' ops as we do (same final statements, same
    /// gone players and counts) and reports another final hash: the match is not converged.
    case finalMismatch(peer: PeerKey, ours: UInt64, theirs: UInt64)
    /// `player`'s owner signed two statements as of one tick over different histories (it told
    /// peers different things): proven, so its whole log is void here (`verdicts`), and the proof
    /// goes to every peer so they void it too.
    case equivocation(player: PlayerID, tick: Tick)
    /// `player`'s owner sent us ops directly (over its session) that its own statement, sent
    /// directly too, does not cover: it lied to this peer without signing the lie. Only this peer
    /// can know it (its session is the evidence), so nothing is voided: its ops from the last
    /// statement that held are taken back here (`takeRetractions`) and taken again, signed, from
    /// the other peers; its direct ops are not trusted any more.
    case unsignedLie(player: PlayerID)
}

/// Per-link figures (bytes include `datagramOverhead` per datagram).
public struct LinkStats: Equatable, Sendable {
    public var datagramsSent: UInt64 = 0
    public var datagramsReceived: UInt64 = 0
    public var bytesSent: UInt64 = 0
    public var bytesReceived: UInt64 = 0
    public var opsForwarded: UInt64 = 0
    public var malformed: UInt64 = 0
    public var lastRTTNanos: UInt64?
    public var connected = true
}

/// Counters of what was dropped (every byte from a peer is hostile).
public struct NetMatchDrops: Equatable, Sendable {
    public var malformed: UInt64 = 0
    public var unknownPeer: UInt64 = 0
    public var farAhead: UInt64 = 0
    public var ownOpsEchoed: UInt64 = 0
    public var badSignatures: UInt64 = 0
    /// Genuine statements of an owner over another history than the one held here (an
    /// equivocating owner, or a relay that forged ops under a genuine statement): the relayed ops
    /// they were to cover are dropped, and nobody is blamed until a proof names the owner.
    public var conflictingStatements: UInt64 = 0
    /// Ops an owner that lied to us directly sent directly afterwards (dropped).
    public var distrustedOps: UInt64 = 0
    public var unverifiedDropped: UInt64 = 0
    public var staleStatements: UInt64 = 0
    /// Ops sent by a spectator (it owns no player): never taken.
    public var watcherOps: UInt64 = 0
    /// Not a drop: signatures checked and made (their cost is the replication's crypto budget).
    public var verifications: UInt64 = 0
    public var signings: UInt64 = 0
}

/// The replication of one networked match on one peer (docs/netmatch.md): generic over the game,
/// speaking to *links* (one per other peer, named by its owner key), so it runs over real Noise
/// sessions, SimNetwork sessions or an in-memory pipe. No clock, no I/O, no threads: the caller
/// passes `now` (ns, monotonic) and moves bytes. Everything runs on the match loop's thread.
///
/// Per tick the caller (usually `NetMatchHook`):
/// 1. `receive(bytes, from:, now:)` for every datagram that arrived, then delivers
///    `takeAccepted()` into the match loop;
/// 2. runs the tick; `addLocal(ops, ranTick:)` with the ops it made (`match.outbox`);
/// 3. `poll(now:)` and sends each datagram on the unreliable channel of its link.
public struct NetMatch<Game: ReplicatedGame> {
    public typealias GameOp = Op<Game.Payload>

    public let config: MatchConfig
    public let me: PeerKey
    public let options: NetMatchOptions
    public let digest: UInt64
    /// Other peers, in config order of their first player.
    public let peers: [PeerKey]
    /// Spectators linked to this peer (they own no player): every op held here is sent to them at
    /// once (no relay delay), with the statements that cover it; ops they send are dropped.
    /// One that arrives during the match is added by `addWatcher`.
    public private(set) var watchers: [PeerKey]
    /// Every link's peer: `peers` then `watchers` (a link's index in `links`).
    private var linkKeys: [PeerKey]
    private let identity: Ed25519.KeyPair
    private let ownerLink: [Int?]  // per player: index of its owner's link, nil if mine
    private var owned: [[PlayerID]]  // per link: players its peer owns
    private let mine: [PlayerID]

    // Logs: per player, ops by seq; `verified` = authenticated (direct, own, or signature-covered).
    private struct Entry {
        var op: GameOp
        var bytes: [UInt8]
        var verified: Bool
        var acceptedAt: UInt64
        var via: Int?  // link it came from when unverified
    }
    private var log: [[Entry?]]
    private var accepted: [Int]  // contiguous verified count per player
    private var chain: [[[UInt8]]]  // chain[p][n] = h_n for n ≤ chainCount (h_0 first)
    private var bestStatement: [SignedStatement?]
    private var waitingStatement: [(SignedStatement, Int?)?]  // one unverifiable-yet statement per player
    /// Per player, statements that verified against the chain held here, by asOfTick; and
    /// statements that verify on their own but over another history (docs/netmatch.md,
    /// "Equivocation"). Each holds at most `statementMemory` entries.
    private var signedAt: [[Tick: SignedStatement]]
    private var foreignAt: [[Tick: SignedStatement]]
    /// Players whose owner is proven to have equivocated, with the two statements that prove it.
    public private(set) var equivocators: UInt8 = 0
    /// Players whose owner lied to us directly (`unsignedLie`): their ops count here only under a
    /// statement, and their direct ops are dropped.
    public private(set) var distrusted: UInt8 = 0
    private var newRetractions: [(player: PlayerID, from: UInt32)] = []
    private var proofs: [Int: (SignedStatement, SignedStatement)] = [:]
    private var newVerdicts: [Replay<Game>.Verdict] = []
    /// Per player, where its own signed clock cuts its log (docs/netmatch.md, "Time"): the
    /// earliest op a verified statement of it shows stamped against that clock, with the statement.
    private var timeCuts: [(seq: Int, rule: String, tick: Tick, evidence: SignedStatement)?]
    /// Per player, by count n: the verified statement of count n with the latest asOfTick, whose
    /// op n has not arrived yet (it is late if stamped at or before that tick).
    private var lateWatch: [[Int: SignedStatement]]
    private var frontiers: [[(count: Int, tick: Tick)]]  // claims waiting for the log to catch up
    private var finalThrough: [Int64]  // all ops with tick ≤ this are held (−1: none known)
    private var acceptedOut: [GameOp] = []
    private var events: [NetMatchEvent] = []
    public private(set) var drops = NetMatchDrops()
    private var ticksRun: Tick = 0
    private var lastSignedTick: Tick?

    // Per link.
    private struct Link {
        var peerAck: [Int]
        var sentOnce: [Int]
        var sentTwice: [Int]
        var lastSend: UInt64 = 0
        var lastRetransmit: UInt64 = 0
        var lastHeard: UInt64
        var rtt: UInt64
        var stats = LinkStats()
        var ackSentAt: [Int]  // our ack values as last sent
        var packetsSent: UInt64 = 0
        var statementSent: [Int]  // count of the best statement last sent per player
        var statementSentAt: [UInt64]
        var statementTickSent: [Tick]
        var checkpointSent: Tick = 0
        var checkpointRepeats = 0
        var peerCheckpoint: Checkpoint?
        var peerTick: Tick = 0
        var peerFinals: UInt8 = 0
        var forged = false
        var left = false
        /// The peer's settle report (sent once its match ended): players it settles without their
        /// final statement, and per player the count of its best verified statement (−1: none).
        var peerSettleKnown = false
        var peerGone: UInt8 = 0
        var peerBest: [Int]
        /// The peer's final hash, once it holds everything it will settle on (and what it was
        /// computed over: its gone mask and its best counts of those players).
        var peerFinal: UInt64?
        var peerFinalDigests: [UInt32] = []
        var peerFinalMismatch: UInt64?
        /// Players the peer knows to have equivocated (every packet says), and where it cuts each
        /// player's log by its owner's signed clock (Int.max: nowhere).
        var peerEquivocators: UInt8 = 0
        var peerTimeCut: [Int]
        var timeEvidenceSentAt: [UInt64]
        /// Per player: when a proof, and our best statement (gossip), were last sent on this link.
        var proofSentAt: [UInt64]
        var gossipSentAt: [UInt64]
        var gossipTickSent: [Tick]
        var gossipAnySentAt: UInt64 = 0
        /// Statements checked on their own though they cover nothing new (to find a
        /// contradiction): a budget per second, so a flood of old statements costs little.
        var foreignBudget = 0
        var foreignBudgetAt: UInt64 = 0
    }
    private var links: [Link]

    // Desync detection: a trailing replica merging ops once final, in tick order.
    private var trail: Replica<Game>
    private var trailSeq: [Int]
    private var nextCheckpoint: Tick
    /// A checkpoint: the replica hash of every op through `tick`, the equivocators known when it
    /// was taken, and per player a digest of its log through `tick` (the first 4 bytes of its
    /// chain hash). Two peers whose digests differ hold different logs of a player: its owner
    /// told them different things (a suspicion until a proof names it), not a desync of the peer.
    public struct Checkpoint: Equatable, Sendable {
        public var tick: Tick
        public var hash: UInt64
        /// A digest of the verdicts known when it was taken (equivocators and time cuts).
        public var verdicts: UInt32
        public var digests: [UInt32]
    }
    private var checkpoints: [Checkpoint] = []
    public private(set) var lastCheckpoint: Checkpoint?
    public private(set) var desyncReported: Tick?
    /// The final hash (docs/netmatch.md, "Converged means one final hash"): the replica hash of
    /// every op settled on, once everything is held here; and what it was computed from.
    private var finalCache: (basis: [Int], hash: UInt64)?
    /// Peers whose final hash differed from ours on the same basis (each reported once).
    public private(set) var finalMismatches: [PeerKey] = []
    /// Test-only: flips the hash this peer computes at this checkpoint tick (forces a desync).
    public var testingCorruptCheckpoint: Tick?
    /// Test-only: this peer forges the first third-party op it relays on each link (another
    /// payload under that op's seq), to show receivers reject forged relayed ops.
    public var testingForgeRelayed = false
    /// Test-only: this owner equivocates. To the links at these indices (in `peers`) it sends its
    /// own ops from seq `fromSeq` on as another history, under statements signed over that one:
    /// every link gets a validly signed log, but not the same log (docs/netmatch.md, "Equivocation").
    public var testingEquivocate: (fromSeq: Int, links: Set<Int>)?
    /// Test-only, with `testingEquivocate`: the other history goes out unsigned (the statements to
    /// those links stay over the real one).
    public var testingEquivocateUnsigned = false
    /// Test-only: a modified client. Each op this peer makes is rewritten before it is logged,
    /// signed and sent (its own match applied the original): teleports, speed, painting the past.
    public var testingRewriteOwn: (@Sendable (GameOp) -> GameOp)?
    /// Test-only: a lag switch. This peer's own ops from seq `fromSeq` on are logged, signed and
    /// sent `ticks` ticks after they were made (still stamped with the tick they were made at),
    /// while its statements go on as usual.
    public var testingHold: (fromSeq: Int, ticks: Tick)?
    private var held: [(release: Tick, op: GameOp)] = []
    private var altSigned: [Int: SignedStatement] = [:]

    public init(
        config: MatchConfig,
        identity: Ed25519.KeyPair,
        now: UInt64,
        options: NetMatchOptions = NetMatchOptions(),
        watchers: [PeerKey] = []
    ) throws {
        guard let me = PeerKey(bytes: identity.publicKey) else {
            throw ConfigError.invalid("identity key is not 32 bytes")
        }
        guard config.players.allSatisfy({ $0.owner != nil }) else {
            throw ConfigError.invalid("a networked match needs an owner for every player")
        }
        self.config = config
        self.me = me
        self.identity = identity
        self.options = options
        digest = config.digest
        var peers: [PeerKey] = []
        for p in config.players { if let o = p.owner, o != me, !peers.contains(o) { peers.append(o) } }
        self.peers = peers
        let watchers = watchers.filter { $0 != me && !peers.contains($0) }
        self.watchers = watchers
        linkKeys = peers + watchers
        ownerLink = config.players.map { info in info.owner == me ? nil : peers.firstIndex(of: info.owner!) }
        owned = peers.map { key in config.players(ownedBy: key) } + watchers.map { _ in [] }
        mine = config.players(ownedBy: me)
        let n = config.players.count
        log = Array(repeating: [], count: n)
        accepted = Array(repeating: 0, count: n)
        chain = Array(repeating: [OpChain.initial], count: n)
        bestStatement = Array(repeating: nil, count: n)
        waitingStatement = Array(repeating: nil, count: n)
        signedAt = Array(repeating: [:], count: n)
        timeCuts = Array(repeating: nil, count: n)
        lateWatch = Array(repeating: [:], count: n)
        foreignAt = Array(repeating: [:], count: n)
        frontiers = Array(repeating: [], count: n)
        finalThrough = Array(repeating: -1, count: n)
        links = linkKeys.map { _ in Self.newLink(players: n, now: now, rtt: options.defaultRTTNanos) }
        trail = try Replica<Game>(config: config)
        trailSeq = Array(repeating: 0, count: n)
        nextCheckpoint = config.checkpointInterval
    }

    private static func newLink(players n: Int, now: UInt64, rtt: UInt64) -> Link {
        Link(
            peerAck: Array(repeating: 0, count: n),
            sentOnce: Array(repeating: 0, count: n),
            sentTwice: Array(repeating: 0, count: n),
            lastHeard: now,
            rtt: rtt,
            ackSentAt: Array(repeating: -1, count: n),
            statementSent: Array(repeating: -1, count: n),
            statementSentAt: Array(repeating: 0, count: n),
            statementTickSent: Array(repeating: 0, count: n),
            peerBest: Array(repeating: -1, count: n),
            peerTimeCut: Array(repeating: .max, count: n),
            timeEvidenceSentAt: Array(repeating: 0, count: n),
            proofSentAt: Array(repeating: 0, count: n),
            gossipSentAt: Array(repeating: 0, count: n),
            gossipTickSent: Array(repeating: .max, count: n)
        )
    }

    // MARK: - The caller's side

    /// A spectator that arrives while the match runs (docs/netmatch.md, "Spectators and
    /// rejoining"): from now on a watcher link, fed like one linked at the start. `holding` is,
    /// per player, how many ops (from seq 0) it already holds from the match copy it was sent (turf:
    /// the host's snapshot), so only what came after is sent; the statements covering them follow
    /// as for any watcher. The same key again (a restarted spectator) starts its link afresh.
    /// A player's owner is never a watcher.
    public mutating func addWatcher(_ key: PeerKey, holding: [Int], now: UInt64) {
        guard key != me, !peers.contains(key) else { return }
        var link = Self.newLink(players: config.players.count, now: now, rtt: options.defaultRTTNanos)
        for p in link.peerAck.indices where p < holding.count {
            link.peerAck[p] = max(0, min(holding[p], log[p].count))
        }
        if let l = linkKeys.firstIndex(of: key) {
            links[l] = link
        } else {
            watchers.append(key)
            linkKeys.append(key)
            owned.append([])
            links.append(link)
        }
    }

    /// The players this peer owns.
    public var ownPlayers: [PlayerID] { mine }

    /// Ops made here during tick `ranTick` (the loop's `outbox` after it ran): applied already by
    /// the loop; here they are logged, hashed into the chain and queued for every link.
    public mutating func addLocal(_ ops: [GameOp], ranTick: Tick, now: UInt64) {
        for op in ops where ownerLink[Int(op.player)] == nil && Int(op.player) < log.count {
            let mine = testingRewriteOwn?(op) ?? op
            if let h = testingHold, Int(mine.seq) >= h.fromSeq {
                held.append((ranTick + h.ticks, mine))
            } else {
                insert(mine, verified: true, via: nil, now: now)
            }
        }
        while let first = held.first, first.release <= ranTick || ranTick >= config.lengthTicks {
            held.removeFirst()
            insert(first.op, verified: true, via: nil, now: now)
        }
        ticksRun = max(ticksRun, ranTick + 1)
        for p in mine { finalThrough[Int(p)] = max(finalThrough[Int(p)], Int64(ranTick)) }
        if ranTick % options.signEveryTicks == 0 || ranTick >= config.lengthTicks { signOwn(asOf: ranTick) }
        advanceCheckpoints()
    }

    /// Ops this peer's match already holds, taken as authenticated without a signature check: a
    /// rejoining peer's copy of the match (docs/netmatch.md, "Spectators and rejoining"), its own earlier ops
    /// included, so it resumes its log at the right seq and its chain runs through them. A forged op
    /// in it surfaces later as a bad signature (the owner's statements do not cover it).
    public mutating func restore(_ ops: [GameOp], now: UInt64) {
        for op in ops.sorted(by: { ($0.player, $0.seq) < ($1.player, $1.seq) }) where Int(op.player) < log.count {
            insert(op, verified: true, via: nil, now: now)
        }
        for op in ops where ownerLink[Int(op.player)] == nil { ticksRun = max(ticksRun, op.tick + 1) }
        acceptedOut.removeAll()
        advanceCheckpoints()
    }

    /// The peer said it left (its match settled): it waits for nothing more from us, nor we from it.
    public mutating func peerLeft(_ peer: PeerKey) {
        guard let l = linkKeys.firstIndex(of: peer) else { return }
        links[l].stats.connected = false
        links[l].left = true
    }

    /// The loop jumped over ticks after a stall (`MatchHook.didSkip`). A jump past the match's
    /// end (a peer that stalled, or started late, until the match was over) runs no last tick, so
    /// the final statement is signed here: without it no peer could ever settle.
    public mutating func didSkip(to tick: Tick) {
        ticksRun = max(ticksRun, tick)
        for p in mine { finalThrough[Int(p)] = max(finalThrough[Int(p)], Int64(tick) - 1) }
        if tick > config.lengthTicks { signOwn(asOf: config.lengthTicks) }
    }

    /// A datagram from the peer `from` (as authenticated by its session). Malformed or hostile
    /// content is dropped and counted.
    public mutating func receive(_ bytes: [UInt8], from: PeerKey, now: UInt64) {
        guard let l = linkKeys.firstIndex(of: from) else {
            drops.unknownPeer += 1
            return
        }
        links[l].stats.datagramsReceived += 1
        links[l].stats.bytesReceived += UInt64(bytes.count + options.datagramOverhead)
        guard let packet = try? Packet<Game>.decode(bytes, config: config, senderPlayers: owned[l], maxOps: 512) else {
            drops.malformed += 1
            links[l].stats.malformed += 1
            return
        }
        if !links[l].stats.connected && !links[l].left {
            links[l].stats.connected = true
            events.append(.linkUp(from))
        }
        links[l].lastHeard = now
        links[l].peerTick = max(links[l].peerTick, packet.tick)
        for (p, ack) in packet.acks where Int(p) < accepted.count {
            // A player whose ops the sender took back: its ack may go down (we relay again).
            let taken = packet.retracted & (1 << p) != 0
            let a = min(ack, log[Int(p)].count)
            links[l].peerAck[Int(p)] = taken ? a : max(links[l].peerAck[Int(p)], a)
        }
        for op in packet.ops {
            let p = Int(op.player)
            if l >= peers.count {
                drops.watcherOps += 1
                continue
            }
            if ownerLink[p] == nil {
                drops.ownOpsEchoed += 1
                continue
            }
            let direct = ownerLink[p] == l
            if direct && distrusted & (1 << UInt8(p)) != 0 {
                drops.distrustedOps += 1
                continue
            }
            insert(op, verified: direct, via: direct ? nil : l, now: now)
        }
        // The sender's frontier for its own players: every op it made through tick − 1.
        if packet.tick > 0 {
            for (i, p) in owned[l].enumerated() where i < packet.frontier.count {
                addFrontier(player: Int(p), count: packet.frontier[i], tick: packet.tick - 1)
            }
        }
        links[l].peerEquivocators |= packet.equivocators
        for (p, c) in packet.timeCuts where Int(p) < accepted.count {
            links[l].peerTimeCut[Int(p)] = min(links[l].peerTimeCut[Int(p)], c)
        }
        for st in packet.statements { consider(st, via: l, now: now) }
        links[l].peerFinals |= packet.finals
        if let settle = packet.settle {
            // Counts only grow at the sender; a late, reordered report must not lower them.
            links[l].peerSettleKnown = true
            links[l].peerGone = settle.gone
            for (p, n) in settle.best where Int(p) < accepted.count {
                links[l].peerBest[Int(p)] = max(links[l].peerBest[Int(p)], n)
            }
            if let f = settle.final {
                links[l].peerFinal = f.hash
                links[l].peerFinalDigests = f.digests
            }
        }
        if let cp = packet.checkpoint {
            links[l].peerCheckpoint = cp
            compare(link: l)
        }
        advanceCheckpoints()
        if packet.settle?.final != nil { compareFinal(link: l) }
    }

    /// The ticks a packet's sender had run when it sent it (nil for bytes that are no packet); see
    /// docs/lobby.md, "Clocks" (the tick skew between peers).
    public static func packetTick(_ bytes: [UInt8]) -> Tick? { Packet<Game>.tick(of: bytes) }

    /// Ops that became authenticated since the last call, to deliver into the match loop.
    public mutating func takeAccepted() -> [GameOp] {
        defer { acceptedOut.removeAll(keepingCapacity: true) }
        return acceptedOut
    }

    public mutating func takeEvents() -> [NetMatchEvent] {
        defer { events.removeAll() }
        return events
    }

    /// A round-trip sample for a link (from the transport's pings).
    public mutating func noteRTT(_ peer: PeerKey, nanos: UInt64) {
        guard let l = linkKeys.firstIndex(of: peer) else { return }
        links[l].rtt = nanos
        links[l].stats.lastRTTNanos = nanos
    }

    /// The datagrams due at `now`, each for one link's unreliable channel. Call once per tick (and
    /// on after the match ends, to finish delivery and keep links alive).
    public mutating func poll(now: UInt64) -> [(to: PeerKey, bytes: [UInt8])] {
        var out: [(to: PeerKey, bytes: [UInt8])] = []
        computeFinal()
        for l in links.indices { compareFinal(link: l) }
        for l in links.indices {
            checkLiveness(l, now: now)
            if let (bytes, fresh) = packet(for: l, now: now) {
                // A packet with ops never sent before goes out twice at once: one loss costs nothing.
                for _ in 0..<(fresh && options.duplicateFresh ? 2 : 1) {
                    links[l].stats.datagramsSent += 1
                    links[l].stats.bytesSent += UInt64(bytes.count + options.datagramOverhead)
                    out.append((linkKeys[l], bytes))
                }
            }
        }
        return out
    }

    public func stats(for peer: PeerKey) -> LinkStats? {
        linkKeys.firstIndex(of: peer).map { links[$0].stats }
    }

    public func isConnected(_ peer: PeerKey) -> Bool {
        linkKeys.firstIndex(of: peer).map { links[$0].stats.connected } ?? false
    }

    /// Per player, the verified statement with the highest count: what a replay records.
    public var statements: [SignedStatement] { bestStatement.compactMap { $0 } }

    /// The statements in the form a replay records (`Replay.signatures`).
    public var recordedSignatures: [Replay<Game>.Signature] {
        statements.map { .init(player: $0.player, count: $0.count, asOfTick: $0.asOfTick, signature: $0.signature) }
    }

    /// Per player, how many ops (from seq 0, no gaps) are authenticated here.
    public func acceptedCount(_ player: PlayerID) -> Int { accepted[Int(player)] }

    /// The tick through which every player's ops are all held (−1 before any).
    public var finalTick: Int64 { finalThrough.min() ?? -1 }

    /// Whether every link has acknowledged every op we hold of its interest and we hold every op
    /// the owners stated as of the match end: nothing left to send. A player whose owner went
    /// silent (crashed) without its final statement reaching here is settled *gone* (docs/netmatch.md,
    /// "A peer that never comes back"): every connected peer must report it gone too, holding a
    /// best statement of the same count as ours, so the survivors keep the same verified prefix.
    public var isSettled: Bool {
        guard ticksRun > config.lengthTicks else { return false }
        let gone = goneMask
        let finals = finalsHeld
        for p in 0..<config.players.count where (gone | judged) & (1 << UInt8(p)) == 0 {
            guard finals & (1 << UInt8(p)) != 0, finalThrough[p] >= Int64(config.lengthTicks) else { return false }
        }
        guard let ours = finalHash else { return false }
        // A proven equivocator's peer is waited for in nothing: it never voids its own log.
        for l in links.indices where links[l].stats.connected && !ownsJudged(l) {
            let wanted = ~(gone | judged) & allPlayersMask
            if links[l].peerFinals & wanted != wanted { return false }
            // Everyone we hear from must end on our final hash (a spectator too: it records it).
            if links[l].peerFinal != ours { return false }
            for p in mine where links[l].peerAck[Int(p)] < log[Int(p)].count { return false }
            guard gone != 0 else { continue }
            guard links[l].peerSettleKnown, links[l].peerGone & gone == gone else { return false }
            for p in 0..<config.players.count where gone & (1 << UInt8(p)) != 0 {
                if links[l].peerBest[p] != bestCount(p) { return false }
            }
        }
        return true
    }

    /// Whether every peer that reported a final hash on the same basis as ours reported ours: false
    /// once one disagreed (a `finalMismatch` event said so). `converged` is `isSettled && agreed`.
    public var agreed: Bool { finalMismatches.isEmpty }

    /// The final hash once every op this peer will settle on is held: after the end, every player's
    /// final statement held and its ops accepted, or the player settled gone (its ops cut to the
    /// best statement held). The hash of the replica of exactly those ops (`Replica.hash`, rules
    /// applied): what the recording's final hash must be. nil before.
    public var finalHash: UInt64? {
        guard let b = finalBasis, let c = finalCache, c.basis == b else { return nil }
        return c.hash
    }

    /// What the final hash covers: the gone mask, then per player the ops settled on (nil while
    /// something is still missing).
    private var finalBasis: [Int]? {
        guard ticksRun > config.lengthTicks else { return nil }
        let gone = goneMask
        let finals = finalsHeld
        var basis: [Int] = [Int(gone) | Int(verdictDigest) << 8]
        for p in 0..<config.players.count {
            if equivocators & (1 << UInt8(p)) != 0 {
                basis.append(0)  // void: nothing of it counts
            } else if let c = timeCuts[p] {
                guard accepted[p] >= c.seq else { return nil }  // what counts: the ops before the cut
                basis.append(c.seq)
            } else if gone & (1 << UInt8(p)) != 0 {
                basis.append(max(0, bestCount(p)))
            } else {
                guard finals & (1 << UInt8(p)) != 0, finalThrough[p] >= Int64(config.lengthTicks) else { return nil }
                basis.append(accepted[p])
            }
        }
        return basis
    }

    /// Computes the final hash when what it covers changed (O(ops), once or a few times a match).
    @discardableResult
    private mutating func computeFinal() -> UInt64? {
        guard let basis = finalBasis else { return nil }
        if let c = finalCache, c.basis == basis { return c.hash }
        // `try!`: the config was validated when this NetMatch was made (the trail replica is one).
        var r = try! Replica<Game>(config: config)
        for v in verdicts { r.applyVerdict(v.player, fromSeq: v.seq, rule: v.rule, tick: v.tick) }
        for p in 0..<config.players.count {
            for s in 0..<basis[p + 1] { if let e = log[p][s] { r.receive(e.op) } }
        }
        finalCache = (basis, r.hash)
        return r.hash
    }

    /// Per player, the digest of the log the final hash covers (a peer's final hash is compared
    /// with ours only where every player's log is the same, as for checkpoints).
    private var finalDigests: [UInt32] {
        guard let b = finalBasis else { return [] }
        return (0..<config.players.count).map { p in Self.digest(chain[p][min(b[p + 1], chain[p].count - 1)]) }
    }

    /// What our final hash was computed over, as the settle report carries it (gone mask, and the
    /// best counts of the gone players): a peer's hash is compared with ours only on the same basis.
    private func sameBasis(_ link: Link) -> Bool {
        let gone = goneMask
        guard link.peerSettleKnown, link.peerGone == gone,
            Self.verdictDigest(link.peerEquivocators, link.peerTimeCut) == verdictDigest
        else { return false }
        for p in 0..<config.players.count where gone & (1 << UInt8(p)) != 0 {
            if link.peerBest[p] != bestCount(p) { return false }
        }
        return true
    }

    /// Whether link l's peer owns a player with a verdict against it (void, or cut by its own
    /// clock): it never applies that verdict to itself, so nothing of it is waited for.
    private func ownsJudged(_ l: Int) -> Bool {
        owned[l].contains { equivocators & (1 << $0) != 0 || timeCuts[Int($0)] != nil }
    }

    /// Players with a verdict against them (void or cut by their own clock).
    private var judged: UInt8 {
        var m = equivocators
        for p in timeCuts.indices where timeCuts[p] != nil { m |= 1 << UInt8(p) }
        return m
    }

    private mutating func compareFinal(link l: Int) {
        guard !ownsJudged(l), let theirs = links[l].peerFinal, let ours = computeFinal(), theirs != ours,
            links[l].peerFinalDigests == finalDigests,
            links[l].peerFinalMismatch != theirs, sameBasis(links[l])
        else { return }
        links[l].peerFinalMismatch = theirs
        if !finalMismatches.contains(linkKeys[l]) { finalMismatches.append(linkKeys[l]) }
        events.append(.finalMismatch(peer: linkKeys[l], ours: ours, theirs: theirs))
    }

    /// Players this peer settles without their final statement: the match ended here, their
    /// owner's link is silent (`disconnected`, or it left without a session) and no final
    /// statement of theirs is held. Their ops count up to the best statement the survivors hold.
    public var gonePlayers: [PlayerID] {
        let m = goneMask
        return (0..<config.players.count).filter { m & (1 << UInt8($0)) != 0 }.map { PlayerID($0) }
    }

    /// The ops of `player` a recording keeps: every op for a player that is not gone; for a gone
    /// one, those covered by its best verified statement (nothing past it can be verified).
    public func settledCount(_ player: PlayerID) -> Int? {
        // A proven equivocator's log is void; what is kept of it (evidence) is what a verified
        // statement of it covers, so the recording's signatures still check.
        guard (goneMask | equivocators) & (1 << UInt8(player)) != 0 else { return nil }
        return max(0, bestCount(Int(player)))
    }

    /// `logs` (a replica's `allLogs`) cut to what the survivors agreed: each gone player's log
    /// (and each proven equivocator's) to its `settledCount`.
    public func settledLogs(_ logs: [[GameOp]]) -> [[GameOp]] {
        logs.enumerated().map { p, ops in
            guard p < config.players.count, let n = settledCount(PlayerID(p)) else { return ops }
            return ops.filter { Int($0.seq) < n }
        }
    }

    /// Whether `settledLogs` cuts anything (a gone player or a proven equivocator).
    public var cutsLogs: Bool { (goneMask | equivocators) != 0 }

    private var goneMask: UInt8 {
        guard ticksRun > config.lengthTicks else { return 0 }
        let finals = finalsHeld
        var m: UInt8 = 0
        for p in 0..<config.players.count {
            guard let o = ownerLink[p], !links[o].stats.connected, finals & (1 << UInt8(p)) == 0 else { continue }
            m |= 1 << UInt8(p)
        }
        return m
    }

    private func bestCount(_ p: Int) -> Int { bestStatement[p].map { Int($0.count) } ?? -1 }

    private var allPlayersMask: UInt8 { UInt8(truncatingIfNeeded: (1 << config.players.count) - 1) }

    /// Players whose statement as of the match end, covering every op they made, is held here.
    private var finalsHeld: UInt8 {
        var m: UInt8 = 0
        for p in 0..<config.players.count {
            if let st = bestStatement[p], st.asOfTick >= config.lengthTicks, Int(st.count) <= accepted[p] {
                m |= 1 << UInt8(p)
            }
        }
        return m
    }

    // MARK: - Logs and signatures

    private mutating func insert(_ op: GameOp, verified: Bool, via: Int?, now: UInt64) {
        let p = Int(op.player)
        let s = Int(op.seq)
        guard s < accepted[p] + options.maxAheadOps else {
            drops.farAhead += 1
            return
        }
        if s < log[p].count, let existing = log[p][s] {
            if existing.verified || !verified { return }  // duplicate (or an unverified copy of something held)
            if existing.op != op {
                // A direct op replaces a relayed one that claimed its seq: the relayed one was forged.
                drops.unverifiedDropped += 1
                truncateChain(p, at: s)
            }
        }
        while log[p].count <= s { log[p].append(nil) }
        log[p][s] = Entry(
            op: op,
            bytes: OpChain.encode(op, as: Game.self),
            verified: verified,
            acceptedAt: now,
            via: via
        )
        extendChain(p)
        if verified { advanceAccepted(p) }
        if let (st, via) = waitingStatement[p], Int(st.count) <= chain[p].count - 1 {
            waitingStatement[p] = nil
            consider(st, via: via)
        }
    }

    private mutating func extendChain(_ p: Int) {
        while chain[p].count - 1 < log[p].count, let e = log[p][chain[p].count - 1] {
            chain[p].append(OpChain.next(chain[p].last!, opBytes: e.bytes))
        }
    }

    private mutating func truncateChain(_ p: Int, at s: Int) {
        if chain[p].count > s + 1 { chain[p].removeSubrange((s + 1)...) }
    }

    private mutating func advanceAccepted(_ p: Int) {
        while accepted[p] < log[p].count, let e = log[p][accepted[p]], e.verified {
            acceptedOut.append(e.op)
            if !lateWatch[p].isEmpty, let st = lateWatch[p].removeValue(forKey: accepted[p]), e.op.tick <= st.asOfTick {
                timeVerdict(p, seq: accepted[p], rule: "late", evidence: st)
            }
            accepted[p] += 1
        }
        settleFrontiers(p)
    }

    private mutating func signOwn(asOf tick: Tick) {
        guard lastSignedTick != tick else { return }
        lastSignedTick = tick
        for p in mine {
            let n = accepted[Int(p)]
            drops.signings += 1
            let msg = SignedStatement.message(
                digest: digest,
                player: p,
                count: UInt32(n),
                asOfTick: tick,
                chain: chain[Int(p)][n]
            )
            bestStatement[Int(p)] = SignedStatement(
                player: p,
                count: UInt32(n),
                asOfTick: tick,
                signature: identity.sign(msg),
                chain: chain[Int(p)][n]
            )
        }
    }

    /// How many statements per player `signedAt` and `foreignAt` keep (a few minutes of them).
    private static var statementMemory: Int { 512 }

    /// A statement from a link (or, `l` nil, one of ours): check its signature on its own, then
    /// against the chain held here, and accept the relayed ops it covers. A forged signature
    /// blames the link that sent it (an honest peer forwards only statements it verified); a
    /// genuine one over another history blames nobody until two of them contradict each other
    /// (`prove`).
    private mutating func consider(_ st: SignedStatement, via l: Int?, now: UInt64 = 0) {
        let p = Int(st.player)
        guard ownerLink[p] != nil, let owner = config.players[p].owner else { return }
        let n = Int(st.count)
        let bit = UInt8(1) << UInt8(p)
        if signedAt[p][st.asOfTick] == st { return }
        // One already found genuine but over another history: its signature needs no new check,
        // but the history held here may have changed since (a forged relayed op replaced).
        let knownGenuine = foreignAt[p][st.asOfTick] == st
        if !knownGenuine, let best = bestStatement[p], best.count >= st.count, best.asOfTick >= st.asOfTick {
            // Nothing new to accept; worth a signature check only to find a contradiction, within
            // a budget per link (a flood of old statements costs little).
            guard equivocators & bit == 0, let l else { return }
            if now >= links[l].foreignBudgetAt + 1_000_000_000 {
                links[l].foreignBudgetAt = now
                links[l].foreignBudget = 0
            }
            guard links[l].foreignBudget < 32 else { return }
            links[l].foreignBudget += 1
        }
        if !knownGenuine { drops.verifications += 1 }
        guard knownGenuine || st.verifiesOnItsOwn(digest: digest, owner: owner) else {
            drops.badSignatures += 1
            events.append(.badSignature(player: PlayerID(p), from: l.map { linkKeys[$0] } ?? me))
            dropUnverified(p)
            return
        }
        if equivocators & bit == 0, let other = signedAt[p][st.asOfTick] ?? foreignAt[p][st.asOfTick],
            other.contradicts(st)
        {
            prove(p, other, st)
            return
        }
        if let best = bestStatement[p], best.count >= st.count, best.asOfTick >= st.asOfTick {
            // Nothing new to accept. Over the history held here it may still show an op stamped
            // against its owner's clock (a peer forwarding the evidence of a time cut).
            if n < chain[p].count && chain[p][n] == st.chain {
                remember(&signedAt[p], st)
                checkTime(p, st)
            } else {
                remember(&foreignAt[p], st)
            }
            return
        }
        guard n < chain[p].count else {
            // Not enough ops here yet to check it: keep one until they arrive, the nearest (a
            // relay's statement covers just the ops it relays; a newer one gossiped by another
            // peer must not push it out, or those ops wait and get relayed again).
            if n <= accepted[p] + options.maxAheadOps,
                waitingStatement[p].map({ Int($0.0.count) <= accepted[p] || st.count < $0.0.count }) ?? true
            {
                waitingStatement[p] = (st, l)
            }
            return
        }
        guard chain[p][n] == st.chain else {
            // The owner's signature over another history than the one held here: the ops relayed
            // to go with it are not what it signed. Kept, to be matched against statements of the
            // same tick (a proof of equivocation).
            drops.conflictingStatements += 1
            remember(&foreignAt[p], st)
            if let l, l == ownerLink[p], n <= accepted[p], distrusted & bit == 0 {
                // Its own statement, over its own session, against ops it sent us over that
                // session: the owner lied to us.
                distrust(p)
            } else {
                dropUnverified(p)
            }
            return
        }
        remember(&signedAt[p], st)
        if bestStatement[p].map({ $0.count < st.count || ($0.count == st.count && $0.asOfTick < st.asOfTick) }) ?? true
        {
            bestStatement[p] = st
        }
        if n > accepted[p] {
            // `!`: seqs below n are held: the chain that n was verified against runs through each of them.
            for s in accepted[p]..<n where !(log[p][s]!.verified) {
                log[p][s]!.verified = true
                log[p][s]!.via = nil
            }
        }
        advanceAccepted(p)
        addFrontier(player: p, count: n, tick: st.asOfTick)
        checkTime(p, st)
    }

    static func digest(_ h: [UInt8]) -> UInt32 {
        h.prefix(4).reduce(0) { $0 << 8 | UInt32($1) }
    }

    private func remember(_ map: inout [Tick: SignedStatement], _ st: SignedStatement) {
        if map.count >= Self.statementMemory, let oldest = map.keys.min() { map[oldest] = nil }
        map[st.asOfTick] = st
    }

    /// The owner of p lied to us directly: its ops past the last statement that verified here are
    /// taken back (here, and in the match through `takeRetractions`), its direct ops are dropped
    /// from now on, and every peer is told (the packet's `retracted` mask) that our acks of p may
    /// go down, so they relay p's signed ops again.
    private mutating func distrust(_ p: Int) {
        distrusted |= 1 << UInt8(p)
        let keep =
            signedAt[p].values.filter { Int($0.count) < chain[p].count && chain[p][Int($0.count)] == $0.chain }
            .map { Int($0.count) }.max() ?? 0
        if log[p].count > keep { log[p].removeSubrange(keep...) }
        truncateChain(p, at: keep)
        accepted[p] = min(accepted[p], keep)
        acceptedOut.removeAll { Int($0.player) == p && Int($0.seq) >= keep }
        if trailSeq[p] > keep {
            trail.retract(PlayerID(p), from: UInt32(keep))
            trailSeq[p] = keep
        }
        finalThrough[p] = -1
        frontiers[p].removeAll()
        bestStatement[p] = signedAt[p].values.filter { Int($0.count) <= keep }.max {
            ($0.count, $0.asOfTick) < ($1.count, $1.asOfTick)
        }
        newRetractions.append((PlayerID(p), UInt32(keep)))
        events.append(.unsignedLie(player: PlayerID(p)))
    }

    /// Players whose ops from a seq on were taken back since the last call (`unsignedLie`):
    /// apply before the ops `takeAccepted` returns (`LocalMatch.retract`).
    public mutating func takeRetractions() -> [(player: PlayerID, from: UInt32)] {
        defer { newRetractions.removeAll() }
        return newRetractions
    }

    /// Drops every unverified (relayed) op of player p: a relay sent ops no statement covers.
    private mutating func dropUnverified(_ p: Int) {
        var first: Int?
        for s in accepted[p]..<log[p].count where log[p][s].map({ !$0.verified }) ?? false {
            log[p][s] = nil
            drops.unverifiedDropped += 1
            if first == nil { first = s }
        }
        if let first { truncateChain(p, at: first) }
    }

    /// Two genuine statements of player p as of one tick over different histories: its owner
    /// equivocated. Its whole log is void from here on (the checkpoint replica's, the final
    /// hash's, and the match's through `takeVerdicts`), and the proof goes to every link.
    private mutating func prove(_ p: Int, _ a: SignedStatement, _ b: SignedStatement) {
        let bit = UInt8(1) << UInt8(p)
        guard equivocators & bit == 0 else { return }
        equivocators |= bit
        proofs[p] = (a, b)
        trail.exclude(PlayerID(p), rule: "equivocation", tick: a.asOfTick)
        newVerdicts.append(.init(player: PlayerID(p), seq: 0, tick: a.asOfTick, rule: "equivocation", proof: []))
        events.append(.equivocation(player: PlayerID(p), tick: a.asOfTick))
    }

    /// Players proven to have equivocated since the last call: void their logs in the match
    /// (`LocalMatch.exclude`).
    public mutating func takeVerdicts() -> [Replay<Game>.Verdict] {
        defer { newVerdicts.removeAll() }
        return newVerdicts
    }

    /// Every proven equivocator with its proof (`SignedStatement.encodeProof`), in player order:
    /// what a replay records (`Replay.verdicts`), so the file alone voids the same logs.
    public var verdicts: [Replay<Game>.Verdict] {
        var out: [Replay<Game>.Verdict] = []
        for p in 0..<config.players.count {
            if let (a, b) = proofs[p] {
                out.append(
                    .init(
                        player: PlayerID(p),
                        tick: a.asOfTick,
                        rule: "equivocation",
                        proof: SignedStatement.encodeProof(a, b)
                    )
                )
            } else if let c = timeCuts[p] {
                out.append(
                    .init(
                        player: PlayerID(p),
                        seq: UInt32(c.seq),
                        tick: c.tick,
                        rule: c.rule,
                        proof: c.evidence.encoded()
                    )
                )
            }
        }
        return out
    }

    /// A digest of the verdicts: which players are void, and where each time cut falls. Peers
    /// compare checkpoint and final hashes only under the same verdicts.
    var verdictDigest: UInt32 { Self.verdictDigest(equivocators, timeCuts.map { $0?.seq ?? .max }) }

    static func verdictDigest(_ equivocators: UInt8, _ cuts: [Int]) -> UInt32 {
        var h = StableHash.mix(UInt64(equivocators) &+ 0x7E5D)
        for (p, c) in cuts.enumerated() where c != .max && equivocators & (1 << UInt8(p)) == 0 {
            h = StableHash.mix(h ^ (UInt64(p) << 40 | UInt64(c)))
        }
        return UInt32(truncatingIfNeeded: h)
    }

    /// Checks a statement verified against the chain held here for ops stamped against its
    /// owner's own clock (`SignedStatement.timeViolation`); one whose op `count` has not arrived is
    /// watched until it does.
    private mutating func checkTime(_ p: Int, _ st: SignedStatement) {
        let held = accepted[p]
        let logP = log[p]
        let v = st.timeViolation { s in s < held ? logP[s]?.op.tick : nil }
        if let v {
            timeVerdict(p, seq: v.seq, rule: v.rule, evidence: st)
        } else if Int(st.count) >= held {
            let n = Int(st.count)
            if lateWatch[p][n].map({ $0.asOfTick < st.asOfTick }) ?? true {
                if lateWatch[p].count >= Self.statementMemory, let oldest = lateWatch[p].keys.min() {
                    lateWatch[p][oldest] = nil
                }
                lateWatch[p][n] = st
            }
        }
    }

    /// Player p's log stops at `seq` by its owner's signed clock: the checkpoint replica's, the
    /// final hash's and the match's (`takeVerdicts`); the statement goes to every peer whose cut
    /// of p is later, until it says it holds ours.
    private mutating func timeVerdict(_ p: Int, seq: Int, rule: String, evidence: SignedStatement) {
        guard ownerLink[p] != nil, timeCuts[p].map({ seq < $0.seq }) ?? true else { return }
        let tick = seq < log[p].count ? log[p][seq]?.op.tick ?? evidence.asOfTick : evidence.asOfTick
        timeCuts[p] = (seq, rule, tick, evidence)
        trail.applyVerdict(PlayerID(p), fromSeq: UInt32(seq), rule: rule, tick: tick)
        newVerdicts.append(.init(player: PlayerID(p), seq: UInt32(seq), tick: tick, rule: rule, proof: []))
    }

    private mutating func addFrontier(player p: Int, count: Int, tick: Tick) {
        guard Int64(tick) > finalThrough[p] else { return }
        if let last = frontiers[p].last, last.tick >= tick { return }
        if frontiers[p].count >= 64 { frontiers[p].removeFirst() }
        frontiers[p].append((count, tick))
        settleFrontiers(p)
    }

    private mutating func settleFrontiers(_ p: Int) {
        while let f = frontiers[p].first, f.count <= accepted[p] {
            finalThrough[p] = max(finalThrough[p], Int64(f.tick))
            frontiers[p].removeFirst()
        }
    }

    // MARK: - Desync detection

    private mutating func advanceCheckpoints() {
        let through = finalTick
        while nextCheckpoint <= config.lengthTicks && Int64(nextCheckpoint) <= through {
            let cp = nextCheckpoint
            for p in trailSeq.indices {
                while trailSeq[p] < accepted[p], let e = log[p][trailSeq[p]], e.op.tick <= cp {
                    trail.receive(e.op)
                    trailSeq[p] += 1
                }
            }
            var h = trail.hash
            if testingCorruptCheckpoint == cp { h ^= 0x5A5A }
            let c = Checkpoint(
                tick: cp,
                hash: h,
                verdicts: verdictDigest,
                digests: trailSeq.indices.map { Self.digest(chain[$0][trailSeq[$0]]) }
            )
            checkpoints.append(c)
            if checkpoints.count > options.checkpointMemory { checkpoints.removeFirst() }
            lastCheckpoint = c
            nextCheckpoint += config.checkpointInterval
            for l in links.indices { compare(link: l) }
        }
    }

    private mutating func compare(link l: Int) {
        guard let theirs = links[l].peerCheckpoint,
            let ours = checkpoints.last(where: { $0.tick == theirs.tick })
        else { return }
        links[l].peerCheckpoint = nil
        // Taken knowing other equivocators, the hashes differ by design (a voided log); over other
        // logs of a player, its owner is to blame, not this peer (the proof follows from the
        // statements both hold): no desync either way.
        guard ours.hash != theirs.hash, ours.verdicts == theirs.verdicts, ours.digests == theirs.digests else { return }
        if desyncReported.map({ theirs.tick < $0 }) ?? true {
            desyncReported = theirs.tick
            events.append(.desync(tick: theirs.tick, peer: linkKeys[l], ours: ours.hash, theirs: theirs.hash))
        }
    }

    // MARK: - Sending

    private mutating func checkLiveness(_ l: Int, now: UInt64) {
        if links[l].stats.connected && now > links[l].lastHeard + options.disconnectNanos {
            links[l].stats.connected = false
            events.append(.linkDown(linkKeys[l]))
        }
    }

    /// Whether to relay player `p`'s ops to link `l`: never the link's own players nor ours (ours
    /// go direct); a third player's ops only when the peer has not acknowledged them within about
    /// two round trips, or when we cannot hear the owner either (so healthy links carry no relays).
    private func relayFrom(_ link: Link, _ l: Int, player p: Int, now: UInt64) -> Int? {
        // A spectator (it owns no player) only listens: it relays nothing.
        guard !mine.isEmpty, let o = ownerLink[p], o != l else { return nil }
        let ack = link.peerAck[p]
        guard ack < accepted[p], let e = log[p][ack] else { return nil }
        if l >= peers.count { return ack }  // a spectator hears only from us
        let wait = 2 * max(link.rtt, links[o].rtt) + 2 * tickNanos
        return now >= e.acceptedAt + wait ? ack : nil
    }

    private var tickNanos: UInt64 { 1_000_000_000 / UInt64(config.tickRate) }

    private mutating func packet(for l: Int, now: UInt64) -> (bytes: [UInt8], fresh: Bool)? {
        var link = links[l]
        defer { links[l] = link }
        // What to send: own ops the peer lacks; relayed ops it has lacked for a while.
        var ranges: [(p: Int, from: Int, to: Int)] = []
        var fresh = false
        var secondCopy = false
        var retransmit = false
        let rto = link.rtt + 2 * tickNanos
        for p in mine.map(Int.init) {
            let to = log[p].count
            let ack = link.peerAck[p]
            guard ack < to else { continue }
            if link.sentOnce[p] < to { fresh = true }
            if !options.duplicateFresh && link.sentTwice[p] < link.sentOnce[p] { secondCopy = true }
            if now >= link.lastRetransmit + rto { retransmit = true }
            ranges.append((p, ack, to))
        }
        for p in 0..<log.count where !mine.contains(PlayerID(p)) {
            guard let from = relayFrom(link, l, player: p, now: now) else { continue }
            if now >= link.lastRetransmit + rto { retransmit = true }
            ranges.append((p, from, accepted[p]))
        }
        let ackChanged = mineAcksChanged(link)
        let ended = ticksRun > config.lengthTicks
        let checkpointDue = lastCheckpoint.map { $0.tick != link.checkpointSent || link.checkpointRepeats < 2 } ?? false
        var statementsDue: [SignedStatement] = []
        for p in 0..<log.count {
            guard let st = bestStatement[p] else { continue }
            let isMine = ownerLink[p] == nil
            let relaying = ranges.contains { $0.p == p && !isMine }
            // Settling: a peer whose best statement for a third player is weaker than ours (or that
            // settles it gone while we hold its final one) gets ours, and the relays the ops it covers.
            let behind =
                ended && !isMine && ownerLink[p] != l
                && (link.peerBest[p] < Int(st.count)
                    || (link.peerGone & (1 << UInt8(p)) != 0 && finalsHeld & (1 << UInt8(p)) != 0))
            guard isMine || relaying || behind else { continue }
            let changed = Int(st.count) != link.statementSent[p] || st.asOfTick != link.statementTickSent[p]
            let finalMissing = isMine && st.asOfTick >= config.lengthTicks && link.peerFinals & (1 << UInt8(p)) == 0
            if (isMine && changed)
                || ((relaying || finalMissing || behind) && now >= link.statementSentAt[p] + 300_000_000)
            {
                statementsDue.append(st)
            }
        }
        // Equivocation (docs/netmatch.md): third players' newest statements (during the match one
        // a second on each link, in turn: a few hundred bytes a second at most; after the end, each
        // once a second, so final statements meet at once), so peers holding other histories of a
        // player find two of one tick; a proof, to every peer that does not know it yet, until it
        // says it does.
        for p in 0..<log.count where ownerLink[p] != nil && ownerLink[p] != l {
            let bit = UInt8(1) << UInt8(p)
            if let c = timeCuts[p], link.peerTimeCut[p] > c.seq, now >= link.timeEvidenceSentAt[p] + 300_000_000 {
                statementsDue.append(c.evidence)
                link.timeEvidenceSentAt[p] = now
            }
            if equivocators & bit != 0 {
                if link.peerEquivocators & bit == 0, now >= link.proofSentAt[p] + 300_000_000, let (a, b) = proofs[p] {
                    statementsDue += [a, b]
                    link.proofSentAt[p] = now
                }
            }
        }
        // The gossip proper: the third players whose newest statement this link has not had.
        var gossip = (0..<log.count).filter { p in
            guard ownerLink[p] != nil, ownerLink[p] != l, equivocators & (1 << UInt8(p)) == 0,
                let st = bestStatement[p]
            else { return false }
            return st.asOfTick != link.gossipTickSent[p] && now >= link.gossipSentAt[p] + 1_000_000_000
        }
        if !ended {
            // During the match: one a second, the one this link has waited longest for.
            let oldest = gossip.min { link.gossipSentAt[$0] < link.gossipSentAt[$1] }
            gossip = now >= link.gossipAnySentAt + 1_000_000_000 ? oldest.map { [$0] } ?? [] : []
        }
        // During the match the gossip rides only on packets that go out anyway (a packet of its
        // own would change when relays are judged due, and relay more); after the end it sends.
        var gossipDue: [SignedStatement] = []
        for p in gossip {
            let st = bestStatement[p]!  // `!`: filtered on above
            if !statementsDue.contains(st) && !gossipDue.contains(st) { gossipDue.append(st) }
        }
        if ended {
            statementsDue += gossipDue
            gossipDue = []
        }
        let keepalive = now >= link.lastSend + options.keepaliveNanos
        let ackDue = ackChanged && now >= link.lastSend + 3 * tickNanos
        guard
            fresh || secondCopy || (retransmit && !ranges.isEmpty) || keepalive || ackDue || !statementsDue.isEmpty
                || (checkpointDue && now >= link.lastSend + 3 * tickNanos)
        else { return nil }

        var w = ByteWriter(capacity: 256)
        w.u8(Packet<Game>.magic)
        w.varint(UInt64(ticksRun))
        for p in mine { w.varint(UInt64(accepted[Int(p)])) }
        // Acks: those that changed since the last packet, and all of them every 4th packet.
        var mask: UInt8 = 0
        let all = link.packetsSent % 4 == 0
        for p in 0..<log.count
        where ownerLink[p] != nil && (all || link.ackSentAt[p] != accepted[p] || distrusted & (1 << UInt8(p)) != 0) {
            mask |= 1 << UInt8(p)
        }
        w.u8(mask)
        for p in 0..<log.count where mask & (1 << UInt8(p)) != 0 {
            w.varint(UInt64(accepted[p]))
            link.ackSentAt[p] = accepted[p]
        }
        // Statements (64-byte signatures: a few a second at most).
        var budget =
            options.maxDatagram - w.count - 18 - 9 * config.players.count
            - (ended ? 11 + 9 * config.players.count : 1)
        var sts: [SignedStatement] = []
        for st in (statementsDue + gossipDue).prefix(8) where budget > 112 {
            sts.append(st)
            budget -= 107
        }
        for st in sts where ownerLink[Int(st.player)] != nil && ownerLink[Int(st.player)] != l {
            let p = Int(st.player)
            if st == bestStatement[p] {
                link.gossipSentAt[p] = now
                link.gossipAnySentAt = now
                link.gossipTickSent[p] = st.asOfTick
            }
        }
        // Ops, oldest unacknowledged first, within the budget.
        var opsW = ByteWriter(capacity: 256)
        var nOps = 0
        var sentUpTo: [(Int, Int)] = []
        for r in ranges {
            var s = r.from
            while s < r.to {
                guard let e = log[r.p][s] else {
                    s += 1
                    continue
                }
                if opsW.count + e.bytes.count + 3 > budget { break }
                if testingForgeRelayed && ownerLink[r.p] != nil && !link.forged, s > 0,
                    let prev = log[r.p][s - 1], prev.op.payload != e.op.payload
                {
                    // Test-only: this relay lies once per link (another payload under the op's seq).
                    link.forged = true
                    let forged = GameOp(player: e.op.player, seq: e.op.seq, tick: e.op.tick, payload: prev.op.payload)
                    opsW.bytes(OpChain.encode(forged, as: Game.self))
                    nOps += 1
                    s += 1
                    continue
                }
                if let eq = testingEquivocate, eq.links.contains(l), ownerLink[r.p] == nil, s >= eq.fromSeq {
                    // Test-only: this owner tells this link another history from `fromSeq` on.
                    opsW.bytes(OpChain.encode(altOp(e.op), as: Game.self))
                } else {
                    opsW.bytes(e.bytes)
                }
                nOps += 1
                if ownerLink[r.p] != nil { link.stats.opsForwarded += 1 }
                s += 1
            }
            sentUpTo.append((r.p, s))
        }
        w.varint(UInt64(nOps))
        w.bytes(opsW.bytes)
        w.u8(UInt8(sts.count))
        for st in sts {
            if let eq = testingEquivocate, eq.links.contains(l), ownerLink[Int(st.player)] == nil,
                !testingEquivocateUnsigned
            {
                altStatement(st, from: eq.fromSeq).encode(into: &w)
            } else {
                st.encode(into: &w)
            }
            link.statementSent[Int(st.player)] = Int(st.count)
            link.statementTickSent[Int(st.player)] = st.asOfTick
            link.statementSentAt[Int(st.player)] = now
        }
        w.u8(finalsHeld)
        w.u8(equivocators)
        // Where we cut each player's log by its owner's clock.
        var cutMask: UInt8 = 0
        for p in 0..<log.count where timeCuts[p] != nil { cutMask |= 1 << UInt8(p) }
        w.u8(cutMask)
        for p in 0..<log.count { if let c = timeCuts[p] { w.varint(UInt64(c.seq)) } }
        w.u8(distrusted)
        if ended {
            // The settle report: players settled gone here, our best statement's count per player,
            // and (flag 2) our final hash once everything we settle on is held.
            let final = computeFinal()
            w.u8(final == nil ? 1 : 2)
            w.u8(goneMask)
            var mask: UInt8 = 0
            for p in 0..<log.count where bestStatement[p] != nil { mask |= 1 << UInt8(p) }
            w.u8(mask)
            for p in 0..<log.count where mask & (1 << UInt8(p)) != 0 { w.varint(UInt64(bestCount(p))) }
            if let final {
                w.u64(final)
                for d in finalDigests { w.u32(d) }
            }
        } else {
            w.u8(0)
        }
        if let cp = lastCheckpoint, checkpointDue {
            w.varint(UInt64(cp.tick))
            w.u64(cp.hash)
            w.u32(cp.verdicts)
            for d in cp.digests { w.u32(d) }
            if link.checkpointSent == cp.tick {
                link.checkpointRepeats += 1
            } else {
                link.checkpointSent = cp.tick
                link.checkpointRepeats = 1
            }
        }
        for (p, upTo) in sentUpTo where ownerLink[p] == nil {
            link.sentTwice[p] = max(link.sentTwice[p], min(link.sentOnce[p], upTo))
            link.sentOnce[p] = max(link.sentOnce[p], upTo)
        }
        if retransmit || !ranges.isEmpty { link.lastRetransmit = now }
        link.lastSend = now
        link.packetsSent += 1
        return (w.bytes, fresh)
    }

    // MARK: - Test-only: an equivocating owner

    /// The other history a `testingEquivocate` owner tells some links: each op from the fork on
    /// one tick later (legal under turf's rules: the spacing between moves is kept).
    private func altOp(_ op: GameOp) -> GameOp {
        var o = op
        o.tick = op.tick < config.lengthTicks ? op.tick + 1 : op.tick - 1
        return o
    }

    /// Our own statement re-signed over the other history (h_n of the altered ops from `k` on).
    private mutating func altStatement(_ st: SignedStatement, from k: Int) -> SignedStatement {
        let p = Int(st.player)
        let n = Int(st.count)
        guard n > k else { return st }
        if let c = altSigned[p], c.count == st.count, c.asOfTick == st.asOfTick { return c }
        var h = chain[p][k]
        for s in k..<n { h = OpChain.next(h, opBytes: OpChain.encode(altOp(log[p][s]!.op), as: Game.self)) }
        let msg = SignedStatement.message(
            digest: digest,
            player: st.player,
            count: st.count,
            asOfTick: st.asOfTick,
            chain: h
        )
        let alt = SignedStatement(
            player: st.player,
            count: st.count,
            asOfTick: st.asOfTick,
            signature: identity.sign(msg),
            chain: h
        )
        altSigned[p] = alt
        return alt
    }

    private func mineAcksChanged(_ link: Link) -> Bool {
        for p in 0..<log.count where ownerLink[p] != nil && link.ackSentAt[p] != accepted[p] { return true }
        return false
    }
}
