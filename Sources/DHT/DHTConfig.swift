import Determinism
import Logging
import NetCore
import Sodium

/// Settings of one DHT node. Defaults follow BEP 5 and libtorrent's practice.
public struct DHTConfig: Sendable {
    /// Nodes per bucket and the size of a lookup's result set.
    public var k = 8
    /// Parallel queries in a lookup.
    public var alpha = 3
    /// A query unanswered this long frees its lookup slot (the answer is still accepted later).
    /// The node adapts this to 3× its smoothed round-trip time, within `minSlowAfter...slowAfter`.
    public var slowAfter: Nanos = .milliseconds(1000)
    public var minSlowAfter: Nanos = .milliseconds(250)
    /// A query unanswered this long has failed.
    public var queryTimeout: Nanos = .milliseconds(3000)
    /// Extra attempts for standalone queries (ping, announce_peer). Lookups route around instead.
    public var retries = 1
    /// Most unknown queriers being verified by ping at once.
    public var maxVerifications = 64
    /// Attempts at joining before `start`'s completion reports an empty result.
    public var joinAttempts = 3
    /// Where to start when the routing table is empty, of either family (each family's lookups
    /// start from the addresses of that family). Host names are resolved by the caller.
    public var bootstrap: [PeerAddress] = []
    /// BEP 43: send `ro=1`, do not answer queries.
    public var readOnly = false
    /// Per-bucket limits: one node per IPv4 address or IPv6 /64, `maxPerSubnetInBucket` per IPv4
    /// /24 or IPv6 /48 (loopback exempt).
    public var restrictIPs = true
    public var maxPerSubnetInBucket = 2
    /// BEP 42: adopt an id derived from the external address once it is known and public.
    public var bep42NodeIDs = true
    /// After adopting a BEP 42 id, the next id change waits at least this long: each change
    /// rebuilds the table and rejoins, and a tally that wavers between two reported IPs (a
    /// misreporting peer, stale votes) must not make the node hop ids on every flip.
    public var minIDChangeInterval: Nanos = .seconds(15 * 60)
    /// Per-source query rate (queries per second, burst). Loopback sources are keyed by port.
    public var queryRate: Double = 20
    public var queryBurst: Double = 50
    /// Datagrams longer than this are dropped unparsed.
    public var maxDatagram = 1500
    var peerStore = PeerStore()
    /// Most IPv4 peers returned in one get_peers answer (keeps the answer under ~1000 bytes);
    /// IPv6 peers, three times the size, a quarter of that (as libtorrent does).
    public var maxValuesPerResponse = 50
    public var tokenRotation: Nanos = .seconds(300)
    /// How often announces are repeated; below the 30-minute expiry.
    public var reannounceInterval: Nanos = .seconds(15 * 60)
    /// Buckets unchanged this long are refreshed with a lookup of a random id in their range.
    public var bucketRefresh: Nanos = .seconds(15 * 60)
    /// How often maintenance (refresh, expiry, token rotation) runs.
    public var maintenanceInterval: Nanos = .seconds(60)
    /// A node id pinned by the user: kept even when it does not match our external IP (BEP 42).
    public var nodeID: NodeID? = nil
    /// The id loaded from the state file: used at start, and replaced by a BEP 42 id once the
    /// learned public address shows that it does not match (unlike `nodeID`).
    public var savedNodeID: NodeID? = nil
    /// Seed for ids, transaction ids and token secrets. nil in production: libsodium's CSPRNG.
    /// Set only in simulations, where runs must repeat.
    public var seed: UInt64? = nil
    /// Client version sent as `v` (two letters and two version bytes).
    public var version: [UInt8] = Array("TF".utf8) + [0, 1]

    public init() {}
}

/// Counters a node keeps about itself; bad input is counted here rather than crashing anything.
public struct DHTStats: Sendable, Equatable {
    public init() {}
    public var received: UInt64 = 0
    public var sent: UInt64 = 0
    /// Queries this node sent (a subset of `sent`).
    public var queriesSent: UInt64 = 0
    public var oversized: UInt64 = 0
    public var malformed: UInt64 = 0
    public var rateLimited: UInt64 = 0
    public var queriesAnswered: UInt64 = 0
    public var queriesIgnoredReadOnly: UInt64 = 0
    public var errorsSent: UInt64 = 0
    /// Queries of a method we do not know (answered with a short error, or not at all).
    public var unknownMethods: UInt64 = 0
    /// Error replies not sent because even their shortest form was larger than the query.
    public var errorsSuppressed: UInt64 = 0
    public var responses: UInt64 = 0
    public var errorsReceived: UInt64 = 0
    /// Responses whose transaction id we did not issue or that came from the wrong address.
    public var unexpectedResponses: UInt64 = 0
    /// Node entries left out of answers as unusable (BEP 32: an IPv4-mapped, unspecified or
    /// multicast address in `nodes6`).
    public var droppedNodeEntries: UInt64 = 0
    /// BEP 42 `ip` reports of the other family than the responder's (an IPv4 node reporting an
    /// IPv6 address, or the reverse), ignored.
    public var ipFamilyMismatches: UInt64 = 0
    /// Peers in `values` of a family the socket cannot reach (an IPv6 peer for an IPv4 socket),
    /// left out of lookup results.
    public var unreachablePeers: UInt64 = 0
    public var timeouts: UInt64 = 0
    public var badTokens: UInt64 = 0
    public var peersStored: UInt64 = 0
    /// Announces stored by evicting another entry (a full topic or store).
    public var peersEvicted: UInt64 = 0
    public var idChanges: UInt64 = 0
    /// Id changes the majority asked for within `minIDChangeInterval` of the last one (not made).
    public var idChangesDeferred: UInt64 = 0
    public var itemsStored: UInt64 = 0
    public var itemsRejected: UInt64 = 0
    /// Knocks (docs/dht.md, "Knocking"): `turf_knock` queries accepted and relayed, the
    /// `turf_knocked` datagrams that sent to announcers, knocks refused (rate, size, token),
    /// knocks relayed to us and handed to a handler, and those for an info-hash we do not watch.
    public var knocksRelayed: UInt64 = 0
    public var knocksForwarded: UInt64 = 0
    public var knocksDropped: UInt64 = 0
    public var knocksReceived: UInt64 = 0
    public var knocksUnclaimed: UInt64 = 0
    /// Pings to the nodes that store our announcements (`keepAnnouncing(keepAlive:)`).
    public var keepAlivePings: UInt64 = 0
}

/// NAT behaviour inferred from the addresses other nodes report back (BEP 42 `ip`).
public enum NATType: String, Sendable, Codable {
    case unknown
    /// The same external port seen by several distinct nodes: endpoint-independent mapping.
    case consistent
    /// A different external port per destination: a symmetric NAT.
    case random
}

/// What a lookup produced.
public struct LookupResult: Sendable {
    public var target: NodeID
    /// The closest nodes that answered, closest first, with the tokens they handed out.
    public var closest: [NodeInfo]
    var tokens: [NodeInfo: [UInt8]]
    /// Peers collected by a get_peers lookup.
    public var peers: [PeerAddress]
    public var queriesSent: Int
    public var responsesReceived: Int
    /// Datagrams the lookup caused: queries sent plus answers received.
    public var messages: Int { queriesSent + responsesReceived }
    /// Hops: depth of the deepest node that answered (nodes from the routing table are depth 1).
    public var rounds: Int
    public var duration: Nanos
    /// A BEP 44 `get` lookup: the verified item found (for mutable items, the highest `seq`).
    public var item: DHTItem? = nil
}
