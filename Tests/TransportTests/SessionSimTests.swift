import NetCore
import NetSim
import Sodium
import Testing

@testable import Transport

/// Sessions on the simulated network: virtual time, seeded link conditions, fast and reproducible.
@Suite struct SessionSimTests {
    @Test func xxHandshakeLearnsIdentities() throws {
        let net = SimNetwork(seed: 1)
        let (a, b, sa, sb) = try #require(connectedPair(net))
        #expect(sa.remoteKey == b.identity.publicKey)
        #expect(sb.remoteKey == a.identity.publicKey)
        #expect(sb.peerAddress == a.address)
        #expect(a.manager.stats.handshakesCompleted == 1 && b.manager.stats.handshakesCompleted == 1)
    }

    @Test func ikWithKnownKey() throws {
        let net = SimNetwork(seed: 2)
        let a = SimPeer(net, ip: 1)
        let b = SimPeer(net, ip: 2)
        let s = a.manager.connect(to: b.address, mode: .knownKey(b.identity.publicKey))
        #expect(runUntil(net, seconds: 5) { s.isEstablished && b.inbound.first?.isEstablished == true })
        #expect(b.inbound.first?.remoteKey == a.identity.publicKey)
        #expect(s.remoteKey == b.identity.publicKey)
    }

    @Test func ikWithWrongKeyFails() {
        let net = SimNetwork(seed: 3)
        let a = SimPeer(net, ip: 1)
        let b = SimPeer(net, ip: 2)
        let s = a.manager.connect(to: b.address, mode: .knownKey(Identity.generate().publicKey))
        #expect(runUntil(net, seconds: 30) { s.isClosed })
        #expect(s.state == .closed(.handshakeTimeout))
        #expect(b.inbound.isEmpty)
        #expect(b.manager.stats.handshakeFailures >= 1)
        #expect(b.manager.sessionCount == 0)
    }

    @Test func passphraseLobby() {
        let net = SimNetwork(seed: 4)
        let host = SimPeer(net, ip: 1)
        let good = SimPeer(net, ip: 2)
        let bad = SimPeer(net, ip: 3)
        let plain = SimPeer(net, ip: 4)
        let key = SecretBytes.random(32)
        host.manager.setLobbyKey(key)
        let sGood = good.manager.connect(to: host.address, mode: .passphrase(key))
        let sBad = bad.manager.connect(to: host.address, mode: .passphrase(SecretBytes.random(32)))
        let sPlain = plain.manager.connect(to: host.address, mode: .discovered)
        #expect(runUntil(net, seconds: 30) { sGood.isEstablished && sBad.isClosed && sPlain.isClosed })
        #expect(sGood.isEstablished)
        #expect(!sBad.isEstablished && !sPlain.isEstablished)
        #expect(host.inbound.count == 1 && host.inbound[0].remoteKey == good.identity.publicKey)
        #expect(host.manager.stats.passphraseRejected >= 1)
        #expect(host.manager.stats.patternRefused >= 1)
    }

    /// Someone who sees the responder's index (on path) forges a final message first: it is
    /// counted, and the genuine final message still completes the handshake.
    @Test func forgedFinalMessageDoesNotCancelHandshake() {
        let net = SimNetwork(seed: 5, conditions: LinkConditions(latency: .milliseconds(5)))
        let a = SimPeer(net, ip: 1)
        let b = SimPeer(net, ip: 2)
        let inner = a.socket.onReceive!
        a.socket.onReceive = { p, src in
            if let r = try? HandshakeResponse.decode(p) {
                // Delivered ahead of the real final message, from A's own address as an on-path
                // attacker could spoof it.
                b.manager.receive(
                    HandshakeFinal(receiverIndex: r.senderIndex, noiseMessage: [UInt8](repeating: 7, count: 96))
                        .encode(),
                    from: a.address
                )
            }
            inner(p, src)
        }
        let s = a.manager.connect(to: b.address, mode: .discovered)
        #expect(runUntil(net, seconds: 5) { s.isEstablished && b.inbound.first?.isEstablished == true })
        #expect(b.manager.stats.handshakeFailures >= 1)
    }

    @Test func lobbyKeyDependsOnPassphraseAndLobby() throws {
        let k1 = try SessionManager.lobbyKey(passphrase: "hunter2", lobby: "t1")
        let k2 = try SessionManager.lobbyKey(passphrase: "hunter2", lobby: "t1")
        let k3 = try SessionManager.lobbyKey(passphrase: "hunter3", lobby: "t1")
        let k4 = try SessionManager.lobbyKey(passphrase: "hunter2", lobby: "t2")
        #expect(k1.bytes == k2.bytes && k1.bytes != k3.bytes && k1.bytes != k4.bytes && k1.count == 32)
    }

    /// The bar: 30% loss with duplication and reordering; every reliable message arrives
    /// exactly once and in order, including messages fragmented across many datagrams.
    @Test(arguments: [UInt64(11), 12, 13, 14, 15, 16, 17, 18])
    func reliableChannelUnderLossDuplicationReordering(seed: UInt64) throws {
        let net = SimNetwork(seed: seed)
        let (a, b, sa, sb) = try #require(connectedPair(net))
        defer { withExtendedLifetime((a, b)) {} }
        net.conditions = LinkConditions(
            loss: 0.3,
            duplicate: 0.2,
            reorder: 0.3,
            latency: .milliseconds(20),
            jitter: .milliseconds(15),
            reorderDelay: .milliseconds(40)
        )
        var rng = SplitMix64Test(seed: seed)
        var sent: [[UInt8]] = []
        var gotB: [[UInt8]] = []
        var gotA: [[UInt8]] = []
        sb.reliable.onReceive = { gotB.append($0) }
        sa.reliable.onReceive = { gotA.append($0) }
        for i in 0..<300 {
            let size = i % 50 == 0 ? 5000 + Int(rng.next() % 3000) : Int(rng.next() % 200)
            var m = [UInt8](repeating: 0, count: size)
            for j in 0..<size { m[j] = UInt8(truncatingIfNeeded: rng.next()) }
            m.insert(contentsOf: [UInt8(i & 0xFF), UInt8(i >> 8)], at: 0)
            sent.append(m)
            try sa.reliable.send(m)
            try sb.reliable.send([UInt8(i & 0xFF)])
            if i % 10 == 0 { _ = net.run(for: .milliseconds(30)) }
        }
        #expect(runUntil(net, seconds: 120) { gotB.count >= 300 && gotA.count >= 300 })
        _ = net.run(for: .seconds(5))  // late duplicates must not be delivered again
        #expect(gotB.count == sent.count)
        #expect(gotB.map(digest) == sent.map(digest), "messages differ or are out of order")
        #expect(gotA == (0..<300).map { [UInt8($0 & 0xFF)] })
        #expect(sa.reliable.stats.retransmissions > 0)
        #expect(net.stats.lost > 0 && net.stats.duplicated > 0)
        #expect(sa.isEstablished && sb.isEstablished)
        #expect(net.stats.oversized == 0, "a datagram over 1200 bytes")
    }

    @Test func unreliableChannelLatestWinsWithRedundancy() throws {
        let net = SimNetwork(seed: 21)
        let (a, b, sa, sb) = try #require(connectedPair(net))
        defer { withExtendedLifetime((a, b)) {} }
        net.conditions = LinkConditions(
            loss: 0.3,
            duplicate: 0.2,
            reorder: 0.3,
            latency: .milliseconds(10),
            jitter: .milliseconds(10)
        )
        var got: [UInt32] = []
        sb.unreliable.onReceive = { got.append(UInt32($0[0]) | UInt32($0[1]) << 8) }
        sa.unreliable.redundancy = 2
        for i in 0..<1000 {
            try sa.unreliable.send([UInt8(i & 0xFF), UInt8(i >> 8), 0, 0])
            _ = net.run(for: .milliseconds(16))
        }
        _ = net.run(for: .seconds(1))
        // Strictly increasing: never a duplicate, never older than something already delivered.
        #expect(zip(got, got.dropFirst()).allSatisfy { $0 < $1 })
        // With 30% loss and two redundant copies, nearly everything arrives (1 - 0.3^3 ≈ 97%,
        // less what reordering makes stale).
        #expect(got.count > 800, "delivered \(got.count)")
        #expect(throws: ChannelError.self) { try sa.unreliable.send([UInt8](repeating: 0, count: 2000)) }
        // The largest message fits one datagram even with an ack riding along.
        net.conditions = .perfect
        _ = net.run(for: .seconds(1))  // let reordered stragglers land
        try sb.reliable.send([1])  // makes sa owe an ack
        _ = net.run(for: .milliseconds(50))
        var big: [[UInt8]] = []
        sb.unreliable.onReceive = { big.append($0) }
        let maxMessage = [UInt8](repeating: 0xAB, count: UnreliableChannel.maxMessageSize)
        try sa.unreliable.send(maxMessage)
        _ = net.run(for: .milliseconds(50))
        // (An earlier lost message may ride along as redundancy and arrive first.)
        #expect(big.last.map(digest) == digest(maxMessage), "\(big.map { $0.count })")
        #expect(net.stats.oversized == 0, "a datagram over 1200 bytes")
    }

    /// A 10-second partition: the session stays up, and what was sent during it arrives after.
    @Test func sessionSurvivesTenSecondPartition() throws {
        let net = SimNetwork(seed: 31)
        let (a, b, sa, sb) = try #require(connectedPair(net))
        var got: [[UInt8]] = []
        sb.reliable.onReceive = { got.append($0) }
        net.partition([a.address.ip], into: 1)
        for i in 0..<20 {
            try sa.reliable.send([UInt8(i)])
            _ = net.run(for: .milliseconds(500))
        }
        #expect(got.isEmpty)
        #expect(sa.isEstablished && sb.isEstablished)
        net.heal()
        #expect(runUntil(net, seconds: 3) { got.count == 20 })
        #expect(got == (0..<20).map { [UInt8($0)] })
        _ = net.run(for: .seconds(3))
        #expect(sa.isEstablished && sb.isEstablished)
        #expect(a.manager.stats.sessionsTimedOut == 0 && b.manager.stats.sessionsTimedOut == 0)
        #expect(sa.metrics.smoothedRTT != nil)
    }

    @Test func sessionTimesOutAfterLongPartition() throws {
        let net = SimNetwork(seed: 32)
        let (a, b, sa, sb) = try #require(connectedPair(net))
        net.partition([a.address.ip], into: 1)
        _ = net.run(for: .seconds(19))
        #expect(sa.isEstablished)
        _ = net.run(for: .seconds(2))
        #expect(sa.state == .closed(.timeout) && sb.state == .closed(.timeout))
        #expect(a.manager.stats.sessionsTimedOut == 1 && b.manager.stats.sessionsTimedOut == 1)
        #expect(throws: ChannelError.sessionClosed) { try sa.reliable.send([1]) }
    }

    @Test func cleanClose() throws {
        let net = SimNetwork(seed: 33)
        let (a, b, sa, sb) = try #require(connectedPair(net))
        sa.close()
        #expect(sa.state == .closed(.local))
        #expect(runUntil(net, seconds: 1) { sb.isClosed })
        #expect(sb.state == .closed(.remote))
        _ = net.run(for: .milliseconds(100))
        #expect(a.manager.sessionCount == 0 && b.manager.sessionCount == 0)
    }

    /// Keys ratchet (Noise REKEY) after the configured number of packets; traffic continues,
    /// including packets reordered across the key change.
    @Test func rekeyAfterMessageLimit() throws {
        var config = SessionManager.Config()
        config.rekeyAfterMessages = 40
        let net = SimNetwork(seed: 34, conditions: LinkConditions(reorder: 0.3, latency: .milliseconds(5)))
        let (a, b, sa, sb) = try #require(connectedPair(net, config: config))
        defer { withExtendedLifetime((a, b)) {} }
        var got: [[UInt8]] = []
        sb.reliable.onReceive = { got.append($0) }
        for i in 0..<300 {
            try sa.reliable.send([UInt8(i & 0xFF)])
            _ = net.run(for: .milliseconds(1))  // one packet per message
        }
        #expect(runUntil(net, seconds: 10) { got.count == 300 })
        #expect(got == (0..<300).map { [UInt8($0 & 0xFF)] })
        #expect(sa.counters.rekeys >= 5)
        #expect(sb.counters.authFailures == 0)
    }

    @Test func rekeyAfterTime() throws {
        var config = SessionManager.Config()
        config.rekeyAfterTime = .seconds(3)
        let net = SimNetwork(seed: 35)
        let (a, b, sa, sb) = try #require(connectedPair(net, config: config))
        defer { withExtendedLifetime((a, b)) {} }
        _ = net.run(for: .seconds(20))
        #expect(sa.counters.rekeys >= 5 && sb.counters.rekeys >= 5)
        #expect(sa.isEstablished && sb.isEstablished)
    }

    @Test func replayedTransportPacketsAreDropped() throws {
        let net = SimNetwork(seed: 36)
        let (a, b, sa, sb) = try #require(connectedPair(net))
        var captured: [[UInt8]] = []
        let spy = net.bind(PeerAddress(10, 0, 0, 9, port: 1))
        _ = spy
        var got = 0
        sb.unreliable.onReceive = { _ in got += 1 }
        // Seal packets directly and deliver each twice.
        for i in 0..<5 {
            let frame = Frame.unreliable(seq: UInt32(100 + i), data: [1])
            var payload: [UInt8] = []
            frame.encode(into: &payload)
            captured.append(try #require(sa.seal(payload, now: net.now)))
        }
        for p in captured + captured { b.manager.receive(p, from: a.address) }
        #expect(got == 5)
        #expect(sb.counters.replaysDropped == 5)
        // A flipped bit fails authentication and is counted.
        var bad = try #require(sa.seal([1, 0, 0, 0, 0], now: net.now))
        bad[20] ^= 1
        b.manager.receive(bad, from: a.address)
        #expect(sb.counters.authFailures == 1)
    }

    @Test func metricsReportRTTAndLoss() throws {
        let net = SimNetwork(seed: 37, conditions: LinkConditions(latency: .milliseconds(25)))
        let (a, b, sa, _) = try #require(connectedPair(net))
        defer { withExtendedLifetime((a, b)) {} }
        _ = net.run(for: .seconds(5))
        let rtt = try #require(sa.metrics.smoothedRTT)
        #expect(rtt >= .milliseconds(50) && rtt <= .milliseconds(60))
        net.conditions = LinkConditions(loss: 0.5, latency: .milliseconds(25))
        _ = net.run(for: .seconds(30))
        // Only pings and pongs flow (one packet a second each way): loss is estimated from gaps.
        #expect(sa.metrics.incomingLoss > 0.2 && sa.metrics.incomingLoss < 0.8, "loss \(sa.metrics.incomingLoss)")
    }

    @Test func peerRoamsToNewAddress() throws {
        let net = SimNetwork(seed: 38)
        let (a, b, sa, sb) = try #require(connectedPair(net))
        _ = b
        // The initiator's NAT mapping changes: its packets now come from another port.
        let moved = net.bind(PeerAddress(10, 0, 0, 1, port: 5000))
        let demux = Demultiplexer(socket: moved)
        demux.route(PacketType.allFirstBytes) { p, s in a.manager.receive(p, from: s) }
        var got: [[UInt8]] = []
        sb.reliable.onReceive = { got.append($0) }
        var payload: [UInt8] = []
        Frame.segment(seq: 0, last: true, data: [42]).encode(into: &payload)
        moved.send(try #require(sa.seal(payload, now: net.now)), to: b.address)
        _ = net.run(for: .milliseconds(2))
        #expect(got == [[42]])
        // B challenged the new address; A (which got the challenge there) answered, so B now
        // sends to the new address (A's next packets from the old one would move it back).
        #expect(runUntil(net, seconds: 1) { b.manager.stats.pathsValidated == 1 })
        #expect(b.manager.stats.pathChallengesSent == 1)
        #expect(sb.peerAddress == moved.localAddress)
    }
}

func digest(_ b: [UInt8]) -> UInt64 {
    var h: UInt64 = 0xcbf29ce484222325
    for x in b { h = (h ^ UInt64(x)) &* 0x100000001b3 }
    return h ^ UInt64(b.count)
}

/// Small deterministic generator for test data.
struct SplitMix64Test: RandomNumberGenerator {
    var state: UInt64
    init(seed: UInt64) { state = seed }
    mutating func next() -> UInt64 {
        state &+= 0x9E3779B97F4A7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58476D1CE4E5B9
        z = (z ^ (z >> 27)) &* 0x94D049BB133111EB
        return z ^ (z >> 31)
    }
}
