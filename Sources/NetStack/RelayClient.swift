import DHT
import NetCore
import Sodium
import Transport

/// The client side of relaying (docs/nat.md): the socket the session manager sends through.
///
/// A relayed peer gets a *virtual address* in 0.0.0.0/8 (never a real destination): one per
/// (relay, channel). Sending to it wraps the session's packet in a data frame to the relay;
/// a data frame from a relay we use is unwrapped and handed to the demultiplexer as if it came
/// from the virtual address, so `SessionManager` runs unchanged and the end-to-end Noise session
/// is the same as on a direct path. Every other destination goes straight to the real socket.
///
/// A host `register`s its lobby's tag at relays (every second until each answered, then every
/// `registerEvery`, which also keeps its NAT mapping to the relay alive); a joiner `join`s and gets the virtual address of its
/// channel to the host.
///
/// Following a NAT remap: a registration keeps one nonce per relay, and a joined channel keeps its
/// join's nonce; the client sends them again every `registerEvery`, and at once when a channel
/// through that relay has been quiet for `quietAfter` (the session's 1 s pings stopped arriving).
/// A relay that hears a known nonce from a new address moves the registration or channel end there
/// (`RelayServer.Stats.moved`), so a relayed session outlives a router restart on either side.
/// Confined to the host's thread.
public final class RelayClient: NetworkHost {
    public let inner: NetworkHost
    let demux: Demultiplexer
    /// Unused: the real socket's receiver is the demultiplexer (the protocol asks for the slot).
    public var onReceive: ((_ payload: [UInt8], _ source: PeerAddress) -> Void)?

    public struct Stats: Sendable, Equatable {
        public var framesSent = 0
        public var framesReceived = 0
        /// Relay frames that were malformed, from an address we never used as a relay, or
        /// carried something other than a session packet.
        public var dropped = 0
        /// Virtual addresses refused because the table was full.
        public var tableFull = 0
        public init() {}
    }

    public private(set) var stats = Stats()
    /// Most virtual addresses at once (each one relayed session).
    public static let maxVirtual = 256
    /// The most relays a host registers a tag at.
    public static let maxRegistrations = 4
    /// How long a joiner waits for a direct path before it also tries relays (turf's
    /// `JoinRelay.delay`, which says why; `bench internet` uses the same).
    public static let joinDelay: Nanos = .milliseconds(500)
    private var virtualByChannel: [PeerAddress: [UInt32: PeerAddress]] = [:]
    private var channelByVirtual: [PeerAddress: (relay: PeerAddress, channel: UInt32)] = [:]
    /// When each virtual address last carried a packet: when the table is full, one idle for a
    /// minute makes room.
    private var lastUsed: [PeerAddress: Nanos] = [:]
    private var nextVirtual: UInt32 = 1
    /// Relays we registered or joined at: only their data frames are accepted.
    private var relays = Set<PeerAddress>()
    private var registration: (tag: NodeID, relays: [PeerAddress], nonces: [PeerAddress: UInt64], timer: TimerToken?)?
    /// Each joined channel's join, kept to send again (keepalive, and to follow a remap).
    private var joins: [PeerAddress: (tag: NodeID, nonce: UInt64, sentAt: Nanos)] = [:]
    /// When each relay we use last sent us anything.
    private var lastHeard: [PeerAddress: Nanos] = [:]
    private var tick: TimerToken?
    /// A channel through a relay that has sent nothing this long is re-joined (or, the host's,
    /// re-registered) at once: our NAT may have given us a new address.
    public var quietAfter: Nanos = .seconds(3)
    /// The last answer each relay gave to our registration.
    public private(set) var registeredAt: [PeerAddress: RelayStatus] = [:]
    private var pendingJoins: [UInt64: (relay: PeerAddress, done: (PeerAddress?) -> Void)] = [:]
    public var registerEvery: Nanos = .seconds(10)

    /// Where registration and join nonces come from (seeded in simulations that must repeat).
    private let random: RandomSource

    public convenience init(host: NetworkHost, demux: Demultiplexer, random: RandomSource = .system()) {
        self.init(host: host, demux: demux, random: random, claimRoute: true)
    }

    /// `claimRoute: false`: `Peer` routes relay frames, between this client and its own
    /// `RelayServer` when the player relays for others.
    init(host: NetworkHost, demux: Demultiplexer, random: RandomSource, claimRoute: Bool) {
        inner = host
        self.demux = demux
        self.random = random
        if claimRoute {
            demux.route([RelayFrame.type]) { [weak self] payload, source in self?.receive(payload, from: source) }
        }
    }

    deinit { tick?.cancel() }

    /// Whether `source` is a relay this client registered or joined at.
    func uses(_ source: PeerAddress) -> Bool { relays.contains(source) }

    public var localAddress: PeerAddress { inner.localAddress }
    public var now: Nanos { inner.now }
    public var isInLoop: Bool { inner.isInLoop }
    @discardableResult
    public func schedule(after delay: Nanos, _ action: @escaping () -> Void) -> TimerToken {
        inner.schedule(after: delay, action)
    }

    public func send(_ payload: [UInt8], to destination: PeerAddress) {
        guard Self.isVirtual(destination) else {
            inner.send(payload, to: destination)
            return
        }
        guard let v = channelByVirtual[destination], payload.count <= RelayFrame.maxPayload else {
            stats.dropped += 1
            return
        }
        lastUsed[destination] = inner.now
        stats.framesSent += 1
        inner.send(RelayFrame.data(channel: v.channel, payload: payload).encode(), to: v.relay)
    }

    /// Whether `address` stands for a relayed peer (0.0.0.0/8 but not 0.0.0.0).
    public static func isVirtual(_ address: PeerAddress) -> Bool { address.ip >> 24 == 0 && address.ip != 0 }

    /// The relay behind a virtual address.
    public func relay(of virtual: PeerAddress) -> PeerAddress? { channelByVirtual[virtual]?.relay }

    private func virtualAddress(relay: PeerAddress, channel: UInt32) -> PeerAddress? {
        if let v = virtualByChannel[relay]?[channel] {
            lastUsed[v] = inner.now
            return v
        }
        let now = inner.now
        if channelByVirtual.count >= Self.maxVirtual,
            let idle = lastUsed.min(by: { $0.value < $1.value }), now &- idle.value > .seconds(60)
        {
            forget(idle.key)
        }
        guard channelByVirtual.count < Self.maxVirtual else {
            stats.tableFull += 1
            return nil
        }
        let v = PeerAddress(ip: nextVirtual & 0x00FF_FFFF, port: 1)
        nextVirtual = nextVirtual % 0x00FF_FFFF + 1
        guard channelByVirtual[v] == nil else {
            stats.tableFull += 1
            return nil
        }
        virtualByChannel[relay, default: [:]][channel] = v
        channelByVirtual[v] = (relay, channel)
        lastUsed[v] = now
        return v
    }

    /// Forgets a virtual address whose session is over.
    public func forget(_ virtual: PeerAddress) {
        lastUsed[virtual] = nil
        joins[virtual] = nil
        guard let v = channelByVirtual.removeValue(forKey: virtual) else { return }
        virtualByChannel[v.relay]?[v.channel] = nil
    }

    /// The host's side: registers `tag` at `relays` (at most `maxRegistrations`) now and every `registerEvery`
    /// until `stopRegistering`. Joiners' channels then arrive as inbound sessions.
    public func register(tag: NodeID, at relays: [PeerAddress]) {
        inner.assertInLoop()
        registration?.timer?.cancel()
        let chosen = Array(relays.prefix(Self.maxRegistrations))
        self.relays.formUnion(chosen)
        // One nonce per relay for as long as this tag stays registered there: the relay knows the
        // host by it when the host's NAT gives it a new address.
        var nonces: [PeerAddress: UInt64] = [:]
        for relay in chosen {
            nonces[relay] = registration?.tag == tag ? registration?.nonces[relay] ?? random.u64() : random.u64()
        }
        registration = (tag, chosen, nonces, nil)
        sendRegistrations()
        startTick()
    }

    public func stopRegistering() {
        registration?.timer?.cancel()
        registration = nil
    }

    private func sendRegistrations() {
        guard let r = registration else { return }
        for relay in r.relays {
            inner.send(RelayFrame.register(tag: r.tag, nonce: r.nonces[relay] ?? 0).encode(), to: relay)
        }
        // Until every relay has answered ok, again in a second (a lost register would otherwise
        // keep joiners out for a whole `registerEvery`).
        let answered = r.relays.allSatisfy { registeredAt[$0] == .ok }
        registration?.timer = inner.schedule(after: answered ? registerEvery : .seconds(1)) { [weak self] in
            self?.sendRegistrations()
        }
    }

    /// The joiner's side: asks `relay` for a channel to the host of `tag` (sent up to 6 times,
    /// 500 ms apart); `done` gets the channel's virtual address, or nil.
    public func join(tag: NodeID, relay: PeerAddress, done: @escaping (PeerAddress?) -> Void) {
        inner.assertInLoop()
        relays.insert(relay)
        let nonce = random.u64()
        let frame = RelayFrame.join(tag: tag, nonce: nonce).encode()
        pendingJoins[nonce] = (
            relay,
            { [weak self] virtual in
                if let self, let virtual { self.joins[virtual] = (tag, nonce, self.inner.now) }
                done(virtual)
            }
        )
        for k in 0..<6 {
            inner.schedule(after: .milliseconds(500) * Nanos(k)) { [weak self] in
                guard let self, self.pendingJoins[nonce] != nil else { return }
                if k == 5 {
                    self.pendingJoins.removeValue(forKey: nonce)?.done(nil)
                } else {
                    self.inner.send(frame, to: relay)
                }
            }
        }
        startTick()
    }

    private func startTick() {
        guard tick == nil else { return }
        tick = inner.schedule(after: .seconds(1)) { [weak self] in
            guard let self else { return }
            self.tick = nil
            self.keepChannels()
            if self.registration != nil || !self.joins.isEmpty || !self.pendingJoins.isEmpty { self.startTick() }
        }
    }

    /// Once a second: sends each joined channel's join again when it is due (`registerEvery`) or
    /// its relay has gone quiet, and the registration at once when a relay with our channels on
    /// it has gone quiet (both harmless when nothing changed: the relay answers with the same
    /// channel, or `ok`).
    private func keepChannels() {
        let now = inner.now
        let quiet = { (relay: PeerAddress) in now &- (self.lastHeard[relay] ?? 0) >= self.quietAfter }
        for (virtual, j) in joins.sorted(by: { $0.value.nonce < $1.value.nonce }) {
            guard let v = channelByVirtual[virtual] else {
                joins[virtual] = nil
                continue
            }
            let due = now &- j.sentAt >= registerEvery || (quiet(v.relay) && now &- j.sentAt >= quietAfter)
            guard due else { continue }
            joins[virtual]?.sentAt = now
            inner.send(RelayFrame.join(tag: j.tag, nonce: j.nonce).encode(), to: v.relay)
        }
        guard let r = registration else { return }
        let busyRelays = Set(channelByVirtual.values.map(\.relay))
        for relay in r.relays where busyRelays.contains(relay) && quiet(relay) {
            lastHeard[relay] = now &- quietAfter &+ .seconds(1)  // again in 2 s if still quiet
            inner.send(RelayFrame.register(tag: r.tag, nonce: r.nonces[relay] ?? 0).encode(), to: relay)
        }
    }

    func receive(_ payload: [UInt8], from source: PeerAddress) {
        guard relays.contains(source), let frame = RelayFrame.decode(payload) else {
            stats.dropped += 1
            return
        }
        lastHeard[source] = inner.now
        switch frame {
        case .data(let channel, let body):
            guard let first = body.first, PacketType(rawValue: first) != nil,
                let v = virtualAddress(relay: source, channel: channel)
            else {
                stats.dropped += 1
                return
            }
            stats.framesReceived += 1
            demux.dispatch(body, from: v)
        case .registered(_, let status):
            registeredAt[source] = status
        case .joined(let nonce, let status, let channel):
            if let (virtual, _) = joins.first(where: { $0.value.nonce == nonce }),
                let v = channelByVirtual[virtual], v.relay == source
            {
                // The answer to a keepalive join. A relay that had forgotten the channel opened a
                // new one: the virtual address (the session's peer) now stands for it.
                if status == .ok, v.channel != channel {
                    virtualByChannel[source]?[v.channel] = nil
                    virtualByChannel[source, default: [:]][channel] = virtual
                    channelByVirtual[virtual] = (source, channel)
                }
                return
            }
            guard let j = pendingJoins[nonce], j.relay == source else {
                stats.dropped += 1
                return
            }
            pendingJoins[nonce] = nil
            j.done(status == .ok ? virtualAddress(relay: source, channel: channel) : nil)
        case .register, .join:
            stats.dropped += 1
        }
    }
}
