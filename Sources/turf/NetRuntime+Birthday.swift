import DHT
import Keys
import NetCore
import NetStack
import Sodium
import TextOutput
import Transport

/// The birthday method in `turf host` / `turf join` (docs/nat.md): a joiner behind a random NAT
/// knocks with `Birthday.knockPort` and opens its extra sockets; a host behind a consistent NAT
/// answers such knocks with `BirthdayProbers`.

/// The joiner's side: its extra sockets, made and touched only on the event loop.
final class JoinerBirthday: @unchecked Sendable {  // `sockets` is touched only on the LivePeer's event loop.
    let targets: [PeerAddress]
    var sockets: BirthdaySockets?

    /// What the `connected` event reports.
    struct Report: Sendable {
        var sockets = 0
        var probesSent = 0
        var won: String?
    }

    /// Whether this side's NAT may be random but is not known yet: the plain knock goes out too.
    let unsure: Bool

    /// Targets (the host's public candidates) when this side's NAT is random, or not classified
    /// yet (too few DHT nodes had answered: it may well be random, and a relayed session would
    /// then have no way to a direct path).
    init(kind: NATKind, candidates: [PeerAddress]) {
        targets = kind == .random || kind == .unknown ? Birthday.targets(candidates) : []
        unsure = kind == .unknown
    }

    var active: Bool { !targets.isEmpty }
    /// How long the joiner's connect phase waits when active: as long as the sockets live, and 2 s more.
    var deadline: UInt64 { Birthday.socketLifetime + 2_000_000_000 }
    private var retried = false

    /// When every handshake gave up (lost packets used up its attempts before a probe hit): nil
    /// when the method has nothing more to offer (inactive, its sockets closed, or retried once),
    /// [] while its sockets still wait for the host's probe, else the index of a fresh handshake
    /// to the winning address (it leaves through the winner). On the loop.
    func retry(_ peer: Peer, psk: SecretBytes?, expected: PeerKey?, links: Links) -> [UInt32]? {
        guard let s = sockets, !retried, !s.closed else { return nil }
        guard let target = s.winningPeer else { return [] }
        retried = true
        let mode = ConnectMode.joining(psk: psk, expected: expected)
        guard let session = peer.sessions?.connect(to: target, mode: mode) else { return nil }
        links.adopt(session)
        return [session.localIndex]
    }

    /// On the loop: knocks (the birthday knock when active, else the plain one whose implied port
    /// tells the host where to probe) and opens the extra sockets.
    func knock(_ peer: Peer, infoHash: NodeID, port: UInt16) {
        guard active, let s = BirthdaySockets(peer: peer, targets: targets) else {
            peer.dht.announce(infoHash, port: port, impliedPort: true) { _, _ in }
            return
        }
        sockets = s
        s.start()
        peer.dht.announce(infoHash, port: Birthday.knockPort, impliedPort: false) { _, _ in }
        if unsure { peer.dht.announce(infoHash, port: port, impliedPort: true) { _, _ in } }
    }

    /// On the loop, once connecting ended: the winning socket stays when it carries the session
    /// (`link`). A relayed session keeps the sockets for their lifetime: when a probe wins, the
    /// session moves to that direct path (`Session.migrate`; the upgrade of docs/nat.md). Else
    /// everything is closed now.
    func finish(link: UInt32?, relayed: Bool, links: Links) -> Report {
        guard let s = sockets else { return Report() }
        let report = Report(
            sockets: s.opened,
            probesSent: s.probesSent,
            won: link != nil ? s.winner.map { String($0.localAddress.port) } : nil
        )
        if let link, relayed, !s.closed {
            if let w = s.winningPeer {
                links.migrate(link, to: w)
            } else {
                s.onWin = { [weak links] w in links?.migrate(link, to: w) }
            }
            return report
        }
        if link == nil || s.winner == nil {
            s.close()
            sockets = nil
        }
        return report
    }
}

extension HostTraversal {
    /// Makes the host's birthday attempts and hooks them to the knock watcher (on the loop).
    static func attachBirthday(_ peer: Peer, watcher: KnockWatcher, box: WatcherBox, links: Links) {
        let probers = BirthdayProbers(peer: peer, seed: Sodium.randomU64())
        box.probers = probers
        watcher.onBirthdayKnock = { [weak probers] ips in probers?.knocked(ips) }
        // The roles reversed: our NAT is random, a consistent joiner knocked (docs/nat.md).
        let responder = BirthdayResponder(peer: peer)
        box.responder = responder
        watcher.onPlainKnock = { [weak responder] addresses in responder?.knocked(addresses) }
        responder.onFinish = { [weak box] o in
            if let box, box.responderOutcomes.count < BirthdayResponder.maxRemembered {
                box.responderOutcomes.append(o)
            }
        }
        responder.onWin = { [weak links] address in
            // The joiner's relayed session (it opened after the knock, within the sockets' life).
            guard let links else { return false }
            let ids = links.recentRelayed(within: 30_000_000_000, isRelayed: RelayClient.isVirtual)
            for id in ids { links.migrate(id, to: address) }
            return !ids.isEmpty
        }
    }

    /// From the lobby loop: switches the birthday method on for a consistent (or not yet known)
    /// NAT, and prints one `birthday` event per finished attempt (`stopping`: ends those running).
    func tickBirthday(kind: NATKind, stopping: Bool = false) {
        let box = self.box
        let enabled = kind == .consistent || kind == .unknown
        let (done, reversed) =
            (try? rt.live.sync { _ -> ([BirthdayProbers.Outcome], [BirthdayResponder.Outcome]) in
                box.probers?.enabled = enabled
                box.responder?.enabled = kind == .random
                if stopping { box.probers?.stopAll() }
                defer { box.responderOutcomes = [] }
                return (box.probers?.drain() ?? [], box.responderOutcomes)
            }) ?? ([], [])
        for o in done {
            rt.event("birthday") { j in
                j.add("address", PeerAddress(ip: o.ip, port: 0).ipString)
                j.add("probes_sent", o.probesSent)
                j.add("ok", o.connected)
            }
        }
        // The roles reversed: our sockets, aimed at a consistent knocker.
        for o in reversed {
            rt.event("birthday") { j in
                j.add("address", o.address.description)
                j.add("reversed", true)
                j.add("sockets", o.sockets)
                j.add("ok", o.moved)
            }
        }
    }
}
