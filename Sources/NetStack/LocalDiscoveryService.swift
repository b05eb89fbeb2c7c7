import DHT
import NIOCore
import NetCore
import NetPOSIX

/// `LocalDiscovery` on real multicast sockets (`MulticastGroup`, BEP 14's groups), on a
/// `UDPHost`'s event loop: what `turf host` and `turf join --topic` run beside their one socket
/// (docs/nat.md, "LAN parties"). The machine decides; this only carries its datagrams and timers.
///
/// The lobbies a joiner found and the counters are kept behind a lock (`snapshot`), so the
/// joining thread reads them without a trip to the loop. Confined to the loop otherwise.
// @unchecked Sendable: the machine, the timer and `stopped` are touched only on the host's event
// loop (`stopSearching` and `stop` assert it); `snapshot` is behind its lock; the rest is `let`.
public final class LocalDiscoveryService: @unchecked Sendable {
    /// What the other thread reads.
    public struct Snapshot: Sendable {
        /// Each lobby found, with when (monotonic ns), in the order heard.
        public var lobbies: [(address: PeerAddress, at: Nanos)] = []
        public var stats = LocalDiscovery.Stats()
        public var socket = MulticastGroup.Stats()
    }

    public let group: MulticastGroup
    private var machine: LocalDiscovery
    private let scheduler: Scheduler
    private var timer: TimerToken?
    private var stopped = false
    private let shared: Locked<Snapshot>
    /// Called on the loop for each lobby found (after `snapshot` has it), and after every
    /// datagram handled (`onReceived`, for tests that wait on what arrived).
    public var onFound: ((PeerAddress) -> Void)?
    public var onReceived: (() -> Void)?

    /// Opens BEP 14's groups on `host`'s loop (blocking: not from the loop) for `config`, on the
    /// interfaces the host's socket is reachable at: the one holding its address when it is bound
    /// to one (loopback for `127.0.0.1`), else every LAN interface (`interfaces` names them
    /// instead); IPv6 only for a socket that speaks it. Throws when no multicast socket could be
    /// opened (the caller says so and plays on without).
    public static func open(
        on host: UDPHost,
        config: LocalDiscovery.Config,
        interfaces: [String]? = nil,
        port: UInt16 = LSDMessage.port
    ) throws -> LocalDiscoveryService {
        let bound = host.localAddress
        let specific = bound.ip6.map { !$0.isUnspecified } ?? (bound.ip != 0)
        let group = try MulticastGroup.open(
            on: host.eventLoop,
            config: .init(
                group4: bound.isIPv6 && (specific || !host.isDualStack) ? nil : LSDMessage.group4.with(port: port),
                group6: bound.isIPv6 ? LSDMessage.group6.with(port: port) : nil,
                interfaces: interfaces,
                address: specific ? bound : nil
            )
        )
        return try host.sync { LocalDiscoveryService(group: group, machine: LocalDiscovery(config), scheduler: host) }
    }

    private init(group: MulticastGroup, machine: LocalDiscovery, scheduler: Scheduler) {
        self.group = group
        self.machine = machine
        self.scheduler = scheduler
        shared = Locked(Snapshot())
        group.onReceive = { [weak self] bytes, source in self?.received(bytes, from: source) }
        carryOut(self.machine.start(now: scheduler.now))
    }

    /// The lobbies found and the counters, from any thread.
    public var snapshot: Snapshot { shared.withLock { $0 } }

    /// A joiner that connected stops searching. On the loop.
    public func stopSearching() {
        scheduler.assertInLoop()
        machine.stopSearching()
        rearm()
    }

    /// Closes the sockets and stops the timers. On the loop; idempotent.
    public func stop() {
        scheduler.assertInLoop()
        guard !stopped else { return }
        stopped = true
        timer?.cancel()
        timer = nil
        publish()
        group.close()
    }

    private func received(_ bytes: [UInt8], from source: PeerAddress) {
        guard !stopped else { return }
        carryOut(machine.receive(bytes, from: source, now: scheduler.now))
        onReceived?()
    }

    private func carryOut(_ outputs: [LocalDiscovery.Output]) {
        let now = scheduler.now
        var found: [PeerAddress] = []
        for o in outputs {
            switch o {
            case .multicast(let bytes): group.send(bytes)
            case .found(let a): found.append(a)
            }
        }
        publish(found: found, at: now)
        rearm()
        for a in found { onFound?(a) }
    }

    private func publish(found: [PeerAddress] = [], at now: Nanos = 0) {
        let (stats, socket) = (machine.stats, group.stats)
        shared.withLock { s in
            s.lobbies += found.map { ($0, now) }
            s.stats = stats
            s.socket = socket
        }
    }

    /// One timer, for the machine's next deadline.
    private func rearm() {
        timer?.cancel()
        timer = nil
        guard !stopped, let at = machine.nextDeadline else { return }
        let now = scheduler.now
        timer = scheduler.schedule(after: at > now ? at - now : 0) { [weak self] in
            guard let self, !self.stopped else { return }
            self.carryOut(self.machine.tick(now: self.scheduler.now))
        }
    }
}
