import Determinism
import NetCore
import NetPOSIX

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
