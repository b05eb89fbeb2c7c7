import Dispatch
import Foundation
import Keys
import NetCore
import NetStack
import Transport

/// What the event loop tells the match's thread: a session opened or closed, a lobby message
/// arrived. Plain values, so they cross threads.
enum LinkEvent: Sendable {
    case opened(id: UInt32, key: PeerKey, address: PeerAddress)
    case closed(id: UInt32, reason: CloseReason)
    case message(id: UInt32, bytes: [UInt8])
}

/// The crossing point between the event loop and the thread that runs the lobby and the match
/// (NetCore's `NetworkMailbox`): `LinkEvent`s on its event lane (lobby phases `wait` on them), the
/// match's datagrams on its bounded datagram lane (drained once a tick; a flood beyond 4096 waiting
/// is dropped and counted as `dropped_datagrams`, and never pushes out a control event).
typealias LinkMailbox = NetworkMailbox<LinkEvent>

/// Per-link traffic counters kept on the event loop.
struct LinkTraffic: Sendable {
    var bytesSent: UInt64 = 0
    var bytesReceived: UInt64 = 0
    var rttMs: Double?
    var lastRTT: UInt64?
    var clock: [ClockSample] = []
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
        adoptedAt[id] = DispatchTime.now().uptimeNanoseconds
        let mailbox = self.mailbox
        s.reliable.onReceive = { [weak self] bytes in
            self?.heard[id] = DispatchTime.now().uptimeNanoseconds
            mailbox.post(.message(id: id, bytes: bytes))
        }
        // The match's datagrams (NetMatch does its own redundancy: the channel repeats nothing).
        s.unreliable.redundancy = 0
        s.unreliable.onReceive = { [weak self] bytes in
            self?.heard[id] = DispatchTime.now().uptimeNanoseconds
            mailbox.postDatagram(MailboxDatagram(link: id, bytes: bytes, at: monotonicNanos()))
        }
        // A pong answers our keepalive ping every second: the peer is alive even when it has
        // nothing to say.
        s.onClockSample = { [weak self] _ in self?.heard[id] = DispatchTime.now().uptimeNanoseconds }
        heard[id] = DispatchTime.now().uptimeNanoseconds
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
        let now = DispatchTime.now().uptimeNanoseconds
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
        heard[id].map { DispatchTime.now().uptimeNanoseconds &- min($0, DispatchTime.now().uptimeNanoseconds) }
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
