import NIOConcurrencyHelpers

/// Runs closures on a network loop, from any thread, each after the ones posted before it.
/// `UDPHost` is one (its SwiftNIO event loop).
public protocol LoopExecutor: Sendable {
    func execute(_ work: @escaping @Sendable () -> Void)
}

/// The one crossing point between the UI thread and the network loop.
///
/// The terminal UI blocks on the main thread (curses input, drawing, the match's fixed timestep)
/// while the network runs on a SwiftNIO event loop. Nothing else passes between the two:
///
/// - **network → UI**: code on the loop `post`s events (an op received, a session closed); the UI
///   `drain`s them once per frame, oldest first. The lock is held only to append one event or to
///   take the whole queue, so neither side ever waits on the other's work.
/// - **UI → network**: `onLoop` runs a closure on the loop, after every closure posted before it.
///   Loop-confined objects (sessions, the DHT node) are reached from such a closure through a
///   `NIOLoopBound`, which checks the loop on every access.
///
/// The queue holds at most `capacity` events: `post` to a full queue drops the event, counts it in
/// `dropped` and returns false. A UI that leaves `capacity` events undrained is stuck, and the
/// queue must not grow without bound meanwhile.
public final class NetworkMailbox<Event: Sendable>: Sendable {
    public let capacity: Int
    private let loop: any LoopExecutor
    private let queue: NIOLockedValueBox<Queue>

    private struct Queue {
        var events: [Event] = []
        var dropped: UInt64 = 0
    }

    public init(loop: any LoopExecutor, capacity: Int = 65_536) {
        precondition(capacity > 0, "a mailbox needs room for at least one event")
        self.loop = loop
        self.capacity = capacity
        queue = NIOLockedValueBox(Queue())
    }

    // MARK: network → UI

    /// Queues `event` for the next `drain` (from any thread; normally the network loop). False if
    /// the queue was full and the event was dropped.
    @discardableResult
    public func post(_ event: Event) -> Bool {
        queue.withLockedValue { q in
            guard q.events.count < capacity else {
                q.dropped += 1
                return false
            }
            q.events.append(event)
            return true
        }
    }

    /// Every queued event, oldest first, leaving the queue empty (the UI calls this once per frame).
    public func drain() -> [Event] {
        queue.withLockedValue { q in
            defer { q.events = [] }
            return q.events
        }
    }

    /// Events dropped because the queue was full.
    public var dropped: UInt64 { queue.withLockedValue { $0.dropped } }

    // MARK: UI → network

    /// Runs `work` on the network loop, after every closure posted before it. Never blocks.
    public func onLoop(_ work: @escaping @Sendable () -> Void) {
        loop.execute(work)
    }
}
