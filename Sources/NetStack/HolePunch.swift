import DHT
import NetCore

/// Hole punching on the peer's one socket (docs/nat.md): probe packets that open this side's NAT
/// mapping towards a peer, and the knock a joiner leaves on the DHT so that a host behind a NAT
/// learns where to probe.
///
/// A probe is `0x10` followed by a 64-bit count (big-endian): it carries nothing and asks for nothing (no reply,
/// so it cannot be used to amplify). Its only job is the packet itself leaving through our NAT,
/// which then lets the peer's handshake in. Confined to the host's thread, like the peer's parts.
public final class HolePuncher {
    public static let probeType: UInt8 = 0x10
    public static let probeLength = 9
    /// An IPv4 header and a UDP header: what every datagram costs on the wire beyond its payload.
    public static let ipUDPHeaderBytes = 28
    /// A probe on the wire.
    public static let probeWireBytes = probeLength + ipUDPHeaderBytes
    /// Most addresses one `probe` call sends to, and most remembered as probe sources.
    public static let maxTargets = 16

    let host: NetworkHost
    public private(set) var probesSent = 0
    public private(set) var probesReceived = 0
    /// Probe-typed datagrams of the wrong length: dropped and counted.
    public private(set) var malformed = 0
    /// Where probes came from, first heard first (at most `maxTargets`).
    public private(set) var heardFrom: [PeerAddress] = []
    /// When the last probe from each address in `heardFrom` arrived.
    public private(set) var lastHeard: [PeerAddress: Nanos] = [:]
    /// Called with each probe's source (the peer resends a pending handshake to it at once).
    public var onProbe: ((PeerAddress) -> Void)?

    init(host: NetworkHost, demux: Demultiplexer) {
        self.host = host
        demux.route([Self.probeType]) { [weak self] payload, source in self?.receive(payload, from: source) }
    }

    private func receive(_ payload: [UInt8], from source: PeerAddress) {
        guard payload.count == Self.probeLength else {
            malformed += 1
            return
        }
        probesReceived += 1
        if heardFrom.count < Self.maxTargets && !heardFrom.contains(source) { heardFrom.append(source) }
        if heardFrom.contains(source) { lastHeard[source] = host.now }
        onProbe?(source)
    }

    /// LAN addresses first (a peer behind the same NAT is reached there; most routers do not
    /// hairpin), then public ones; at most `maxTargets`, no duplicates.
    public static func order(_ targets: [PeerAddress]) -> [PeerAddress] {
        var seen = Set<PeerAddress>()
        let unique = targets.filter { $0.port != 0 && !$0.isUnspecified && seen.insert($0).inserted }
        return Array((unique.filter(\.isPrivate) + unique.filter { !$0.isPrivate }).prefix(maxTargets))
    }

    /// Whether `candidate` is this very socket: bound to `bound` (its IP 0 when bound to every
    /// interface), on a machine whose interfaces have `localIPs` (and `localIPv6`), seen from the internet at
    /// `external` (the address DHT nodes report). Bound to 0.0.0.0, only our own interfaces'
    /// addresses (and loopback) at our port are us: another machine at the same port — two players
    /// who both chose `--port 7000` in different homes — is a peer to dial.
    public static func isOwnAddress(
        _ candidate: PeerAddress,
        bound: PeerAddress,
        localIPs: [UInt32],
        localIPv6: [IPv6Address] = [],
        external: PeerAddress?
    ) -> Bool {
        if let external, candidate == external { return true }
        guard candidate.port == bound.port else { return false }
        if !bound.isUnspecified { return candidate.sameHost(bound) }
        if let v6 = candidate.ip6 { return v6.isLoopback || localIPv6.contains(v6) }
        return candidate.ip >> 24 == 127 || localIPs.contains(candidate.ip)
    }

    /// Sends a probe to each target now and `times - 1` more times, `every` apart.
    public func probe(_ targets: [PeerAddress], times: Int = 5, every: Nanos = .milliseconds(200)) {
        host.assertInLoop()
        let ordered = Self.order(targets)
        guard !ordered.isEmpty else { return }
        for k in 0..<max(1, min(times, 50)) {
            if k == 0 {
                sendRound(ordered)
            } else {
                host.schedule(after: every * Nanos(k)) { [weak self] in self?.sendRound(ordered) }
            }
        }
    }

    private func sendRound(_ targets: [PeerAddress]) {
        for t in targets { sendProbe(to: t) }
    }

    /// Sends one probe to `target` now (counted in `probesSent`).
    public func sendProbe(to target: PeerAddress) {
        host.send(Self.probePacket(UInt64(probesSent)), to: target)
        probesSent += 1
    }

    /// A probe datagram: the type byte and a 64-bit count, big-endian.
    public static func probePacket(_ n: UInt64) -> [UInt8] {
        [probeType] + (0..<8).map { UInt8(truncatingIfNeeded: n >> (56 - 8 * $0)) }
    }

    /// The info-hash a joiner announces itself on to knock at the lobby on `topic` (the slow path:
    /// any BEP 5 node stores it; the host polls it). Distinct from the lobby's own topic hash.
    public static func knockHash(topic: String) -> NodeID { Topic.infoHash("knock\u{0}" + topic) }
}

/// The host's side of the slow path: polls the knock info-hash every `interval` and probes the
/// addresses that knocked, for `window` after each was first seen. The lookups also keep the
/// host's NAT mappings to the DHT nodes near the lobby alive. Confined to the host's thread.
///
/// A full lookup every `lookupEvery` polls (and whenever it knows no holder); in between, one
/// `get_peers` to each of the eight closest nodes the last lookup found (`DHTNode.getPeers(_:at:)`):
/// a joiner's knock lands on the nodes closest to the knock info-hash, so asking them again is
/// what a poll needs, at 8 queries instead of a lookup's 20–40 (every open lobby polls each
/// second: on Mainline that is the host's main load on other people's nodes, and `bench
/// internet`'s main DHT cost). A knock stored elsewhere (the joiner saw other nodes) is found
/// by the next lookup, at most `lookupEvery` polls later.
///
/// **No reflection** (docs/nat.md, "What a knock can make the host send"). The addresses come from
/// whichever DHT node answers the lookup, and nothing proves they are the knockers' own: a hostile
/// node can list 64 addresses it does not own. So every answer pays for the probes it causes: the
/// probes one answer starts (IP and UDP headers included) never exceed the bytes of that answer
/// (`answerBytesLowerBound`, a lower bound of what arrived), shared round-robin over the addresses
/// it lists, at most `probeRounds` each. A knock on this path never starts the birthday method
/// (hundreds of probes, or 256 sockets, for one answer): that takes a fast-path knock, whose relay
/// saw the knocker's address (counted in `birthdayKnocksIgnored`).
public final class KnockWatcher {
    let peer: Peer
    let infoHash: NodeID
    let interval: Nanos
    let window: Nanos
    private var firstSeen: [PeerAddress: Nanos] = [:]
    private var timer: TimerToken?
    /// Lookups running: at most two at once (one slowed by silent nodes does not stop the next).
    private var inFlight = 0
    public private(set) var polls = 0
    /// Full lookups among the polls.
    public private(set) var lookups = 0
    public static let lookupEvery = 10
    /// The closest nodes the last lookup found, polled directly until the next one.
    private var holders: [NodeInfo] = []
    private var sinceLookup = 0
    public private(set) var knocksSeen = 0
    /// The accounting of the budget: what answers carrying knocks brought (at least), and the probe
    /// bytes they paid for (each probe `HolePuncher.probeWireBytes`); never more than `creditBytes`.
    public private(set) var creditBytes = 0
    public private(set) var probeBytes = 0
    /// Probes a knock would have had (`probeRounds` per address and answer) that no answer paid for.
    public private(set) var probesWithheld = 0
    /// Port-1 (birthday) knocks seen on this path: not acted on, counted.
    public private(set) var birthdayKnocksIgnored = 0
    public static let maxRemembered = 256
    /// Most probes one answer gives one address (200 ms apart).
    public static let probeRounds = 5

    public init(peer: Peer, topic: String, interval: Nanos = .seconds(1), window: Nanos = .seconds(20)) {
        self.peer = peer
        infoHash = HolePuncher.knockHash(topic: topic)
        self.interval = interval
        self.window = window
    }

    public func start() {
        peer.host.assertInLoop()
        poll()
    }

    public func stop() {
        timer?.cancel()
        timer = nil
    }

    private func poll() {
        timer = peer.host.schedule(after: interval) { [weak self] in self?.poll() }
        guard inFlight < 2 else { return }
        inFlight += 1
        polls += 1
        let onValues: (PeerHolder, [PeerAddress]) -> Void = { [weak self] holder, values in
            self?.knocked(values, credit: Self.answerBytesLowerBound(values: values.count, token: holder.tokenLength))
        }
        if holders.isEmpty || sinceLookup >= Self.lookupEvery - 1 {
            sinceLookup = 0
            lookups += 1
            peer.dht.getPeers(infoHash, onValues: onValues) { [weak self] r in
                self?.inFlight -= 1
                self?.holders = Array(r.closest.prefix(8))
            }
        } else {
            sinceLookup += 1
            peer.dht.getPeers(infoHash, at: holders, onValues: onValues) { [weak self] in self?.inFlight -= 1 }
        }
    }

    /// The fewest bytes a KRPC `get_peers` answer listing `values` peers with a `token` of that
    /// length can be on the wire: `d1:rd2:id20:…5:token…6:valuesl(6:……)e e1:t…1:y1:re`, with an
    /// empty transaction id, no `nodes`, and the IPv4 and UDP headers (28 bytes).
    public static func answerBytesLowerBound(values: Int, token: Int) -> Int {
        let fixed =
            "d1:rd2:id20:".utf8.count + 20 + "5:token".utf8.count + "\(token):".utf8.count + token
            + "6:valuesl".utf8.count + "ee1:t0:1:y1:re".utf8.count
        return fixed + 8 * values + HolePuncher.ipUDPHeaderBytes
    }

    /// Called with the plain knocks' addresses the first time each is seen (the birthday method
    /// with the roles reversed starts from them: `BirthdayResponder`). The slow path no longer
    /// calls it (see above); kept for the fast path's listener, which shares the wiring.
    public var onPlainKnock: (([PeerAddress]) -> Void)?
    /// Called with the IPs of birthday knocks. The slow path no longer calls it (see above).
    public var onBirthdayKnock: (([UInt32]) -> Void)?

    /// One answer listed `all`, and brought at least `credit` bytes: probe the knocks within their
    /// window, with at most `credit` bytes of probes.
    public func knocked(_ all: [PeerAddress], credit: Int) {
        birthdayKnocksIgnored += all.prefix(HolePuncher.maxTargets * 4).filter { $0.port == Birthday.knockPort }.count
        let addresses = all.filter { $0.port != Birthday.knockPort }
        let now = peer.host.now
        var fresh: [PeerAddress] = []
        for a in addresses.prefix(HolePuncher.maxTargets * 4) {
            if let t = firstSeen[a] {
                if now &- t < window { fresh.append(a) }
            } else {
                if firstSeen.count >= Self.maxRemembered,
                    let oldest = firstSeen.min(by: { $0.value < $1.value })
                {
                    firstSeen[oldest.key] = nil
                }
                firstSeen[a] = now
                knocksSeen += 1
                fresh.append(a)
            }
        }
        guard !fresh.isEmpty else { return }
        creditBytes += credit
        // Round-robin: every address its first probe before any gets a second.
        var budget = credit / HolePuncher.probeWireBytes
        var times = [Int](repeating: 0, count: fresh.count)
        round: for _ in 0..<Self.probeRounds {
            for i in fresh.indices {
                guard budget > 0 else { break round }
                times[i] += 1
                budget -= 1
            }
        }
        probesWithheld += fresh.count * Self.probeRounds - times.reduce(0, +)
        probeBytes += times.reduce(0, +) * HolePuncher.probeWireBytes
        for n in Set(times).sorted() where n > 0 {
            let group = fresh.indices.filter { times[$0] == n }.map { fresh[$0] }
            for chunk in stride(from: 0, to: group.count, by: HolePuncher.maxTargets) {
                peer.puncher.probe(Array(group[chunk..<min(group.count, chunk + HolePuncher.maxTargets)]), times: n)
            }
        }
    }
}

/// Happy eyeballs (RFC 8305) for a joiner's handshakes: the IPv6 candidates first, the IPv4 ones
/// `delay` later; the first session to complete wins and the others are closed. With no IPv6
/// candidate (or no IPv4 one) everything starts at once.
public struct HappyEyeballs: Sendable {
    /// RFC 8305 recommends 250 ms with a 100 ms floor; the floor: a game's join is waited on, and
    /// a LAN or direct IPv6 handshake that is going to work completes well within it.
    public static let delay: Nanos = .milliseconds(100)
    /// Handshakes to start now, and `delay` after the start.
    public let first: [PeerAddress]
    public let later: [PeerAddress]

    public init(_ ordered: [PeerAddress]) {
        let v6 = ordered.filter(\.isIPv6)
        let v4 = ordered.filter { !$0.isIPv6 }
        if v6.isEmpty || v4.isEmpty {
            first = ordered
            later = []
        } else {
            first = v6
            later = v4
        }
    }

    /// Seconds to wait, from a start at `began` (monotonic ns), until the IPv4 handshakes are due.
    public static func wait(since began: Nanos, now: Nanos = monotonicNanos()) -> Double {
        let due = began &+ delay
        return now >= due ? 0 : max(0.001, Double(due - now) / 1e9)
    }
}
