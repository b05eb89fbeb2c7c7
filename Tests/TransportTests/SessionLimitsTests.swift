import NetCore
import NetSim
import Noise
import Sodium
import Testing

@testable import Transport

/// Resource limits and path handling: what one peer (or someone forging its packets) can make
/// another hold or send.
@Suite struct SessionLimitsTests {
    /// A valid-looking XX initiation (mac1 correct) from `index`, with a fresh ephemeral key.
    static func initiation(index: UInt32) throws -> [UInt8] {
        var hs = try HandshakeState(
            protocol: try NoiseProtocol(name: HandshakeKind.xx.noiseName),
            initiator: true,
            prologue: Wire.noisePrologue,
            localStatic: X25519.KeyPair.generate()
        )
        return HandshakeMACs.seal(
            HandshakeInitiation(kind: .xx, senderIndex: index, noiseMessage: try hs.writeMessage()).encode()
        )
    }

    // MARK: inbound caps and receive budget

    @Test func inboundSessionsAreCappedPerIPAndInTotal() throws {
        var config = SessionManager.Config()
        config.maxInboundSessions = 3
        config.maxInboundSessionsPerIP = 2
        let net = SimNetwork(seed: 101)
        let responder = SimPeer(net, ip: 1, config: config)
        let sameIP = (0..<3).map { SimPeer(net, ip: 2, port: UInt16(5000 + $0)) }
        let other = (0..<2).map { SimPeer(net, ip: 3, port: UInt16(5000 + $0)) }
        let s1 = sameIP.map { $0.manager.connect(to: responder.address, mode: .discovered) }
        _ = net.run(for: .seconds(3))
        #expect(s1.filter(\.isEstablished).count == 2, "per-IP cap")
        let s2 = other.map { $0.manager.connect(to: responder.address, mode: .discovered) }
        _ = net.run(for: .seconds(3))
        #expect(s2.filter(\.isEstablished).count == 1, "global cap")
        #expect(responder.manager.inboundSessionCount == 3)
        #expect(responder.manager.stats.inboundRefused >= 2)
        // Closing one frees a place: the refused peer from that IP gets in on a retry.
        let established = try #require(s1.firstIndex { $0.isEstablished })
        s1[established].close()
        _ = net.run(for: .milliseconds(100))
        #expect(responder.manager.inboundSessionCount == 2)
        let refused = try #require(s1.firstIndex { !$0.isEstablished && !$0.isClosed })
        #expect(runUntil(net, seconds: 5) { s1[refused].isEstablished })
        #expect(responder.manager.inboundSessionCount == 3)
    }

    /// A peer that keeps sending segments it never completes (a message assembling towards
    /// 1 MiB, then segments out of order) is disconnected once its data exceeds the budget.
    @Test func reliableDataOverBudgetClosesTheSession() throws {
        let net = SimNetwork(seed: 102)
        let (a, b, sa, sb) = try #require(connectedPair(net))
        defer { withExtendedLifetime((a, b)) {} }
        let chunk = [UInt8](repeating: 0x5A, count: ReliableChannel.segmentSize)
        var maxHeld = 0
        func deliver(_ seq: UInt32) throws {
            var payload: [UInt8] = []
            Frame.segment(seq: seq, last: false, data: chunk).encode(into: &payload)
            b.manager.receive(try #require(sa.seal(payload, now: net.now)), from: a.address)
            maxHeld = max(maxHeld, sb.reliable.bufferedBytes)
        }
        for seq in UInt32(0)..<900 { try deliver(seq) }  // ~990 KB being assembled
        #expect(sb.isEstablished)
        for seq in UInt32(901)..<1900 where sb.isEstablished { try deliver(seq) }  // then out of order
        #expect(sb.state == .closed(.limitExceeded))
        #expect(b.manager.stats.sessionsOverBudget == 1)
        #expect(maxHeld <= ReliableChannel.defaultReceiveBudget)
        #expect(runUntil(net, seconds: 1) { sa.isClosed }, "the peer is told")
    }

    /// The budget never trips for a well-behaved peer: the largest message over a lossy,
    /// reordering link arrives.
    @Test func largestMessageFitsTheBudgetUnderLoss() throws {
        let net = SimNetwork(seed: 103)
        let (a, b, sa, sb) = try #require(connectedPair(net))
        defer { withExtendedLifetime((a, b)) {} }
        net.conditions = LinkConditions(loss: 0.2, reorder: 0.3, latency: .milliseconds(10), jitter: .milliseconds(5))
        var got: [[UInt8]] = []
        sb.reliable.onReceive = { got.append($0) }
        let big = (0..<ReliableChannel.maxMessageSize).map { UInt8(truncatingIfNeeded: $0 &* 31) }
        try sa.reliable.send(big)
        try sa.reliable.send([1])
        #expect(runUntil(net, seconds: 120) { got.count == 2 })
        #expect(got.first == big && got.last == [1])
        #expect(sb.isEstablished && b.manager.stats.sessionsOverBudget == 0)
        #expect(net.stats.oversized == 0)
    }

    /// A message over 1 MiB is thrown away up to its last segment: no tail of it is delivered
    /// as a message, and the next message is intact.
    @Test func oversizedReliableMessageIsDiscardedWhole() {
        let channel = ReliableChannel()
        var got: [[UInt8]] = []
        channel.onReceive = { got.append($0) }
        let segments = ReliableChannel.maxMessageSize / ReliableChannel.segmentSize + 2  // > 1 MiB in all
        for seq in 0..<segments {
            channel.handleSegment(
                seq: UInt32(seq),
                last: seq == segments - 1,
                data: [UInt8](repeating: UInt8(seq & 0xFF), count: ReliableChannel.segmentSize)
            )
        }
        channel.handleSegment(seq: UInt32(segments), last: true, data: [7, 7])
        #expect(got.count == 1 && got.first == [7, 7], "delivered sizes \(got.map { $0.count })")
        #expect(channel.stats.oversizedDropped == 1)
        #expect(channel.stats.messagesDelivered == 1)
        #expect(channel.bufferedBytes == 0)
    }

    // MARK: pending handshakes

    /// More initiations than the pending cap, from distinct sources: every table stays bounded.
    @Test func pendingTablesStayBoundedPastTheCap() throws {
        var config = SessionManager.Config()
        config.underLoadThreshold = .max
        config.guardConfig.globalBurst = 1e9
        let net = SimNetwork(seed: 104)
        let responder = SimPeer(net, ip: 1, config: config)
        let cap = config.maxPendingHandshakes
        let total = cap + 500
        for i in 0..<total {
            let source = PeerAddress(10, 1, UInt8(i >> 8), UInt8(i & 0xFF), port: 7000)
            responder.manager.receive(try Self.initiation(index: UInt32(i + 1)), from: source)
        }
        let m = responder.manager
        #expect(m.stats.handshakesProcessed == UInt64(total))
        #expect(m.stats.pendingEvicted == UInt64(total - cap))
        #expect(m.pendingHandshakeCount == cap)
        #expect(m.pendingMapCount == cap, "the (source, index) map must shrink with evictions")
        #expect(m.sessionCount == cap)
        _ = net.run(for: config.pendingHandshakeTimeout + .seconds(1))
        #expect(m.pendingHandshakeCount == 0 && m.pendingMapCount == 0 && m.sessionCount == 0)
    }

    /// Someone who knows the initiator's address and index sends a different initiation under
    /// them right after the genuine one: the genuine handshake still completes on its first try.
    @Test func spoofedInitiationDoesNotReplacePendingHandshake() throws {
        let net = SimNetwork(seed: 105, conditions: LinkConditions(latency: .milliseconds(5)))
        let a = SimPeer(net, ip: 1)
        let b = SimPeer(net, ip: 2)
        let inner = b.socket.onReceive!
        var forged = 0
        b.socket.onReceive = { p, src in
            inner(p, src)
            if let i = try? HandshakeInitiation.decode(p), forged == 0 {
                forged += 1
                inner(try! Self.initiation(index: i.senderIndex), src)  // same source, same index
            }
        }
        let s = a.manager.connect(to: b.address, mode: .discovered)
        #expect(runUntil(net, seconds: 1) { s.isEstablished && b.inbound.first?.isEstablished == true })
        #expect(forged == 1 && b.manager.stats.handshakesProcessed == 2)
        #expect(s.counters.handshakeAttempts == 1 && a.manager.stats.handshakeRestarts == 0)
        // The forged one expires on its own.
        _ = net.run(for: .seconds(11))
        #expect(b.manager.pendingHandshakeCount == 0 && b.manager.sessionCount == 1)
    }

    /// The responder forgets the handshake (here: its final messages are lost until the pending
    /// entry expires): the initiator stops resending a final message nobody knows and starts over.
    @Test func initiatorRestartsWhenResponderForgotTheHandshake() throws {
        var config = SessionManager.Config()
        config.pendingHandshakeTimeout = .milliseconds(300)
        let net = SimNetwork(seed: 106, conditions: LinkConditions(latency: .milliseconds(5)))
        let a = SimPeer(net, ip: 1)
        let b = SimPeer(net, ip: 2, config: config)
        let inner = b.socket.onReceive!
        b.socket.onReceive = { p, src in
            if p.first == PacketType.handshakeFinal.rawValue && net.now < .milliseconds(1500) { return }
            inner(p, src)
        }
        let s = a.manager.connect(to: b.address, mode: .discovered)
        #expect(runUntil(net, seconds: 15) { s.isEstablished && b.inbound.first?.isEstablished == true })
        #expect(a.manager.stats.handshakeRestarts == 1)
        #expect(b.manager.stats.unknownIndex >= 1)
    }

    // MARK: pings and paths

    /// One packet full of pings (90 fit) gets exactly one packet back.
    @Test func packetOfPingsGetsOnePong() throws {
        let net = SimNetwork(seed: 107)
        let (a, b, sa, sb) = try #require(connectedPair(net))
        defer { withExtendedLifetime((a, b, sb)) {} }
        _ = net.run(for: .milliseconds(500))
        var payload: [UInt8] = []
        for i in 0..<(Wire.maxTransportPayload / 13) {
            Frame.ping(id: UInt32(1000 + i), sent: 7).encode(into: &payload)
        }
        #expect(payload.count == 1170)
        let before = net.stats.sent
        b.manager.receive(try #require(sa.seal(payload, now: net.now)), from: a.address)
        #expect(net.stats.sent - before == 1)
    }

    /// A copy of a genuine packet sent from a forged address: the forged address gets at most
    /// as many bytes as came from it (only a path challenge), the session stays where it was, and
    /// traffic keeps flowing.
    @Test func forgedSourceAddressDoesNotMoveTheSession() throws {
        let net = SimNetwork(seed: 108)
        let (a, b, sa, sb) = try #require(connectedPair(net))
        let victim = net.bind(PeerAddress(10, 0, 0, 77, port: 53))
        var victimGot = 0
        victim.onReceive = { p, _ in victimGot += p.count }
        var forgedSent = 0
        func forge(_ payload: [UInt8]) throws {
            let p = try #require(sa.seal(payload, now: net.now))
            forgedSent += p.count
            b.manager.receive(p, from: victim.localAddress)  // as if the attacker spoofed `victim`
        }
        try forge([])  // 30 bytes: less than a challenge
        #expect(b.manager.stats.pathChallengesSent == 0)
        var big: [UInt8] = []
        Frame.unreliable(seq: 5000, data: [UInt8](repeating: 1, count: 1000)).encode(into: &big)
        try forge(big)
        #expect(b.manager.stats.pathChallengesSent == 1)
        var got: [[UInt8]] = []
        sa.reliable.onReceive = { got.append($0) }
        try sb.reliable.send([9])
        _ = net.run(for: .seconds(3))
        #expect(victimGot <= forgedSent, "sent \(victimGot) B to an address that sent \(forgedSent) B")
        #expect(sb.peerAddress == a.address)
        #expect(got == [[9]])
        #expect(sa.isEstablished && sb.isEstablished && b.manager.stats.pathsValidated == 0)
    }

    /// NAT rebinding: the initiator's public port changes and the old one is gone. The session
    /// moves once the new address answers a challenge, and nothing is lost.
    @Test func sessionSurvivesNATRebinding() throws {
        let net = SimNetwork(seed: 109, conditions: LinkConditions(latency: .milliseconds(10)))
        net.maxDatagram = Wire.maxDatagram
        let nat = RebindingHost(net, PeerAddress(10, 0, 0, 1, port: 4000))
        let demux = Demultiplexer(socket: nat)
        let ma = SessionManager(host: nat, demux: demux, identity: .generate())
        let b = SimPeer(net, ip: 2)
        let sa = ma.connect(to: b.address, mode: .discovered)
        #expect(runUntil(net, seconds: 5) { sa.isEstablished && b.inbound.first?.isEstablished == true })
        let sb = b.inbound[0]
        var gotA: [[UInt8]] = []
        var gotB: [[UInt8]] = []
        sa.reliable.onReceive = { gotA.append($0) }
        sb.reliable.onReceive = { gotB.append($0) }
        nat.rebind(port: 4999)
        for i in 0..<10 {
            try sa.reliable.send([UInt8(i)])
            try sb.reliable.send([UInt8(100 + i)])
            _ = net.run(for: .milliseconds(100))
        }
        #expect(runUntil(net, seconds: 10) { gotA.count == 10 && gotB.count == 10 })
        #expect(gotB == (0..<10).map { [UInt8($0)] })
        #expect(gotA == (0..<10).map { [UInt8(100 + $0)] })
        #expect(sb.peerAddress == PeerAddress(10, 0, 0, 1, port: 4999))
        #expect(b.manager.stats.pathsValidated == 1)
        #expect(sa.isEstablished && sb.isEstablished)
    }
}

/// A host behind a NAT whose public mapping can change: sends go out from the current socket,
/// and a rebind closes the old one (datagrams to it are then lost).
final class RebindingHost: NetworkHost {
    let net: SimNetwork
    private var socket: SimSocket
    var onReceive: (([UInt8], PeerAddress) -> Void)?

    init(_ net: SimNetwork, _ address: PeerAddress) {
        self.net = net
        socket = net.bind(address)
        socket.onReceive = { [unowned self] p, s in self.onReceive?(p, s) }
    }

    func rebind(port: UInt16) {
        var a = socket.localAddress
        a.port = port
        socket.close()
        socket = net.bind(a)
        socket.onReceive = { [unowned self] p, s in self.onReceive?(p, s) }
    }

    var localAddress: PeerAddress { socket.localAddress }
    func send(_ payload: [UInt8], to destination: PeerAddress) { socket.send(payload, to: destination) }
    var now: Nanos { net.now }
    var isInLoop: Bool { net.isInLoop }
    @discardableResult
    func schedule(after delay: Nanos, _ action: @escaping () -> Void) -> TimerToken {
        net.schedule(after: delay, action)
    }
}
