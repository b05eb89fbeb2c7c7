import Engine
import NetCore
import NetMatch
import NetPlay
import TurfRules

/// The wait between two ticks of a networked match: `poll` on the terminal (when a screen is up)
/// and the mailbox's wake descriptor together, until the next tick is due. A key ends the wait at
/// once, so it is read and steers the very next tick (not the one after); datagrams end it too,
/// so remote ops are merged and drawn as they arrive rather than at the next tick.
///
/// Bounded: the mailbox signals at most once per drain of a lane, and after a network wake-up the
/// mailbox is not watched again for `coalesceNanos` (the terminal still is), so a datagram flood
/// makes at most one merge and redraw per 4 ms. The tick is never starved: every wait ends by its
/// deadline whatever arrives.
struct TickWait {
    enum Woke: Equatable {
        /// The deadline passed (the next tick is due, or the wait's cap).
        case deadline
        /// The terminal has input.
        case input
        /// Something was posted to the mailbox.
        case network
    }

    static let coalesceNanos: UInt64 = 4_000_000
    private var lastNetwork: UInt64 = 0
    /// The terminal hung up: it is no longer watched (poll would return at once forever).
    private var inputGone = false
    /// The test-only progress event was printed (`NetRuntime.testingProgress`).
    var progressShown = false

    /// Waits until `deadline` (monotonic ns, `now` the clock), a key on `input`, or a post to
    /// the mailbox whose wake descriptor is `wakeFD`. It does not clear the wake-up: the caller
    /// does, before draining (`NetworkMailbox.clearWake`).
    mutating func wait(until deadline: UInt64, input: Int32?, wakeFD: Int32, now: () -> UInt64) -> Woke {
        while true {
            let t = now()
            guard t < deadline else { return .deadline }
            let watchNetwork = t >= lastNetwork + Self.coalesceNanos
            let until = watchNetwork ? deadline : min(deadline, lastNetwork + Self.coalesceNanos)
            let term = inputGone ? nil : input
            var fds: [Int32] = []
            if let term { fds.append(term) }
            if watchNetwork { fds.append(wakeFD) }
            let r = FDWait.poll(fds, timeoutNanos: until - t)
            if term != nil {
                if r.gone[0] {
                    inputGone = true
                } else if r.ready[0] {
                    return .input
                }
            }
            if watchNetwork && r.ready[fds.count - 1] {
                lastNetwork = now()
                return .network
            }
        }
    }
}

extension NetRuntime {
    /// The match loop's wait (call site in `play`): until the next tick is due (at most 50 ms, so
    /// the loop's once-a-second work keeps its pace), a key, or network traffic; what arrived is
    /// merged into the match at once, for the next `ui.frame` to draw.
    func waitForNextTick(_ runner: MatchRunner, waiter: inout TickWait) {
        let session = runner.session
        waiter.progressShown = testingProgress(session.loop, printed: waiter.progressShown)
        let now = monotonicNanos()
        let due = session.loop.wait(from: now)
        guard due > 0 else { return }
        let woke = waiter.wait(
            until: now + min(due, 50_000_000),
            input: ui.inputFD,
            wakeFD: mailbox.wakeFD,
            now: monotonicNanos
        )
        guard woke == .network else { return }
        mailbox.clearWake()
        takeIn(runner, wait: 0)
        session.mergeArrivals(now: monotonicNanos())
        runner.carryOut()
    }
}
