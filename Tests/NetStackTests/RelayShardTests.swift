import DHT
import NetCore
import NetSim
import Testing
import Transport

@testable import NetStack

/// Player relays announce on their shard as well as on the single info-hash, and a pair looks
/// both up (`Peer.findRelays`): host and joiner see the whole of their tag's shard and rank it
/// first, so they pick the same relays even where one DHT answer lists only a sample of all.
@Suite struct RelayShardTests {
    @Test func hostAndJoinerFindTheirShardWholeAndRankItFirst() throws {
        let net = SimNetwork(seed: 33, conditions: LinkConditions(latency: .milliseconds(15)))
        let router = simPeer(net, PeerAddress(198, 51, 100, 1, port: 6881), bootstrap: [])
        let nets: [(UInt8, UInt8, UInt8)] = [(198, 51, 100), (203, 0, 113), (192, 0, 2)]
        var nodes: [Peer] = []
        for i in 10..<22 {
            let (a, b, c) = nets[i % 3]
            nodes.append(simPeer(net, PeerAddress(a, b, c, UInt8(i), port: 6881), bootstrap: [router.localAddress]))
        }
        let shards = 4
        let levels = [shards]
        var relays: [Peer] = []
        for i in 40..<48 {
            let (a, b, c) = nets[i % 3]
            let p = simPeer(
                net,
                PeerAddress(a, b, c, UInt8(i), port: 7000),
                bootstrap: [router.localAddress],
                identity: .generate()
            )
            relays.append(p)
        }
        let host = simPeer(
            net,
            PeerAddress(203, 0, 113, 2, port: 5000),
            bootstrap: [router.localAddress],
            identity: .generate()
        )
        let joiner = simPeer(
            net,
            PeerAddress(192, 0, 2, 3, port: 5000),
            bootstrap: [router.localAddress],
            identity: .generate()
        )
        router.start()
        for n in nodes + [host, joiner] { n.start() }
        var started = 0
        // Each relay's shard, from its node id when it began to serve (an id may change later,
        // once the node knows its external address: the announcements keep the first shard).
        var shardAt: [PeerAddress: NodeID] = [:]
        for r in relays {
            r.start { _ in
                shardAt[r.localAddress] = RelayFrame.playerRelayShard(for: r.dht.id, of: shards)
                r.servePlayerRelay(shards: levels)
                started += 1
            }
        }
        #expect(net.run(until: net.now + .seconds(30), while: { started < relays.count }))
        _ = net.run(for: .seconds(10))  // the announces land (and are repeated at 1, 2 and 3 s)

        // A tag whose shard holds some relays but not the one ranked first over all of them.
        let shardOf = { (p: Peer) in shardAt[p.localAddress] }
        let all = relays.map(\.localAddress)
        let tag = try #require(
            (0..<64).map { RelayFrame.tag(topic: "shard \($0)") }.first { t in
                let members = relays.filter { shardOf($0) == RelayFrame.playerRelayShard(for: t, of: shards) }
                let top = RelayFrame.rank(all, tag: t).first
                return !members.isEmpty && members.count < relays.count && !members.contains { $0.localAddress == top }
            }
        )
        let inShard = Set(
            relays.filter { shardOf($0) == RelayFrame.playerRelayShard(for: tag, of: shards) }.map(\.localAddress)
        )

        var hostFound: RelaysFound?
        var joinerFound: RelaysFound?
        var updates = 0
        host.findRelays(tag: tag, shards: levels) { hostFound = $0 }
        joiner.findRelays(tag: tag, shards: levels, onUpdate: { _ in updates += 1 }) { joinerFound = $0 }
        #expect(net.run(until: net.now + .seconds(20), while: { hostFound == nil || joinerFound == nil }))
        let h = try #require(hostFound)
        let j = try #require(joinerFound)
        #expect(Set(h.players.shards[0]) == inShard && Set(j.players.shards[0]) == inShard)
        #expect(Set(j.players.all) == Set(all), "every relay also announces on the single info-hash")
        #expect(j.volunteers.isEmpty)
        #expect(updates > 0, "answers that carried relays were passed on before the lookups ended")
        // Both rank the shard first, in the same order.
        func order(_ f: RelaysFound, excluding: Set<PeerAddress>) -> [PeerAddress] {
            RelayFrame.order(members: [], volunteers: f.volunteers, players: f.players, tag: tag, excluding: excluding)
        }
        let ho = order(h, excluding: [host.localAddress])
        let jo = order(j, excluding: [host.localAddress])
        #expect(ho == jo)
        #expect(Set(ho.prefix(inShard.count)) == inShard)
        #expect(ho.first != RelayFrame.rank(all, tag: tag).first)

        // The host registers at two relays outside the shard: they announce that they hold the
        // tag, and the joiner's next lookup finds them (`holders`) and tries them first.
        let chosen = Array(RelayFrame.rank(all.filter { !inShard.contains($0) }, tag: tag).suffix(2))
        try #require(host.relay).register(tag: tag, at: chosen)
        #expect(net.run(until: net.now + .seconds(10), while: { host.relay?.registeredAt.count != 2 }))
        _ = net.run(for: .seconds(5))  // the holders' announces land
        var again: RelaysFound?
        joiner.findRelays(tag: tag, shards: levels) { again = $0 }
        #expect(net.run(until: net.now + .seconds(20), while: { again == nil }))
        let a = try #require(again)
        #expect(Set(a.holders) == Set(chosen))
        let held = RelayFrame.order(
            members: [],
            holders: a.holders,
            volunteers: a.volunteers,
            players: a.players,
            tag: tag,
            excluding: [host.localAddress]
        )
        #expect(Set(held.prefix(2)) == Set(chosen) && held.count == ho.count)
        #expect(relays.map { $0.relayServer?.stats.tagsAnnounced ?? 0 }.reduce(0, +) == 2)

        // Unsharded (no level): the single info-hash alone, no shard lookup.
        var plain: RelaysFound?
        joiner.findRelays(tag: tag, shards: []) { plain = $0 }
        #expect(net.run(until: net.now + .seconds(20), while: { plain == nil }))
        #expect(plain?.players.shards == [] && Set(plain?.players.all ?? []) == Set(all))
    }

    /// The order both sides try relays in: members, volunteers, then the players of the pair's
    /// shards from the finest level to the coarsest (a finer shard is more likely seen whole by
    /// both), then the sample of all players; each class ranked by the tag, none twice.
    @Test func theFinestShardComesFirst() {
        let tag = RelayFrame.tag(topic: "levels")
        let a = (1...3).map { PeerAddress(192, 0, 2, UInt8($0), port: 7000) }
        let b = (1...3).map { PeerAddress(198, 51, 100, UInt8($0), port: 7000) }
        let c = (1...3).map { PeerAddress(203, 0, 113, UInt8($0), port: 7000) }
        let volunteer = PeerAddress(198, 51, 100, 200, port: 6881)
        // Levels as looked up, coarsest first: b is the coarse shard, a the fine one.
        let players = RelaysFound.Players(shards: [b + [a[0]], a], all: c + b + a)
        let order = RelayFrame.order(
            members: [],
            volunteers: [volunteer],
            players: players,
            tag: tag,
            excluding: [c[0]]
        )
        #expect(order.first == volunteer)
        #expect(Array(order[1...3]) == RelayFrame.rank(a, tag: tag))
        #expect(Array(order[4...6]) == RelayFrame.rank(b, tag: tag))
        #expect(Array(order[7...]) == RelayFrame.rank([c[1], c[2]], tag: tag))
        #expect(Set(order).count == order.count && !order.contains(c[0]))
        // The levels turf uses, and distinct info-hashes for each level's shards.
        #expect(RelayFrame.playerRelayShardLevels == [16])
        let hashes = Set(
            (0..<16).map { RelayFrame.playerRelayShard($0, of: 16) }
                + (0..<256).map { RelayFrame.playerRelayShard($0, of: 256) }
        )
        #expect(hashes.count == 16 + 256 && !hashes.contains(RelayFrame.playerRelayInfoHash))
    }

    /// A joiner's rounds (`RelayWalk`): the first two of the ranking, then the next two once
    /// those failed, while a relay the lookups found later but ranked higher goes before every
    /// relay that failed; a relay that failed twice goes behind one that failed once.
    @Test func laterRoundsTryUntriedRelaysFirst() {
        let r = (1...6).map { PeerAddress(192, 0, 2, UInt8($0), port: 7000) }
        var walk = RelayWalk()
        #expect(walk.nextRound(r) == [r[0], r[1]] && walk.hasUntried(r))
        walk.begin([r[0], r[1]])
        walk.answered(r[0], channel: false, now: 0)
        let early = walk.endRound(now: 0)
        #expect(!early, "a join is still out")
        walk.answered(r[1], channel: false, now: 0)
        let first = walk.endRound(now: 0)
        #expect(first)
        #expect(walk.nextRound(r) == [r[2], r[3]])
        // The lookups answered more: r[5] now ranks first (a shard seen whole at last).
        let grown = [r[5]] + r
        #expect(walk.nextRound(grown) == [r[5], r[2]])
        walk.begin([r[5], r[2]])
        for x in [r[5], r[2]] { walk.answered(x, channel: false, now: 0) }
        let second = walk.endRound(now: 0)
        #expect(second && walk.rounds == 2)
        walk.begin([r[0]])
        walk.answered(r[0], channel: false, now: 0)
        #expect(walk.ordered(r) == [r[3], r[4], r[1], r[2], r[5], r[0]])
        #expect(RelayWalk().ordered(r) == r)
    }

    /// A round whose relay gave a channel but no session (a relay that forwards nothing) ends
    /// after `handshakeGrace`, and that relay counts as failed; five rounds at most.
    @Test func aChannelWithoutASessionEndsTheRoundAfterTheGrace() {
        let r = (1...4).map { PeerAddress(198, 51, 100, UInt8($0), port: 7000) }
        var walk = RelayWalk()
        walk.begin([r[0], r[1]])
        walk.answered(r[0], channel: true, now: .seconds(1))
        walk.answered(r[1], channel: false, now: .seconds(1))
        let within = walk.endRound(now: .seconds(1) + RelayWalk.handshakeGrace)
        #expect(!within, "still within the grace")
        let after = walk.endRound(now: .seconds(1) + RelayWalk.handshakeGrace + 1)
        #expect(after)
        #expect(walk.failures == [r[0]: 1, r[1]: 1])
        #expect(walk.nextRound(r) == [r[2], r[3]])
        for _ in 0..<4 { walk.begin([]) }
        let sixth = walk.endRound(now: .seconds(60))
        #expect(walk.rounds == RelayWalk.maxRounds && !sixth)
    }
}
