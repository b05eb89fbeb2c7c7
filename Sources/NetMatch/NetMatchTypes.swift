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
