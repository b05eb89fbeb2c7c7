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
    /// Most addresses one `probe` call sends to, and most remembered as probe sources.
    public static let maxTargets = 16

    let host: NetworkHost
    public private(set) var probesSent = 0
    public private(set) var probesReceived = 0
    /// Probe-typed datagrams of the wrong length: dropped and counted.
    public private(set) var malformed = 0
    /// Where probes came from, first heard first (at most `maxTargets`).
    public private(set) var heardFrom: [PeerAddress] = []
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
        onProbe?(source)
    }

    /// LAN addresses first (a peer behind the same NAT is reached there; most routers do not
    /// hairpin), then public ones; at most `maxTargets`, no duplicates.
    public static func order(_ targets: [PeerAddress]) -> [PeerAddress] {
        var seen = Set<PeerAddress>()
        let unique = targets.filter { $0.port != 0 && $0.ip != 0 && seen.insert($0).inserted }
        return Array((unique.filter(\.isPrivate) + unique.filter { !$0.isPrivate }).prefix(maxTargets))
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

/// The host's side of the slow path: polls the knock info-hash every `interval` and probes every
/// address that knocked, for `window` after it was first seen. The lookups also keep the host's NAT
/// mappings to the DHT nodes near the lobby alive. Confined to the host's thread.
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
    public private(set) var knocksSeen = 0
    public static let maxRemembered = 256

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
        peer.dht.getPeers(infoHash, onPeers: { [weak self] in self?.knocked($0) }) { [weak self] _ in
            self?.inFlight -= 1
        }
    }

    /// Called with the IPs of knocks that ask for the birthday method (`Birthday.knockPort`: the
    /// joiner's NAT is random, so only its IP means anything); such knocks get no plain probes.
    public var onBirthdayKnock: (([UInt32]) -> Void)?
    /// Called with the plain knocks' addresses the first time each is seen (the birthday method
    /// with the roles reversed starts from them: `BirthdayResponder`).
    public var onPlainKnock: (([PeerAddress]) -> Void)?

    func knocked(_ all: [PeerAddress]) {
        let birthday = all.prefix(HolePuncher.maxTargets * 4).filter { $0.port == Birthday.knockPort }
        if !birthday.isEmpty { onBirthdayKnock?(birthday.map(\.ip)) }
        let addresses = all.filter { $0.port != Birthday.knockPort }
        let now = peer.host.now
        var fresh: [PeerAddress] = []
        var new: [PeerAddress] = []
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
                new.append(a)
            }
        }
        if !new.isEmpty { onPlainKnock?(new) }
        for chunk in stride(from: 0, to: fresh.count, by: HolePuncher.maxTargets) {
            peer.puncher.probe(Array(fresh[chunk..<min(fresh.count, chunk + HolePuncher.maxTargets)]))
        }
    }
}
