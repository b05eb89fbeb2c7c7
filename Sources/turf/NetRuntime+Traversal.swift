import DHT
import Foundation
import Lobby
import NetCore
import NetStack
import Sodium
import TextOutput
import Transport

/// NAT traversal in `turf host` / `turf join` (docs/nat.md): the `nat` event, the host's knock
/// watcher, and the joiner's connect phase that knocks and tries every candidate at once.
extension NetRuntime {
    /// The NAT classification from what DHT nodes reported so far, and the external address.
    func natStatus() -> (kind: NATKind, external: PeerAddress?) {
        let (type, ext) = (try? live.sync { ($0.dht.natType, $0.dht.externalAddress) }) ?? (.unknown, nil)
        return (NATKind.classify(dht: type, external: ext, localIPs: localIPv4Addresses()), ext)
    }

    func emitNAT(_ s: (kind: NATKind, external: PeerAddress?)) {
        event("nat") { j in
            j.add("nat", s.kind.rawValue)
            j.add("external_address", s.external?.description)
        }
    }

    /// The outcome of `connectToHost`.
    struct HostConnection {
        var link: UInt32?
        var key: PeerKey?
        var failedOnPassphrase = false
    }

    /// Knocks (the joiner announces itself on the lobby's knock info-hash, which the host polls and
    /// answers with probes that open its NAT), probes the host's candidates (LAN first), and starts
    /// a handshake to every candidate at once: the first that completes with the right key wins and
    /// the others are closed. Emits `nat` before and `connected` after.
    func connectToHost(_ candidates: [PeerAddress], topic: String, psk: SecretBytes?, expected: PeerKey?)
        -> HostConnection
    {
        let nat = natStatus()
        emitNAT(nat)
        let began = monotonicNanos()
        let ordered = HolePuncher.order(candidates)
        let birthday = JoinerBirthday(kind: nat.kind, candidates: ordered)
        let knock = HolePuncher.knockHash(topic: topic)
        let port = live.localAddress.port
        let links = self.links
        let ids: [UInt32] =
            (try? live.sync { peer in
                birthday.knock(peer, infoHash: knock, port: port)
                peer.puncher.probe(ordered, times: 3)
                // Made here from Sendable parts: the mode itself stays on the loop.
                let mode: ConnectMode = psk.map { .passphrase($0) } ?? expected.map { .knownKey($0) } ?? .discovered
                var out: [UInt32] = []
                for addr in ordered {
                    guard let s = peer.sessions?.connect(to: addr, mode: mode) else { continue }
                    links.adopt(s)
                    out.append(s.localIndex)
                }
                return out
            }) ?? []
        var pending = Set(ids)
        var result = HostConnection()
        var winner: PeerAddress?
        // A handshake resends every second for 10 s; the host polls knocks every second.
        let deadline = began + (birthday.active ? birthday.deadline : 12_000_000_000)
        while result.link == nil && monotonicNanos() < deadline {
            if pending.isEmpty {
                // Every handshake gave up: the birthday method may still find a path.
                let more = try? live.sync { peer in birthday.retry(peer, psk: psk, expected: expected, links: links) }
                guard let more = more ?? nil else { break }
                pending.formUnion(more)
            }
            let batch = mailbox.wait(0.2)
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
        let probes = (try? live.sync { $0.puncher.probesSent }) ?? 0
        let connected = result.link != nil
        let bday = (try? live.sync { _ in birthday.finish(connected: connected) }) ?? JoinerBirthday.Report()
        event("connected") { j in
            j.add("ok", result.link != nil)
            j.add("address", winner?.description)
            j.add("path", winner.map { $0.isPrivate ? "lan" : "direct" })
            j.add("candidates", ordered.count)
            j.add("probes_sent", probes + bday.probesSent)
            if birthday.active {
                j.add("birthday_sockets", bday.sockets)
                j.add("birthday_port", bday.won)
            }
            j.add("connect_ms", Double(monotonicNanos() - began) / 1e6)
        }
        return result
    }
}

/// The host's side while the lobby is open: a `nat` event whenever the classification changes,
/// and the knock watcher that probes joiners back.
final class HostTraversal {
    /// The watcher, made and touched only on the event loop (the box crosses to it by reference).
    final class WatcherBox: @unchecked Sendable {  // `watcher` is touched only on the LivePeer's event loop.
        var watcher: KnockWatcher?
        var probers: BirthdayProbers?
    }

    let rt: NetRuntime
    let box = WatcherBox()
    private var lastNAT: NATKind?
    private var lastExternal: PeerAddress?
    private var lastCheck: UInt64 = 0

    init(rt: NetRuntime, topic: String) {
        self.rt = rt
        let box = self.box
        rt.live.execute { peer in
            let w = KnockWatcher(peer: peer, topic: topic)
            box.watcher = w
            HostTraversal.attachBirthday(peer, watcher: w, box: box)
            w.start()
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
        tickBirthday(kind: s.kind)
        if s.kind != lastNAT {
            lastNAT = s.kind
            if s.kind != .unknown { rt.emitNAT(s) }
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
        }
    }
}
