import DHT
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

    /// Targets only when this side's NAT is random (the host's public candidates).
    init(kind: NATKind, candidates: [PeerAddress]) {
        targets = kind == .random ? Birthday.targets(candidates) : []
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
        let mode: ConnectMode = psk.map { .passphrase($0) } ?? expected.map { .knownKey($0) } ?? .discovered
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
    }

    /// On the loop, once connecting ended: the winning socket stays when it carries the session
    /// (`connected`), everything else is closed now.
    func finish(connected: Bool) -> Report {
        guard let s = sockets else { return Report() }
        let keep = connected && s.winner != nil
        let report = Report(
            sockets: s.opened,
            probesSent: s.probesSent,
            won: keep ? s.winner.map { String($0.localAddress.port) } : nil
        )
        if !keep {
            s.close()
            sockets = nil
        }
        return report
    }
}

extension HostTraversal {
    /// Makes the host's birthday attempts and hooks them to the knock watcher (on the loop).
    static func attachBirthday(_ peer: Peer, watcher: KnockWatcher, box: WatcherBox) {
        let probers = BirthdayProbers(peer: peer, seed: Sodium.randomU64())
        box.probers = probers
        watcher.onBirthdayKnock = { [weak probers] ips in probers?.knocked(ips) }
    }

    /// From the lobby loop: switches the birthday method on for a consistent (or not yet known)
    /// NAT, and prints one `birthday` event per finished attempt (`stopping`: ends those running).
    func tickBirthday(kind: NATKind, stopping: Bool = false) {
        let box = self.box
        let enabled = kind == .consistent || kind == .unknown
        let done =
            (try? rt.live.sync { _ -> [BirthdayProbers.Outcome] in
                box.probers?.enabled = enabled
                if stopping { box.probers?.stopAll() }
                return box.probers?.drain() ?? []
            }) ?? []
        for o in done {
            rt.event("birthday") { j in
                j.add("address", PeerAddress(ip: o.ip, port: 0).ipString)
                j.add("probes_sent", o.probesSent)
                j.add("ok", o.connected)
            }
        }
    }
}
