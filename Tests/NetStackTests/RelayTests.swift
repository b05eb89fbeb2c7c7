import DHT
import NetCore
import NetSim
import NetStack
import Testing
import Transport

@Suite struct RelayFrameTests {
    let tag = RelayFrame.tag(topic: "lobby")

    @Test func framesRoundTripAndAnswersAreSmallerThanRequests() {
        let frames: [RelayFrame] = [
            .register(tag: tag, nonce: 0x0102_0304_0506_0708),
            .join(tag: tag, nonce: .max),
            .registered(nonce: 7, status: .busy),
            .joined(nonce: 9, status: .ok, channel: 0xDEAD_BEEF),
            .data(channel: 1, payload: [5, 1, 2, 3]),
            .data(channel: .max, payload: [UInt8](repeating: 1, count: RelayFrame.maxPayload)),
        ]
        for f in frames {
            let b = f.encode()
            #expect(b[0] == RelayFrame.type)
            #expect(RelayFrame.decode(b) == f)
        }
        // No amplification: each answer is smaller than the request that causes it.
        let request = RelayFrame.join(tag: tag, nonce: 1).encode().count
        #expect(RelayFrame.registered(nonce: 1, status: .ok).encode().count < request)
        #expect(RelayFrame.joined(nonce: 1, status: .ok, channel: 1).encode().count < request)
        #expect(RelayFrame.register(tag: tag, nonce: 1).encode().count == request)
    }

    @Test func malformedFramesAreRefused() {
        let good = RelayFrame.register(tag: tag, nonce: 1).encode()
        #expect(RelayFrame.decode([]) == nil)
        #expect(RelayFrame.decode([RelayFrame.type]) == nil)
        #expect(RelayFrame.decode(Array(good.dropLast())) == nil)
        #expect(RelayFrame.decode(good + [0]) == nil)
        #expect(RelayFrame.decode([0x1D] + good.dropFirst()) == nil)
        #expect(RelayFrame.decode([RelayFrame.type, 0x7F] + good.dropFirst(2)) == nil)
        // An unknown status, an empty data frame, an oversized one.
        var answer = RelayFrame.registered(nonce: 1, status: .ok).encode()
        answer[10] = 99
        #expect(RelayFrame.decode(answer) == nil)
        #expect(RelayFrame.decode(RelayFrame.data(channel: 1, payload: []).encode()) == nil)
        #expect(
            RelayFrame.decode(
                RelayFrame.data(channel: 1, payload: [UInt8](repeating: 0, count: RelayFrame.maxPayload + 1)).encode()
            ) == nil
        )
    }

    @Test func bothSidesRankRelaysAlike() {
        let a = PeerAddress(198, 51, 100, 11, port: 6881)
        let b = PeerAddress(203, 0, 113, 11, port: 6881)
        let c = PeerAddress(192, 0, 2, 11, port: 6881)
        let ranked = RelayFrame.rank([a, b, c, a, PeerAddress(ip: 0, port: 1)], tag: tag)
        #expect(ranked.count == 3)
        #expect(RelayFrame.rank([c, b, a], tag: tag) == ranked)
        #expect(RelayFrame.tag(topic: "lobby") != RelayFrame.tag(topic: "lobby2"))
        #expect(RelayClient.isVirtual(PeerAddress(ip: 5, port: 1)))
        #expect(!RelayClient.isVirtual(PeerAddress(ip: 0, port: 1)))
        #expect(!RelayClient.isVirtual(a))
    }
}

@Suite struct RelayServerTests {
    /// A relay and raw client sockets on the simulated network: what the relay answers and forwards.
    struct Lab {
        let net = SimNetwork(seed: 5, conditions: LinkConditions(latency: .milliseconds(5)))
        let relayPeer: Peer
        var relay: RelayServer { relayPeer.relayServer! }

        init(_ config: RelayServer.Config) {
            relayPeer = Peer(host: net.bind(PeerAddress(198, 51, 100, 11, port: 6881)))
            relayPeer.serveRelay(config)
        }

        /// A raw socket that records what it receives.
        func client(_ ip: UInt8, port: UInt16 = 4000) -> (SimSocket, Box) {
            let s = net.bind(PeerAddress(203, 0, 113, ip, port: port))
            let box = Box()
            s.onReceive = { p, _ in box.frames.append(RelayFrame.decode(p)) }
            return (s, box)
        }

        func send(_ s: SimSocket, _ f: RelayFrame) {
            s.send(f.encode(), to: relayPeer.localAddress)
            _ = net.run(for: .milliseconds(50))
        }
    }

    final class Box { var frames: [RelayFrame?] = [] }

    @Test func pairsAHostAndAJoinerAndForwardsOnlyBetweenThem() throws {
        let lab = Lab(RelayServer.Config())
        let tag = RelayFrame.tag(topic: "t")
        let (host, hostBox) = lab.client(1)
        let (joiner, joinerBox) = lab.client(2)
        let (stranger, strangerBox) = lab.client(3)
        lab.send(joiner, .join(tag: tag, nonce: 1))
        #expect(joinerBox.frames.last == .joined(nonce: 1, status: .noHost, channel: 0))
        lab.send(host, .register(tag: tag, nonce: 2))
        #expect(hostBox.frames.last == .registered(nonce: 2, status: .ok))
        // Another address cannot take the lobby's tag.
        lab.send(stranger, .register(tag: tag, nonce: 3))
        #expect(strangerBox.frames.last == .registered(nonce: 3, status: .busy))
        lab.send(joiner, .join(tag: tag, nonce: 4))
        guard case .joined(4, .ok, let channel)? = joinerBox.frames.last else {
            Issue.record("no channel: \(joinerBox.frames)")
            return
        }
        // The same join again (a lost answer) gets the same channel, not a second one.
        lab.send(joiner, .join(tag: tag, nonce: 4))
        #expect(joinerBox.frames.last == .joined(nonce: 4, status: .ok, channel: channel))
        #expect(lab.relay.channelCount == 1)
        lab.send(joiner, .data(channel: channel, payload: [5, 9, 9]))
        #expect(hostBox.frames.last == .data(channel: channel, payload: [5, 9, 9]))
        lab.send(host, .data(channel: channel, payload: [5, 8]))
        #expect(joinerBox.frames.last == .data(channel: channel, payload: [5, 8]))
        // A stranger cannot use the channel, nor a guessed one; answers sent to the relay are dropped.
        let strangerFrames = strangerBox.frames.count
        lab.send(stranger, .data(channel: channel, payload: [5, 7]))
        lab.send(stranger, .data(channel: channel &+ 1, payload: [5, 7]))
        lab.send(stranger, .registered(nonce: 1, status: .ok))
        lab.relayPeer.demux.dispatch([RelayFrame.type, 0x04], from: stranger.localAddress)
        #expect(strangerBox.frames.count == strangerFrames)
        #expect(hostBox.frames.last == .data(channel: channel, payload: [5, 9, 9]))
        #expect(lab.relay.stats.unknownChannel == 2)
        #expect(lab.relay.stats.malformed == 2)
        #expect(lab.relay.stats.framesForwarded == 2)
        // Idle: the registration and the channel expire.
        _ = lab.net.run(for: .seconds(32))
        #expect(lab.relay.channelCount == 0 && lab.relay.hostCount == 0)
        #expect(lab.relay.stats.expired == 2)
    }

    @Test func sessionAndByteQuotas() throws {
        var config = RelayServer.Config()
        config.sessionsPerClient = 2
        config.channelsPerJoinerIP = 1
        config.bytesPerSecondPerClient = 1000
        config.burstBytesPerClient = 2000
        let lab = Lab(config)
        let (host, hostBox) = lab.client(1)
        let (joiner, joinerBox) = lab.client(2)
        lab.send(host, .register(tag: RelayFrame.tag(topic: "a"), nonce: 1))
        lab.send(host, .register(tag: RelayFrame.tag(topic: "b"), nonce: 2))
        lab.send(host, .register(tag: RelayFrame.tag(topic: "c"), nonce: 3))
        #expect(hostBox.frames.last == .registered(nonce: 3, status: .quota))
        // One joiner IP gets at most `channelsPerJoinerIP` channels to one host (a stranger who
        // knows the topic cannot fill a lobby's channels alone); another IP gets its own.
        lab.send(joiner, .join(tag: RelayFrame.tag(topic: "a"), nonce: 40))
        guard case .joined(40, .ok, _)? = joinerBox.frames.last else {
            Issue.record("no channel: \(joinerBox.frames)")
            return
        }
        lab.send(joiner, .join(tag: RelayFrame.tag(topic: "b"), nonce: 4))
        #expect(joinerBox.frames.last == .joined(nonce: 4, status: .quota, channel: 0))
        let (other, otherBox) = lab.client(3)
        lab.send(other, .join(tag: RelayFrame.tag(topic: "a"), nonce: 42))
        guard case .joined(42, .ok, _)? = otherBox.frames.last else {
            Issue.record("no channel: \(otherBox.frames)")
            return
        }
        #expect(lab.relay.channelCount == 2)
        #expect(lab.relay.stats.sessionQuota == 2)
        // Idle channels expire, and the joiner's quota with them.
        _ = lab.net.run(for: .seconds(32))
        #expect(lab.relay.channelCount == 0)

        // A second host with room: the joiner's bytes are limited by its bucket (2000 B burst).
        let (host2, host2Box) = lab.client(5)
        lab.send(host2, .register(tag: RelayFrame.tag(topic: "d"), nonce: 5))
        lab.send(joiner, .join(tag: RelayFrame.tag(topic: "d"), nonce: 6))
        guard case .joined(6, .ok, let channel)? = joinerBox.frames.last else {
            Issue.record("no channel: \(joinerBox.frames)")
            return
        }
        let payload = [UInt8](repeating: 5, count: 494)  // 500 bytes with the frame's header
        for _ in 0..<6 {
            joiner.send(RelayFrame.data(channel: channel, payload: payload).encode(), to: lab.relayPeer.localAddress)
        }
        _ = lab.net.run(for: .milliseconds(50))
        #expect(host2Box.frames.count(where: { if case .data? = $0 { true } else { false } }) == 4)
        #expect(lab.relay.stats.byteQuota == 2)
        // A second later the bucket has refilled by 1000 bytes: two more go through.
        _ = lab.net.run(for: .seconds(1))
        for _ in 0..<3 {
            joiner.send(RelayFrame.data(channel: channel, payload: payload).encode(), to: lab.relayPeer.localAddress)
        }
        _ = lab.net.run(for: .milliseconds(50))
        #expect(lab.relay.stats.framesForwarded == 6)
        #expect(lab.relay.stats.byteQuota == 3)
        #expect(lab.relay.stats.sessionQuota == 2)
    }

    /// Each tag a host newly registers is announced as held (`onNewTag`), a refresh is not, and
    /// clients churning tags get at most `tagAnnouncesPerMinute` announces out of the relay.
    @Test func newTagsAreAnnouncedWithinTheirQuota() throws {
        var config = RelayServer.Config()
        config.tagAnnouncesPerMinute = 3
        let lab = Lab(config)
        var told: [NodeID] = []
        lab.relay.onNewTag = { told.append($0) }
        let (host, _) = lab.client(1)
        let tags = (0..<6).map { RelayFrame.tag(topic: "churn \($0)") }
        lab.send(host, .register(tag: tags[0], nonce: 1))
        lab.send(host, .register(tag: tags[0], nonce: 1))  // a refresh
        #expect(told == [tags[0]])
        for (i, t) in tags.enumerated().dropFirst() {
            let (c, _) = lab.client(UInt8(10 + i))
            lab.send(c, .register(tag: t, nonce: UInt64(10 + i)))
        }
        #expect(told == Array(tags.prefix(3)))
        #expect(lab.relay.stats.tagsAnnounced == 3 && lab.relay.stats.tagAnnouncesOverQuota == 3)
        #expect(lab.relay.stats.registrations == 6, "the quota limits announces, not registrations")
        // A minute later there is room again.
        _ = lab.net.run(for: .seconds(61))
        let (late, _) = lab.client(30)
        let t = RelayFrame.tag(topic: "late")
        lab.send(late, .register(tag: t, nonce: 30))
        #expect(told.last == t && lab.relay.stats.tagsAnnounced == 4)
    }
}

@Suite struct RelayClientTests {
    /// The end-to-end path on the simulated network: host and joiner cannot reach each other
    /// (every datagram between them is lost), both reach the relay; the host registers, the joiner
    /// joins and runs an ordinary IK handshake to the virtual address; the session carries
    /// messages both ways and the relay forwarded only what the two sent (ciphertext it has no key for).
    @Test func sessionThroughTheRelay() throws {
        let net = SimNetwork(seed: 11, conditions: LinkConditions(latency: .milliseconds(10)))
        let relayPeer = Peer(host: net.bind(PeerAddress(198, 51, 100, 11, port: 6881)))
        relayPeer.serveRelay()
        let host = Peer(host: net.bind(PeerAddress(203, 0, 113, 2, port: 5000)), identity: .generate())
        let joiner = Peer(host: net.bind(PeerAddress(192, 0, 2, 3, port: 5000)), identity: .generate())
        let cut = LinkConditions(loss: 1.0)
        net.setConditions(cut, from: host.localAddress.ip, to: joiner.localAddress.ip)
        net.setConditions(cut, from: joiner.localAddress.ip, to: host.localAddress.ip)
        let tag = RelayFrame.tag(topic: "relayed lobby")
        try #require(host.relay).register(tag: tag, at: [relayPeer.localAddress])
        _ = net.run(for: .milliseconds(100))
        #expect(host.relay?.registeredAt[relayPeer.localAddress] == .ok)

        var inbound: Session?
        host.sessions?.onInbound = { inbound = $0 }
        var virtual: PeerAddress??
        try #require(joiner.relay).join(tag: tag, relay: relayPeer.localAddress) { virtual = $0 }
        #expect(net.run(until: net.now + .seconds(5), while: { virtual == nil }))
        let address = try #require(virtual ?? nil)
        #expect(RelayClient.isVirtual(address))
        #expect(joiner.relay?.relay(of: address) == relayPeer.localAddress)
        let s = try #require(joiner.sessions).connect(to: address, mode: .knownKey(host.sessions!.identity.publicKey))
        #expect(net.run(until: net.now + .seconds(10), while: { !(s.isEstablished && inbound?.isEstablished == true) }))
        let h = try #require(inbound)
        #expect(RelayClient.isVirtual(h.peerAddress))
        var got: [[UInt8]] = []
        var back: [[UInt8]] = []
        h.reliable.onReceive = { got.append($0) }
        s.reliable.onReceive = { back.append($0) }
        try s.reliable.send(Array("hello through the relay".utf8))
        try h.reliable.send([UInt8](repeating: 7, count: 5000))
        #expect(net.run(until: net.now + .seconds(5), while: { got.isEmpty || back.isEmpty }))
        #expect(got == [Array("hello through the relay".utf8)])
        #expect(back == [[UInt8](repeating: 7, count: 5000)])
        let stats = try #require(relayPeer.relayServer).stats
        // Every frame the relay forwarded one of the two sent (some may still be on their way).
        #expect(stats.framesForwarded > 0)
        #expect(stats.framesForwarded <= joiner.relay!.stats.framesSent + host.relay!.stats.framesSent)
        #expect(stats.unknownChannel == 0 && stats.byteQuota == 0)
        // A relay frame from an address we never used as a relay is dropped and counted.
        let stranger = net.bind(PeerAddress(203, 0, 113, 99, port: 1))
        stranger.send(RelayFrame.data(channel: 1, payload: [5, 0, 0]).encode(), to: host.localAddress)
        _ = net.run(for: .milliseconds(50))
        #expect(host.relay?.stats.dropped == 1)
        // The registration repeats (and keeps the NAT mapping to the relay alive).
        _ = net.run(for: .seconds(25))
        #expect(relayPeer.relayServer?.hostCount == 1)
        #expect(s.isEstablished && h.isEstablished)
    }
}
