import DHT
import DHTSim
import Determinism
import NetCore
import NetSim
import NetStack
import Sodium
import Transport

/// `turf bench internet` (docs/benchmarks.md): turf's players on a simulated internet in virtual
/// time. A Mainline-like DHT of plain nodes with churn (`PlainSwarm`), players behind a mix of
/// NATs (`SimNAT`) with real-world latency and loss (`LinkModel`), each running turf's real
/// network stack (`SimPlayer`), hosting and joining lobbies of 2–8 as turf does (`SimJoin`).
/// Players whose NAT is open or consistent relay for the others (`RelayServer.Config.player`);
/// volunteer relays (`turf dht serve --relay`) exist only when asked for. Same seed, same report.
package struct InternetSimulation {
    package struct Parameters: Sendable {
        package var nodes = 100_000
        package var players = 10_000
        /// Shares of open, consistent, random and carrier-grade NATs (normalised).
        package var natMix: [PlayerNAT: Double] = [.open: 0.15, .consistent: 0.50, .random: 0.15, .cgnat: 0.20]
        /// Of the consistent NATs, the share that filter by endpoint (the rest let anyone in).
        package var consistentFiltering = 0.5
        /// Share of joiners in their host's home (they find it on the LAN).
        package var sameHome = 0.03
        package var churnPerHour = 0.2
        /// Virtual seconds over which lobbies open.
        package var windowSeconds = 300
        /// Seconds of match traffic on each relayed session.
        package var matchSeconds = 60
        package var playerRelays = true
        package var volunteers = 0
        /// The shard levels: player relays announce on one shard info-hash per level too (by
        /// their node id), and a lobby looks up the one its tag picks at each level, so that host
        /// and joiner see the same few relays and rank them alike (`Peer.servePlayerRelay`,
        /// `Peer.findRelays`). Empty: the single `RelayFrame.playerRelayInfoHash` alone.
        package var relayShards = RelayFrame.playerRelayShardLevels
        /// Milliseconds without a session before a joiner tries relays (nil: turf's,
        /// `RelayClient.joinDelay`, 0.5 s).
        package var relayAfterMs: Int?
        /// Players relay only when others can reach them unsolicited (open, or a consistent NAT
        /// that does not filter), as turf does (it waits for a stranger's datagram to come in:
        /// `RelayServiceState.decide`). Off: every open or consistent player relays.
        package var reachableRelaysOnly = true
        /// Relays announce the tags they hold and joiners look them up (`RelayFrame.holderHash`),
        /// as turf does. Off: the ranking alone.
        package var relayHolders = true
        package var seed: UInt64 = 1
        package init() {}
    }

    package struct Report: Sendable, Codable, Equatable {
        package var nodes: Int
        package var players: Int
        package var seed: UInt64
        package var lobbies: Int
        package var joins: Int
        package var join_success_rate: Double
        package var join_ms_p50: Double
        package var join_ms_p95: Double
        package var join_ms_p99: Double
        /// Of the joins that connected, how long finding the lobby took.
        package var find_ms_p50: Double
        package var find_ms_p95: Double
        package var failures_not_found: Int
        package var failures_timed_out: Int
        package var volunteers: Int
        package var player_relays: Int
        package var relay_bytes_per_sec_max: Int
        package var relay_bytes_per_10s_mean_max: Int
        package var relay_quota_total_bytes_per_sec: Int
        package var relay_quota_per_client_bytes_per_sec: Int
        package var relays_over_quota: Int
        package var players_over_share: Int
        package var relay_frames_dropped_by_quota: Int
        package var dht_messages_per_join: Double
        package var dht_plain_queries: Int
        package var dht_plain_unknown_method: Int
        package var dht_nodes_left: Int
        package var dht_nodes_joined: Int
        package var datagrams_total: UInt64
        package var datagrams_filtered_by_nat: UInt64
        package var virtual_seconds: Double
    }

    /// The report's breakdowns (counts by name), apart because they are nested objects.
    package struct Breakdown: Sendable, Equatable {
        package var paths: [String: Int]
        package var nat_mix: [String: Int]
        package var relayed_joins_by_pair: [String: Int]
        package var failed_joins_by_pair: [String: Int]
        package var failure_reasons: [String: Int]
        /// Relayed joins by the join round (1: the first) whose relay carried them.
        package var relayed_joins_by_round: [String: Int]
        /// From finding the lobby to the session being up, by the path that won.
        package var connect_ms_p50_by_path: [String: Int]
        package var connect_ms_p95_by_path: [String: Int]
    }

    package let p: Parameters
    package init(_ p: Parameters) { self.p = p }

    /// The NAT each player gets, from the mix (cumulative shares against a hash of the player).
    private func drawNAT(_ i: Int) -> PlayerNAT {
        let order: [PlayerNAT] = [.open, .consistent, .random, .cgnat]
        let total = order.reduce(0) { $0 + (p.natMix[$1] ?? 0) }
        let u = Double(StableHash.of(p.seed, UInt64(i), 0x4A7) >> 11) / Double(1 << 53) * total
        var acc = 0.0
        for k in order {
            acc += p.natMix[k] ?? 0
            if u < acc { return k }
        }
        return .cgnat
    }

    package func run() throws -> (report: Report, breakdown: Breakdown) {
        let net = SimNetwork(seed: p.seed)
        net.maxDatagram = 1472
        let model = LinkModel(seed: p.seed)
        net.linkModel = { model.conditions(from: $0, to: $1) }
        var rng = SplitMix64(seed: p.seed, stream: 0x1E7)
        let window = Nanos.seconds(p.windowSeconds)
        var swarmConfig = PlainSwarm.Config()
        swarmConfig.nodes = p.nodes
        swarmConfig.churnPerHour = p.churnPerHour
        swarmConfig.windowSeconds = p.windowSeconds + 120
        swarmConfig.seed = p.seed
        let swarm = PlainSwarm(net: net, config: swarmConfig)

        // Lobbies of 2–8 (uniform) over the players, in order; the first of each hosts.
        var lobbies: [[Int]] = []
        var next = 0
        while next < p.players {
            let size = min(2 + rng.below(7), p.players - next)
            if size < 2 {
                lobbies[lobbies.count - 1].append(next)
            } else {
                lobbies.append(Array(next..<(next + size)))
            }
            next += size
        }

        // Homes and NATs: each player its own home (or carrier subscription), except the
        // joiners that share their host's home.
        var players: [SimPlayer?] = Array(repeating: nil, count: p.players)
        var natOf = [PlayerNAT](repeating: .open, count: p.players)
        var insideOf = [PeerAddress](repeating: PeerAddress(ip: 0, port: 0), count: p.players)
        var homeOfHost: [Int: (nat: SimNAT?, home: Int, members: Int)] = [:]
        var lanHostOf: [Int: PeerAddress] = [:]
        var homes = 0
        var subscribers = 0
        var cgnats: [SimNAT] = []
        var natCounts: [String: Int] = [:]
        // Whether others can reach a player unsolicited (no NAT, or a NAT that does not filter).
        var unfiltered = [Bool](repeating: false, count: p.players)
        for lobby in lobbies {
            let hostIndex = lobby[0]
            for i in lobby {
                let shares =
                    i != hostIndex && natOf[hostIndex] != .cgnat && natOf[hostIndex] != .open
                    && Double(StableHash.of(p.seed, UInt64(i), 0x40E) >> 11) / Double(1 << 53) < p.sameHome
                if shares, var h = homeOfHost[hostIndex] {
                    natOf[i] = natOf[hostIndex]
                    insideOf[i] = AddressPlan.homeInside(h.home, member: h.members)
                    h.members += 1
                    homeOfHost[hostIndex] = h
                    if let nat = h.nat { net.attach(nat, inside: [insideOf[i]]) }
                    unfiltered[i] = h.nat.map { $0.filtering == .endpointIndependent } ?? true
                    lanHostOf[i] = insideOf[hostIndex]
                    natCounts[natOf[i].rawValue, default: 0] += 1
                    continue
                }
                let kind = drawNAT(i)
                natOf[i] = kind
                natCounts[kind.rawValue, default: 0] += 1
                switch kind {
                case .open:
                    insideOf[i] = PeerAddress(ip: AddressPlan.homePublic(homes), port: AddressPlan.port)
                    unfiltered[i] = true
                    homeOfHost[i] = (nil, homes, 1)
                    homes += 1
                case .consistent, .random:
                    let home = homes
                    homes += 1
                    let seed = StableHash.of(p.seed, UInt64(home), 0x4A70)
                    let nat: SimNAT
                    if kind == .random {
                        nat = SimNAT.random(publicIP: AddressPlan.homePublic(home), seed: seed)
                    } else {
                        let strict = Double(seed >> 11) / Double(1 << 53) < p.consistentFiltering
                        nat = SimNAT(
                            mapping: .endpointIndependent,
                            filtering: strict ? .addressAndPortDependent : .endpointIndependent,
                            publicIPs: [AddressPlan.homePublic(home)],
                            seed: seed
                        )
                    }
                    insideOf[i] = AddressPlan.homeInside(home, member: 0)
                    net.attach(nat, inside: [insideOf[i]])
                    unfiltered[i] = nat.filtering == .endpointIndependent
                    homeOfHost[i] = (nat, home, 1)
                case .cgnat:
                    // 200 subscribers per carrier NAT, on 4 public IPs.
                    let pool = subscribers / 200
                    if pool == cgnats.count {
                        cgnats.append(
                            SimNAT.cgnat(
                                publicIPs: (0..<4).map { AddressPlan.cgnatPublic(pool: pool, $0) },
                                seed: StableHash.of(p.seed, UInt64(pool), 0xC6)
                            )
                        )
                    }
                    insideOf[i] = AddressPlan.subscriber(subscribers)
                    subscribers += 1
                    net.attach(cgnats[pool], inside: [insideOf[i]])
                }
            }
        }

        // Volunteers: open relays without an identity (`turf dht serve --relay`).
        var relayServers: [(server: RelayServer, player: Bool)] = []
        var volunteerPeers: [Peer] = []
        for v in 0..<p.volunteers {
            var c = DHTConfig()
            c.seed = StableHash.of(p.seed, 0x70, UInt64(v))
            c.bep42NodeIDs = false
            c.bootstrap = []
            let peer = Peer(
                host: net.bind(PeerAddress(ip: 0xC613_F000 &+ UInt32(v), port: 6881)),
                dht: c,
                random: .seeded(StableHash.of(p.seed, 0x71, UInt64(v)))
            )
            peer.start(savedNodes: swarm.table(for: peer.dht.id, key: StableHash.of(p.seed, 0x72, UInt64(v))))
            peer.serveRelay()
            if let s = peer.relayServer { relayServers.append((s, false)) }
            volunteerPeers.append(peer)
        }

        func makePlayer(_ i: Int) throws -> SimPlayer {
            var seedBytes: [UInt8] = []
            var r = SplitMix64(seed: StableHash.of(p.seed, 0x1D, UInt64(i)))
            for _ in 0..<4 { seedBytes += withUnsafeBytes(of: r.next().littleEndian, Array.init) }
            let identity = try Identity(signing: try Ed25519.KeyPair(seed: seedBytes))
            var c = DHTConfig()
            c.seed = StableHash.of(p.seed, 0xD7, UInt64(i))
            c.bep42NodeIDs = false
            c.bootstrap = []
            // The sessions' timer wheel turns every 100 ms instead of 10 ms: 10,000 idle wheels
            // at 100 Hz were most of the run's events; a resend lands up to 100 ms later.
            var sessions = SessionManager.Config()
            sessions.tickInterval = .milliseconds(100)
            let peer = Peer(
                host: net.bind(insideOf[i]),
                dht: c,
                identity: identity,
                sessions: sessions,
                random: .seeded(StableHash.of(p.seed, 0x7A5E, UInt64(i)))
            )
            let player = SimPlayer(index: i, nat: natOf[i], peer: peer, identity: identity, inside: insideOf[i])
            player.trafficSeconds = p.matchSeconds
            player.relayShards = p.relayShards
            player.relayHolders = p.relayHolders
            return player
        }

        // The timeline: lobby l opens at a random time in the window; its host comes online
        // 5–20 s before; each joiner comes online 0–30 s after it opened and joins 5–15 s later.
        var joins: [SimJoin] = []
        // Joiners of each lobby still joining: once none is, the match starts and the lobby closes.
        var waiting = lobbies.map { $0.count - 1 }
        for (l, lobby) in lobbies.enumerated() {
            let opens = Nanos.seconds(20) &+ rng.below(window)
            let topic = "internet-\(p.seed)-\(l)"
            let hostIndex = lobby[0]
            let hostOnline = opens &- Nanos.seconds(5) &- rng.below(.seconds(15))
            var times: [(Int, Nanos, Nanos)] = []
            for i in lobby.dropFirst() {
                let online = opens &+ rng.below(.seconds(30))
                times.append((i, online, online &+ .seconds(5) &+ rng.below(.seconds(10))))
            }
            net.schedule(after: hostOnline) {
                guard let host = try? makePlayer(hostIndex) else { return }
                players[hostIndex] = host
                online(host)
            }
            net.schedule(after: opens) { players[hostIndex]?.host(topic: topic) }
            for (i, online_, joinAt) in times {
                net.schedule(after: online_) {
                    guard let pl = try? makePlayer(i) else { return }
                    players[i] = pl
                    online(pl)
                }
                net.schedule(after: joinAt) {
                    guard let pl = players[i] else { return }
                    let j = SimJoin(player: pl, topic: topic, lanHost: lanHostOf[i])
                    j.relayAfter = p.relayAfterMs.map { Nanos.milliseconds($0) }
                    j.onDone = { _ in
                        waiting[l] -= 1
                        if waiting[l] == 0 { players[hostIndex]?.closeLobby() }
                    }
                    joins.append(j)
                    j.start()
                }
            }
        }
        func online(_ pl: SimPlayer) {
            pl.goOnline(
                saved: swarm.table(for: pl.peer.dht.id, key: StableHash.of(p.seed, 0xAB, UInt64(pl.index))),
                playerRelays: p.playerRelays,
                reachableOnly: p.reachableRelaysOnly,
                reachable: unfiltered[pl.index]
            ) { relay in
                if let s = relay.peer.relayServer { relayServers.append((s, true)) }
            }
        }

        // Sample every relay's forwarded bytes each second (and over 10 s).
        var lastBytes: [ObjectIdentifier: [UInt64]] = [:]
        var maxPerSecond: UInt64 = 0
        var max10: UInt64 = 0
        var over = Set<ObjectIdentifier>()
        var overPlayers = Set<ObjectIdentifier>()
        let quota = RelayServer.Config.player
        let cap = UInt64(quota.totalBytesPerSecond ?? Int.max)
        func sample() {
            for (s, isPlayer) in relayServers {
                let id = ObjectIdentifier(s)
                var h = lastBytes[id] ?? [s.stats.bytesForwarded]
                let last = h.last ?? 0
                let rate = s.stats.bytesForwarded &- last
                h.append(s.stats.bytesForwarded)
                if h.count > 11 { h.removeFirst(h.count - 11) }
                lastBytes[id] = h
                maxPerSecond = max(maxPerSecond, rate)
                // The cap is a token bucket: in any W seconds at most W × rate plus the burst.
                let burst = UInt64(quota.totalBurstBytes)
                if h.count == 11 {
                    let ten = h[10] &- h[0]
                    max10 = max(max10, ten / 10)
                    if isPlayer && ten > 10 &* cap &+ burst {
                        over.insert(id)
                        overPlayers.insert(id)
                    }
                }
                if isPlayer && rate > cap &+ burst { over.insert(id) }
            }
            net.schedule(after: .seconds(1)) { sample() }
        }
        net.schedule(after: .seconds(1)) { sample() }

        let end = Nanos.seconds(20) &+ window &+ .seconds(60) &+ .seconds(p.matchSeconds)
        _ = net.run(until: end, maxEvents: Int.max)
        return report(
            net: net,
            swarm: swarm,
            lobbies: lobbies.count,
            joins: joins,
            natCounts: natCounts,
            natOf: natOf,
            lobbyOf: lobbies,
            relayServers: relayServers,
            relayRates: (maxPerSecond, max10, over.count, overPlayers.count)
        )
    }
}
