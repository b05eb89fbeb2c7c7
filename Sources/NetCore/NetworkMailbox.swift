import Dispatch

/// Runs closures on a network loop, from any thread, each after the ones posted before it.
/// `UDPHost` is one (its SwiftNIO event loop).
public protocol LoopExecutor: Sendable {
    func execute(_ work: @escaping @Sendable () -> Void)
}

/// A datagram handed from the network loop to the UI/match thread by a `NetworkMailbox`'s
/// datagram lane: the link (session) it came on, its payload, and when it arrived (monotonic ns,
/// the caller's clock).
public struct MailboxDatagram: Sendable, Equatable {
    public var link: UInt32
    public var bytes: [UInt8]
    public var at: UInt64
    public init(link: UInt32, bytes: [UInt8], at: UInt64) {
        self.link = link
        self.bytes = bytes
        self.at = at
    }
}

/// The one crossing point between the UI thread and the network loop.
///
/// The terminal UI blocks on the main thread (curses input, drawing, the match's fixed timestep)
/// while the network runs on a SwiftNIO event loop. Nothing else passes between the two:
///
/// - **network → UI, events**: code on the loop `post`s events (a session opened or closed, a
///   message arrived); the UI `drain`s them once per frame, oldest first, or blocks in `wait` until
///   one comes (or a timeout). `requeue` puts events back at the front (a phase that ends mid-batch
///   hands the rest to the next). The lock is held only to append or take, so neither side ever
///   waits on the other's work.
/// - **network → UI, datagrams**: a separate bounded lane (`postDatagram`, `drainDatagrams`) for
///   high-rate traffic (a match's datagrams). It has its own bound, so a datagram flood can never
///   push out a control event, and `wait` returns only for events (a flood cannot spin a lobby
///   screen).
/// - **the wake descriptor**: `wakeFD` becomes readable when either lane goes from empty to
///   non-empty, so the UI thread can `poll` it together with the terminal (a key and a datagram
///   each end the wait at once). Posts to a lane that is not empty write nothing: however many
///   datagrams arrive, the UI wakes at most once per drain of their lane. The consumer calls
///   `clearWake()` after the poll and *before* draining (a post between the two then leaves the
///   descriptor readable, never lost).
/// - **UI → network**: `onLoop` runs a closure on the loop, after every closure posted before it.
///   Loop-confined objects (sessions, the DHT node) are reached from such a closure through a
///   `NIOLoopBound` (NetPOSIX's loop is a SwiftNIO event loop), which checks the loop on every access.
///
/// The event lane holds at most `capacity` events and the datagram lane `datagramCapacity`
/// datagrams: a post to a full lane drops what was posted, counts it (`dropped`,
/// `droppedDatagrams`) and returns false. A UI that leaves a lane undrained is stuck, and the
/// queue must not grow without bound meanwhile.
public final class NetworkMailbox<Event: Sendable>: Sendable {
    public let capacity: Int
    public let datagramCapacity: Int
    private let loop: any LoopExecutor
    private let queue: Locked<Queue>
    /// Signalled when a lane goes from empty to non-empty: `wait` and the UI's poll sleep on it.
    private let wake = WakeSignal()

    private struct Queue {
        var events: [Event] = []
        var dropped: UInt64 = 0
        var datagrams: [MailboxDatagram] = []
        var droppedDatagrams: UInt64 = 0
        var droppedDatagramsSinceDrain: UInt64 = 0
    }

    public init(loop: any LoopExecutor, capacity: Int = 65_536, datagramCapacity: Int = 4096) {
        precondition(capacity > 0 && datagramCapacity > 0, "a mailbox needs room for at least one of each")
        self.loop = loop
        self.capacity = capacity
        self.datagramCapacity = datagramCapacity
        queue = Locked(Queue())
    }

    // MARK: network → UI

    /// Queues `event` for the next `drain` (from any thread; normally the network loop). False if
    /// the queue was full and the event was dropped.
    @discardableResult
    public func post(_ event: Event) -> Bool {
        let queued = queue.withLock { q -> (ok: Bool, wake: Bool) in
            guard q.events.count < capacity else {
                q.dropped += 1
                return (false, false)
            }
            q.events.append(event)
            return (true, q.events.count == 1)
        }
        if queued.wake { wake.signal() }
        return queued.ok
    }

    /// Puts `events` back at the front, in their order (they were taken by a `drain` or `wait`
    /// and are handed on to the next phase; never dropped).
    public func requeue(_ events: [Event]) {
        guard !events.isEmpty else { return }
        let wasEmpty = queue.withLock { q in
            defer { q.events = events + q.events }
            return q.events.isEmpty
        }
        if wasEmpty { wake.signal() }
    }

    /// Every queued event, oldest first, leaving the queue empty (the UI calls this once per frame).
    public func drain() -> [Event] {
        queue.withLock { q in
            defer { q.events = [] }
            return q.events
        }
    }

    /// Waits until at least one event is queued or `seconds` pass, then drains (possibly nothing).
    /// From the UI thread only (never the loop: it blocks). Datagrams do not end it. With `input`
    /// (a terminal's stdin) it also returns, with what was queued (possibly nothing), as soon as
    /// that descriptor is readable, so a key is read at once; a hung-up `input` is not watched.
    public func wait(_ seconds: Double, alsoWatching input: Int32? = nil) -> [Event] {
        let deadline = DispatchTime.now().uptimeNanoseconds + UInt64(max(0, min(seconds, 1e6)) * 1e9)
        var input = input
        while true {
            clearWake()
            let got = drain()
            if !got.isEmpty { return got }
            let now = DispatchTime.now().uptimeNanoseconds
            guard now < deadline else { return [] }
            // A wake-up for datagrams (or left by events a `drain` already took) finds nothing
            // here and waits again; the datagram lane signals again only once it was drained.
            let r = FDWait.poll([wake.fd] + (input.map { [$0] } ?? []), timeoutNanos: deadline - now)
            if r.ready.count > 1 {
                if r.gone[1] {
                    input = nil
                } else if r.ready[1] {
                    clearWake()
                    return drain()
                }
            }
        }
    }

    /// The descriptor that is readable while something was posted since the last `clearWake()`
    /// (module documentation): poll it for reading, never read or close it.
    public var wakeFD: Int32 { wake.fd }

    /// Makes `wakeFD` unreadable until the next post to an empty lane. Call it after the poll
    /// returned and before draining.
    public func clearWake() { wake.clear() }

    /// Events dropped because the queue was full.
    public var dropped: UInt64 { queue.withLock { $0.dropped } }

    /// Queues a datagram on the datagram lane (from any thread; normally the network loop). False
    /// if that lane was full and it was dropped (counted); the event lane is never affected.
    @discardableResult
    public func postDatagram(_ d: MailboxDatagram) -> Bool {
        let queued = queue.withLock { q -> (ok: Bool, wake: Bool) in
            guard q.datagrams.count < datagramCapacity else {
                q.droppedDatagrams += 1
                q.droppedDatagramsSinceDrain += 1
                return (false, false)
            }
            q.datagrams.append(d)
            return (true, q.datagrams.count == 1)
        }
        if queued.wake { wake.signal() }
        return queued.ok
    }

    /// Every queued datagram, oldest first, and how many were dropped for want of room since the
    /// last call.
    public func drainDatagrams() -> (datagrams: [MailboxDatagram], dropped: UInt64) {
        queue.withLock { q in
            defer {
                q.datagrams = []
                q.droppedDatagramsSinceDrain = 0
            }
            return (q.datagrams, q.droppedDatagramsSinceDrain)
        }
    }

    /// Datagrams dropped because their lane was full (in all).
    public var droppedDatagrams: UInt64 { queue.withLock { $0.droppedDatagrams } }

    // MARK: UI → network

    /// Runs `work` on the network loop, after every closure posted before it. Never blocks.
    public func onLoop(_ work: @escaping @Sendable () -> Void) {
        loop.execute(work)
    }
}
