import DHT
import NetCore
import NetSim
import NetStack
import Testing
import Transport

@Suite struct NATKindTests {
    let ours: [UInt32] = [PeerAddress.parseIPv4("10.1.0.2")!, PeerAddress.parseIPv4("203.0.113.50")!, 0x7F00_0001]

    @Test func classifiesFromTheDHTTallyAndOurOwnAddresses() {
        let publicOurs = PeerAddress(203, 0, 113, 50, port: 4000)
        let router = PeerAddress(198, 51, 100, 21, port: 4000)
        // Agreeing reports of an address that is ours: nothing translates our packets.
        #expect(NATKind.classify(dht: .consistent, external: publicOurs, localIPs: ours) == .open)
        // Agreeing reports of someone else's address (a router's): a cone NAT.
        #expect(NATKind.classify(dht: .consistent, external: router, localIPs: ours) == .consistent)
        #expect(NATKind.classify(dht: .consistent, external: nil, localIPs: ours) == .consistent)
        // A port per destination, even on our own address, is no open path.
        #expect(NATKind.classify(dht: .random, external: router, localIPs: ours) == .random)
        #expect(NATKind.classify(dht: .random, external: publicOurs, localIPs: ours) == .random)
        // Too few reports: unknown, whatever the address.
        #expect(NATKind.classify(dht: .unknown, external: publicOurs, localIPs: ours) == .unknown)
        #expect(NATKind.classify(dht: .unknown, external: nil, localIPs: []) == .unknown)
    }
}

@Suite struct IPv6PathTests {
    let v6 = PeerAddress("[2001:db8:1::2]:7000")!
    let lan6 = PeerAddress("[fd00::2]:7000")!
    let v4 = PeerAddress(203, 0, 113, 7, port: 7000)
    let lan4 = PeerAddress(10, 1, 0, 2, port: 7000)

    /// Open only once something came in unasked; none without a global address or an IPv6 socket.
    @Test func ipv6ReachFromTheSocketAndTheInterfaces() {
        #expect(IPv6Reach.classify(socketSpeaksIPv6: true, hasGlobalAddress: true, unsolicited: 0) == .firewalled)
        #expect(IPv6Reach.classify(socketSpeaksIPv6: true, hasGlobalAddress: true, unsolicited: 3) == .open)
        #expect(IPv6Reach.classify(socketSpeaksIPv6: true, hasGlobalAddress: false, unsolicited: 3) == .none)
        #expect(IPv6Reach.classify(socketSpeaksIPv6: false, hasGlobalAddress: true, unsolicited: 3) == .none)
    }

    /// IPv6 first, IPv4 `delay` later; one family alone starts at once.
    @Test func happyEyeballsStartsIPv6First() {
        let race = HappyEyeballs(HolePuncher.order([v4, v6, lan4, lan6]))
        #expect(race.first == [lan6, v6])
        #expect(race.later == [lan4, v4])
        #expect(HappyEyeballs([v4, lan4]).first == [v4, lan4] && HappyEyeballs([v4, lan4]).later.isEmpty)
        #expect(HappyEyeballs([v6]).first == [v6] && HappyEyeballs([v6]).later.isEmpty)
        #expect(HappyEyeballs.wait(since: 0, now: HappyEyeballs.delay) == 0)
        #expect(abs(HappyEyeballs.wait(since: 0, now: 0) - 0.1) < 1e-9)
    }

    /// The unspecified addresses are never candidates; our own IPv6 address at our port is us.
    @Test func ownIPv6AddressIsNotACandidate() {
        #expect(HolePuncher.order([PeerAddress.anyDualStack(port: 7000), v6]) == [v6])
        let bound = PeerAddress.anyDualStack(port: 7000)
        #expect(HolePuncher.isOwnAddress(v6, bound: bound, localIPs: [], localIPv6: [v6.ip6!], external: nil))
        #expect(!HolePuncher.isOwnAddress(v6, bound: bound, localIPs: [], localIPv6: [lan6.ip6!], external: nil))
        #expect(HolePuncher.isOwnAddress(PeerAddress("[::1]:7000")!, bound: bound, localIPs: [], external: nil))
        // Bound to one IPv6 address: only that address is us.
        #expect(HolePuncher.isOwnAddress(v6, bound: v6, localIPs: [], external: nil))
        #expect(!HolePuncher.isOwnAddress(lan6, bound: v6, localIPs: [], external: nil))
    }
}

@Suite struct HolePunchTests {
    @Test func candidatesLANFirstUniqueAndBounded() {
        let pub = PeerAddress(203, 0, 113, 7, port: 1000)
        let lan = PeerAddress(10, 1, 0, 2, port: 1000)
        let loop = PeerAddress(127, 0, 0, 1, port: 1000)
        #expect(HolePuncher.order([pub, lan, pub, loop]) == [lan, loop, pub])
        // Unusable addresses are left out.
        #expect(HolePuncher.order([PeerAddress(ip: 0, port: 5), PeerAddress(10, 0, 0, 1, port: 0)]).isEmpty)
        let many = (1...40).map { PeerAddress(198, 51, 100, UInt8($0), port: 9) }
        #expect(HolePuncher.order(many).count == HolePuncher.maxTargets)
        #expect(HolePuncher.knockHash(topic: "t") != Topic.infoHash("t"))
        #expect(HolePuncher.knockHash(topic: "t") == HolePuncher.knockHash(topic: "t"))
    }

    /// The slow path on the simulated network: a joiner announces itself on the lobby's knock
    /// info-hash; the host's watcher finds it within a poll or two and probes it back; the probes
    /// arrive on the joiner's socket beside its DHT traffic. A malformed probe is counted, not used.
    @Test func knockIsFoundAndProbedBack() throws {
        let net = SimNetwork(seed: 41, conditions: LinkConditions(latency: .milliseconds(20)))
        func peer(_ ip: UInt8, bootstrap: [PeerAddress]) -> Peer {
            simPeer(net, PeerAddress(10, 0, 0, ip, port: 6881), bootstrap: bootstrap)
        }
        let router = peer(1, bootstrap: [])
        let third = peer(4, bootstrap: [router.localAddress])
        let host = peer(2, bootstrap: [router.localAddress])
        let joiner = peer(3, bootstrap: [router.localAddress])
        router.start()
        third.start()
        var hostJoined = false
        host.start { _ in hostJoined = true }
        #expect(net.run(until: net.now + .seconds(30), while: { !hostJoined }))
        let watcher = KnockWatcher(peer: host, topic: "lobby", interval: .seconds(1))
        watcher.start()
        var stored: Int?
        joiner.start { _ in
            joiner.dht.announce(HolePuncher.knockHash(topic: "lobby"), port: 1, impliedPort: true) { _, n in stored = n
            }
        }
        #expect(net.run(until: net.now + .seconds(10), while: { joiner.puncher.probesReceived == 0 }))
        #expect((stored ?? 0) > 0)
        #expect(watcher.knocksSeen == 1)
        #expect(joiner.puncher.heardFrom == [host.localAddress])
        #expect(host.puncher.probesSent >= 1)
        // Polls go on (they keep the host's mappings alive) but probe a knock only within the window.
        _ = net.run(for: .seconds(30))
        let sent = host.puncher.probesSent
        _ = net.run(for: .seconds(5))
        #expect(host.puncher.probesSent == sent)
        #expect(watcher.polls > 20)
        // A lookup every tenth poll; in between, a query to each node the last one found closest.
        #expect(watcher.lookups >= 3 && watcher.lookups <= watcher.polls / KnockWatcher.lookupEvery + 1)
        watcher.stop()
        // A datagram of the probe type but the wrong length: dropped and counted.
        let raw = net.bind(PeerAddress(10, 0, 0, 9, port: 1))
        raw.send([HolePuncher.probeType, 1, 2], to: joiner.localAddress)
        _ = net.run(for: .seconds(1))
        #expect(joiner.puncher.malformed == 1)
    }

    /// A probe from the peer a handshake is waiting on (its NAT just opened) makes the initiation
    /// go again at once instead of at the next one-second retry: the punch completes in one round trip.
    @Test func probeFromThePeerResendsThePendingHandshake() throws {
        let net = SimNetwork(seed: 7, conditions: LinkConditions(latency: .milliseconds(20)))
        let host = Peer(host: net.bind(PeerAddress(10, 0, 0, 2, port: 6881)), identity: .generate())
        let joiner = Peer(host: net.bind(PeerAddress(10, 0, 0, 3, port: 6881)), identity: .generate())
        // The host's side drops everything for now, as its NAT does before it punched.
        net.partition([host.localAddress.ip], into: 1)
        let s = try #require(joiner.sessions).connect(to: host.localAddress, mode: .discovered)
        _ = net.run(for: .milliseconds(300))
        #expect(s.counters.handshakeAttempts == 1 && !s.isEstablished)
        net.heal()
        let t0 = net.now
        host.puncher.probe([joiner.localAddress], times: 1)
        #expect(net.run(until: t0 + .seconds(5), while: { !s.isEstablished }))
        // Established in a few one-way trips after the probe, well before the timer's resend.
        #expect(net.now - t0 < .milliseconds(400))
        #expect(joiner.sessions?.stats.handshakesRetriedOnProbe == 1)
        #expect(joiner.puncher.probesReceived == 1)
        // The early resend is not an attempt: forged probes cannot use up a handshake's attempts.
        #expect(s.counters.handshakeAttempts == 1)
        // Probes from anyone else resend nothing.
        let silent = PeerAddress(10, 0, 0, 9, port: 1)
        let other = try #require(joiner.sessions).connect(to: silent, mode: .discovered)
        host.puncher.probe([joiner.localAddress], times: 1)
        _ = net.run(for: .milliseconds(400))
        #expect(joiner.sessions?.stats.handshakesRetriedOnProbe == 1)
        // A burst from the right address (no identity there: the handshake stays pending) resends
        // once; the next probe, 400 ms later, once more; none of it counts as an attempt.
        let forger = Peer(host: net.bind(silent))
        forger.puncher.probe([joiner.localAddress], times: 10, every: .milliseconds(10))
        _ = net.run(for: .milliseconds(150))
        #expect(joiner.sessions?.stats.handshakesRetriedOnProbe == 2)
        _ = net.run(for: .milliseconds(250))
        forger.puncher.probe([joiner.localAddress], times: 1)
        _ = net.run(for: .milliseconds(50))
        #expect(joiner.sessions?.stats.handshakesRetriedOnProbe == 3)
        #expect(other.counters.handshakeAttempts == 1)
    }
}
