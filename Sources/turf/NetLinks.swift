import Dispatch
import Foundation
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

/// The one place where the event loop hands work to the thread that runs the lobby and the match
/// (a lock and a semaphore; the loop never waits on it).
final class LinkMailbox: @unchecked Sendable {  // `events` is guarded by `lock`.
    private let lock = NSLock()
    private var events: [LinkEvent] = []
    private let wake = DispatchSemaphore(value: 0)

    func post(_ e: LinkEvent) {
        lock.lock()
        events.append(e)
        lock.unlock()
        wake.signal()
    }

    /// Puts events back at the front (a phase that ends mid-batch hands the rest to the next).
    func requeue(_ e: [LinkEvent]) {
        guard !e.isEmpty else { return }
        lock.lock()
        events = e + events
        lock.unlock()
        wake.signal()
    }

    /// Everything posted so far (possibly nothing).
    func drain() -> [LinkEvent] {
        lock.lock()
        defer { lock.unlock() }
        let out = events
        events.removeAll()
        return out
    }

    /// Waits up to `seconds` for at least one event, then drains.
    func wait(_ seconds: Double) -> [LinkEvent] {
        let now = drain()
        if !now.isEmpty { return now }
        _ = wake.wait(timeout: .now() + max(0, seconds))
        return drain()
    }
}

/// The match's datagrams (the sessions' unreliable channels), from the event loop to the match's
/// thread, which drains them once a tick: bounded (a flood beyond `limit` is dropped and counted),
/// and separate from the `LinkMailbox` so lobby phases never see them.
final class DatagramBox: @unchecked Sendable {  // `items` and `overflow` are guarded by `lock`.
    private let lock = NSLock()
    private var items: [(id: UInt32, bytes: [UInt8], at: UInt64)] = []
    private var overflow = 0
    let limit: Int

    init(limit: Int = 4096) { self.limit = limit }

    func post(_ id: UInt32, _ bytes: [UInt8]) {
        lock.lock()
        if items.count < limit { items.append((id, bytes, monotonicNanos())) } else { overflow += 1 }
        lock.unlock()
    }

    /// Everything posted so far (each with its arrival time, monotonic ns), and how many were
    /// dropped for want of room since the last call.
    func drain() -> (items: [(id: UInt32, bytes: [UInt8], at: UInt64)], dropped: Int) {
        lock.lock()
        defer { lock.unlock() }
        let out = (items, overflow)
        items.removeAll()
        overflow = 0
        return out
    }
}

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
    let datagrams = DatagramBox()
    private var sessions: [UInt32: Session] = [:]
    /// A closed session's last figures (an end event still reports a link its peer closed).
    private var closedTraffic: [UInt32: LinkTraffic] = [:]
    /// When each link last showed the peer alive (a message or a pong), monotonic ns.
    private var heard: [UInt32: UInt64] = [:]

    init(mailbox: LinkMailbox) { self.mailbox = mailbox }

    /// Wires a session (inbound or outbound) so its events reach the mailbox.
    func adopt(_ s: Session) {
        let id = s.localIndex
        sessions[id] = s
        let mailbox = self.mailbox
        s.reliable.onReceive = { [weak self] bytes in
            self?.heard[id] = DispatchTime.now().uptimeNanoseconds
            mailbox.post(.message(id: id, bytes: bytes))
        }
        // The match's datagrams (NetMatch does its own redundancy: the channel repeats nothing).
        s.unreliable.redundancy = 0
        let datagrams = self.datagrams
        s.unreliable.onReceive = { [weak self] bytes in
            self?.heard[id] = DispatchTime.now().uptimeNanoseconds
            datagrams.post(id, bytes)
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

    func close(_ id: UInt32) { sessions.removeValue(forKey: id)?.close() }

    func ping(_ id: UInt32) { sessions[id]?.ping() }

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
