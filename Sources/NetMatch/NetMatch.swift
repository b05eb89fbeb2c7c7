import Determinism
import Engine
import Keys
import Sodium

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
    public internal(set) var watchers: [PeerKey]
    /// Every link's peer: `peers` then `watchers` (a link's index in `links`).
    var linkKeys: [PeerKey]
    let identity: Ed25519.KeyPair
    let ownerLink: [Int?]  // per player: index of its owner's link, nil if mine
    var owned: [[PlayerID]]  // per link: players its peer owns
    let mine: [PlayerID]

    // Logs: per player, ops by seq; `verified` = authenticated (direct, own, or signature-covered).
    struct Entry {
        var op: GameOp
        var bytes: [UInt8]
        var verified: Bool
        var acceptedAt: UInt64
        var via: Int?  // link it came from when unverified
    }
    var log: [[Entry?]]
    var accepted: [Int]  // contiguous verified count per player
    var chain: [[[UInt8]]]  // chain[p][n] = h_n for n ≤ chainCount (h_0 first)
    var bestStatement: [SignedStatement?]
    var waitingStatement: [(SignedStatement, Int?)?]  // one unverifiable-yet statement per player
    /// Per player, statements that verified against the chain held here, by asOfTick; and
    /// statements that verify on their own but over another history (docs/netmatch.md,
    /// "Equivocation"). Each holds at most `statementMemory` entries.
    var signedAt: [[Tick: SignedStatement]]
    var foreignAt: [[Tick: SignedStatement]]
    /// Players whose owner is proven to have equivocated, with the two statements that prove it.
    public internal(set) var equivocators: UInt8 = 0
    /// Players whose owner lied to us directly (`unsignedLie`): their ops count here only under a
    /// statement, and their direct ops are dropped.
    public internal(set) var distrusted: UInt8 = 0
    var newRetractions: [(player: PlayerID, from: UInt32)] = []
    var proofs: [Int: (SignedStatement, SignedStatement)] = [:]
    var newVerdicts: [Replay<Game>.Verdict] = []
    /// Per player, where its own signed clock cuts its log (docs/netmatch.md, "Time"): the
    /// earliest op a verified statement of it shows stamped against that clock, with the statement.
    var timeCuts: [(seq: Int, rule: String, tick: Tick, evidence: SignedStatement)?]
    /// Per player, by count n: the verified statement of count n with the latest asOfTick, whose
    /// op n has not arrived yet (it is late if stamped at or before that tick).
    var lateWatch: [[Int: SignedStatement]]
    var frontiers: [[(count: Int, tick: Tick)]]  // claims waiting for the log to catch up
    var finalThrough: [Int64]  // all ops with tick ≤ this are held (−1: none known)
    var acceptedOut: [GameOp] = []
    var events: [NetMatchEvent] = []
    public internal(set) var drops = NetMatchDrops()
    var ticksRun: Tick = 0
    var lastSignedTick: Tick?

    // Per link.
    struct Link {
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
    var links: [Link]

    // Desync detection: a trailing replica merging ops once final, in tick order.
    var trail: Replica<Game>
    var trailSeq: [Int]
    var nextCheckpoint: Tick
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
    var checkpoints: [Checkpoint] = []
    public internal(set) var lastCheckpoint: Checkpoint?
    public internal(set) var desyncReported: Tick?
    /// The final hash (docs/netmatch.md, "Converged means one final hash"): the replica hash of
    /// every op settled on, once everything is held here; and what it was computed from.
    var finalCache: (basis: [Int], hash: UInt64)?
    /// Peers whose final hash differed from ours on the same basis (each reported once).
    public internal(set) var finalMismatches: [PeerKey] = []
    /// Test-only: flips the hash this peer computes at this checkpoint tick (forces a desync).
    package var testingCorruptCheckpoint: Tick?
    /// Test-only: this peer forges the first third-party op it relays on each link (another
    /// payload under that op's seq), to show receivers reject forged relayed ops.
    package var testingForgeRelayed = false
    /// Test-only: this owner equivocates. To the links at these indices (in `peers`) it sends its
    /// own ops from seq `fromSeq` on as another history, under statements signed over that one:
    /// every link gets a validly signed log, but not the same log (docs/netmatch.md, "Equivocation").
    package var testingEquivocate: (fromSeq: Int, links: Set<Int>)?
    /// Test-only, with `testingEquivocate`: the other history goes out unsigned (the statements to
    /// those links stay over the real one).
    package var testingEquivocateUnsigned = false
    /// Test-only: a modified client. Each op this peer makes is rewritten before it is logged,
    /// signed and sent (its own match applied the original): teleports, speed, painting the past.
    package var testingRewriteOwn: (@Sendable (GameOp) -> GameOp)?
    /// Test-only: a lag switch. This peer's own ops from seq `fromSeq` on are logged, signed and
    /// sent `ticks` ticks after they were made (still stamped with the tick they were made at),
    /// while its statements go on as usual.
    package var testingHold: (fromSeq: Int, ticks: Tick)?
    var held: [(release: Tick, op: GameOp)] = []
    var altSigned: [Int: SignedStatement] = [:]

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

    static func newLink(players n: Int, now: UInt64, rtt: UInt64) -> Link {
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
}
