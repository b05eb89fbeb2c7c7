import Engine
import Keys

/// The `MatchHook` that runs a `NetMatch` around each tick of a `MatchLoop`, on the loop's thread.
/// The closures are the crossing point to the network (for turf: a `NetworkMailbox` drained and
/// filled here; the network loop moves the bytes to and from the sessions' unreliable channels).
///
///     willRun: inbound() → net.receive …; net.takeAccepted() → match.deliver …
///     didRun:  match.outbox → net.addLocal; net.poll(now:) → outbound(…); events → onEvent
public struct NetMatchHook<Controller: PlayerController>: MatchHook {
    public typealias Game = Controller.Game
    public var net: NetMatch<Game>
    /// Monotonic ns (the loop's clock).
    public var now: () -> UInt64
    /// Datagrams that arrived since the last call: (sending peer as its session authenticated it, bytes).
    public var inbound: () -> [(from: PeerKey, bytes: [UInt8])]
    /// Datagrams to send, each on the unreliable channel of the session to `to`.
    public var outbound: ([(to: PeerKey, bytes: [UInt8])]) -> Void
    public var onEvent: (NetMatchEvent) -> Void

    public init(
        net: NetMatch<Game>,
        now: @escaping () -> UInt64,
        inbound: @escaping () -> [(from: PeerKey, bytes: [UInt8])],
        outbound: @escaping ([(to: PeerKey, bytes: [UInt8])]) -> Void,
        onEvent: @escaping (NetMatchEvent) -> Void = { _ in }
    ) {
        self.net = net
        self.now = now
        self.inbound = inbound
        self.outbound = outbound
        self.onEvent = onEvent
    }

    /// Takes what arrived and hands the authenticated ops to the match (call it also between
    /// ticks, or after the match ended, to keep links alive: `pump`).
    public mutating func willRun(tick: Tick, match: inout LocalMatch<Controller>) {
        match.recordOutbox = true
        let t = now()
        for d in inbound() { net.receive(d.bytes, from: d.from, now: t) }
        // Ops an owner lied about are taken back before the ones accepted since (signed) merge.
        for r in net.takeRetractions() { match.retract(r.player, from: r.from) }
        for op in net.takeAccepted() { match.deliver(op) }
        // A verdict (a proven equivocator's log void, a log cut by its owner's own signed clock)
        // applies in the match as in NetMatch's own replicas.
        for v in net.takeVerdicts() { match.applyVerdict(v.player, fromSeq: v.seq, rule: v.rule, tick: v.tick) }
    }

    public mutating func didRun(tick: Tick, match: inout LocalMatch<Controller>) {
        let ops = match.outbox
        match.outbox.removeAll(keepingCapacity: true)
        let t = now()
        net.addLocal(ops, ranTick: tick, now: t)
        outbound(net.poll(now: t))
        for e in net.takeEvents() { onEvent(e) }
    }

    public mutating func didSkip(from: Tick, to: Tick, match: inout LocalMatch<Controller>) {
        net.didSkip(to: to)
    }

    /// Between ticks or after the match: receive, send what is due, report events. Returns the
    /// ops accepted (after the match they can no longer be delivered to the loop; a caller that
    /// records the match merges them into its recording's replica).
    @discardableResult
    public mutating func pump() -> [Op<Game.Payload>] {
        let t = now()
        for d in inbound() { net.receive(d.bytes, from: d.from, now: t) }
        outbound(net.poll(now: t))
        for e in net.takeEvents() { onEvent(e) }
        return net.takeAccepted()
    }
}
