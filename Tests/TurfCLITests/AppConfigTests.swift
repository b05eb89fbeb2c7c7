import NetCore
import NetStack
import Testing

@testable import turf

/// The app's configuration (Sources/turf/AppConfig.swift): where the DHT's bootstrap nodes come
/// from. The DHT library only ever sees the resulting address list.
@Suite struct AppConfigTests {
    /// Flag > $TURF_DHT_BOOTSTRAP > dht.conf > public routers; `none` means none on purpose.
    @Test func bootstrapPrecedence() throws {
        let conf = "# turf\nbootstrap = conf.example:1, conf2.example:2\n"
        func specs(_ flags: [String], _ env: [String: String], _ files: [String: String]) throws -> [String] {
            try DHTBootstrap.specs(flags: flags, environment: env, homeDirectory: "/home/u") { files[$0] }
        }
        let env = ["TURF_DHT_BOOTSTRAP": "env.example:1,env2.example:2", "XDG_CONFIG_HOME": "/cfg"]
        let files = ["/cfg/turf/dht.conf": conf, "/home/u/.config/turf/dht.conf": "bootstrap=home.example:3"]
        #expect(try specs(["flag.example:1"], env, files) == ["flag.example:1"])
        #expect(try specs([], env, files) == ["env.example:1", "env2.example:2"])
        #expect(
            try specs([], ["TURF_DHT_BOOTSTRAP": "", "XDG_CONFIG_HOME": "/cfg"], files) == [
                "conf.example:1", "conf2.example:2",
            ]
        )
        #expect(try specs([], [:], files) == ["home.example:3"], "XDG_CONFIG_HOME defaults to ~/.config")
        #expect(try specs([], ["XDG_CONFIG_HOME": "/elsewhere"], files) == DHTBootstrap.publicRouters)
        #expect(
            try specs([], [:], ["/home/u/.config/turf/dht.conf": "# nothing set\n\n"]) == DHTBootstrap.publicRouters
        )
        // None on purpose.
        #expect(try specs(["none"], env, files).isEmpty)
        #expect(try specs([], ["TURF_DHT_BOOTSTRAP": "none"], files).isEmpty)
        #expect(try specs([], [:], ["/home/u/.config/turf/dht.conf": "bootstrap =\n"]).isEmpty)
    }

    /// A bootstrap setting that cannot be read or parsed is an error, never a silent fallback to
    /// the public routers (a privacy defect: a LAN player would land on the public DHT). CRLF
    /// line ends simply parse.
    @Test func unusableBootstrapSettingsAreErrorsNotThePublicNetwork() throws {
        let home = "/home/u"
        let path = "/home/u/.config/turf/dht.conf"
        func specs(
            env: [String: String] = [:],
            flags: [String] = [],
            conf: String? = nil,
            unreadable: String? = nil
        ) throws -> [String] {
            try DHTBootstrap.specs(flags: flags, environment: env, homeDirectory: home) { p in
                if let unreadable { throw DHTBootstrap.SettingError(unreadable) }
                return p == path ? conf : nil
            }
        }
        #expect(try specs(conf: "# LAN party\r\nbootstrap = 10.0.0.5:6881\r\n") == ["10.0.0.5:6881"])
        #expect(try specs(conf: "bootstrap = 10.0.0.5:6881\r") == ["10.0.0.5:6881"])
        func refused(_ f: () throws -> [String], _ needle: String) {
            do {
                let got = try f()
                Issue.record("accepted: \(got)")
            } catch {
                #expect("\(error)".contains(needle), "\(error)")
            }
        }
        // The file exists but cannot be read (not UTF-8, a directory, a FIFO, too large).
        refused({ try specs(unreadable: "DHT config \(path) is not UTF-8 text") }, "not UTF-8")
        refused({ try specs(unreadable: "DHT config \(path) is not a regular file (a FIFO)") }, "a FIFO")
        // It cannot be parsed.
        refused({ try specs(conf: "bootstap = 10.0.0.5:6881\n") }, "\(path):1: unknown setting 'bootstap'")
        refused({ try specs(conf: "# x\nbootstrap 10.0.0.5:6881\n") }, "\(path):2: expected 'key = value'")
        refused({ try specs(conf: "bootstrap = 10.0.0.5\n") }, "'10.0.0.5' is not HOST:PORT")
        refused({ try specs(conf: "bootstrap = a:1\nbootstrap = b:2\n") }, "a second 'bootstrap' line")
        refused({ try specs(conf: "bootstrap = none, a:1\n") }, "'none' cannot be combined")
        // An environment variable that names nothing is not `none`.
        refused({ try specs(env: ["TURF_DHT_BOOTSTRAP": " "]) }, "TURF_DHT_BOOTSTRAP names no bootstrap node")
        refused({ try specs(env: ["TURF_DHT_BOOTSTRAP": " , "]) }, "names no bootstrap node")
        refused({ try specs(env: ["TURF_DHT_BOOTSTRAP": "host:99999"]) }, "is not HOST:PORT")
        refused({ try specs(flags: ["host:0"]) }, "is not HOST:PORT")
        #expect(DHTBootstrap.isHostPort("router.bittorrent.com:6881") && DHTBootstrap.isHostPort("127.0.0.1:1"))
        // IPv6 addresses in brackets (BEP 32 bootstrap nodes); a bare one is ambiguous.
        #expect(DHTBootstrap.isHostPort("[2001:db8::1]:6881") && DHTBootstrap.isHostPort("[::1]:1"))
        #expect(
            !DHTBootstrap.isHostPort("[::1]:0") && !DHTBootstrap.isHostPort("[::1]")
                && !DHTBootstrap.isHostPort("::1:6881")
                && !DHTBootstrap.isHostPort("[zz::1]:1") && !DHTBootstrap.isHostPort("[::1]:6881x")
        )
        #expect(try DHTBootstrap.parseList("[::1]:6881, 10.0.0.1:1", source: "t") == ["[::1]:6881", "10.0.0.1:1"])
        #expect(DHTCLI.resolve("[2001:db8::5]:6881") == [PeerAddress(host: "2001:db8::5", port: 6881)!])
        #expect(DHTCLI.resolve("[::1]") == [] && DHTCLI.resolve("[::1]:x") == [])
        #expect(
            !DHTBootstrap.isHostPort("x:") && !DHTBootstrap.isHostPort(":1") && !DHTBootstrap.isHostPort("h\u{1B}:1")
        )
    }

    /// `lan_discovery = on|off` in the same file (docs/nat.md, "LAN parties"): absent means on;
    /// anything else, or a second line, is an error naming the line, like the bootstrap setting.
    @Test func lanDiscoverySetting() throws {
        let path = "/cfg/turf/dht.conf"
        #expect(try DHTBootstrap.parseLANDiscovery("bootstrap = a.example:1\n", path: path) == nil)
        #expect(try DHTBootstrap.parseLANDiscovery("# party\r\nlan_discovery = off\r\n", path: path) == false)
        #expect(try DHTBootstrap.parseLANDiscovery("lan_discovery=on", path: path) == true)
        // The bootstrap line still reads with the other setting beside it.
        #expect(
            try DHTBootstrap.parseConfig("lan_discovery = off\nbootstrap = a.example:1\n", path: path) == [
                "a.example:1"
            ]
        )
        func refused(_ text: String, _ needle: String) {
            do {
                let got = try DHTBootstrap.parseLANDiscovery(text, path: path)
                Issue.record("accepted: \(String(describing: got))")
            } catch {
                #expect("\(error)".contains(needle), "\(error)")
            }
        }
        refused("lan_discovery = maybe\n", "\(path):1: lan_discovery must be 'on' or 'off'")
        refused("lan_discovery = on\nlan_discovery = off\n", "\(path):2: a second 'lan_discovery' line")
        refused("lan = off\n", "\(path):1: unknown setting 'lan'")
        // A bad lan_discovery line makes the bootstrap setting unreadable too: one file, one verdict.
        #expect(throws: DHTBootstrap.SettingError.self) {
            try DHTBootstrap.parseConfig("bootstrap = a.example:1\nlan_discovery = yes\n", path: path)
        }
    }

    /// `relay_service = on|off` and `relay_kib_per_second = N` (docs/nat.md, "Players relay for
    /// each other"): absent means on at the default 64 KiB/s; a bad value is an error naming the line.
    @Test func relayServiceSetting() throws {
        let path = "/cfg/turf/dht.conf"
        let none = try DHTBootstrap.parseRelayService("bootstrap = a.example:1\n", path: path)
        #expect(none.on == nil && none.kibPerSecond == nil)
        let off = try DHTBootstrap.parseRelayService("relay_service = off\nlan_discovery = on\n", path: path)
        #expect(off.on == false)
        let some = try DHTBootstrap.parseRelayService("relay_service=on\r\nrelay_kib_per_second = 16\r\n", path: path)
        #expect(some.on == true && some.kibPerSecond == 16)
        // What `turf host` / `turf join` make of it: the player's quotas, the total as set.
        #expect(RelayServiceState(optedOut: nil, kibPerSecond: 16).config.totalBytesPerSecond == 16 * 1024)
        #expect(RelayServiceState(optedOut: nil, kibPerSecond: nil).config.totalBytesPerSecond == 64 * 1024)
        func refused(_ text: String, _ needle: String) {
            do {
                let got = try DHTBootstrap.parseRelayService(text, path: path)
                Issue.record("accepted: \(got)")
            } catch {
                #expect("\(error)".contains(needle), "\(error)")
            }
        }
        refused("relay_service = no\n", "\(path):1: relay_service must be 'on' or 'off'")
        for bad in ["0", "-5", "102401", "lots", "1e3", "9999999999999999999999"] {
            refused("relay_kib_per_second = \(bad)\n", "\(path):1: relay_kib_per_second must be a whole number")
        }
        refused("relay_service = on\nrelay_service = off\n", "\(path):2: a second 'relay_service' line")
        // A bad relay line makes the bootstrap setting unreadable too: one file, one verdict.
        #expect(throws: DHTBootstrap.SettingError.self) {
            try DHTBootstrap.parseConfig("bootstrap = a.example:1\nrelay_service = maybe\n", path: path)
        }
    }

    /// Where `turf host` registers its lobby: its members that relay first (two at most), then
    /// the strangers it ranks first up to four in all, volunteers before players, the players of
    /// the lobby's shard before the sample of all player relays, never itself.
    @Test func theHostRegistersAtItsMembersBeforeStrangers() {
        let tag = RelayFrame.tag(topic: "members")
        let me = PeerAddress(203, 0, 113, 2, port: 5000)
        let members = (1...3).map { PeerAddress(198, 51, 100, UInt8($0), port: 7000) }
        let volunteer = PeerAddress(198, 51, 100, 11, port: 6881)
        let players = (1...3).map { PeerAddress(192, 0, 2, UInt8($0), port: 5000) }
        func found(_ v: [PeerAddress], shard: [PeerAddress] = [], all: [PeerAddress]) -> RelaysFound {
            var f = RelaysFound()
            f.volunteers = v
            f.players = .init(shards: [shard], all: all)
            return f
        }
        let c = HostRelayFinder.choose(
            members: members,
            found: found([volunteer, me], all: players + [me, members[0]]),
            tag: tag,
            own: [me]
        )
        #expect(c.relays.count == 4)
        #expect(Set(c.relays.prefix(2)).isSubset(of: Set(members)))
        #expect(c.relays[2] == volunteer)
        #expect(players.contains(c.relays[3]))
        #expect(!c.relays.contains(me))
        // No member: four strangers at most; the shard's players come first, whatever their rank.
        let shard = (1...2).map { PeerAddress(192, 0, 2, UInt8(100 + $0), port: 5000) }
        let strangers = HostRelayFinder.choose(
            members: [],
            found: found([], shard: shard, all: players),
            tag: tag,
            own: [me]
        )
        #expect(strangers.relays.count == 4 && strangers.strangers == 5)
        #expect(Set(strangers.relays.prefix(2)) == Set(shard))
        // Nothing found: nothing, and a quick look again.
        #expect(HostRelayFinder.choose(members: [], found: found([me], all: []), tag: tag, own: [me]).strangers == 0)
    }

    /// Whether a player relays for others, from its NAT: when others can reach it unasked (open,
    /// a consistent mapping that let a stranger in, or IPv6 open), not when its NAT maps per
    /// destination, filters by address, or is unknown.
    @Test func relayServiceFollowsTheNAT() {
        func decide(_ nat: NATKind, _ v6: IPv6Reach, _ unsolicited: UInt64 = 0) -> (Bool, String) {
            let d = RelayServiceState.decide(nat: nat, ipv6: v6, unsolicitedIPv4: unsolicited)
            return (d.serve, d.reason)
        }
        #expect(decide(.open, .none) == (true, "nat_open"))
        #expect(decide(.consistent, .firewalled, 3) == (true, "nat_consistent"))
        #expect(decide(.consistent, .firewalled) == (false, "nat_consistent_filtered"))
        #expect(decide(.consistent, .open) == (true, "ipv6_open"))
        #expect(decide(.random, .open) == (true, "ipv6_open"))
        #expect(decide(.random, .firewalled, 9) == (false, "nat_random"))
        #expect(decide(.unknown, .none) == (false, "nat_unknown"))
    }

    /// With discovery on, configured bootstrap nodes of which none resolves are a warning (the
    /// players on this LAN find each other without a DHT); without it, the error it always was.
    /// Nodes given as addresses need no resolver, so this stays off the network.
    @Test func bootstrapForPlayKeepsResolvedNodes() throws {
        let r = try DHTCLI.bootstrapForPlay(["127.0.0.1:9"], lan: true)
        #expect(r.addresses.map(\.description) == ["127.0.0.1:9"] && r.warning == nil)
        let none = try DHTCLI.bootstrapForPlay(["none"], lan: false)
        #expect(none.addresses.isEmpty && none.warning == nil)
        #expect(
            DHTCLI.unresolvedMessage(["x.example:1"]).hasPrefix("no bootstrap node could be resolved (x.example:1)")
        )
    }
}
