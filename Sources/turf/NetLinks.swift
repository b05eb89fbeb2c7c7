import DHT
import Dispatch
import Foundation
import Keys
import NetCore
import NetPlay
import NetStack
import Transport

/// What the event loop tells the lobby's and the match's thread: a session opened or closed, a
/// lobby message arrived, and once a second (and when asked) the links' figures. Plain values,
/// so they cross threads; the thread never asks the loop a question and waits for the answer.
enum NetEvent: Sendable {
    case opened(id: UInt32, key: PeerKey, address: PeerAddress)
    case closed(id: UInt32, reason: CloseReason)
    case message(id: UInt32, bytes: [UInt8])
    /// Every open link's figures, and this process's (pushed by `Links.startStats`).
    case stats(NetStats)
    /// The links `Links.closeWhenFlushed` was given are closed: what was sent on them went out.
    case flushed

    /// The link event as the NetPlay state machines take it (nil for the shell's own events).
    var link: LinkEvent? {
        switch self {
        case .opened(let id, let key, let address):
            return .opened(id, key: key, address: address, relayed: RelayClient.isVirtual(address))
        case .closed(let id, let reason): return .closed(id, reason: "\(reason)")
        case .message(let id, let bytes): return .message(id, bytes: bytes)
        case .stats, .flushed: return nil
        }
    }
}

/// The figures the event loop pushes once a second: per link its traffic, round trips, clock
/// samples and where its peer is; for the process, refused passphrases and the external address.
struct NetStats: Sendable {
    var links: [UInt32: LinkTraffic] = [:]
    var addresses: [UInt32: (address: PeerAddress, key: PeerKey?)] = [:]
    var passphraseRejected: UInt64 = 0
    var externalAddress: PeerAddress?
    /// Our IPv6 address as DHT nodes report it (BEP 32's `ip`), nil before any IPv6 report.
    var externalAddress6: PeerAddress?
    /// What DHT nodes' reports say of our NAT so far; nil until the first `stats` event.
    var natType: NATType?
    /// IPv6 datagrams that came in unsolicited (`IPv6Reach`).
    var unsolicitedIPv6: UInt64 = 0
    /// IPv4 datagrams that came in unsolicited: a consistent NAT that lets strangers in.
    var unsolicitedIPv4: UInt64 = 0
    /// The `freshStats` request this event answers (0 for the once-a-second ones).
    var token = 0

    /// Each link's smoothed round trip in whole ms (a link without one is left out).
    func pings(_ ids: [UInt32]) -> [UInt32: Int] {
        var out: [UInt32: Int] = [:]
        for id in ids {
            if let r = links[id]?.rttMs, r.isFinite, r >= 0 { out[id] = Int(min(r, 1e6).rounded()) }
        }
        return out
    }
}

/// The crossing point between the event loop and the thread that runs the lobby and the match
/// (NetCore's `NetworkMailbox`): `NetEvent`s on its event lane (lobby phases `wait` on them), the
/// match's datagrams on its bounded datagram lane (drained once a tick; a flood beyond 4096 waiting
/// is dropped and counted as `dropped_datagrams`, and never pushes out a control event).
typealias LinkMailbox = NetworkMailbox<NetEvent>

/// Per-link traffic counters kept on the event loop.
struct LinkTraffic: Sendable {
    var bytesSent: UInt64 = 0
    var bytesReceived: UInt64 = 0
    var rttMs: Double?
    var lastRTT: UInt64?
    var clock: [ClockSample] = []
    /// Nanoseconds since the peer was last heard from (a message or a pong).
    var silence: UInt64?

    /// The offset of the peer's clock to ours, from the lowest-delay samples.
    var clockEstimate: (offset: Int64, delay: UInt64)? { ClockEstimate.offset(clock) }
}

/// The sessions of this process by their local index: confined to the event loop (every method
/// runs there, reached through `LivePeer.execute`/`sync`), so the match's thread names links by
/// index and never touches a `Session`.
final class Links: @unchecked Sendable {  // touched only on the LivePeer's event loop
    let mailbox: LinkMailbox
    private var sessions: [UInt32: Session] = [:]
    /// A closed session's last figures (an end event still reports a link its peer closed).
    private var closedTraffic: [UInt32: LinkTraffic] = [:]
    /// When each link last showed the peer alive (a message or a pong), monotonic ns.
    private var heard: [UInt32: UInt64] = [:]
    /// When each link was adopted, monotonic ns.
    private var adoptedAt: [UInt32: UInt64] = [:]

    init(mailbox: LinkMailbox) { self.mailbox = mailbox }

    /// Wires a session (inbound or outbound) so its events reach the mailbox.
    func adopt(_ s: Session) {
        let id = s.localIndex
        sessions[id] = s
        adoptedAt[id] = monotonicNanos()
        let mailbox = self.mailbox
        s.reliable.onReceive = { [weak self] bytes in
            self?.heard[id] = monotonicNanos()
            mailbox.post(.message(id: id, bytes: bytes))
        }
        // The match's datagrams (NetMatch does its own redundancy: the channel repeats nothing).
        s.unreliable.redundancy = 0
        s.unreliable.onReceive = { [weak self] bytes in
            self?.heard[id] = monotonicNanos()
            mailbox.postDatagram(MailboxDatagram(link: id, bytes: bytes, at: monotonicNanos()))
        }
        // A pong answers our keepalive ping every second: the peer is alive even when it has
        // nothing to say.
        s.onClockSample = { [weak self] _ in self?.heard[id] = monotonicNanos() }
        heard[id] = monotonicNanos()
        s.onStateChange = { [weak self, weak s] state in
            switch state {
            case .established:
                if let s, let key = s.remoteKey { mailbox.post(.opened(id: id, key: key, address: s.peerAddress)) }
            case .closed(let reason):
                if let s { self?.closedTraffic[id] = Links.traffic(of: s) }
                self?.sessions[id] = nil
                self?.adoptedAt[id] = nil
                mailbox.post(.closed(id: id, reason: reason))
            case .connecting: break
            }
        }
        if s.isEstablished, let key = s.remoteKey { mailbox.post(.opened(id: id, key: key, address: s.peerAddress)) }
    }

    func send(_ id: UInt32, _ bytes: [UInt8]) {
        guard let s = sessions[id] else { return }
        try? s.reliable.send(bytes)
    }

    /// Sends each datagram on its link's unreliable channel (an unknown or closed link drops it).
    func sendDatagrams(_ out: [(id: UInt32, bytes: [UInt8])]) {
        for d in out { try? sessions[d.id]?.unreliable.send(d.bytes) }
    }

    /// Pushes a `stats` event now and then every second, until the peer stops.
    func startStats(_ peer: Peer) {
        postStats(peer)
        _ = peer.host.schedule(after: .seconds(1)) { [weak self, weak peer] in
            guard let self, let peer else { return }
            self.startStats(peer)
        }
    }

    /// A `stats` event now (the end of a match reports the figures as they are).
    func postStats(_ peer: Peer, token: Int = 0) {
        var s = NetStats()
        s.token = token
        for id in sessions.keys {
            s.links[id] = traffic(id)
            s.links[id]?.silence = silence(id)
        }
        for (id, t) in closedTraffic { s.links[id] = t }
        s.addresses = addresses()
        s.passphraseRejected = peer.sessions?.stats.passphraseRejected ?? 0
        s.externalAddress = peer.dht.externalAddress
        s.natType = peer.dht.natType
        s.externalAddress6 = peer.dht.externalAddress6
        s.unsolicitedIPv6 = peer.unsolicitedIPv6
        s.unsolicitedIPv4 = peer.unsolicitedIPv4
        mailbox.post(.stats(s))
    }

    /// Closes each link once what was sent on its reliable channel is acknowledged (a leave, a
    /// refusal), or after `within` at the latest; then posts `flushed` if `announce`.
    func closeWhenFlushed(_ ids: [UInt32], host: any NetworkHost, within: Nanos = .seconds(2), announce: Bool) {
        var left = ids.filter { sessions[$0] != nil }
        let deadline = monotonicNanos() + within
        func check() {
            left.removeAll { id in
                guard let s = sessions[id] else { return true }
                guard s.reliable.unacknowledged == 0 || monotonicNanos() >= deadline else {
                    return false
                }
                close(id)
                return true
            }
            if left.isEmpty {
                if announce { mailbox.post(.flushed) }
                return
            }
            _ = host.schedule(after: .milliseconds(10)) { check() }
        }
        check()
    }

    func close(_ id: UInt32) {
        adoptedAt[id] = nil
        sessions.removeValue(forKey: id)?.close()
    }

    func ping(_ id: UInt32) { sessions[id]?.ping() }

    /// The links that run through a relay and were adopted within `within` ns, if they all belong
    /// to one peer (the session a reversed birthday attempt can move; a stale twin from a second
    /// relayed handshake of the same joiner moves along and, unanswered, goes back). Empty when
    /// none do, or when several peers do (which of them knocked is not known).
    func recentRelayed(within: UInt64, isRelayed: (PeerAddress) -> Bool) -> [UInt32] {
        let now = monotonicNanos()
        let recent = sessions.filter { id, s in
            isRelayed(s.peerAddress) && s.isEstablished && (adoptedAt[id].map { now - $0 < within } ?? false)
        }
        return Set(recent.values.map(\.remoteKey)).count == 1 ? recent.keys.sorted() : []
    }

    /// Moves the link's session to a newly found path (`Session.migrate`).
    func migrate(_ id: UInt32, to address: PeerAddress) { sessions[id]?.migrate(to: address) }

    /// Where every open link's peer is now (a relayed link that upgraded, a peer that roamed).
    func addresses() -> [UInt32: (address: PeerAddress, key: PeerKey?)] {
        sessions.mapValues { ($0.peerAddress, $0.remoteKey) }
    }

    /// Where the peer on `id` is (nil for an unknown or closed link).
    func address(_ id: UInt32) -> PeerAddress? { sessions[id]?.peerAddress }

    /// Nanoseconds since the peer on `id` was last heard from (nil for an unknown link).
    func silence(_ id: UInt32) -> UInt64? {
        heard[id].map { monotonicNanos() &- min($0, monotonicNanos()) }
    }

    func traffic(_ id: UInt32) -> LinkTraffic {
        guard let s = sessions[id] else { return closedTraffic[id] ?? LinkTraffic() }
        return Self.traffic(of: s)
    }

    private static func traffic(of s: Session) -> LinkTraffic {
        // Every transport datagram of the session (reliable, unreliable, pings, acks), with 28
        // bytes of UDP/IP header each.
        let c = s.counters
        return LinkTraffic(
            bytesSent: c.bytesSent + 28 * c.packetsSent,
            bytesReceived: c.bytesReceived + 28 * c.packetsReceived,
            rttMs: s.metrics.rttMilliseconds,
            lastRTT: s.metrics.lastRTT,
            clock: s.clockSamples
        )
    }
}

/// The offset of a peer's clock to ours from ping samples: the median offset of the lowest-delay
/// samples (shared/reference/netcode.md: queueing only ever adds delay, so the fastest round
/// trips bound the offset most tightly). Nil without samples.
enum ClockEstimate {
    static func offset(_ samples: [ClockSample], keep: Int = 4) -> (offset: Int64, delay: UInt64)? {
        guard !samples.isEmpty else { return nil }
        let best = samples.sorted { $0.delay < $1.delay }.prefix(max(1, keep))
        let offsets = best.map(\.offset).sorted()
        return (offsets[offsets.count / 2], UInt64(best.first!.delay))
    }
}
