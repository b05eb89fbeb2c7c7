import DHT
import NetCore
import Sodium

/// The knock's fast path (docs/nat.md): the joiner's candidate addresses, sealed so that the DHT
/// nodes relaying them learn nothing, sent through the nodes that store the host's announcement
/// (`DHTNode.knock`), which already have a live NAT mapping to the host.
///
/// The blob is `0x02 · n · n × (size · compact address)` (n ≤ `maxAddresses`, size 6 for IPv4 and
/// 18 for IPv6: `PeerAddress.tagged`), sealed (`SealedBox`) to the
/// host's key when the joiner knows it (joining by key or invite: the X25519 form of its Ed25519
/// key), else to a key pair derived from the topic, which nodes that see only the info-hash do not
/// know.
public enum KnockSeal {
    public static let version: UInt8 = 2
    public static let maxAddresses = 8

    /// The key pair a topic's knocks are sealed to when the host's key is not known.
    public static func topicKeys(topic: String) -> X25519.KeyPair {
        let seed = SecretBytes(copying: BLAKE2b.hash(Array("turf:knock-seal:v1:\(topic)".utf8), length: .bytes32))
        // `!`: a 32-byte secret always gives a key pair (crypto_scalarmult_base of a clamped scalar).
        return (try? X25519.KeyPair(secretKey: seed))!
    }

    /// The sealed blob carrying `addresses` (the first `maxAddresses`) to the holder of `publicKey`.
    public static func seal(_ addresses: [PeerAddress], to publicKey: [UInt8]) -> [UInt8]? {
        let list = Array(addresses.prefix(maxAddresses))
        let plain = [version, UInt8(list.count)] + PeerAddress.tagged(list)
        return try? SealedBox.seal(plain, to: publicKey)
    }

    /// The addresses in a blob sealed to one of `keys`; nil if none opens it or it is malformed.
    public static func open(_ blob: [UInt8], with keys: [X25519.KeyPair]) -> [PeerAddress]? {
        guard blob.count <= DHTNode.maxKnockBlob else { return nil }
        for k in keys {
            guard let plain = SealedBox.open(blob, with: k) else { continue }
            guard plain.count >= 2, plain[0] == version, Int(plain[1]) <= maxAddresses,
                let list = PeerAddress.untagged(plain.dropFirst(2), limit: maxAddresses), list.count == Int(plain[1])
            else { return nil }
            return list
        }
        return nil
    }
}

/// The host's side of the fast path: opens each knock relayed to it for its lobby and probes the
/// knocker at once. Where it probes: the knocker's address as the relaying node saw it (its NAT
/// mapping), and from the blob only LAN addresses and addresses of that same IP (an IPv6 knock: that
/// same IPv6 address; the joiner knocks over both families to have both probed), so a forged blob
/// cannot aim the probes at a third party. One knocker is probed at most once per second (it
/// knocks through several nodes at once); at most 20 knocks a second are acted on. Confined to
/// the host's thread.
public final class KnockListener {
    let peer: Peer
    let infoHash: NodeID
    let keys: [X25519.KeyPair]
    private var lastProbed: [PeerAddress: Nanos] = [:]
    private var budget: (tokens: Int, at: Nanos) = (20, 0)
    /// Knocks opened and probed, opened but already probed within the second, not opened (wrong
    /// key, damaged, malformed), and refused over the rate.
    public private(set) var opened = 0
    public private(set) var repeated = 0
    public private(set) var unopened = 0
    public private(set) var limited = 0
    public static let maxRemembered = 256
    /// Knocks that would have started a burst (the birthday method, or the reversed one: hundreds
    /// of probes at one IP) but that only one relaying /24 vouched for.
    public private(set) var uncorroborated = 0
    /// Per knocker IP: the /24s of the nodes that relayed its knocks in the last
    /// `corroborationNanos`, and whether its burst was started.
    private var witnesses: [UInt32: (relays: Set<UInt32>, first: Nanos, fired: Bool)] = [:]
    private var responderFiredAt: [UInt32: Nanos] = [:]
    /// A burst starts only once knocks from one IP came through nodes in two different /24s
    /// within this window: one hostile DHT node cannot aim it at a third party (docs/nat.md,
    /// "What a knock can make the host send"). An honest joiner knocks through every node that
    /// holds the lobby (up to 8) at once.
    public static let corroborationNanos: Nanos = 3_000_000_000
    /// Called with the knocker's IP when its knock carries `Birthday.knockMarker` (its NAT is
    /// random) or `Birthday.unsureMarker` (not classified yet).
    public var onBirthdayKnock: (([UInt32]) -> Void)?
    /// Called with the knocker's address (as the relaying node saw it) for a knock without
    /// `Birthday.knockMarker`: a plain one, or one whose knocker is not sure (the reversed method,
    /// if our own NAT is random, is the way for a consistent knocker).
    public var onPlainKnock: (([PeerAddress]) -> Void)?

    /// Listens for knocks on `infoHash`, sealed to any of `keys`.
    public init(peer: Peer, infoHash: NodeID, keys: [X25519.KeyPair]) {
        self.peer = peer
        self.infoHash = infoHash
        self.keys = keys
    }

    public func start() {
        peer.dht.onKnock(infoHash) { [weak self] in self?.received($0) }
    }

    public func stop() { peer.dht.onKnock(infoHash, nil) }

    func received(_ k: Knock) {
        let now = peer.host.now
        if now &- budget.at >= 1_000_000_000 { budget = (20, now) }
        guard budget.tokens > 0 else {
            limited += 1
            return
        }
        budget.tokens -= 1
        guard let listed = KnockSeal.open(k.blob, with: keys) else {
            unopened += 1
            return
        }
        // IPv6 has no NAT to guess ports behind: no birthday bursts for a knock that came over it.
        if !k.source.isIPv6 {
            burstIfCorroborated(
                k,
                birthday: listed.contains(Birthday.knockMarker) || listed.contains(Birthday.unsureMarker),
                reversed: !listed.contains(Birthday.knockMarker),
                now: now
            )
        }
        if let t = lastProbed[k.source], now &- t < 1_000_000_000 {
            repeated += 1
            return
        }
        if lastProbed.count >= Self.maxRemembered { lastProbed = lastProbed.filter { now &- $0.value < 1_000_000_000 } }
        if lastProbed.count >= Self.maxRemembered { lastProbed.removeAll() }
        lastProbed[k.source] = now
        opened += 1
        let targets =
            [k.source] + listed.filter { !Birthday.isMarker($0) && ($0.isPrivate || $0.sameHost(k.source)) }
        peer.puncher.probe(targets)
    }
}

extension KnockListener {
    /// Starts the bursts a knock asks for. `birthday` (the knock carries a marker: the knocker's
    /// NAT is random or not classified yet): the birthday method at the knocker's IP, as the
    /// relaying nodes saw it, once knocks from it came through two /24s. `reversed` (no
    /// `Birthday.knockMarker`: the knocker's NAT is consistent, or may be): the reversed method
    /// at the knocker's address. A knock of a joiner that is not sure asks for both; the host's
    /// own NAT decides which one runs (`BirthdayProbers.enabled`, `BirthdayResponder.enabled`).
    func burstIfCorroborated(_ k: Knock, birthday: Bool, reversed: Bool, now: Nanos) {
        if birthday { corroborate(k, now: now) }
        if reversed { reverse(k, now: now) }
    }

    /// The birthday method: up to 2,000 probes at the IP. Two /24s must vouch for it.
    private func corroborate(_ k: Knock, now: Nanos) {
        let ip = k.source.ip
        var w: (relays: Set<UInt32>, first: Nanos, fired: Bool) =
            witnesses[ip].flatMap { now &- $0.first < Self.corroborationNanos ? $0 : nil } ?? ([], now, false)
        w.relays.insert(k.relay.ip >> 8)
        if witnesses.count >= Self.maxRemembered {
            witnesses = witnesses.filter { now &- $0.value.first < Self.corroborationNanos }
            if witnesses.count >= Self.maxRemembered { witnesses.removeAll() }
        }
        defer { witnesses[ip] = w }
        guard !w.fired else { return }
        guard w.relays.count >= 2 else {
            uncorroborated += 1
            return
        }
        w.fired = true
        onBirthdayKnock?([ip])
    }

    /// The reversed method (our NAT is random): one probe from each of 256 sockets at the
    /// knocker's address. A random host's announcement often matches at one node only, so one
    /// relay is enough, but an IP gets at most one such burst every 10 s.
    private func reverse(_ k: Knock, now: Nanos) {
        let ip = k.source.ip
        if let t = responderFiredAt[ip], now &- t < 10_000_000_000 { return }
        if responderFiredAt.count >= Self.maxRemembered {
            responderFiredAt = responderFiredAt.filter { now &- $0.value < 10_000_000_000 }
            if responderFiredAt.count >= Self.maxRemembered { responderFiredAt.removeAll() }
        }
        responderFiredAt[ip] = now
        onPlainKnock?([k.source])
    }
}

/// The joiner's side of the fast path: looks the lobby's info-hash up and, as each node that
/// stores one of the host's addresses answers, asks it to relay the sealed blob. Confined to the
/// host's thread.
public final class KnockSender {
    let peer: Peer
    /// Knocks sent, and nodes that relayed one to at least one announcer.
    public private(set) var sent = 0
    public private(set) var relayed = 0
    private var asked = Set<PeerAddress>()
    public static let maxHolders = 8

    public init(peer: Peer) { self.peer = peer }

    /// Knocks at the announcers of `infoHash` through every node (at most `maxHolders`) whose
    /// answer lists one of `hosts` (any announcer if `hosts` is empty).
    public func knock(_ infoHash: NodeID, blob: [UInt8], hosts: Set<PeerAddress>) {
        peer.host.assertInLoop()
        peer.dht.getPeers(
            infoHash,
            onValues: { [weak self] holder, values in
                guard let self, self.asked.count < Self.maxHolders, !self.asked.contains(holder.node.address),
                    hosts.isEmpty || values.contains(where: hosts.contains)
                else { return }
                self.asked.insert(holder.node.address)
                self.sent += 1
                self.peer.dht.knock(infoHash, blob: blob, via: holder) { [weak self] n in
                    if let n, n > 0 { self?.relayed += 1 }
                }
            }
        ) { _ in }
    }
}
