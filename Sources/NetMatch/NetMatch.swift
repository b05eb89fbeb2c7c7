import Determinism
import Engine
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
    case linkDown(OwnerKey)
    case linkUp(OwnerKey)
    /// A peer's state hash at checkpoint `tick` differs from ours: the first bad tick seen.
    case desync(tick: Tick, peer: OwnerKey, ours: UInt64, theirs: UInt64)
    /// A signed statement for `player`, relayed by `from`, did not verify: its ops were dropped.
    case badSignature(player: PlayerID, from: OwnerKey)
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
    public let me: OwnerKey
    public let options: NetMatchOptions
    public let digest: UInt64
    /// Other peers, in config order of their first player.
    public let peers: [OwnerKey]
    /// Spectators linked to this peer (they own no player): every op held here is sent to them at
    /// once (no relay delay), with the statements that cover it; ops they send are dropped.
    /// One that arrives during the match is added by `addWatcher`.
    public private(set) var watchers: [OwnerKey]
    /// Every link's peer: `peers` then `watchers` (a link's index in `links`).
    private var linkKeys: [OwnerKey]
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
        var peerCheckpoint: (tick: Tick, hash: UInt64)?
        var peerTick: Tick = 0
        var peerFinals: UInt8 = 0
        var forged = false
        var left = false
        /// The peer's settle report (sent once its match ended): players it settles without their
        /// final statement, and per player the count of its best verified statement (−1: none).
        var peerSettleKnown = false
        var peerGone: UInt8 = 0
        var peerBest: [Int]
    }
    private var links: [Link]

    // Desync detection: a trailing replica merging ops once final, in tick order.
    private var trail: Replica<Game>
    private var trailSeq: [Int]
    private var nextCheckpoint: Tick
    private var checkpoints: [(tick: Tick, hash: UInt64)] = []
    public private(set) var lastCheckpoint: (tick: Tick, hash: UInt64)?
    public private(set) var desyncReported: Tick?
    /// Test-only: flips the hash this peer computes at this checkpoint tick (forces a desync).
    public var testingCorruptCheckpoint: Tick?
    /// Test-only: this peer forges the first third-party op it relays on each link (another
    /// payload under that op's seq), to show receivers reject forged relayed ops.
    public var testingForgeRelayed = false

    public init(
        config: MatchConfig,
        identity: Ed25519.KeyPair,
        now: UInt64,
        options: NetMatchOptions = NetMatchOptions(),
        watchers: [OwnerKey] = []
    ) throws {
        guard let me = OwnerKey(identity.publicKey) else { throw ConfigError.invalid("identity key is not 32 bytes") }
        guard config.players.allSatisfy({ $0.owner != nil }) else {
            throw ConfigError.invalid("a networked match needs an owner for every player")
        }
        self.config = config
        self.me = me
        self.identity = identity
        self.options = options
        digest = config.digest
        var peers: [OwnerKey] = []
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
            peerBest: Array(repeating: -1, count: n)
        )
    }

    // MARK: - The caller's side

    /// A spectator that arrives while the match runs (docs/netmatch.md, "Spectators and
    /// rejoining"): from now on a watcher link, fed like one linked at the start. `holding` is,
    /// per player, how many ops (from seq 0) it already holds from the match copy it was sent (turf:
    /// the host's snapshot), so only what came after is sent; the statements covering them follow
    /// as for any watcher. The same key again (a restarted spectator) starts its link afresh.
    /// A player's owner is never a watcher.
    public mutating func addWatcher(_ key: OwnerKey, holding: [Int], now: UInt64) {
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
            insert(op, verified: true, via: nil, now: now)
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
    public mutating func peerLeft(_ peer: OwnerKey) {
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
    public mutating func receive(_ bytes: [UInt8], from: OwnerKey, now: UInt64) {
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
            links[l].peerAck[Int(p)] = max(links[l].peerAck[Int(p)], min(ack, log[Int(p)].count))
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
            insert(op, verified: direct, via: direct ? nil : l, now: now)
        }
        // The sender's frontier for its own players: every op it made through tick − 1.
        if packet.tick > 0 {
            for (i, p) in owned[l].enumerated() where i < packet.frontier.count {
                addFrontier(player: Int(p), count: packet.frontier[i], tick: packet.tick - 1)
            }
        }
        for st in packet.statements { consider(st, via: l) }
        links[l].peerFinals |= packet.finals
        if let settle = packet.settle {
            // Counts only grow at the sender; a late, reordered report must not lower them.
            links[l].peerSettleKnown = true
            links[l].peerGone = settle.gone
            for (p, n) in settle.best where Int(p) < accepted.count {
                links[l].peerBest[Int(p)] = max(links[l].peerBest[Int(p)], n)
            }
        }
        if let cp = packet.checkpoint {
            links[l].peerCheckpoint = cp
            compare(link: l)
        }
        advanceCheckpoints()
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
    public mutating func noteRTT(_ peer: OwnerKey, nanos: UInt64) {
        guard let l = linkKeys.firstIndex(of: peer) else { return }
        links[l].rtt = nanos
        links[l].stats.lastRTTNanos = nanos
    }

    /// The datagrams due at `now`, each for one link's unreliable channel. Call once per tick (and
    /// on after the match ends, to finish delivery and keep links alive).
    public mutating func poll(now: UInt64) -> [(to: OwnerKey, bytes: [UInt8])] {
        var out: [(to: OwnerKey, bytes: [UInt8])] = []
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

    public func stats(for peer: OwnerKey) -> LinkStats? {
        linkKeys.firstIndex(of: peer).map { links[$0].stats }
    }

    public func isConnected(_ peer: OwnerKey) -> Bool {
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
        for p in 0..<config.players.count where gone & (1 << UInt8(p)) == 0 {
            guard finals & (1 << UInt8(p)) != 0, finalThrough[p] >= Int64(config.lengthTicks) else { return false }
        }
        for l in links.indices where links[l].stats.connected {
            if links[l].peerFinals & ~gone & allPlayersMask != ~gone & allPlayersMask { return false }
            for p in mine where links[l].peerAck[Int(p)] < log[Int(p)].count { return false }
            guard gone != 0 else { continue }
            guard links[l].peerSettleKnown, links[l].peerGone & gone == gone else { return false }
            for p in 0..<config.players.count where gone & (1 << UInt8(p)) != 0 {
                if links[l].peerBest[p] != bestCount(p) { return false }
            }
        }
        return true
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
        guard goneMask & (1 << UInt8(player)) != 0 else { return nil }
        return max(0, bestCount(Int(player)))
    }

    /// `logs` (a replica's `allLogs`) cut to what the survivors agreed: each gone player's log
    /// to its `settledCount`.
    public func settledLogs(_ logs: [[GameOp]]) -> [[GameOp]] {
        logs.enumerated().map { p, ops in
            guard p < config.players.count, let n = settledCount(PlayerID(p)) else { return ops }
            return ops.filter { Int($0.seq) < n }
        }
    }

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
                signature: identity.sign(msg)
            )
        }
    }

    /// A statement from a link: verify it against the chain, and accept the relayed ops it covers.
    private mutating func consider(_ st: SignedStatement, via l: Int?) {
        let p = Int(st.player)
        guard ownerLink[p] != nil, let owner = config.players[p].owner else { return }
        let n = Int(st.count)
        if let best = bestStatement[p], best.count >= st.count, best.asOfTick >= st.asOfTick { return }
        guard n < chain[p].count else {
            // Not enough ops here yet to check it: keep the newest one until they arrive.
            if n <= accepted[p] + options.maxAheadOps,
                waitingStatement[p].map({ $0.0.count < st.count }) ?? true
            {
                waitingStatement[p] = (st, l)
            }
            return
        }
        drops.verifications += 1
        guard st.verify(digest: digest, chain: chain[p][n], owner: owner) else {
            drops.badSignatures += 1
            events.append(.badSignature(player: PlayerID(p), from: l.map { linkKeys[$0] } ?? me))
            // Drop every unverified op of this player: a relay forged or mangled some of them.
            var first: Int?
            for s in accepted[p]..<log[p].count where log[p][s].map({ !$0.verified }) ?? false {
                log[p][s] = nil
                drops.unverifiedDropped += 1
                if first == nil { first = s }
            }
            if let first { truncateChain(p, at: first) }
            return
        }
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
            checkpoints.append((cp, h))
            if checkpoints.count > options.checkpointMemory { checkpoints.removeFirst() }
            lastCheckpoint = (cp, h)
            nextCheckpoint += config.checkpointInterval
            for l in links.indices { compare(link: l) }
        }
    }

    private mutating func compare(link l: Int) {
        guard let theirs = links[l].peerCheckpoint,
            let ours = checkpoints.last(where: { $0.tick == theirs.tick })
        else { return }
        links[l].peerCheckpoint = nil
        guard ours.hash != theirs.hash else { return }
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
        for p in 0..<log.count where ownerLink[p] != nil && (all || link.ackSentAt[p] != accepted[p]) {
            mask |= 1 << UInt8(p)
        }
        w.u8(mask)
        for p in 0..<log.count where mask & (1 << UInt8(p)) != 0 {
            w.varint(UInt64(accepted[p]))
            link.ackSentAt[p] = accepted[p]
        }
        // Statements (64-byte signatures: a few a second at most).
        var budget = options.maxDatagram - w.count - 12 - (ended ? 3 + 5 * config.players.count : 1)
        var sts: [SignedStatement] = []
        for st in statementsDue.prefix(8) where budget > 80 {
            sts.append(st)
            budget -= 75
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
                opsW.bytes(e.bytes)
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
            st.encode(into: &w)
            link.statementSent[Int(st.player)] = Int(st.count)
            link.statementTickSent[Int(st.player)] = st.asOfTick
            link.statementSentAt[Int(st.player)] = now
        }
        w.u8(finalsHeld)
        if ended {
            // The settle report: players settled gone here, and our best statement's count per player.
            w.u8(1)
            w.u8(goneMask)
            var mask: UInt8 = 0
            for p in 0..<log.count where bestStatement[p] != nil { mask |= 1 << UInt8(p) }
            w.u8(mask)
            for p in 0..<log.count where mask & (1 << UInt8(p)) != 0 { w.varint(UInt64(bestCount(p))) }
        } else {
            w.u8(0)
        }
        if let cp = lastCheckpoint, checkpointDue {
            w.varint(UInt64(cp.tick))
            w.u64(cp.hash)
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

    private func mineAcksChanged(_ link: Link) -> Bool {
        for p in 0..<log.count where ownerLink[p] != nil && link.ackSentAt[p] != accepted[p] { return true }
        return false
    }
}

/// The datagram layout (docs/netmatch.md):
///
///     packet = u8 magic (0xA7) · varint tick (ticks the sender has run)
///              · varint count per player the sender owns (config order): its ops through tick − 1
///              · u8 ackMask · varint ack per set bit (contiguous counts the sender holds)
///              · varint opCount · op* (OpCodec) · u8 statementCount · statement*
///              · u8 finals (bit p: the sender holds p's final statement)
///              · u8 settle (0, or 1 once the sender's match ended: u8 goneMask · u8 bestMask
///                · varint count per set bit, the count of its best statement of that player)
///              · [varint checkpointTick · u64 hash]
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
    /// Sent once the sender's match ended: players it settles gone, its best statement counts.
    var settle: (gone: UInt8, best: [(PlayerID, Int)])?
    var checkpoint: (tick: Tick, hash: UInt64)?

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
        var settle: (gone: UInt8, best: [(PlayerID, Int)])?
        switch try r.u8("settle flag") {
        case 0: break
        case 1:
            let gone = try r.u8("gone mask")
            let mask = try r.u8("best mask")
            var best: [(PlayerID, Int)] = []
            for p in 0..<8 where mask & (1 << UInt8(p)) != 0 {
                let n = try r.count("best count", limit: 1 << 28)
                if p < config.players.count { best.append((PlayerID(p), n)) }
            }
            settle = (gone, best)
        case let f: throw ByteReadError(offset: r.offset, "settle flag \(f)")
        }
        var cp: (Tick, UInt64)?
        if !r.isAtEnd {
            cp = (Tick(try r.count("checkpoint tick", limit: Int(config.lengthTicks))), try r.u64("checkpoint hash"))
        }
        guard r.isAtEnd else { throw ByteReadError(offset: r.offset, "stray bytes") }
        return Packet(
            tick: tick,
            frontier: frontier,
            acks: acks,
            ops: ops,
            statements: sts,
            finals: finals,
            settle: settle,
            checkpoint: cp
        )
    }
}
