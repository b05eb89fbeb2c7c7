import DHT
import Foundation
import Keys
import Lobby
import NetCore
import NetPOSIX
import NetStack
import Sodium
import TextOutput
import Transport

/// NAT traversal in `turf host` / `turf join` (docs/nat.md): the `nat` event, the host's knock
/// watcher, and the joiner's connect phase that knocks and tries every candidate at once.
extension NetRuntime {
    /// The NAT classification from what DHT nodes reported so far, and the external address.
    /// From the latest `stats` event (once a second); before the first one, and while it says
    /// unknown, asked of the loop: a `stats` event taken before the classification settled may
    /// still wait in the mailbox, and must not take back what the loop answered a moment ago (the
    /// host's birthday methods switched off and on again, the `nat` event printed twice).
    func natStatus() -> (kind: NATKind, external: PeerAddress?) {
        let (type, ext) =
            stats.natType.flatMap { $0 == .unknown ? nil : ($0, stats.externalAddress) }
            ?? ((try? live.sync { ($0.dht.natType, $0.dht.externalAddress) }) ?? (.unknown, nil))
        return (NATKind.classify(dht: type, external: ext, localIPs: LocalInterfaces.ipv4()), ext)
    }

    func emitNAT(_ s: (kind: NATKind, external: PeerAddress?)) {
        natKind = s.kind
        let v6 = ipv6Reach()
        let ext6 = stats.externalAddress6
        event("nat") { j in
            j.add("nat", s.kind.rawValue)
            j.add("external_address", s.external?.description)
            j.add("ipv6", v6.rawValue)
            j.add("external_address_ipv6", ext6?.description)
        }
    }

    /// IPv6: open, firewalled or none (`IPv6Reach`), from the latest `stats` event.
    func ipv6Reach() -> IPv6Reach {
        IPv6Reach.classify(
            socketSpeaksIPv6: live.localAddress.isIPv6,
            hasGlobalAddress: LocalInterfaces.hasGlobalIPv6(),
            unsolicited: stats.unsolicitedIPv6
        )
    }

    /// The outcome of `connectToHost`.
    struct HostConnection {
        var link: UInt32?
        var key: PeerKey?
        var failedOnPassphrase = false
        /// The relay the session runs through, if it is relayed.
        var relay: PeerAddress?
    }

    /// Knocks (the joiner announces itself on the lobby's knock info-hash, which the host polls and
    /// answers with probes that open its NAT), probes the host's candidates (LAN first), and starts
    /// a handshake to every candidate at once: the first that completes with the right key wins and
    /// the others are closed. A relay joins in after a short wait, and behind a random (or not yet
    /// classified) NAT the birthday method (NetRuntime+Birthday.swift). Emits `nat` and
    /// `connected` when done.
    func connectToHost(
        _ candidates: [PeerAddress],
        topic: String,
        psk: SecretBytes?,
        expected: PeerKey?,
        memberRelays: [PeerAddress] = [],
        relayLookup: RelayLookup? = nil
    ) -> HostConnection {
        freshStats()
        let nat = natStatus()  // the joiner's own NAT decides the birthday method
        let began = monotonicNanos()
        // Never through ourselves, nor through the host (a relay that is the other end is no help).
        let own = [nat.external, stats.externalAddress6, live.localAddress].compactMap { $0 }
        let relay = JoinRelay(
            rt: self,
            topic: topic,
            psk: psk,
            expected: expected,
            after: JoinRelay.delay,
            members: memberRelays,
            excluding: Set(own + candidates),
            lookup: relayLookup
        )
        let ordered = HolePuncher.order(candidates)
        let birthday = JoinerBirthday(kind: nat.kind, candidates: ordered)
        let knock = HolePuncher.knockHash(topic: topic)
        let port = live.localAddress.port
        let links = self.links
        // The knock says what we know of our NAT (`Birthday.marker(for:)`); a re-knock once
        // relayed says what we know then (`Repunch`).
        let blobs = knockBlobs(topic: topic, expected: expected)
        let fast = (blob: blobs.blob(for: nat.kind), box: KnockSenderBox())
        // Happy eyeballs (RFC 8305): handshakes to the IPv6 candidates first, to the IPv4 ones a
        // moment later (at once when there is no IPv6 candidate); the first session to complete wins.
        let race = HappyEyeballs(ordered)
        try? live.sync { peer in
            birthday.knock(peer, infoHash: knock, port: port)
            peer.puncher.probe(ordered, times: 3)
        }
        let ids = dial(race.first, psk: psk, expected: expected)
        try? live.sync { peer in
            // After the handshakes, so that our NAT lets the host's answering probes in.
            fast.box.sender = KnockSender(peer: peer)
            fast.box.sender?.knock(Topic.infoHash(topic), blob: fast.blob, hosts: Set(ordered))
        }
        var pending = Set(ids)
        var later = race.later
        var result = HostConnection()
        var winner: PeerAddress?
        // A handshake resends every second for 10 s; the host polls knocks every second. With the
        // birthday method on, the joiner waits as long as its extra sockets live.
        let deadline = began + (birthday.active ? birthday.deadline : 12_000_000_000)
        while result.link == nil && monotonicNanos() < max(deadline, relay.deadline) {
            if pending.isEmpty && later.isEmpty {
                // Every handshake gave up: the birthday method may still find a path, or a relay.
                let more = try? live.sync { peer in birthday.retry(peer, psk: psk, expected: expected, links: links) }
                if let more = more ?? nil {
                    pending.formUnion(more)
                } else if !relay.mayStillAdd {
                    break
                }
            }
            if !later.isEmpty && monotonicNanos() &- began >= HappyEyeballs.delay {
                pending.formUnion(dial(later, psk: psk, expected: expected))
                later = []
            }
            let batch = mailbox.wait(later.isEmpty ? 0.2 : HappyEyeballs.wait(since: began))
            relay.tick(&pending, force: pending.isEmpty && later.isEmpty)
            for (index, e) in batch.enumerated() {
                switch e {
                case .opened(let id, let key, let addr) where pending.contains(id):
                    pending.remove(id)
                    if let expected, key != expected {
                        live.execute { _ in links.close(id) }
                    } else {
                        result.link = id
                        result.key = key
                        winner = addr
                    }
                case .closed(let id, let reason) where pending.contains(id):
                    pending.remove(id)
                    if psk != nil && (reason == .handshakeFailed || reason == .handshakeTimeout) {
                        result.failedOnPassphrase = true
                    }
                default: break
                }
                if result.link != nil {
                    mailbox.requeue(Array(batch[(index + 1)...]))
                    break
                }
            }
        }
        let losers = pending
        if !losers.isEmpty { live.execute { _ in for id in losers { links.close(id) } } }
        if result.link == nil && psk != nil && !ids.isEmpty && pending.count == ids.count {
            result.failedOnPassphrase = true
        }
        // After connecting: the lookups so far (a join by topic stops at the first answer) may not
        // have brought the three reports a classification needs.
        freshStats()
        emitNAT(natStatus())
        let probes = (try? live.sync { $0.puncher.probesSent }) ?? 0
        let knockRelays = (try? live.sync { _ in fast.box.sender?.relayed ?? 0 }) ?? 0
        let connected = result.link
        let relayedVia = result.link.flatMap { relay.relay(of: $0) }
        let bday =
            (try? live.sync { _ in birthday.finish(link: connected, relayed: relayedVia != nil, links: links) })
            ?? JoinerBirthday.Report()
        if let link = connected, relayedVia != nil {
            // Relayed: keep knocking and probing in the background, and move to the host's
            // address once a probe from it arrived (docs/nat.md, "Upgrading a relayed session").
            // And if our NAT is not random, the host's may be (the roles of the birthday method
            // reversed): its extra sockets wait for our probes at random ports of its IP, and the
            // one that is hit moves the session there. Our own NAT as known now (a join by topic
            // often connects before it is classified), not as it was when we started.
            let (box, infoHash) = (upgradeProbers, Topic.infoHash(topic))
            let ips =
                (natKind ?? nat.kind) == .random
                ? []
                : Array(
                    Set(ordered.filter { !$0.isPrivate && !$0.isIPv6 }.map(\.ip)).sorted().prefix(Birthday.maxTargets)
                )
            let seed = Sodium.randomU64()
            live.execute { peer in
                let r = Repunch(
                    peer: peer,
                    links: links,
                    link: link,
                    targets: ordered,
                    infoHash: infoHash,
                    blobs: blobs
                )
                box.repunch = r
                r.start()
                box.rounds?.stop()
                guard !ips.isEmpty else { return }
                // While the session runs relayed and our NAT has not turned out random.
                let rounds = BirthdayProberRounds(peer: peer, targets: ips, seed: seed) { [weak peer] in
                    guard let peer, peer.dht.natType != .random, let now = links.address(link) else { return false }
                    return RelayClient.isVirtual(now)
                }
                box.rounds = rounds
                rounds.start()
            }
        }
        event("connected") { j in
            j.add("ok", result.link != nil)
            j.add("address", (relayedVia ?? winner)?.description)
            j.add("path", relayedVia != nil ? "relayed" : winner.map { $0.isPrivate ? "lan" : "direct" })
            j.add("family", relayedVia != nil ? nil : winner.map { $0.isIPv6 ? "ipv6" : "ipv4" })
            j.add("candidates", ordered.count)
            j.add("probes_sent", probes + bday.probesSent)
            // "fast": a DHT node holding the host's announcement had relayed our knock by then.
            j.add("knock", knockRelays > 0 ? "fast" : "slow")
            j.add("knock_relays", knockRelays)
            j.add("relays_found", relay.found)
            if birthday.active {
                j.add("birthday_sockets", bday.sockets)
                j.add("birthday_port", bday.won)
            }
            j.add("connect_ms", Double(monotonicNanos() - began) / 1e6)
        }
        return result
    }

    /// Starts a handshake to each address; the sessions' ids.
    func dial(_ addresses: [PeerAddress], psk: SecretBytes?, expected: PeerKey?) -> [UInt32] {
        guard !addresses.isEmpty else { return [] }
        let links = self.links
        return
            (try? live.sync { peer in
                // Made here from Sendable parts: the mode itself stays on the loop.
                let mode = ConnectMode.joining(psk: psk, expected: expected)
                var out: [UInt32] = []
                for addr in addresses {
                    guard let s = peer.sessions?.connect(to: addr, mode: mode) else { continue }
                    links.adopt(s)
                    out.append(s.localIndex)
                }
                return out
            }) ?? []
    }

    /// The joiner's fast-path knocks (docs/nat.md): our addresses sealed to the host's key if we
    /// know it, else to the topic's knock key, one blob per thing we may know of our own NAT: the
    /// list ends with `Birthday.marker(for:)` (random: `knockMarker`; not classified yet:
    /// `unsureMarker`; consistent or open: nothing).
    func knockBlobs(topic: String, expected: PeerKey?) -> KnockBlobs {
        let to =
            expected.flatMap { try? Ed25519.x25519PublicKey(from: $0.bytes) }
            ?? KnockSeal.topicKeys(topic: topic).publicKey
        let addresses = Array(reachableAddresses().prefix(KnockSeal.maxAddresses - 1))
        func seal(_ kind: NATKind) -> [UInt8] {
            KnockSeal.seal(addresses + [Birthday.marker(for: kind)].compactMap { $0 }, to: to) ?? []
        }
        return KnockBlobs(plain: seal(.consistent), random: seal(.random), unsure: seal(.unknown))
    }
}

/// A joiner's sealed knocks, one per thing it may know of its own NAT (`knockBlobs`).
struct KnockBlobs: Sendable {
    var plain: [UInt8]
    var random: [UInt8]
    var unsure: [UInt8]

    func blob(for kind: NATKind) -> [UInt8] {
        switch kind {
        case .random: random
        case .unknown: unsure
        case .consistent, .open: plain
        }
    }
}

extension ConnectMode {
    /// How a joiner's handshake authenticates the host: by the lobby's passphrase, else by the
    /// host's key when known (by key or invite), else as the host it discovers. Made on the event
    /// loop (a mode holds key material and stays there).
    static func joining(psk: SecretBytes?, expected: PeerKey?) -> ConnectMode {
        psk.map { .passphrase($0) } ?? expected.map { .knownKey($0) } ?? .discovered
    }
}

/// Keeps a joiner's background upgrade attempts alive: its birthday probers (the roles reversed)
/// and its re-punch.
final class ProberBox: @unchecked Sendable {  // touched only on the LivePeer's event loop
    var rounds: BirthdayProberRounds?
    var repunch: Repunch?
}

/// A relayed joiner's background re-punch, for the whole match: every 2 s for the first 30 s (15
/// rounds), then backing off (4, 8, 16, 32 s, then every 60 s) while the link runs relayed, it
/// knocks again (the fast path: the host probes the address the relaying node sees, our NAT
/// mapping) and probes the host's addresses; once a probe from one of them has arrived, the
/// relayed session moves there (`Session.migrate`, which goes back after 3 s if the host never
/// answers; an address is tried again only when a probe from it arrived since, and not within
/// `retryAfter`). A path that opens late (a
/// firewall rule lifted, a router restarted into a friendlier mapping, a host that moved to a
/// cone NAT) is still found. Each knock says what we know of our NAT by then (`KnockBlobs`): a
/// joiner that connected before its NAT was classified knocked as unsure, and once it is known
/// consistent a random host's reversed method answers the plain knock. Stops when the link closed
/// or no longer runs through a relay. Confined to the event loop.
final class Repunch {
    let peer: Peer
    let links: Links
    let link: UInt32
    let targets: [PeerAddress]
    let infoHash: NodeID
    let blobs: KnockBlobs
    private var rounds = 0
    private var sender: KnockSender?
    /// When each address was last tried (a migration there that did not stick).
    private var tried: [PeerAddress: Nanos] = [:]
    static let every: Nanos = .seconds(2)
    /// Rounds at `every` before backing off.
    static let fastRounds = 15
    static let maxBackoff: Nanos = .seconds(60)
    static let retryAfter: Nanos = .seconds(60)

    /// The wait before round `n + 1`, once round `n` (counted from 1) is done: 2 s through round
    /// 15, then 4, 8, 16, 32 s and every 60 s after (a knock costs a get_peers and announces to
    /// about 8 DHT nodes, so a long match behind a relay adds one small lookup a minute).
    static func delay(afterRound n: Int) -> Nanos {
        guard n >= fastRounds else { return every }
        let doublings = min(n - fastRounds + 1, 6)
        return min(every << Nanos(doublings), maxBackoff)
    }

    init(peer: Peer, links: Links, link: UInt32, targets: [PeerAddress], infoHash: NodeID, blobs: KnockBlobs) {
        self.peer = peer
        self.links = links
        self.link = link
        self.targets = Array(targets.prefix(HolePuncher.maxTargets))
        self.infoHash = infoHash
        self.blobs = blobs
    }

    func start() { peer.host.schedule(after: Self.every) { [weak self] in self?.step() } }

    private func step() {
        guard let now = links.address(link), RelayClient.isVirtual(now) else { return }
        rounds += 1
        // An address we heard a probe from, never tried, or heard from again since a try that did
        // not stick (and not within `retryAfter` of it: a failed move costs the match up to 3 s).
        let heard = peer.puncher.lastHeard
        let t = peer.host.now
        let fresh = { (a: PeerAddress) -> Bool in
            guard let at = heard[a] else { return false }
            guard let was = self.tried[a] else { return true }
            return at > was && t &- was >= Self.retryAfter
        }
        if let hit = targets.first(where: fresh) {
            tried[hit] = t
            links.migrate(link, to: hit)
        } else {
            let s = KnockSender(peer: peer)
            sender = s
            // What the DHT's reports say of our NAT now (open counts as consistent here).
            let kind = NATKind.classify(dht: peer.dht.natType, external: nil, localIPs: [])
            s.knock(infoHash, blob: blobs.blob(for: kind), hosts: Set(targets))
            peer.puncher.probe(targets, times: 2)
        }
        peer.host.schedule(after: Self.delay(afterRound: rounds)) { [weak self] in self?.step() }
    }
}

/// Holds the joiner's `KnockSender` across the event loop and the joining thread.
final class KnockSenderBox: @unchecked Sendable {  // `sender` is touched only on the LivePeer's event loop.
    var sender: KnockSender?
}

/// The host's side while the lobby is open: a `nat` event whenever the classification changes,
/// and the knock watcher that probes joiners back.
final class HostTraversal {
    /// The watcher, made and touched only on the event loop (the box crosses to it by reference).
    final class WatcherBox: @unchecked Sendable {  // `watcher` is touched only on the LivePeer's event loop.
        var watcher: KnockWatcher?
        var listener: KnockListener?
        var probers: BirthdayProbers?
        var responder: BirthdayResponder?
        var responderOutcomes: [BirthdayResponder.Outcome] = []
    }

    let rt: NetRuntime
    let box = WatcherBox()
    private var lastNAT: NATKind?
    private var lastIPv6: IPv6Reach?
    private var lastExternal: PeerAddress?
    private var lastCheck: UInt64 = 0
    private let infoHash: NodeID
    private var announced = false
    private var announcedIPv6 = false

    init(rt: NetRuntime, topic: String) {
        self.rt = rt
        infoHash = Topic.infoHash(topic)
        let box = self.box
        let links = rt.links
        // The fast path's knocks are sealed to our key (joining by key or invite) or the topic's.
        let keys = [try? rt.identity.signing.x25519(), KnockSeal.topicKeys(topic: topic)].compactMap { $0 }
        rt.live.execute { peer in
            let w = KnockWatcher(peer: peer, topic: topic)
            box.watcher = w
            HostTraversal.attachBirthday(peer, watcher: w, box: box, links: links)
            w.start()
            let l = KnockListener(peer: peer, infoHash: Topic.infoHash(topic), keys: keys)
            l.onBirthdayKnock = w.onBirthdayKnock
            l.onPlainKnock = w.onPlainKnock
            box.listener = l
            l.start()
        }
    }

    /// Called from the lobby loop: reports the NAT when its classification changes. Returns true
    /// when the external address became known or changed once the classification settled (the
    /// lobby record, put at the start before any DHT node answered, should then be put again so
    /// that joining by key finds the public address).
    func tick() -> Bool {
        let now = monotonicNanos()
        guard now - lastCheck > 500_000_000 else { return false }
        lastCheck = now
        let s = rt.natStatus()
        let ext6 = rt.stats.externalAddress6
        if !announcedIPv6, lastExternal != nil || ext6 != nil {
            // Once DHT nodes hold the lobby's announcement, a joiner finds it (and can knock through
            // them); a tick after the external address was known, the record put again with it.
            // Again once IPv6 nodes hold it too (the IPv6 DHT answers apart: BEP 32).
            let h = infoHash
            let n = (try? rt.live.sync { $0.dht.announcementHoldersByFamily(h) }) ?? (v4: 0, v6: 0)
            if (!announced && n.v4 + n.v6 > 0) || n.v6 > 0 {
                announced = true
                announcedIPv6 = n.v6 > 0
                rt.event("announced") { j in
                    j.add("nodes", n.v4 + n.v6)
                    j.add("nodes_ipv6", n.v6)
                }
            }
        }
        tickBirthday(kind: s.kind)
        // Reported when the IPv4 classification settles or changes, and when IPv6 becomes known
        // or its reach changes (an IPv6-only host has no IPv4 NAT to report).
        let v6 = ext6 == nil ? nil : rt.ipv6Reach()
        if s.kind != lastNAT || v6 != lastIPv6 {
            lastNAT = s.kind
            lastIPv6 = v6
            if s.kind != .unknown || v6 != nil { rt.emitNAT(s) }
        }
        guard s.kind != .unknown, let ext = s.external, ext != lastExternal else { return false }
        lastExternal = ext
        return true
    }

    func stop() {
        tickBirthday(kind: lastNAT ?? .unknown, stopping: true)
        let box = self.box
        rt.live.execute { _ in
            box.watcher?.stop()
            box.watcher = nil
            box.listener?.stop()
            box.listener = nil
            box.responder?.stop()
        }
    }
}
