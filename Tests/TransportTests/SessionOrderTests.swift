import NetCore
import NetSim
import Testing

@testable import Transport

/// The session manager's timer walks its sessions in local-index order, not in its dictionary's
/// order (which Swift seeds per process): what the sessions send at one instant, and the retry
/// jitter each draws from a seeded random source, then come in the same order on every run, so a
/// simulation repeats from its seed across processes (SessionChaos's seed 86 once failed in one
/// process and passed in others).
@Suite struct SessionOrderTests {
    @Test func handshakeRetriesGoOutInIndexOrder() throws {
        let net = SimNetwork(seed: 11, conditions: .perfect)
        var config = SessionManager.Config()
        // No jitter (a tenth of 9 ns is 0), so every pending handshake is due at the same tick.
        config.handshakeRetry = 9
        config.handshakeAttempts = 3
        let a = SimPeer(net, ip: 1, config: config)
        let target = net.bind(PeerAddress(10, 0, 0, 2, port: 4000))
        var senders: [UInt32] = []
        target.onReceive = { bytes, _ in
            if let i = try? HandshakeInitiation.decode(bytes) { senders.append(i.senderIndex) }
        }
        var indices: [UInt32] = [907, 12, 530, 77, 301, 4, 650, 222, 41, 818, 9, 463]
        a.manager.indexGenerator = { indices.removeFirst() }
        let n = indices.count
        for _ in 0..<n { _ = a.manager.connect(to: target.localAddress, mode: .discovered) }
        runUntil(net, seconds: 5) { senders.count >= 3 * n }
        try #require(senders.count == 3 * n)
        // The first initiations go out as each dial is made; every retry round in index order.
        let expected = [907, 12, 530, 77, 301, 4, 650, 222, 41, 818, 9, 463].map(UInt32.init)
        #expect(Array(senders.prefix(n)) == expected)
        #expect(Array(senders[n..<(2 * n)]) == expected.sorted())
        #expect(Array(senders[(2 * n)...]) == expected.sorted())
    }
}
