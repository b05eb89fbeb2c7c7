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

/// The random side: up to `Birthday.maxSockets` extra sockets, each sending a probe to the
/// targets (opening one NAT mapping each). The first probe that comes back from a target on one
/// of them makes it the winner: sends to that target leave through it from then on
/// (`UDPHost.route`), the others are closed at once, and what it receives goes to the peer's one
/// demultiplexer (so the sessions keep one receive path). Without a winner everything is closed
/// after `lifetime`. Confined to the host's thread; real UDP only (`UDPHost`).
public final class BirthdaySockets {
    let peer: Peer
    let udp: UDPHost
    public let targets: [PeerAddress]
    let count: Int
    private var sockets: [AuxiliarySocket] = []
    private var timer: TimerToken?
    private var resend: TimerToken?
    public private(set) var closed = false
    public private(set) var opened = 0
    public private(set) var bindFailures = 0
    public private(set) var probesSent = 0
    /// Datagrams on a losing socket, or anything but a target's probe before a winner: dropped.
    public private(set) var dropped = 0
    public private(set) var winner: AuxiliarySocket?
    /// The external address of the peer whose probe won.
    public private(set) var winningPeer: PeerAddress?
    /// Called once with `winningPeer` when a probe wins (a relayed session moves there).
    public var onWin: ((PeerAddress) -> Void)?
    /// Called once when the sockets close (`close`, or `lifetime` without a winner): whether a
    /// probe had won.
    public var onClose: ((Bool) -> Void)?

    /// nil unless the peer is on a real socket and there is something to aim at (at most
    /// `Birthday.maxTargets`; `Birthday.targets` picks them from a peer's candidates).
    public init?(peer: Peer, targets: [PeerAddress], count: Int = Birthday.maxSockets) {
        guard let udp = peer.host as? UDPHost else { return nil }
        let t = Birthday.capped(targets)
        guard !t.isEmpty else { return nil }
        self.peer = peer
        self.udp = udp
        self.targets = t
        self.count = max(0, min(count, Birthday.maxSockets))
    }

    /// Opens the sockets. They hold this object (their receive path goes through it) until they
    /// close: at `lifetime` without a winner, at `close`, or with the host for the winner.
    public func start(lifetime: Nanos = Birthday.socketLifetime) {
        udp.assertInLoop()
        for _ in 0..<count {
            udp.openAuxiliary(
                onReceive: { payload, source, socket in self.receive(payload, from: source, on: socket) },
                done: { socket in self.didOpen(socket) }
            )
        }
        timer = udp.schedule(after: lifetime) {
            guard self.winner == nil else { return }
            self.close()
        }
        resend = udp.schedule(after: Birthday.secondProbe) {
            guard !self.closed, self.winner == nil else { return }
            for s in self.sockets { self.probeTargets(from: s) }
        }
    }

    private func probeTargets(from socket: AuxiliarySocket) {
        for t in targets {
            socket.send(HolePuncher.probePacket(UInt64(probesSent)), to: t)
            probesSent += 1
        }
    }

    private func didOpen(_ socket: AuxiliarySocket?) {
        guard let socket else {
            bindFailures += 1
            return
        }
        guard !closed, winner == nil else {
            socket.close()
            return
        }
        sockets.append(socket)
        opened += 1
        probeTargets(from: socket)
    }

    private func receive(_ payload: [UInt8], from source: PeerAddress, on socket: AuxiliarySocket) {
        if let winner {
            guard socket === winner else {
                dropped += 1
                return
            }
        } else {
            guard !closed, payload.count == HolePuncher.probeLength, payload.first == HolePuncher.probeType,
                targets.contains(source)
            else {
                dropped += 1
                return
            }
            win(socket, peerAddress: source)
        }
        peer.demux.dispatch(payload, from: source)
    }

    private func win(_ socket: AuxiliarySocket, peerAddress: PeerAddress) {
        winner = socket
        winningPeer = peerAddress
        udp.route(peerAddress, via: socket)
        // The probe that won makes the pending handshake resend through the winner at once; no
        // other probe will come this way (the host probes each port once), so a few more resends
        // follow in case that one is lost (each at most every 200 ms, not counted as attempts).
        for k in 1...Birthday.resendsAfterWin {
            udp.schedule(after: .milliseconds(300 * k)) { [weak self] in
                guard let self, !self.closed else { return }
                self.peer.sessions?.retryHandshakes(to: peerAddress)
            }
        }
        for s in sockets where s !== socket { s.close() }
        sockets = [socket]
        timer?.cancel()
        timer = nil
        resend?.cancel()
        resend = nil
        onWin?(peerAddress)
        onWin = nil
    }

    /// Closes every socket, the winner too (its route falls back to the main socket).
    public func close() {
        udp.assertInLoop()
        guard !closed else { return }
        closed = true
        timer?.cancel()
        timer = nil
        resend?.cancel()
        resend = nil
        for s in sockets { s.close() }
        sockets = []
        if let w = winningPeer { udp.route(w, via: nil) }
        let done = onClose
        onClose = nil
        done?(winner != nil)
    }

    /// Sockets open now.
    public var openCount: Int { sockets.filter { !$0.isClosed }.count }

    /// The local ports of the sockets open now.
    public var localPorts: [UInt16] { sockets.filter { !$0.isClosed }.map(\.localAddress.port) }
}

/// The birthday method with the roles reversed (docs/nat.md): this side (a host) is behind a random
/// NAT and a consistent peer knocked. It opens the extra sockets towards the knocker's address; the
/// knocker, once it plays relayed, probes random ports of our IP (`BirthdayProberRounds`), and the
/// socket a probe reaches wins: `onWin` gets the knocker's address and moves a session there
/// (false: none to move, and the sockets close). One attempt at a time; an IP again only `window`
/// after its last attempt started. A knock that cannot be acted on now (off, an attempt running,
/// its IP tried within the window) is held, the latest one: it is acted on as soon as it can be
/// (the classification settles within 10 s, the window ends), so a joiner that keeps knocking
/// gets fresh sockets when the old ones expired, without waiting for its next knock to get
/// through. Confined to the host's thread.
public final class BirthdayResponder {
    let peer: Peer
    let window: Nanos
    let lifetime: Nanos
    /// On only while this side's own NAT is random. A knock that came while off (the
    /// classification not settled yet) is acted on when it turns on within `holdWhileOff`.
    public var enabled = false {
        didSet {
            guard enabled, !oldValue, let h = held else { return }
            if peer.host.now &- h.at < Self.holdWhileOff { act(on: h) } else { held = nil }
        }
    }
    /// How long a knock held while off stays good.
    public static let holdWhileOff: Nanos = .seconds(10)
    private var held: HeldKnock?
    private var retry: TimerToken?
    private var stopped = false
    private var current: BirthdaySockets?
    /// When the last attempt started (0 before the first).
    public private(set) var currentStart: Nanos = 0
    private var lastStart: [UInt32: Nanos] = [:]
    public private(set) var attempts = 0
    /// Knocks not acted on when they came (off, an attempt running, the IP tried within the
    /// window, nothing to aim at): counted. Held ones acted on later count as attempts too.
    public private(set) var skipped = 0
    /// Attempts started from a held knock, once the window or the running attempt ended.
    public private(set) var reopened = 0
    public var onWin: ((PeerAddress) -> Bool)?
    /// How an attempt ended: the knocker's address it aimed at, the sockets that opened, whether
    /// a probe won and a session moved there.
    public struct Outcome: Sendable, Equatable {
        public var address: PeerAddress
        public var sockets: Int
        public var moved: Bool
    }
    /// Called when an attempt ends.
    public var onFinish: ((Outcome) -> Void)?
    public static let maxRemembered = 256

    /// A knock: the addresses it named (the first public one is aimed at) and when it came.
    struct HeldKnock {
        var addresses: [PeerAddress]
        var at: Nanos
    }

    let count: Int
    let loopback: Bool

    /// `loopback`: also aim at 127.0.0.0/8 knockers (tests on one machine; a LAN or loopback
    /// knocker needs no birthday method, so it is off in play).
    public init(
        peer: Peer,
        window: Nanos = .seconds(20),
        lifetime: Nanos = Birthday.socketLifetime,
        count: Int = Birthday.maxSockets,
        loopback: Bool = false
    ) {
        self.peer = peer
        self.window = window
        self.lifetime = min(lifetime, Birthday.socketLifetime)
        self.count = count
        self.loopback = loopback
    }

    /// The knocked address worth aiming at: the first public one (or loopback, when allowed).
    public static func target(_ addresses: [PeerAddress], loopback: Bool = false) -> PeerAddress? {
        addresses.first { a in a.port != 0 && !a.isIPv6 && (!a.isPrivate || (loopback && a.ip >> 24 == 127)) }
    }

    /// Whether an attempt's sockets are open and waiting for a probe.
    public var running: Bool { current.map { !$0.closed && $0.winner == nil } ?? false }

    /// Whether a knock waits to be acted on.
    public var holding: Bool { held != nil }

    /// The current attempt's sockets (nil before the first).
    public var sockets: BirthdaySockets? { current }

    /// Plain knocks from these addresses (a consistent knocker's NAT mapping).
    public func knocked(_ addresses: [PeerAddress]) {
        peer.host.assertInLoop()
        let now = peer.host.now
        guard Self.target(addresses, loopback: loopback) != nil else {
            skipped += 1
            return
        }
        if !act(on: HeldKnock(addresses: Array(addresses.prefix(4)), at: now)) { skipped += 1 }
    }

    /// Forgets a held knock and closes sockets still waiting for a probe (a winner stays: it
    /// carries a session); knocks are ignored from then on. When hosting ends.
    public func stop() {
        peer.host.assertInLoop()
        stopped = true
        retry?.cancel()
        retry = nil
        held = nil
        if running { current?.close() }
    }

    /// Opens an attempt for `knock` if it can now; else holds it (the latest knock wins) and, when
    /// on, looks again when the running attempt or the IP's window ends. True if it opened.
    @discardableResult
    private func act(on knock: HeldKnock) -> Bool {
        let now = peer.host.now
        // A held knock comes due at most `window` after it came (its IP's window ends, or the
        // running attempt does); one much older than that is stale and dropped.
        guard !stopped, now &- knock.at <= 2 &* window, let target = Self.target(knock.addresses, loopback: loopback)
        else {
            held = nil
            return false
        }
        let ready = max(
            running ? currentStart &+ lifetime : now,
            lastStart[target.ip].map { $0 &+ window } ?? now
        )
        guard enabled, ready <= now else {
            held = knock
            if enabled { retryAt(ready) }
            return false
        }
        guard let sockets = BirthdaySockets(peer: peer, targets: [target], count: count) else { return false }
        if held.map({ Self.target($0.addresses, loopback: loopback) == target }) ?? false { held = nil }
        if lastStart.count >= Self.maxRemembered, let oldest = lastStart.min(by: { $0.value < $1.value }) {
            lastStart[oldest.key] = nil
        }
        lastStart[target.ip] = now
        currentStart = now
        attempts += 1
        sockets.onWin = { [weak self, weak sockets] address in
            let moved = self?.onWin?(address) == true
            let opened = sockets?.opened ?? 0
            if !moved { sockets?.close() }
            self?.finished(Outcome(address: target, sockets: opened, moved: moved))
        }
        sockets.onClose = { [weak self, weak sockets] won in
            if !won { self?.finished(Outcome(address: target, sockets: sockets?.opened ?? 0, moved: false)) }
        }
        current = sockets
        sockets.start(lifetime: lifetime)
        return true
    }

    private func finished(_ o: Outcome) {
        // A session moved to that IP: a knock it sent before is answered.
        if o.moved, let h = held, Self.target(h.addresses, loopback: loopback)?.ip == o.address.ip { held = nil }
        onFinish?(o)
        // Another knock waiting for the attempt to end (its window may still run: `act` says).
        if let h = held, enabled, !running { act(on: h) }
    }

    /// Looks at the held knock again at `at` (or now, if that is past).
    private func retryAt(_ at: Nanos) {
        retry?.cancel()
        retry = peer.host.schedule(after: at &- min(at, peer.host.now)) { [weak self] in
            guard let self, let h = self.held else { return }
            self.retry = nil
            if self.act(on: h) { self.reopened += 1 }
        }
    }
}
