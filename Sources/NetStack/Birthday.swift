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
        closed = true
        timer?.cancel()
        timer = nil
        resend?.cancel()
        resend = nil
        for s in sockets { s.close() }
        sockets = []
        if let w = winningPeer { udp.route(w, via: nil) }
    }

    /// Sockets open now.
    public var openCount: Int { sockets.filter { !$0.isClosed }.count }

    /// The local ports of the sockets open now.
    public var localPorts: [UInt16] { sockets.filter { !$0.isClosed }.map(\.localAddress.port) }
}

/// The birthday method with the roles reversed (docs/nat.md): this side (a host) is behind a random
/// NAT and a consistent peer knocked. It opens the extra sockets towards the knocker's address; the
/// knocker, once it plays relayed, probes random ports of our IP (a `BirthdayProber`), and the
/// socket a probe reaches wins: `onWin` gets the knocker's address and moves a session there
/// (false: none to move, and the sockets close). One attempt at a time; an IP
/// again only `window` after its last attempt. Confined to the host's thread.
public final class BirthdayResponder {
    let peer: Peer
    let window: Nanos
    /// On only while this side's own NAT is random. A knock that came while off (the
    /// classification not settled yet) is acted on when it turns on within 10 s.
    public var enabled = false {
        didSet {
            guard enabled, !oldValue, let (addresses, at) = heldKnock else { return }
            heldKnock = nil
            if peer.host.now &- at < .seconds(10) { knocked(addresses) }
        }
    }
    private var heldKnock: ([PeerAddress], Nanos)?
    private var current: BirthdaySockets?
    private var lastStart: [UInt32: Nanos] = [:]
    public private(set) var attempts = 0
    /// Knocks not acted on (off, an attempt running, the IP tried within the window): counted.
    public private(set) var skipped = 0
    public var onWin: ((PeerAddress) -> Bool)?
    public static let maxRemembered = 256

    let count: Int
    let loopback: Bool

    /// `loopback`: also aim at 127.0.0.0/8 knockers (tests on one machine; a LAN or loopback
    /// knocker needs no birthday method, so it is off in play).
    public init(peer: Peer, window: Nanos = .seconds(20), count: Int = Birthday.maxSockets, loopback: Bool = false) {
        self.peer = peer
        self.window = window
        self.count = count
        self.loopback = loopback
    }

    /// The knocked address worth aiming at: the first public one (or loopback, when allowed).
    public static func target(_ addresses: [PeerAddress], loopback: Bool = false) -> PeerAddress? {
        addresses.first { a in a.port != 0 && !a.isIPv6 && (!a.isPrivate || (loopback && a.ip >> 24 == 127)) }
    }

    /// Whether an attempt's sockets are open and waiting for a probe.
    public var running: Bool { current.map { !$0.closed && $0.winner == nil } ?? false }

    /// The current attempt's sockets (nil before the first).
    public var sockets: BirthdaySockets? { current }

    /// Plain knocks from these addresses (a consistent knocker's NAT mapping).
    public func knocked(_ addresses: [PeerAddress]) {
        peer.host.assertInLoop()
        let now = peer.host.now
        if !enabled { heldKnock = (Array(addresses.prefix(4)), now) }
        guard enabled, !running, let target = Self.target(addresses, loopback: loopback),
            lastStart[target.ip].map({ now &- $0 >= window }) ?? true
        else {
            skipped += 1
            return
        }
        guard let sockets = BirthdaySockets(peer: peer, targets: [target], count: count) else { return }
        if lastStart.count >= Self.maxRemembered, let oldest = lastStart.min(by: { $0.value < $1.value }) {
            lastStart[oldest.key] = nil
        }
        lastStart[target.ip] = now
        attempts += 1
        sockets.onWin = { [weak self, weak sockets] address in
            if self?.onWin?(address) != true { sockets?.close() }
        }
        current = sockets
        sockets.start()
    }
}
