import DHT
import NetCore
import NetSim
import Testing
import Transport

@testable import NetStack

/// A player's socket as the internet sees it behind a NAT that can remap it: the peer keeps
/// sending and receiving, but after `remap()` its datagrams leave from a new public port and
/// datagrams to the old one are lost (a router restart, an expired mapping).
final class RemappingHost: NetworkHost {
    let net: SimNetwork
    private var socket: SimSocket
    var onReceive: (([UInt8], PeerAddress) -> Void)? {
        didSet { socket.onReceive = onReceive }
    }

    init(_ net: SimNetwork, _ address: PeerAddress) {
        self.net = net
        socket = net.bind(address)
    }

    var localAddress: PeerAddress { socket.localAddress }
    var now: Nanos { socket.now }
    var isInLoop: Bool { socket.isInLoop }
    func send(_ payload: [UInt8], to destination: PeerAddress) { socket.send(payload, to: destination) }
    @discardableResult
    func schedule(after delay: Nanos, _ action: @escaping () -> Void) -> TimerToken {
        socket.schedule(after: delay, action)
    }

    func remap() {
        var next = socket.localAddress
        next.port &+= 1
        socket.close()
        socket = net.bind(next)
        socket.onReceive = onReceive
    }
}

@Suite struct PlayerRelayTests {
    /// A relayed session between `host` and `joiner` (which cannot reach each other) through
    /// `relayPeer`, a player with its own identity and sessions. Returns both ends.
    static func relayedSession(
        _ net: SimNetwork,
        relayPeer: Peer,
        host: Peer,
        joiner: Peer,
        tag: NodeID
    ) throws -> (joinerSide: Session, hostSide: Session) {
        let cut = LinkConditions(loss: 1.0)
        net.setConditions(cut, from: host.localAddress.ip, to: joiner.localAddress.ip)
        net.setConditions(cut, from: joiner.localAddress.ip, to: host.localAddress.ip)
        try #require(host.relay).register(tag: tag, at: [relayPeer.localAddress])
        var inbound: Session?
        host.sessions?.onInbound = { inbound = $0 }
        var virtual: PeerAddress??
        #expect(net.run(until: net.now + .seconds(3), while: { host.relay?.registeredAt.isEmpty != false }))
        try #require(joiner.relay).join(tag: tag, relay: relayPeer.localAddress) { virtual = $0 }
        #expect(net.run(until: net.now + .seconds(5), while: { virtual == nil }))
        let address = try #require(virtual ?? nil)
        let s = try #require(joiner.sessions).connect(to: address, mode: .knownKey(host.sessions!.identity.publicKey))
        #expect(net.run(until: net.now + .seconds(10), while: { !(s.isEstablished && inbound?.isEstablished == true) }))
        return (s, try #require(inbound))
    }

    /// A player relays for two others while it keeps its own session with one of them on the
    /// same socket: requests go to its relay server, answers and data from relays it uses to its
    /// client, and its own session is untouched.
    @Test func aPlayerRelaysWhileItPlays() throws {
        let net = SimNetwork(seed: 21, conditions: LinkConditions(latency: .milliseconds(10)))
        let relayPeer = Peer(host: net.bind(PeerAddress(198, 51, 100, 7, port: 5000)), identity: .generate())
        relayPeer.servePlayerRelay()
        let host = Peer(host: net.bind(PeerAddress(203, 0, 113, 2, port: 5000)), identity: .generate())
        let joiner = Peer(host: net.bind(PeerAddress(192, 0, 2, 3, port: 5000)), identity: .generate())
        // The relaying player's own session with the host, direct.
        var ownInbound: Session?
        host.sessions?.onInbound = { ownInbound = $0 }
        let own = try #require(relayPeer.sessions).connect(
            to: host.localAddress,
            mode: .knownKey(host.sessions!.identity.publicKey)
        )
        #expect(net.run(until: net.now + .seconds(5), while: { !own.isEstablished || ownInbound == nil }))
        let hostSideOfOwn = try #require(ownInbound)
        let (s, h) = try Self.relayedSession(
            net,
            relayPeer: relayPeer,
            host: host,
            joiner: joiner,
            tag: RelayFrame.tag(topic: "played and relayed")
        )
        var got: [[UInt8]] = []
        h.reliable.onReceive = { got.append($0) }
        var ownGot: [[UInt8]] = []
        hostSideOfOwn.reliable.onReceive = { ownGot.append($0) }
        try s.reliable.send(Array("through a player".utf8))
        try own.reliable.send(Array("and its own".utf8))
        #expect(net.run(until: net.now + .seconds(5), while: { got.isEmpty || ownGot.isEmpty }))
        #expect(got == [Array("through a player".utf8)])
        #expect(ownGot == [Array("and its own".utf8)])
        #expect(own.isEstablished)
        let stats = try #require(relayPeer.relayServer).stats
        #expect(stats.framesForwarded > 0 && stats.malformed == 0)
        #expect(relayPeer.relay?.stats.dropped == 0)
        // Opting out stops the service: the next data frame is not forwarded.
        relayPeer.stopServingRelay()
        #expect(relayPeer.relayServer == nil)
    }

    /// The joiner's NAT remaps it, then the host's: each time the relayed session carries on,
    /// because the client sends its join (or registration) again with the same nonce and the
    /// relay moves the channel's end to the new address.
    @Test func aRelayedSessionFollowsANATRemapOfEitherSide() throws {
        let net = SimNetwork(seed: 22, conditions: LinkConditions(latency: .milliseconds(10)))
        let relayPeer = Peer(host: net.bind(PeerAddress(198, 51, 100, 7, port: 5000)), identity: .generate())
        relayPeer.servePlayerRelay()
        let hostNAT = RemappingHost(net, PeerAddress(203, 0, 113, 2, port: 5000))
        let joinerNAT = RemappingHost(net, PeerAddress(192, 0, 2, 3, port: 5000))
        let host = Peer(host: hostNAT, identity: .generate())
        let joiner = Peer(host: joinerNAT, identity: .generate())
        let (s, h) = try Self.relayedSession(
            net,
            relayPeer: relayPeer,
            host: host,
            joiner: joiner,
            tag: RelayFrame.tag(topic: "remapped")
        )
        var got: [[UInt8]] = []
        var back: [[UInt8]] = []
        h.reliable.onReceive = { got.append($0) }
        s.reliable.onReceive = { back.append($0) }
        for (k, nat) in [joinerNAT, hostNAT].enumerated() {
            nat.remap()
            try s.reliable.send([UInt8(k)])
            try h.reliable.send([UInt8(k + 10)])
            #expect(net.run(until: net.now + .seconds(15), while: { got.count <= k || back.count <= k }))
            #expect(got.last == [UInt8(k)] && back.last == [UInt8(k + 10)])
            #expect(relayPeer.relayServer?.stats.moved == k + 1)
        }
        #expect(s.isEstablished && h.isEstablished)
        #expect(relayPeer.relayServer?.channelCount == 1)
    }

    /// 600 fake clients (each its own /24 and so its own quota) register, join and send as fast
    /// as they can at a player's relay, beside one honest pair that got there first. The relay's
    /// tables stay within their caps, it never forwards more than its total allowance (rate ×
    /// time + burst), never answers with more bytes than it was sent, and the honest channel is
    /// still open at the end.
    @Test func aPlayersQuotasHoldUnderAFloodOfFakeClients() throws {
        let net = SimNetwork(seed: 23, conditions: LinkConditions(latency: .milliseconds(5)))
        let relayPeer = Peer(host: net.bind(PeerAddress(198, 51, 100, 7, port: 5000)), identity: .generate())
        let config = RelayServer.Config.player
        relayPeer.servePlayerRelay(config)
        let relay = try #require(relayPeer.relayServer)
        let target = relayPeer.localAddress
        // The honest pair: registered and joined before the flood.
        let tag = RelayFrame.tag(topic: "honest")
        let honestHost = net.bind(PeerAddress(203, 0, 113, 50, port: 4000))
        let honestJoiner = net.bind(PeerAddress(192, 0, 2, 50, port: 4000))
        var honestChannel: UInt32?
        honestJoiner.onReceive = { p, _ in
            if case .joined(_, .ok, let c)? = RelayFrame.decode(p) { honestChannel = c }
        }
        honestHost.send(RelayFrame.register(tag: tag, nonce: 1).encode(), to: target)
        _ = net.run(for: .milliseconds(50))
        honestJoiner.send(RelayFrame.join(tag: tag, nonce: 2).encode(), to: target)
        _ = net.run(for: .milliseconds(50))
        let channel = try #require(honestChannel)

        var sentToRelay = 0
        var answered = 0
        var fakes: [SimSocket] = []
        for i in 0..<600 {
            let s = net.bind(PeerAddress(ip: 0x0B00_0001 &+ UInt32(i) << 8, port: 7000))
            s.onReceive = { p, _ in answered += p.count }
            fakes.append(s)
        }
        let payload = [UInt8](repeating: 5, count: 1000)
        let seconds = 20
        let start = net.now
        for second in 0..<seconds {
            for (i, s) in fakes.enumerated() {
                let fakeTag = RelayFrame.tag(topic: "fake \(i % 40)")
                let frames: [RelayFrame] = [
                    .register(tag: fakeTag, nonce: UInt64(i)),
                    .join(tag: fakeTag, nonce: UInt64(i + 1000 * second)),
                    .join(tag: tag, nonce: UInt64(i + 7)),
                    .data(channel: UInt32(i), payload: payload),
                    .data(channel: channel, payload: payload),
                ]
                for f in frames {
                    let bytes = f.encode()
                    sentToRelay += bytes.count
                    s.send(bytes, to: target)
                }
            }
            // Every fake that got a channel fills it as fast as it can (the data frames above
            // name guessed channels; these name real ones).
            for _ in 0..<10 {
                for id in relay.openChannels where id != channel {
                    let f = RelayFrame.data(channel: id, payload: payload).encode()
                    for s in fakes.prefix(40) {
                        sentToRelay += f.count
                        s.send(f, to: target)
                    }
                }
                _ = net.run(for: .milliseconds(100))
            }
            // The honest pair keeps its channel alive.
            honestJoiner.send(RelayFrame.data(channel: channel, payload: [5, 1]).encode(), to: target)
            #expect(relay.hostCount <= config.maxHosts && relay.channelCount <= config.maxChannels)
        }
        let elapsed = Double(net.now - start) / 1e9
        let allowance = Double(config.totalBytesPerSecond ?? 0) * elapsed + Double(config.totalBurstBytes)
        #expect(relay.stats.bytesForwarded > 0)
        #expect(Double(relay.stats.bytesForwarded) <= allowance)
        #expect(relay.peakSecondBytes <= UInt64((config.totalBytesPerSecond ?? 0) + config.totalBurstBytes))
        #expect(relay.stats.totalQuota > 0 && relay.stats.sessionQuota > 0 && relay.stats.unknownChannel > 0)
        // Answers are smaller than requests; forwarded data went to the fakes' own channels only.
        #expect(answered <= sentToRelay)
        #expect(relay.isEnd(honestJoiner.localAddress, of: channel))
    }
}
