import DHT
import NetCore
import Sodium

/// A volunteer relay (`turf dht serve --relay`, docs/nat.md): pairs a lobby's host and a joiner
/// that cannot reach each other and forwards their session's packets, which it cannot read.
///
/// A host registers its lobby's tag; a joiner's join for that tag opens a channel between the two
/// addresses; data frames on a channel are forwarded only from one of its two addresses to the
/// other. Everything is bounded: hosts, channels, sessions (registrations plus channels joined) per
/// client IP, channels per host and per (host, joiner IP), bytes per client IP per second (a token
/// bucket) and per channel; idle registrations and
/// channels expire. What breaks a rule is dropped and counted, never answered with more bytes than
/// it carried. Confined to the host's thread.
public final class RelayServer {
    public struct Config: Sendable {
        /// Registrations plus channels joined that one client IP may hold at once.
        public var sessionsPerClient = 8
        /// Channels one registered host may have at once (a lobby's joiners) …
        public var channelsPerHost = 16
        /// … and of those, from one joiner IP.
        public var channelsPerJoinerIP = 2
        /// Bytes one client IP may have forwarded per second, sustained …
        public var bytesPerSecondPerClient = 256 * 1024
        /// … and in a burst.
        public var burstBytesPerClient = 1024 * 1024
        /// Bytes one channel may carry in all (both ways); then it is closed.
        public var bytesPerChannel: UInt64 = 256 * 1024 * 1024
        public var maxHosts = 1024
        public var maxChannels = 1024
        /// A registration or channel with no traffic this long is forgotten.
        public var idleTimeout: Nanos = .seconds(30)
        /// Bytes the relay forwards per second for all its clients together, sustained and in a
        /// burst: the share of its upload a player gives to others (nil: no cap, a volunteer).
        public var totalBytesPerSecond: Int? = nil
        public var totalBurstBytes = 64 * 1024
        /// New tags a minute the relay tells the DHT it holds (`onNewTag`): each costs a lookup
        /// and announce on other people's nodes, so a client churning tags cannot make it spam.
        public var tagAnnouncesPerMinute = 16
        public init() {}

        /// A player's relay (docs/nat.md, "Players relay for each other"): it runs beside the
        /// player's own match, so every quota is far below a volunteer's. A relayed match link
        /// carries at most about 3 KB/s each way (docs/benchmarks.md, `bench netmatch`), so 64 KiB/s
        /// in all is about ten relayed pairs, and 32 MiB per channel an hour-long series.
        public static var player: Config {
            var c = Config()
            c.sessionsPerClient = 4
            c.channelsPerHost = 8
            c.channelsPerJoinerIP = 2
            c.bytesPerSecondPerClient = 16 * 1024
            c.burstBytesPerClient = 64 * 1024
            c.bytesPerChannel = 32 * 1024 * 1024
            c.maxHosts = 16
            c.maxChannels = 16
            c.totalBytesPerSecond = 64 * 1024
            c.tagAnnouncesPerMinute = 8
            return c
        }
    }

    public struct Stats: Sendable, Equatable {
        public var registrations = 0
        public var channelsOpened = 0
        public var framesForwarded = 0
        public var bytesForwarded: UInt64 = 0
        /// Malformed relay frames, and answers (0x81, 0x82) sent to the relay.
        public var malformed = 0
        public var noHost = 0
        public var busy = 0
        /// Registers and joins refused by a session quota or the relay's capacity.
        public var sessionQuota = 0
        /// Data frames dropped by a byte quota (client or channel).
        public var byteQuota = 0
        /// Data frames dropped by the relay's total cap (`Config.totalBytesPerSecond`).
        public var totalQuota = 0
        /// Registrations and channel ends that moved to a new address (a NAT remapped the
        /// client): a register or join from a new address with the first one's nonce.
        public var moved = 0
        /// Data frames for an unknown channel or from an address that is not one of its two ends.
        public var unknownChannel = 0
        public var expired = 0
        /// New tags announced as held (`onNewTag`), and those over `tagAnnouncesPerMinute`.
        public var tagsAnnounced = 0
        public var tagAnnouncesOverQuota = 0
        public init() {}
    }

    struct HostEntry {
        var address: PeerAddress
        /// The register's nonce: a register from another address with the same nonce is this
        /// host after its NAT remapped it (the nonce is known only to the host and the relay).
        var nonce: UInt64
        var lastSeen: Nanos
    }

    struct Channel {
        var tag: NodeID
        var host: PeerAddress
        var joiner: PeerAddress
        var nonce: UInt64
        var bytes: UInt64 = 0
        var lastSeen: Nanos
    }

    struct Bucket {
        var tokens: Double
        var last: Nanos

        /// Refills at `rate` a second up to `burst`, then takes `amount`; false (nothing taken)
        /// when it holds too few.
        mutating func take(_ amount: Int, rate: Double, burst: Double, now: Nanos) -> Bool {
            tokens = min(burst, tokens + rate * Double(now &- last) / 1e9)
            last = now
            guard tokens >= Double(amount) else { return false }
            tokens -= Double(amount)
            return true
        }
    }

    let host: NetworkHost
    public let config: Config
    public private(set) var stats = Stats()
    private var hosts: [NodeID: HostEntry] = [:]
    private var channels: [UInt32: Channel] = [:]
    private var buckets: [UInt64: Bucket] = [:]
    private var total: Bucket?
    private var sweepTimer: TimerToken?
    /// Where channel ids come from; random unless set (tests).
    var channelIDs: () -> UInt32
    /// Runs when a host registers a tag this relay did not hold (within
    /// `Config.tagAnnouncesPerMinute`): `Peer` announces the relay on `RelayFrame.holderHash`.
    public var onNewTag: ((NodeID) -> Void)?
    private var tagMinute: (start: Nanos, count: Int) = (0, 0)

    /// Claims the relay frame type on `demux` (a peer without sessions: `turf dht serve`).
    /// `random`: where channel ids come from (seeded in simulations that must repeat).
    public convenience init(
        host: NetworkHost,
        demux: Demultiplexer,
        config: Config = Config(),
        random: RandomSource = .system()
    ) {
        self.init(host: host, config: config, random: random)
        demux.route([RelayFrame.type]) { [weak self] payload, source in self?.receive(payload, from: source) }
    }

    /// Without claiming the frame type: `Peer` routes relay frames between this server and its
    /// own `RelayClient` (a player both uses relays and is one).
    init(host: NetworkHost, config: Config, random: RandomSource) {
        host.assertInLoop()
        self.host = host
        self.config = config
        channelIDs = { random.uniform(UInt32.max) + 1 }
        scheduleSweep()
    }

    /// Whether a data frame on `channel` from `source` is this relay's to forward (it is one of
    /// the channel's two ends).
    func isEnd(_ source: PeerAddress, of channel: UInt32) -> Bool {
        guard let c = channels[channel] else { return false }
        return c.host == source || c.joiner == source
    }

    /// Bytes forwarded per second over the last whole second, and the most seen so far (the
    /// figures a player's relay reports against `Config.totalBytesPerSecond`).
    public private(set) var lastSecondBytes: UInt64 = 0
    public private(set) var peakSecondBytes: UInt64 = 0
    private var secondStartBytes: UInt64 = 0

    deinit { sweepTimer?.cancel() }

    public func stop() {
        sweepTimer?.cancel()
        sweepTimer = nil
    }

    public var hostCount: Int { hosts.count }
    public var channelCount: Int { channels.count }
    /// The ids of the open channels (tests).
    var openChannels: [UInt32] { channels.keys.sorted() }

    /// Registrations plus channels joined that `ip` holds.
    func sessions(of ip: UInt64) -> Int {
        hosts.values.count { $0.address.sourceKey == ip } + channels.values.count { $0.joiner.sourceKey == ip }
    }

    func receive(_ payload: [UInt8], from source: PeerAddress) {
        guard let frame = RelayFrame.decode(payload) else {
            stats.malformed += 1
            return
        }
        let now = host.now
        switch frame {
        case .register(let tag, let nonce):
            host.send(
                RelayFrame.registered(nonce: nonce, status: register(tag, nonce: nonce, from: source, now: now))
                    .encode(),
                to: source
            )
        case .join(let tag, let nonce):
            let (status, channel) = join(tag, nonce: nonce, from: source, now: now)
            host.send(RelayFrame.joined(nonce: nonce, status: status, channel: channel).encode(), to: source)
        case .data(let id, let body):
            forward(id, body, from: source, now: now)
        case .registered, .joined:
            stats.malformed += 1
        }
    }

    private func register(_ tag: NodeID, nonce: UInt64, from source: PeerAddress, now: Nanos) -> RelayStatus {
        if var h = hosts[tag] {
            if h.address != source {
                // The same host from a new address (its NAT remapped it): move the registration
                // and its channels. Anyone else is busy.
                guard h.nonce == nonce else {
                    stats.busy += 1
                    return .busy
                }
                guard sessions(of: source.sourceKey) < config.sessionsPerClient else {
                    stats.sessionQuota += 1
                    return .quota
                }
                for (id, c) in channels where c.host == h.address { channels[id]?.host = source }
                h.address = source
                stats.moved += 1
            }
            h.lastSeen = now
            hosts[tag] = h
            return .ok
        }
        guard hosts.count < config.maxHosts, sessions(of: source.sourceKey) < config.sessionsPerClient else {
            stats.sessionQuota += 1
            return .quota
        }
        hosts[tag] = HostEntry(address: source, nonce: nonce, lastSeen: now)
        stats.registrations += 1
        if let onNewTag {
            if now &- tagMinute.start >= .seconds(60) { tagMinute = (now, 0) }
            if tagMinute.count < config.tagAnnouncesPerMinute {
                tagMinute.count += 1
                stats.tagsAnnounced += 1
                onNewTag(tag)
            } else {
                stats.tagAnnouncesOverQuota += 1
            }
        }
        return .ok
    }

    private func join(_ tag: NodeID, nonce: UInt64, from source: PeerAddress, now: Nanos) -> (RelayStatus, UInt32) {
        // A join sent again (its answer was lost, or it keeps the channel alive) gets the same
        // channel; from a new address (the joiner's NAT remapped it) the channel moves there.
        if let (id, c) = channels.first(where: { $0.value.nonce == nonce && $0.value.tag == tag }) {
            guard c.joiner != source else { return (.ok, id) }
            guard sessions(of: source.sourceKey) < config.sessionsPerClient else {
                stats.sessionQuota += 1
                return (.quota, 0)
            }
            channels[id]?.joiner = source
            channels[id]?.lastSeen = now
            stats.moved += 1
            return (.ok, id)
        }
        guard let h = hosts[tag] else {
            stats.noHost += 1
            return (.noHost, 0)
        }
        let toHost = channels.values.filter { $0.host == h.address }
        guard channels.count < config.maxChannels, sessions(of: source.sourceKey) < config.sessionsPerClient,
            toHost.count < config.channelsPerHost,
            toHost.count(where: { $0.joiner.sourceKey == source.sourceKey }) < config.channelsPerJoinerIP
        else {
            stats.sessionQuota += 1
            return (.quota, 0)
        }
        var id = channelIDs()
        for _ in 0..<8 where id == 0 || channels[id] != nil { id = channelIDs() }
        guard id != 0, channels[id] == nil else {
            stats.sessionQuota += 1
            return (.quota, 0)
        }
        channels[id] = Channel(tag: tag, host: h.address, joiner: source, nonce: nonce, lastSeen: now)
        stats.channelsOpened += 1
        return (.ok, id)
    }

    private func forward(_ id: UInt32, _ body: [UInt8], from source: PeerAddress, now: Nanos) {
        guard var c = channels[id], source == c.host || source == c.joiner else {
            stats.unknownChannel += 1
            return
        }
        let size = body.count + 6
        guard c.bytes + UInt64(size) <= config.bytesPerChannel, charge(source.sourceKey, bytes: size, now: now) else {
            stats.byteQuota += 1
            return
        }
        guard chargeTotal(size, now: now) else {
            stats.totalQuota += 1
            return
        }
        c.bytes += UInt64(size)
        c.lastSeen = now
        channels[id] = c
        stats.framesForwarded += 1
        stats.bytesForwarded += UInt64(size)
        host.send(RelayFrame.data(channel: id, payload: body).encode(), to: source == c.host ? c.joiner : c.host)
    }

    /// Takes `bytes` from `ip`'s bucket; false (nothing taken) when it holds too few.
    private func charge(_ ip: UInt64, bytes: Int, now: Nanos) -> Bool {
        let burst = Double(config.burstBytesPerClient)
        var b = buckets[ip] ?? Bucket(tokens: burst, last: now)
        let ok = b.take(bytes, rate: Double(config.bytesPerSecondPerClient), burst: burst, now: now)
        buckets[ip] = b
        return ok
    }

    /// Takes `bytes` from the relay's total allowance (always true without a cap).
    private func chargeTotal(_ bytes: Int, now: Nanos) -> Bool {
        guard let rate = config.totalBytesPerSecond else { return true }
        let burst = Double(config.totalBurstBytes)
        var b = total ?? Bucket(tokens: burst, last: now)
        let ok = b.take(bytes, rate: Double(rate), burst: burst, now: now)
        total = b
        return ok
    }

    private func scheduleSweep() {
        sweepTimer = host.schedule(after: .seconds(1)) { [weak self] in
            self?.sweep()
            self?.scheduleSweep()
        }
    }

    /// Forgets idle registrations and channels, and buckets of clients that hold nothing.
    func sweep() {
        let now = host.now
        lastSecondBytes = stats.bytesForwarded - secondStartBytes
        secondStartBytes = stats.bytesForwarded
        peakSecondBytes = max(peakSecondBytes, lastSecondBytes)
        let before = hosts.count + channels.count
        hosts = hosts.filter { now &- $0.value.lastSeen < config.idleTimeout }
        channels = channels.filter { now &- $0.value.lastSeen < config.idleTimeout }
        stats.expired += before - hosts.count - channels.count
        let live = Set(
            hosts.values.map(\.address.sourceKey)
                + channels.values.flatMap { [$0.host.sourceKey, $0.joiner.sourceKey] }
        )
        buckets = buckets.filter { live.contains($0.key) }
    }
}
