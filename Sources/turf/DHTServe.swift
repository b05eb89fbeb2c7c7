import ArgumentParser
import DHT
import Dispatch
import Foundation
import LocalFiles
import Logging
import NetCore
import NetPOSIX
import NetStack
import TextOutput

struct DHTServe: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "serve",
        abstract: "Run a long-lived DHT node (a LAN bootstrap or a helper for the public network)."
    )
    @OptionGroup var node: DHTNodeOptions
    @Option(
        help: Limits.dhtSeconds.help(
            "Stop after this many seconds (default: run until stopped by SIGINT, SIGTERM or SIGHUP)."
        ),
        transform: Limits.dhtSeconds.parse
    )
    var duration: Double?
    @Option(
        help: Limits.dhtSeconds.help("Print a status line every this many seconds (0: never).", default: 60),
        transform: Limits.dhtSeconds.parse
    )
    var statusEvery: Double = 60
    @OptionGroup var relay: RelayOptions

    func run() throws {
        let stop = StopSignals()
        let r = try DHTCLI.Running(node, verbose: true)
        DHTCLI.emit("dht serve: listening on \(r.localAddress) node id \(r.snapshot().id.hexString)")
        if relay.relay {
            let config = relay.config
            r.live.execute { $0.serveRelay(config) }
            DHTCLI.emit(
                "dht serve: relaying (\(config.sessionsPerClient) sessions and \(config.bytesPerSecondPerClient / 1024) KiB/s per client, \(config.bytesPerChannel >> 20) MiB per channel, \(config.maxChannels) channels)"
            )
        }
        let end = duration.map { monotonicNanos() + Nanos($0 * 1e9) }
        while stop.caught == nil {
            let left = end.map { Double($0 &- min($0, monotonicNanos())) / 1e9 }
            if let left, left <= 0 { break }
            let step = [statusEvery > 0 ? statusEvery : nil, left].compactMap { $0 }.min()
            if stop.sleep(step) != nil { break }
            if statusEvery > 0, left.map({ $0 > statusEvery }) ?? true {
                let s = r.snapshot()
                if relay.relay, let line = try? r.live.sync({ $0.relayServer.map(RelayOptions.status) }) {
                    DHTCLI.emit(line)
                }
                DHTCLI.emit(
                    "dht: \(s.nodes) nodes (IPv4 \(s.nodes4), IPv6 \(s.nodes6)); external \(s.external?.description ?? "unknown") (\(s.nat.rawValue)), IPv6 \(s.external6?.description ?? "none"); answered \(s.stats.queriesAnswered), dropped malformed \(s.stats.malformed) rate-limited \(s.stats.rateLimited)"
                )
            }
        }
        try r.finish(stop)
    }
}

/// `turf dht serve --relay`: the node is also a volunteer relay (docs/nat.md), with quotas.
struct RelayOptions: ParsableArguments {
    @Flag(help: "Also relay for players whose NATs cannot be punched (found on the DHT; quotas below).")
    var relay = false
    @Option(
        help: Limits.relaySessions.help("Relay: registrations plus channels per client IP.", default: 8),
        transform: Limits.relaySessions.parse
    )
    var relaySessions = 8
    @Option(
        help: Limits.relayKiBPerSecond.help("Relay: bytes forwarded per client IP per second.", default: 256),
        transform: Limits.relayKiBPerSecond.parse
    )
    var relayKibPerSecond = 256
    @Option(
        help: Limits.relayChannelMiB.help("Relay: bytes one channel may carry in all.", default: 256),
        transform: Limits.relayChannelMiB.parse
    )
    var relayChannelMib = 256
    @Option(
        help: Limits.relayChannels.help("Relay: channels at once.", default: 1024),
        transform: Limits.relayChannels.parse
    )
    var relayChannels = 1024

    var config: RelayServer.Config {
        var c = RelayServer.Config()
        c.sessionsPerClient = relaySessions
        c.bytesPerSecondPerClient = relayKibPerSecond * 1024
        c.burstBytesPerClient = max(c.bytesPerSecondPerClient * 4, 64 * 1024)
        c.bytesPerChannel = UInt64(relayChannelMib) << 20
        c.maxChannels = relayChannels
        c.maxHosts = relayChannels
        return c
    }

    static func status(_ s: RelayServer) -> String {
        let t = s.stats
        return
            "relay: \(s.hostCount) hosts, \(s.channelCount) channels; forwarded \(t.framesForwarded) frames \(t.bytesForwarded) bytes; dropped malformed \(t.malformed) unknown-channel \(t.unknownChannel) over-quota \(t.sessionQuota + t.byteQuota + t.totalQuota) no-host \(t.noHost) busy \(t.busy); moved \(t.moved); lobbies announced \(t.tagsAnnounced) (over quota \(t.tagAnnouncesOverQuota))"
    }
}
