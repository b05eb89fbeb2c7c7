import NetCore

/// One clock sample from a ping exchange (shared/reference/netcode.md; docs/transport.md):
/// T1 our clock when the ping left, T2 and T3 the peer's clock when it arrived and when the pong
/// left, T4 our clock when the pong arrived.
public struct ClockSample: Sendable, Equatable {
    /// θ = ((T2 − T1) + (T3 − T4)) / 2: the peer's clock minus ours, in nanoseconds. Exact when
    /// the two directions take equally long; otherwise off by half the difference.
    public var offset: Int64
    /// δ = (T4 − T1) − (T3 − T2): the round trip without the peer's time between ping and pong.
    /// The error of `offset` is at most δ / 2, so a clock estimator prefers low-delay samples.
    public var delay: Nanos
    /// T4: when the sample was taken, on our clock.
    public var at: Nanos

    public init(offset: Int64, delay: Nanos, at: Nanos) {
        self.offset = offset
        self.delay = delay
        self.at = at
    }

    /// The sample of one exchange; nil if the peer's times cannot be right (the pong left before
    /// the ping arrived, or the round trip is shorter than the peer's own time).
    public init?(t1: Nanos, t2: Nanos, t3: Nanos, t4: Nanos) {
        guard t3 >= t2, t4 >= t1, t4 &- t1 >= t3 &- t2 else { return nil }
        // Clocks of two hosts are unrelated: differences are taken as signed, wrapping values.
        let forward = Int64(bitPattern: t2 &- t1)
        let backward = Int64(bitPattern: t3 &- t4)
        offset = forward / 2 &+ backward / 2 &+ (forward % 2 &+ backward % 2) / 2
        delay = (t4 &- t1) &- (t3 &- t2)
        at = t4
    }
}

/// A session's pings in flight and the clock samples their pongs gave.
struct PingState {
    /// Most pings awaited at once (older ones are forgotten; a late pong for them is ignored).
    static let maxInFlight = 8
    /// Most samples kept (the newest).
    static let maxSamples = 32

    var lastPing: Nanos = 0
    private var nextID: UInt32 = 1
    private var inFlight: [(id: UInt32, sent: Nanos)] = []
    private(set) var samples: [ClockSample] = []

    /// A new ping sent at `now`.
    mutating func ping(now: Nanos) -> Frame {
        lastPing = now
        let id = nextID
        nextID &+= 1
        inFlight.append((id, now))
        if inFlight.count > PingState.maxInFlight { inFlight.removeFirst() }
        return .ping(id: id, sent: now)
    }

    /// The outcome of a pong.
    enum PongResult {
        case unknown, malformed
        case sample(ClockSample, rtt: Nanos)
    }

    /// A pong arrived at `now`: the ping it answers is done. A pong for a ping not in flight is
    /// ignored; one whose echo or times cannot be right is malformed.
    mutating func pong(id: UInt32, echo: Nanos, received: Nanos, sent: Nanos, now: Nanos) -> PongResult {
        guard let i = inFlight.firstIndex(where: { $0.id == id }) else { return .unknown }
        let t1 = inFlight[i].sent
        inFlight.remove(at: i)
        guard echo == t1, let sample = ClockSample(t1: t1, t2: received, t3: sent, t4: now) else { return .malformed }
        samples.append(sample)
        if samples.count > PingState.maxSamples { samples.removeFirst() }
        return .sample(sample, rtt: now &- t1)
    }
}
