import Determinism
import NetCore
import NetPOSIX

/// The birthday method (docs/nat.md): how a peer behind a random NAT (a new external port per
/// destination) and one behind a consistent NAT whose firewall drops unsolicited packets meet.
///
/// The random side opens up to `maxSockets` extra sockets (`BirthdaySockets`) and sends a probe
/// from each to the consistent side's external address: its NAT maps up to that many external
/// ports towards it, none of which the other side can predict. The consistent side (whose
/// external port is the same for every destination) probes random ports of the random side's IP
/// (`BirthdayProber`); a probe that hits one of the mapped ports passes the random NAT, and
/// since it left through the consistent side's NAT towards that port, the answer comes back in.
/// The random side then carries the session on the socket that won.
public enum Birthday {
    /// Most extra sockets the random side opens.
    public static let maxSockets = 256
    /// Where Linux's `MASQUERADE --random-fully` (and most random NATs) pick external ports.
    public static let portRange: ClosedRange<UInt16> = 1024...65535
    /// The consistent side's probe rate: 200/s, 37-byte datagrams (7.4 kB/s).
    public static let probesPerSecond = 200
    /// Most probes per attempt (10 s at `probesPerSecond`): with 256 mapped ports in
    /// `portRange` the attempt misses with probability about 0.04% (`successProbability`).
    public static let maxProbes = 2000
    /// How long the random side keeps its extra sockets open without a winner.
    public static let socketLifetime: Nanos = .seconds(14)
    /// When the random side's sockets probe the targets a second time (a first probe lost before
    /// it left the NAT made no mapping; the second makes one).
    public static let secondProbe: Nanos = .milliseconds(1000)
    /// Handshake resends through the winning socket after the win (300 ms apart).
    public static let resendsAfterWin = 3
    /// Most peer addresses the random side sends its sockets' probes to.
    public static let maxTargets = 2
    /// Most birthday attempts a consistent side runs at once (each bounded by `maxProbes`).
    public static let maxConcurrent = 2
    /// The port a random joiner knocks with (`announce_peer` without `implied_port`): the port the
    /// DHT saw means nothing behind a random NAT, so it says "my NAT is random, probe my IP".
    public static let knockPort: UInt16 = 1
    /// The same signal in a fast-path knock's sealed list (an address no one can be reached at).
    public static let knockMarker = PeerAddress(ip: 0, port: knockPort)
    /// Ends a fast-path knock's sealed list when the knocker's NAT is not classified yet (a join by
    /// topic often connects before three DHT nodes have reported its address): it may be random
    /// (a consistent host answers with the birthday method) or consistent (a random host answers
    /// with the reversed one), and the host does what its own NAT allows.
    public static let unsureMarker = PeerAddress(ip: 0, port: 2)

    /// The marker a knock's sealed list ends with for the knocker's own NAT: `knockMarker` when
    /// random, `unsureMarker` when not classified yet, none when consistent or open.
    public static func marker(for kind: NATKind) -> PeerAddress? {
        switch kind {
        case .random: knockMarker
        case .unknown: unsureMarker
        case .consistent, .open: nil
        }
    }

    /// Whether `address` is one of the markers (never an address to probe).
    public static func isMarker(_ address: PeerAddress) -> Bool { address == knockMarker || address == unsureMarker }

    /// The addresses the random side aims its sockets at: the peer's public IPv4 candidates (a LAN
    /// address needs no birthday, nor does IPv6, which has no NAT), at most `maxTargets`.
    public static func targets(_ candidates: [PeerAddress]) -> [PeerAddress] {
        capped(candidates.filter { !$0.isPrivate && !$0.isIPv6 })
    }

    /// No port 0, no duplicates, at most `maxTargets`, in order.
    static func capped(_ addresses: [PeerAddress]) -> [PeerAddress] {
        var seen = Set<PeerAddress>()
        return Array(addresses.filter { $0.port != 0 && seen.insert($0).inserted }.prefix(maxTargets))
    }

    /// The chance that `probes` distinct random ports out of `rangeSize` hit at least one of
    /// `open` mapped ports (drawn without replacement: 1 − Π (N−n−i)/(N−i)).
    public static func successProbability(open: Int, probes: Int, rangeSize: Int) -> Double {
        guard open > 0, probes > 0, rangeSize > 0 else { return 0 }
        guard probes <= rangeSize - open else { return 1 }
        var miss = 1.0
        for i in 0..<probes { miss *= Double(rangeSize - open - i) / Double(rangeSize - i) }
        return 1 - miss
    }
}

/// Distinct ports drawn at random from a range without replacement, from a seeded generator: a
/// Fisher–Yates shuffle kept sparse (memory grows with the ports drawn, not with the range).
public struct BirthdayPorts {
    public let range: ClosedRange<UInt16>
    private var rng: SplitMix64
    /// The shuffled array's positions that differ from the identity.
    private var moved: [UInt32: UInt32] = [:]
    public private(set) var drawn = 0

    public init(range: ClosedRange<UInt16> = Birthday.portRange, seed: UInt64) {
        self.range = range
        rng = SplitMix64(seed: seed, stream: 0x6269_7274_6864_6179)  // "birthday"
    }

    public var size: Int { Int(range.upperBound) - Int(range.lowerBound) + 1 }

    /// The next port, or nil once every port of the range was drawn.
    public mutating func next() -> UInt16? {
        guard drawn < size else { return nil }
        let i = UInt32(drawn)
        let j = i + UInt32(rng.below(UInt64(size - drawn)))
        let picked = moved[j] ?? j
        moved[j] = moved[i] ?? i
        moved[i] = nil
        drawn += 1
        return UInt16(UInt32(range.lowerBound) + picked)
    }
}

/// The consistent side: probes random ports of one IP at `rate` per second from the peer's socket
/// until a new session from that IP is up, `maxProbes` were sent, or `stop`. Confined to the
/// host's thread.
public final class BirthdayProber {
    public let target: UInt32
    let peer: Peer
    let maxProbes: Int
    let perTick: Int
    static let tick: Nanos = .milliseconds(20)
    private var ports: BirthdayPorts
    private var timer: TimerToken?
    private var before: Set<UInt32> = []
    public private(set) var probesSent = 0
    public private(set) var connected = false
    public private(set) var finished = false
    /// Called once when the attempt ends.
    public var onFinish: ((BirthdayProber) -> Void)?

    public init(
        peer: Peer,
        target: UInt32,
        seed: UInt64,
        rate: Int = Birthday.probesPerSecond,
        maxProbes: Int = Birthday.maxProbes,
        range: ClosedRange<UInt16> = Birthday.portRange
    ) {
        self.peer = peer
        self.target = target
        self.maxProbes = max(0, min(maxProbes, Birthday.maxProbes))
        perTick = max(1, min(rate, Birthday.probesPerSecond) / 50)
        ports = BirthdayPorts(range: range, seed: seed)
    }

    public func start() {
        peer.host.assertInLoop()
        before = sessionsFromTarget()
        step()
    }

    /// Ends the attempt now (connected if the session is up by now).
    public func stop() { finish(connected: !sessionsFromTarget().subtracting(before).isEmpty) }

    private func sessionsFromTarget() -> Set<UInt32> {
        Set((peer.sessions?.activeSessions ?? []).filter { $0.peerAddress.ip == target }.map(\.localIndex))
    }

    private func step() {
        guard !finished else { return }
        if !sessionsFromTarget().subtracting(before).isEmpty { return finish(connected: true) }
        guard probesSent < maxProbes else { return finish(connected: false) }
        for _ in 0..<min(perTick, maxProbes - probesSent) {
            guard let port = ports.next() else { return finish(connected: false) }
            peer.puncher.sendProbe(to: PeerAddress(ip: target, port: port))
            probesSent += 1
        }
        timer = peer.host.schedule(after: Self.tick) { [weak self] in self?.step() }
    }

    private func finish(connected: Bool) {
        guard !finished else { return }
        finished = true
        self.connected = connected
        timer?.cancel()
        timer = nil
        onFinish?(self)
    }
}

/// The consistent side's attempts, one per knocking IP: at most `Birthday.maxConcurrent` at
/// once, and an IP is not probed again within `window` of its last start (its knock stays in the
/// DHT and is seen on every poll). Outcomes wait in `outcomes` until drained. Confined to the
/// host's thread.
public final class BirthdayProbers {
    public struct Outcome: Sendable, Equatable {
        public var ip: UInt32
        public var probesSent: Int
        public var connected: Bool
    }

    let peer: Peer
    let window: Nanos
    let range: ClosedRange<UInt16>
    private var rng: SplitMix64
    private var running: [UInt32: BirthdayProber] = [:]
    private var lastStart: [UInt32: Nanos] = [:]
    public private(set) var outcomes: [Outcome] = []
    /// Knocks not acted on (too many running, or probed within the window): counted.
    public private(set) var skipped = 0
    /// Off while this side's own NAT makes the method pointless (open: the joiner reaches it anyway).
    public var enabled = true
    public static let maxRemembered = 256

    public init(
        peer: Peer,
        seed: UInt64,
        window: Nanos = .seconds(20),
        range: ClosedRange<UInt16> = Birthday.portRange
    ) {
        self.peer = peer
        self.window = window
        self.range = range
        rng = SplitMix64(seed: seed)
    }

    public var runningCount: Int { running.count }

    /// Knocks from these IPs asked for the birthday method.
    public func knocked(_ ips: [UInt32]) {
        peer.host.assertInLoop()
        let now = peer.host.now
        for ip in Set(ips).sorted() {
            guard enabled, running[ip] == nil, running.count < Birthday.maxConcurrent,
                lastStart[ip].map({ now &- $0 >= window }) ?? true
            else {
                if running[ip] == nil { skipped += 1 }
                continue
            }
            if lastStart.count >= Self.maxRemembered, let oldest = lastStart.min(by: { $0.value < $1.value }) {
                lastStart[oldest.key] = nil
            }
            lastStart[ip] = now
            let p = BirthdayProber(peer: peer, target: ip, seed: rng.next(), range: range)
            running[ip] = p
            p.onFinish = { [weak self] p in
                self?.running[p.target] = nil
                self?.record(Outcome(ip: p.target, probesSent: p.probesSent, connected: p.connected))
            }
            p.start()
        }
    }

    private func record(_ o: Outcome) {
        if outcomes.count < Self.maxRemembered { outcomes.append(o) }
    }

    /// The outcomes so far, removed.
    public func drain() -> [Outcome] {
        defer { outcomes = [] }
        return outcomes
    }

    public func stopAll() {
        for p in Array(running.values) { p.stop() }
    }
}

/// The reversed method's probing side (a consistent joiner whose session runs through a relay
/// because the host's NAT is random): a `BirthdayProber` at each of the host's public IPs, and,
/// when a round ends without a session from one of them, a fresh round after a pause (`pause`,
/// doubled each time), at most `maxRounds` in all, while `wanted` says the session still runs
/// relayed. The host's sockets for a knock live 14 s and it opens new ones for an IP at most every
/// 20 s (`BirthdayResponder`): one round of 10 s can miss them (they were not open yet, or no
/// longer), the next one probes the sockets the joiner's later knocks open. Confined to the host's
/// thread.
public final class BirthdayProberRounds {
    public static let maxRounds = 3
    public static let firstPause: Nanos = .seconds(2)
    let peer: Peer
    public let targets: [UInt32]
    let rounds: Int
    let pause: Nanos
    let maxProbes: Int
    let range: ClosedRange<UInt16>
    let wanted: () -> Bool
    private var rng: SplitMix64
    private var running: [BirthdayProber] = []
    private var timer: TimerToken?
    /// Rounds started, probes sent by the finished probers, and whether a round connected.
    public private(set) var started = 0
    public private(set) var probesSent = 0
    public private(set) var connected = false
    public private(set) var finished = false
    /// Called once when no round will follow: connected, out of rounds, or no longer wanted.
    public var onFinish: ((BirthdayProberRounds) -> Void)?

    public init(
        peer: Peer,
        targets: [UInt32],
        seed: UInt64,
        rounds: Int = BirthdayProberRounds.maxRounds,
        pause: Nanos = BirthdayProberRounds.firstPause,
        maxProbes: Int = Birthday.maxProbes,
        range: ClosedRange<UInt16> = Birthday.portRange,
        wanted: @escaping () -> Bool
    ) {
        self.peer = peer
        self.targets = Array(Set(targets).sorted().prefix(Birthday.maxTargets))
        self.rounds = max(1, min(rounds, Self.maxRounds))
        self.pause = pause
        self.maxProbes = maxProbes
        self.range = range
        self.wanted = wanted
        rng = SplitMix64(seed: seed)
    }

    /// Whether a round's probers are running now.
    public var probing: Bool { !running.isEmpty }

    public func start() {
        peer.host.assertInLoop()
        round()
    }

    /// Ends the attempt now (the current round's probers too).
    public func stop() {
        timer?.cancel()
        timer = nil
        let probers = running
        end()
        for p in probers { p.stop() }
    }

    private func round() {
        timer = nil
        guard !finished else { return }
        guard started < rounds, !targets.isEmpty, wanted() else { return end() }
        started += 1
        let probers = targets.map {
            BirthdayProber(peer: peer, target: $0, seed: rng.next(), maxProbes: maxProbes, range: range)
        }
        running = probers
        for p in probers {
            p.onFinish = { [weak self] p in self?.proberFinished(p) }
        }
        for p in probers { p.start() }
    }

    private func proberFinished(_ p: BirthdayProber) {
        guard running.contains(where: { $0 === p }) else { return }
        running.removeAll { $0 === p }
        probesSent += p.probesSent
        if p.connected { connected = true }
        guard running.isEmpty, !finished else { return }
        if connected { return end() }
        if started >= rounds { return end() }
        // A session from the IP ends a prober at once; otherwise the next round after a pause
        // that doubles (2 s, 4 s).
        let wait = pause &* (1 << Nanos(started - 1))
        timer = peer.host.schedule(after: wait) { [weak self] in self?.round() }
    }

    private func end() {
        guard !finished else { return }
        finished = true
        onFinish?(self)
        onFinish = nil
    }
}
