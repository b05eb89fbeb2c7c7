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

/// Per-link traffic counters kept on the event loop.
struct LinkTraffic: Sendable {
    var bytesSent: UInt64 = 0
    var bytesReceived: UInt64 = 0
    var rttMs: Double?
    var clock: [ClockSample] = []
}

/// The sessions of this process by their local index: confined to the event loop (every method
/// runs there, reached through `LivePeer.execute`/`sync`), so the match's thread names links by
/// index and never touches a `Session`.
final class Links: @unchecked Sendable {  // touched only on the LivePeer's event loop
    let mailbox: LinkMailbox
    private var sessions: [UInt32: Session] = [:]
    /// Bytes sent and received on each link, with 28 bytes of UDP/IP header per datagram counted
    /// as an estimate from the reliable channel's segments (see `traffic`).
    private var sent: [UInt32: UInt64] = [:]
    private var received: [UInt32: UInt64] = [:]
    /// When each link last showed the peer alive (a message or a pong), monotonic ns.
    private var heard: [UInt32: UInt64] = [:]

    init(mailbox: LinkMailbox) { self.mailbox = mailbox }

    /// Wires a session (inbound or outbound) so its events reach the mailbox.
    func adopt(_ s: Session) {
        let id = s.localIndex
        sessions[id] = s
        let mailbox = self.mailbox
        s.reliable.onReceive = { [weak self] bytes in
            self?.received[id, default: 0] += UInt64(bytes.count)
            self?.heard[id] = DispatchTime.now().uptimeNanoseconds
            mailbox.post(.message(id: id, bytes: bytes))
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
                self?.sessions[id] = nil
                mailbox.post(.closed(id: id, reason: reason))
            case .connecting: break
            }
        }
        if s.isEstablished, let key = s.remoteKey { mailbox.post(.opened(id: id, key: key, address: s.peerAddress)) }
    }

    func send(_ id: UInt32, _ bytes: [UInt8]) {
        guard let s = sessions[id] else { return }
        sent[id, default: 0] += UInt64(bytes.count)
        try? s.reliable.send(bytes)
    }

    func close(_ id: UInt32) { sessions.removeValue(forKey: id)?.close() }

    func ping(_ id: UInt32) { sessions[id]?.ping() }

    /// Nanoseconds since the peer on `id` was last heard from (nil for an unknown link).
    func silence(_ id: UInt32) -> UInt64? {
        heard[id].map { DispatchTime.now().uptimeNanoseconds &- min($0, DispatchTime.now().uptimeNanoseconds) }
    }

    func traffic(_ id: UInt32) -> LinkTraffic {
        guard let s = sessions[id] else { return LinkTraffic() }
        let st = s.reliable.stats
        // Payload bytes plus, per segment, the transport overhead (header 14 + tag 16 + frame 7) and
        // 28 bytes of UDP/IP header.
        let perSegment: UInt64 = 14 + 16 + 7 + 28
        return LinkTraffic(
            bytesSent: (sent[id] ?? 0) + st.segmentsSent * perSegment,
            bytesReceived: (received[id] ?? 0) + st.messagesDelivered * perSegment,
            rttMs: s.metrics.rttMilliseconds,
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
