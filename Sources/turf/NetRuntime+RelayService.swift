import DHT
import Foundation
import Lobby
import LocalFiles
import NetCore
import NetStack
import TextOutput

/// Relaying for others while `turf host` / `turf join` runs (docs/nat.md, "Players relay for each
/// other"): once this machine's NAT lets others in (`open`, `consistent`, or IPv6 `open`), its
/// peer serves as a player relay (`RelayServer.Config.player`, announced on
/// `RelayFrame.playerRelayInfoHash` and its shard: `Peer.servePlayerRelay`), and stops when the classification turns `random` or
/// `unknown`. Off with `--no-relay-service` or `relay_service = off` in dht.conf.
struct RelayServiceState {
    /// Why the service never runs (`flag`, `config`), nil when it may.
    let optedOut: String?
    let config: RelayServer.Config
    private(set) var on = false
    /// The reason last printed in a `relay_service` event.
    var shown: String?
    /// The host's link (a joiner): the host hears whether we relay (`LobbyMessage.relayService`).
    var hostLink: UInt32?
    var toldHost: Bool?
    /// What servers stopped earlier in this process forwarded (the `end` event adds the running one).
    var earlier = RelayServiceFigures()
    /// Ticks in a row that said "stop" while serving: a classification that wavers for a moment
    /// (a few disagreeing reports) does not drop the channels of the pairs we carry.
    var stopVotes = 0
    static let stopAfter = 10

    init(optedOut: String?, kibPerSecond: Int?) {
        self.optedOut = optedOut
        var c = RelayServer.Config.player
        if let k = kibPerSecond { c.totalBytesPerSecond = k * 1024 }
        config = c
    }

    /// Whether to serve, and why, given the NAT now: open; or consistent with a mapping that
    /// strangers can use (an IPv4 datagram came in from an address we had not sent to: a NAT that
    /// filters by address would have dropped it, and would drop a relay's clients too); or IPv6
    /// open. Not behind a random NAT, nor while the classification is unknown.
    static func decide(nat: NATKind, ipv6: IPv6Reach, unsolicitedIPv4: UInt64) -> (serve: Bool, reason: String) {
        switch nat {
        case .open: return (true, "nat_open")
        case .consistent where unsolicitedIPv4 > 0: return (true, "nat_consistent")
        default:
            if ipv6 == .open { return (true, "ipv6_open") }
            return (false, nat == .consistent ? "nat_consistent_filtered" : "nat_" + nat.rawValue)
        }
    }

    mutating func set(_ serve: Bool) { on = serve }
}

/// A player relay's figures, for the `end` event.
struct RelayServiceFigures: Sendable {
    var channelsOpened = 0
    var registrations = 0
    var bytesForwarded: UInt64 = 0
    var peakBytesPerSecond: UInt64 = 0
    var quotaDrops = 0
    /// Lobbies this relay told the DHT it holds (`RelayServer.onNewTag`).
    var tagsAnnounced = 0

    init() {}

    init(_ server: RelayServer) {
        let s = server.stats
        channelsOpened = s.channelsOpened
        registrations = s.registrations
        bytesForwarded = s.bytesForwarded
        peakBytesPerSecond = server.peakSecondBytes
        quotaDrops = s.sessionQuota + s.byteQuota + s.totalQuota
        tagsAnnounced = s.tagsAnnounced
    }

    static func + (a: Self, b: Self) -> Self {
        var c = a
        c.channelsOpened += b.channelsOpened
        c.registrations += b.registrations
        c.bytesForwarded += b.bytesForwarded
        c.peakBytesPerSecond = max(a.peakBytesPerSecond, b.peakBytesPerSecond)
        c.quotaDrops += b.quotaDrops
        c.tagsAnnounced += b.tagsAnnounced
        return c
    }
}

extension NetRuntime {
    /// Once a second (each `stats` event): starts or stops the player relay as the NAT's
    /// classification says, prints `relay_service` when that changes, and tells the host (a
    /// joiner that is seated) whether we relay.
    func tickRelayService() {
        if let why = relayService.optedOut {
            if relayService.shown == nil {
                relayService.shown = "opted_out"
                event("relay_service") { j in
                    j.add("status", "off")
                    j.add("reason", "opted_out")
                    j.add("by", why)
                }
            }
            return
        }
        let d = RelayServiceState.decide(
            nat: natStatus().kind,
            ipv6: ipv6Reach(),
            unsolicitedIPv4: stats.unsolicitedIPv4
        )
        relayService.stopVotes = relayService.on && !d.serve ? relayService.stopVotes + 1 : 0
        if d.serve != relayService.on && (d.serve || relayService.stopVotes >= RelayServiceState.stopAfter) {
            relayService.set(d.serve)
            let config = relayService.config
            if d.serve {
                live.execute { $0.servePlayerRelay(config) }
            } else {
                let stopped = try? live.sync { peer -> RelayServiceFigures in
                    let f = peer.relayServer.map(RelayServiceFigures.init) ?? RelayServiceFigures()
                    peer.stopServingRelay()
                    return f
                }
                relayService.earlier = relayService.earlier + (stopped ?? RelayServiceFigures())
            }
            relayService.shown = d.reason
            event("relay_service") { j in
                j.add("status", d.serve ? "on" : "off")
                j.add("reason", d.reason)
                if d.serve { j.add("kib_per_second", (config.totalBytesPerSecond ?? 0) / 1024) }
            }
        }
        if let link = relayService.hostLink, relayService.toldHost != relayService.on {
            relayService.toldHost = relayService.on
            send(link, .relayService(relayService.on))
        }
    }

    /// The `end` event's `relay_service`: whether we relay now, and what we relayed for others.
    func relayServiceJSON() -> JSONObject {
        let running = (try? live.sync { peer in peer.relayServer.map(RelayServiceFigures.init) }) ?? nil
        let f = relayService.earlier + (running ?? RelayServiceFigures())
        var j = JSONObject()
        j.add("status", relayService.on ? "on" : "off")
        if let why = relayService.optedOut { j.add("opted_out", why) }
        j.add("kib_per_second", (relayService.config.totalBytesPerSecond ?? 0) / 1024)
        j.add("registrations", f.registrations)
        j.add("channels_opened", f.channelsOpened)
        j.add("bytes_forwarded", f.bytesForwarded)
        j.add("peak_bytes_per_second", f.peakBytesPerSecond)
        j.add("quota_drops", f.quotaDrops)
        j.add("tags_announced", f.tagsAnnounced)
        return j
    }

    /// Whether the lobby screen says "relaying for others": nil when opted out (nothing to say).
    var relayingShown: Bool? { relayService.optedOut == nil ? relayService.on : nil }
}

extension DHTCLI {
    /// `relay_service` and `relay_kib_per_second` in dht.conf (nil when it says nothing); a file
    /// that cannot be read or parsed is an error, as for the bootstrap setting.
    static func relayServiceSetting() throws -> (on: Bool?, kibPerSecond: Int?) {
        try dhtConfSetting { text, path in try DHTBootstrap.parseRelayService(text, path: path) } ?? (nil, nil)
    }
}
