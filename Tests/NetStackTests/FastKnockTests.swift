import NetCore
import NetSim
import Sodium
import Testing
import Transport

@testable import DHT
@testable import NetStack

/// The knock's fast path above the DHT (docs/nat.md): the sealed blob, and the host probing back
/// the knocker as soon as a relayed knock arrives.
@Suite struct FastKnockTests {
    @Test func sealedBlobsOpenOnlyWithTheRightKey() throws {
        let addrs = [PeerAddress(10, 1, 0, 2, port: 4000), PeerAddress(198, 51, 100, 21, port: 4000)]
        let topic = KnockSeal.topicKeys(topic: "lobby")
        #expect(KnockSeal.topicKeys(topic: "lobby").publicKey == topic.publicKey)
        #expect(KnockSeal.topicKeys(topic: "lobby2").publicKey != topic.publicKey)
        let blob = try #require(KnockSeal.seal(addrs, to: topic.publicKey))
        #expect(blob.count == 2 + 2 * 7 + SealedBox.overhead)
        #expect(blob.count <= DHTNode.maxKnockBlob)
        #expect(KnockSeal.open(blob, with: [topic]) == addrs)
        // Both families: an IPv6 address is its 18-byte compact form.
        let both = addrs + [try #require(PeerAddress("[2001:db8:1::5]:4000"))]
        let mixed = try #require(KnockSeal.seal(both, to: topic.publicKey))
        #expect(mixed.count == 2 + 2 * 7 + 19 + SealedBox.overhead)
        #expect(KnockSeal.open(mixed, with: [topic]) == both)
        // Sealed to a host's Ed25519 identity: opened with the X25519 form of its secret key.
        let host = Identity.generate()
        let toHost = try #require(KnockSeal.seal(addrs, to: try Ed25519.x25519PublicKey(from: host.publicKey.bytes)))
        #expect(KnockSeal.open(toHost, with: [topic, try host.signing.x25519()]) == addrs)
        #expect(KnockSeal.open(toHost, with: [topic]) == nil)
        // Changed, truncated, oversized or garbage: not opened.
        var changed = blob
        changed[changed.count - 1] ^= 1
        #expect(KnockSeal.open(changed, with: [topic]) == nil)
        #expect(KnockSeal.open(Array(blob.prefix(40)), with: [topic]) == nil)
        #expect(KnockSeal.open([UInt8](repeating: 1, count: 500), with: [topic]) == nil)
        // A well-sealed blob whose content lies about its length: rejected.
        let lying = try SealedBox.seal([KnockSeal.version, 3] + addrs[0].compact, to: topic.publicKey)
        #expect(KnockSeal.open(lying, with: [topic]) == nil)
        // At most `maxAddresses` are carried.
        let many = (1...20).map { PeerAddress(10, 0, 0, UInt8($0), port: 1) }
        #expect(KnockSeal.open(try #require(KnockSeal.seal(many, to: topic.publicKey)), with: [topic])?.count == 8)
    }

    /// On the simulated network: a host announces its lobby and listens; a joiner's `KnockSender`
    /// knocks through the nodes that store the announcement; the host probes the joiner back at
    /// once, at its address as the relay saw it and at its LAN address, but not at a third party's
    /// address the blob names. A blob sealed to another key is counted and not probed.
    /// Six turf DHT nodes on the simulated network, a host whose lobby they store, a joiner.
    func knockLab(seed: UInt64) -> (net: SimNetwork, host: Peer, joiner: Peer, infoHash: NodeID, nodes: [Peer]) {
        let net = SimNetwork(seed: seed, conditions: LinkConditions(latency: .milliseconds(20)))
        func peer(_ ip: UInt8, bootstrap: [PeerAddress]) -> Peer {
            simPeer(net, PeerAddress(198, 51, 100, ip, port: 6881), bootstrap: bootstrap)
        }
        let router = peer(1, bootstrap: [])
        // The nodes spread over the three documentation /24s (a knock's burst needs two /24s).
        let nets: [(UInt8, UInt8, UInt8)] = [(198, 51, 100), (203, 0, 113), (192, 0, 2)]
        var nodes: [Peer] = []
        for i in 4...8 {
            let (a, b, c) = nets[i % 3]
            nodes.append(simPeer(net, PeerAddress(a, b, c, UInt8(i), port: 6881), bootstrap: [router.localAddress]))
        }
        let host = peer(2, bootstrap: [router.localAddress])
        let joiner = peer(3, bootstrap: [router.localAddress])
        router.start()
        for n in nodes { n.start() }
        let h = Topic.infoHash("lobby")
        var stored = 0
        host.start { _ in host.dht.announce(h, port: 1, impliedPort: true) { _, n in stored = n } }
        var joined = false
        joiner.start { _ in joined = true }
        #expect(net.run(until: net.now + .seconds(30), while: { stored == 0 || !joined }))
        return (net, host, joiner, h, [router] + nodes)
    }

    @Test func aRelayedKnockMakesTheHostProbeAtOnce() throws {
        let (net, host, joiner, h, nodes) = knockLab(seed: 51)
        defer { withExtendedLifetime(nodes) {} }
        let victim = Peer(host: net.bind(PeerAddress(203, 0, 113, 66, port: 9)))
        let keys = KnockSeal.topicKeys(topic: "lobby")
        let listener = KnockListener(peer: host, infoHash: h, keys: [keys])
        listener.start()
        let lan = PeerAddress(10, 3, 0, 2, port: 6881)
        let blob = try #require(KnockSeal.seal([lan, victim.localAddress], to: keys.publicKey))
        let sender = KnockSender(peer: joiner)
        let t0 = net.now
        sender.knock(h, blob: blob, hosts: [host.localAddress])
        #expect(net.run(until: t0 + .seconds(5), while: { joiner.puncher.probesReceived == 0 }))
        // One lookup round trip, the knock and its relay: well under a second.
        #expect(net.now - t0 < .milliseconds(500))
        #expect(sender.sent >= 1 && sender.relayed >= 1)
        #expect(listener.opened == 1)
        #expect(joiner.puncher.heardFrom == [host.localAddress])
        _ = net.run(for: .seconds(2))
        #expect(victim.puncher.probesReceived == 0, "a third party named in the blob is not probed")
        #expect(listener.repeated == sender.relayed - 1, "knocks through other nodes probe nothing more")
        // A blob sealed to another key: opened by nobody, probes nothing.
        let before = host.puncher.probesSent
        let other = try #require(KnockSeal.seal([lan], to: KnockSeal.topicKeys(topic: "other").publicKey))
        let second = KnockSender(peer: joiner)
        second.knock(h, blob: other, hosts: [])
        _ = net.run(for: .seconds(2))
        #expect(second.relayed >= 1)
        #expect(listener.unopened == second.relayed, "sent: \(second.sent)")
        #expect(host.puncher.probesSent == before)
        listener.stop()
    }

    /// A joiner behind a random NAT ends its sealed list with `Birthday.knockMarker`: the host
    /// hands the knocker's IP, as the relaying node saw it, to the birthday method (and probes no
    /// 0.0.0.0:1); a knock without the marker does not.
    @Test func theBirthdayMarkerInAKnockStartsTheBirthdayMethod() throws {
        let (net, host, joiner, h, nodes) = knockLab(seed: 52)
        defer { withExtendedLifetime(nodes) {} }
        let keys = KnockSeal.topicKeys(topic: "lobby")
        let listener = KnockListener(peer: host, infoHash: h, keys: [keys])
        var asked: [[UInt32]] = []
        listener.onBirthdayKnock = { asked.append($0) }
        listener.start()
        let plain = try #require(KnockSeal.seal([PeerAddress(10, 3, 0, 2, port: 6881)], to: keys.publicKey))
        let first = KnockSender(peer: joiner)
        first.knock(h, blob: plain, hosts: [host.localAddress])
        _ = net.run(for: .seconds(2))
        #expect(listener.opened == 1 && asked.isEmpty)
        _ = net.run(for: .seconds(1))  // past the one-knock-a-second window
        let marked = try #require(
            KnockSeal.seal([PeerAddress(10, 3, 0, 2, port: 6881), Birthday.knockMarker], to: keys.publicKey)
        )
        let sender = KnockSender(peer: joiner)
        sender.knock(h, blob: marked, hosts: [host.localAddress])
        _ = net.run(for: .seconds(2))
        #expect(listener.opened == 2)
        #expect(asked == [[joiner.localAddress.ip]])
        withExtendedLifetime(first) {}
        listener.stop()
    }

    /// One hostile DHT node relaying knocks that name a victim's IP cannot start a burst at it:
    /// a burst needs knocks from that IP through nodes in two /24s.
    @Test func aBurstNeedsKnocksThroughTwoSlash24s() throws {
        let (net, host, _, h, nodes) = knockLab(seed: 53)
        defer { withExtendedLifetime(nodes) {} }
        let keys = KnockSeal.topicKeys(topic: "lobby")
        let listener = KnockListener(peer: host, infoHash: h, keys: [keys])
        var asked: [[UInt32]] = []
        listener.onBirthdayKnock = { asked.append($0) }
        let marked = try #require(KnockSeal.seal([Birthday.knockMarker], to: keys.publicKey))
        let victim = PeerAddress(203, 0, 113, 66, port: 9)
        let hostile = PeerAddress(192, 0, 2, 99, port: 6881)
        for _ in 0..<10 { listener.received(Knock(infoHash: h, blob: marked, source: victim, relay: hostile)) }
        #expect(asked.isEmpty)
        #expect(listener.uncorroborated == 10)
        // The same knock through a second /24: now it starts, once.
        let other = PeerAddress(198, 51, 100, 98, port: 6881)
        for _ in 0..<3 { listener.received(Knock(infoHash: h, blob: marked, source: victim, relay: other)) }
        #expect(asked == [[victim.ip]])
        _ = net
    }
    /// A joiner whose NAT is not classified yet (a join by topic often connects first) ends its
    /// list with `Birthday.unsureMarker`: the host offers the knock to both methods, the birthday
    /// method (corroborated by two /24s, as with `knockMarker`) and the reversed one (the
    /// knocker's address, at most once per 10 s per IP), and its own NAT decides which runs. A
    /// joiner sure to be random asks for the birthday method only, a consistent one for the
    /// reversed one only; a marker is never probed.
    @Test func anUnsureKnockAsksForBothMethods() throws {
        let net = SimNetwork(seed: 54, conditions: LinkConditions(latency: .milliseconds(20)))
        let host = Peer(host: net.bind(PeerAddress(192, 0, 2, 23, port: 6881)), identity: .generate())
        let h = Topic.infoHash("lobby")
        let keys = KnockSeal.topicKeys(topic: "lobby")
        let listener = KnockListener(peer: host, infoHash: h, keys: [keys])
        var birthday: [[UInt32]] = []
        var reversed: [[PeerAddress]] = []
        listener.onBirthdayKnock = { birthday.append($0) }
        listener.onPlainKnock = { reversed.append($0) }
        let relays = [PeerAddress(198, 51, 100, 11, port: 6881), PeerAddress(203, 0, 113, 11, port: 6881)]
        func knock(_ from: PeerAddress, _ listed: [PeerAddress]) throws {
            let blob = try #require(KnockSeal.seal(listed, to: keys.publicKey))
            for r in relays { listener.received(Knock(infoHash: h, blob: blob, source: from, relay: r)) }
        }
        #expect(Birthday.marker(for: .unknown) == Birthday.unsureMarker)
        #expect(Birthday.marker(for: .random) == Birthday.knockMarker)
        #expect(Birthday.marker(for: .consistent) == nil && Birthday.marker(for: .open) == nil)

        let unsure = PeerAddress(198, 51, 100, 21, port: 49_346)
        try knock(unsure, [Birthday.unsureMarker])
        #expect(birthday == [[unsure.ip]])
        #expect(reversed == [[unsure]])
        #expect(host.puncher.probesSent == 1, "the first round of probes: the knocker's address only, no marker")

        let random = PeerAddress(203, 0, 113, 22, port: 1000)
        try knock(random, [Birthday.knockMarker])
        #expect(birthday == [[unsure.ip], [random.ip]])
        #expect(reversed == [[unsure]], "a random knocker is not aimed at")

        let consistent = PeerAddress(192, 0, 2, 77, port: 2000)
        try knock(consistent, [])
        #expect(birthday.count == 2)
        #expect(reversed == [[unsure], [consistent]])

        // The same knocker again (a re-knock every 2 s): the reversed method at most every 10 s.
        _ = net.run(for: .seconds(5))
        try knock(unsure, [Birthday.unsureMarker])
        #expect(reversed.count == 2)
        _ = net.run(for: .seconds(6))
        try knock(unsure, [])
        #expect(reversed == [[unsure], [consistent], [unsure]])
    }
}
