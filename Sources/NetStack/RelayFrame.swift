import DHT
import NetCore

/// Relay frames (docs/nat.md, "Relaying"): the datagrams a client exchanges with a volunteer relay
/// (`turf dht serve --relay`) on the shared socket. First byte `0x1C`, second the operation:
///
/// | op | frame | bytes |
/// |---|---|---|
/// | `0x01` register | `1C 01` tag(20) nonce(8): a host offers itself for the lobby `tag` | 30 |
/// | `0x02` join | `1C 02` tag(20) nonce(8): a joiner asks for a channel to that lobby's host | 30 |
/// | `0x81` registered | `1C 81` nonce(8) status(1): the answer to a register | 11 |
/// | `0x82` joined | `1C 82` nonce(8) status(1) channel(4): the answer to a join | 15 |
/// | `0x04` data | `1C 04` channel(4) payload: a packet of the end-to-end session, either way | 6 + ≤ 1232 |
///
/// Integers are big-endian. Every answer is smaller than the request that caused it, and data is
/// forwarded only between the two addresses of a channel: the relay cannot be used to amplify or
/// to reach anyone who did not register. The payload is the session's own packet (Noise
/// ciphertext); the relay never holds a key.
public enum RelayFrame: Equatable, Sendable {
    case register(tag: NodeID, nonce: UInt64)
    case join(tag: NodeID, nonce: UInt64)
    case registered(nonce: UInt64, status: RelayStatus)
    case joined(nonce: UInt64, status: RelayStatus, channel: UInt32)
    case data(channel: UInt32, payload: [UInt8])

    public static let type: UInt8 = 0x1C
    /// The largest payload a data frame carries: a session packet (≤ 1200 bytes) with room to spare.
    public static let maxPayload = 1232
    static let requestLength = 30

    public func encode() -> [UInt8] {
        var out: [UInt8] = [Self.type]
        switch self {
        case .register(let tag, let nonce):
            out.append(0x01)
            out += tag.bytes
            Self.put(nonce, 8, &out)
        case .join(let tag, let nonce):
            out.append(0x02)
            out += tag.bytes
            Self.put(nonce, 8, &out)
        case .registered(let nonce, let status):
            out.append(0x81)
            Self.put(nonce, 8, &out)
            out.append(status.rawValue)
        case .joined(let nonce, let status, let channel):
            out.append(0x82)
            Self.put(nonce, 8, &out)
            out.append(status.rawValue)
            Self.put(UInt64(channel), 4, &out)
        case .data(let channel, let payload):
            out.append(0x04)
            Self.put(UInt64(channel), 4, &out)
            out += payload
        }
        return out
    }

    /// nil for anything malformed: wrong type, unknown op, wrong length, unknown status.
    public static func decode(_ b: [UInt8]) -> RelayFrame? {
        guard b.count >= 2, b[0] == type else { return nil }
        switch b[1] {
        case 0x01, 0x02:
            guard b.count == requestLength, let tag = NodeID(bytes: b[2..<22]) else { return nil }
            let nonce = get(b, 22, 8)
            return b[1] == 0x01 ? .register(tag: tag, nonce: nonce) : .join(tag: tag, nonce: nonce)
        case 0x81:
            guard b.count == 11, let s = RelayStatus(rawValue: b[10]) else { return nil }
            return .registered(nonce: get(b, 2, 8), status: s)
        case 0x82:
            guard b.count == 15, let s = RelayStatus(rawValue: b[10]) else { return nil }
            return .joined(nonce: get(b, 2, 8), status: s, channel: UInt32(get(b, 11, 4)))
        case 0x04:
            guard b.count >= 7, b.count - 6 <= maxPayload else { return nil }
            return .data(channel: UInt32(get(b, 2, 4)), payload: Array(b[6...]))
        default: return nil
        }
    }

    private static func put(_ v: UInt64, _ n: Int, _ out: inout [UInt8]) {
        for i in (0..<n).reversed() { out.append(UInt8(truncatingIfNeeded: v >> (8 * UInt64(i)))) }
    }

    private static func get(_ b: [UInt8], _ at: Int, _ n: Int) -> UInt64 {
        var v: UInt64 = 0
        for i in at..<(at + n) { v = v << 8 | UInt64(b[i]) }
        return v
    }

    /// The info-hash volunteer relays announce themselves on; clients find them with `get_peers`.
    public static let relayInfoHash = Topic.infoHash("turf relay v1")
    /// Where players that relay for others announce (`RelayServer.Config.player`): clients try
    /// a match's own members first, then volunteers (`relayInfoHash`), then these.
    public static let playerRelayInfoHash = Topic.infoHash("turf player relay v1")
    /// Player relays also announce on one shard info-hash per level (picked by their node id),
    /// and a pair looks up the shard its tag picks at each level: one DHT answer lists a sample
    /// of at most 50–64 relays, so with hundreds or thousands of player relays a host and a
    /// joiner would each rank a different sample of the single info-hash and rarely pick the
    /// same relay. A shard is a smaller list, seen whole by both up to about 1,000 player relays
    /// at 16 shards (and mostly alike above). Both rank the finest level first. Since relays
    /// announce the tags they hold (`holderHash`), the shard is the joiner's fallback, for a
    /// holder's announce not landed yet: `bench internet` measured one level of 16 against two
    /// (16 and 256: the same joins, 16 more DHT messages a join) and none (docs/benchmarks.md).
    public static let playerRelayShardLevels = [16]

    /// The info-hash of player-relay shard `shard` of `shards` (1: `playerRelayInfoHash`).
    public static func playerRelayShard(_ shard: Int, of shards: Int) -> NodeID {
        shards <= 1 ? playerRelayInfoHash : Topic.infoHash("turf player relay v1/\(shards)/\(shard % shards)")
    }

    /// The shard of `shards` a relay (by its node id) or a pair (by its tag) uses.
    public static func playerRelayShard(for id: NodeID, of shards: Int) -> NodeID {
        playerRelayShard(Int(id.a % UInt64(max(1, shards))), of: shards)
    }

    /// Where relays that hold a registration for `tag` announce themselves (`RelayServer.onNewTag`):
    /// a joiner looks it up beside the shards and tries those relays first.
    public static func holderHash(_ tag: NodeID) -> NodeID { Topic.infoHash("turf relay holds v1/" + tag.hexString) }

    /// Holders a joiner tries at most (ranked by the tag): the host registers at
    /// `RelayClient.maxRegistrations`; more answers are stale or forged.
    public static let maxHolders = 2 * RelayClient.maxRegistrations

    /// The rendezvous tag of the lobby on `topic`: host and joiner both know the topic.
    public static func tag(topic: String) -> NodeID { Topic.infoHash("relay\u{0}" + topic) }

    /// Relays in the order both sides of `tag` prefer them (rendezvous hashing), so a host and a
    /// joiner that found different sets still pick the same ones first. No duplicates.
    public static func rank(_ relays: [PeerAddress], tag: NodeID) -> [PeerAddress] {
        var seen = Set<PeerAddress>()
        return relays.filter { $0.port != 0 && !$0.isUnspecified && seen.insert($0).inserted }
            .map { ($0, Topic.infoHash(tag.hexString + "@" + $0.description).bytes) }
            .sorted { $0.1.lexicographicallyPrecedes($1.1) }
            .map(\.0)
    }

    /// The relays a pair tries, in order (docs/nat.md, "Players relay for each other"): the
    /// match's own members that relay first, then volunteers (`turf dht serve --relay`), then
    /// players that relay for strangers, each class ranked by `rank`. A relay listed in an
    /// earlier class is not repeated, and `excluding` (this process's own addresses, the other
    /// end of the pair) never appears: a process is never its own relay.
    public static func order(
        members: [PeerAddress],
        volunteers: [PeerAddress],
        players: [PeerAddress],
        tag: NodeID,
        excluding: Set<PeerAddress>
    ) -> [PeerAddress] {
        order(
            members: members,
            volunteers: volunteers,
            players: RelaysFound.Players(all: players),
            tag: tag,
            excluding: excluding
        )
    }

    /// As above, with the players found by `Peer.findRelays`: those of the pair's shards, finest
    /// level first (a shard both sides see whole), before the sample of all player relays. A
    /// joiner passes `holders` (relays that announced they hold the tag, at most `maxHolders`):
    /// tried after members, before volunteers. The host does not: an announce on the holder
    /// hash is anyone's to make, and must not steer where the host registers.
    public static func order(
        members: [PeerAddress],
        holders: [PeerAddress] = [],
        volunteers: [PeerAddress],
        players: RelaysFound.Players,
        tag: NodeID,
        excluding: Set<PeerAddress>
    ) -> [PeerAddress] {
        var seen = excluding
        var out: [PeerAddress] = []
        let ranked =
            [rank(members, tag: tag), Array(rank(holders, tag: tag).prefix(maxHolders)), rank(volunteers, tag: tag)]
            + (players.shards.reversed() + [players.all]).map { rank($0, tag: tag) }
        for cls in ranked {
            for a in cls where seen.insert(a).inserted { out.append(a) }
        }
        return out
    }
}

/// A relay's answer to a register or a join.
public enum RelayStatus: UInt8, Sendable {
    case ok = 0
    /// join: no host registered for the tag.
    case noHost = 1
    /// register: another address holds the tag.
    case busy = 2
    /// the client's session quota or the relay's capacity is used up.
    case quota = 3
}

/// What a pair's relay lookups found (`Peer.findRelays`).
public struct RelaysFound: Sendable, Equatable {
    /// The player relays found: those of the pair's shard at each level (in the order of the
    /// levels looked up, coarsest first), and a sample of all of them.
    public struct Players: Sendable, Equatable {
        public var shards: [[PeerAddress]]
        public var all: [PeerAddress]
        public init(shards: [[PeerAddress]] = [], all: [PeerAddress] = []) {
            self.shards = shards
            self.all = all
        }
        public var isEmpty: Bool { shards.allSatisfy(\.isEmpty) && all.isEmpty }
    }
    /// Relays that announced they hold a registration for the tag (`RelayFrame.holderHash`).
    public var holders: [PeerAddress] = []
    /// Volunteers (`turf dht serve --relay`).
    public var volunteers: [PeerAddress] = []
    public var players = Players()
    public init() {}
}

/// A joiner's walk down the relays, round by round (turf's `JoinRelay`, and `bench internet`'s
/// joins, so both walk alike). Each round joins the first `perRound` of the ranking
/// (`RelayFrame.order`), those that failed fewer times first: the ranking may grow between rounds
/// (the lookups answer as they go), and a relay found late but ranked high is still tried before
/// one that failed. A round is over when every join came back without a channel, or when its
/// channels carried no session within `handshakeGrace` (then those relays count as failed): a
/// relay that answers joins but forwards nothing (full, or hostile) must not end the join.
public struct RelayWalk: Sendable, Equatable {
    /// Relays whose join failed (no channel, or no session through it), and how often.
    public private(set) var failures: [PeerAddress: Int] = [:]
    /// Rounds begun, and joins not answered yet.
    public private(set) var rounds = 0
    public private(set) var outstanding = 0
    /// The relays of the current round that gave a channel, and when the first did.
    private var channels: [PeerAddress] = []
    private var channelAt: Nanos?

    /// Relays joined per round (two: one may be full or unreachable), and rounds at most.
    public static let perRound = 2
    public static let maxRounds = 5
    /// How long a round's channels may go without a session: a handshake resends every second,
    /// so this is two resends, well above a relayed round trip.
    public static let handshakeGrace: Nanos = .milliseconds(2500)

    public init() {}

    /// `ranked` with the relays that failed fewer times first; a stable sort, so within one
    /// failure count the ranking stays.
    public func ordered(_ ranked: [PeerAddress]) -> [PeerAddress] {
        ranked.enumerated().sorted { a, b in
            let (fa, fb) = (failures[a.element] ?? 0, failures[b.element] ?? 0)
            return fa != fb ? fa < fb : a.offset < b.offset
        }.map(\.element)
    }

    /// The relays the next round joins.
    public func nextRound(_ ranked: [PeerAddress]) -> [PeerAddress] { Array(ordered(ranked).prefix(Self.perRound)) }

    /// Whether `ranked` holds a relay not joined yet (the next round may go at once).
    public func hasUntried(_ ranked: [PeerAddress]) -> Bool { ranked.contains { failures[$0] == nil } }

    /// A round joins `relays` (maybe none: it still counts).
    public mutating func begin(_ relays: [PeerAddress]) {
        rounds += 1
        outstanding += relays.count
        channels = []
        channelAt = nil
    }

    /// `relay` answered a join of this walk: with a channel (a session started through it) or not.
    public mutating func answered(_ relay: PeerAddress, channel: Bool, now: Nanos) {
        outstanding = max(0, outstanding - 1)
        if channel {
            channels.append(relay)
            if channelAt == nil { channelAt = now }
        } else {
            failures[relay, default: 0] += 1
        }
    }

    /// Whether another round may begin now (rounds left, and this one over); a round that gave
    /// channels and no session counts them as failed, once.
    public mutating func endRound(now: Nanos) -> Bool {
        guard rounds < Self.maxRounds, outstanding == 0 else { return false }
        if let at = channelAt {
            guard now &- at > Self.handshakeGrace else { return false }
            for r in channels { failures[r, default: 0] += 1 }
        }
        channels = []
        channelAt = nil
        return true
    }
}
