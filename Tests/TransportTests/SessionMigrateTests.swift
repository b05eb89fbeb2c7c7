import NetCore
import NetSim
import Testing

@testable import Transport

/// `Session.migrate(to:)`: a session that runs through a forwarder (a relay) moves to the direct
/// path once one is found, and the peer validates it; a migration nobody answers goes back.
@Suite struct SessionMigrateTests {
    /// A forwarder between A and B at 10.0.0.9: what A sends it goes to B from the forwarder's
    /// address, and back; counts what it forwarded. B sees A only as the forwarder.
    final class Forwarder {
        let socket: SimSocket
        var forwarded = 0
        init(_ net: SimNetwork, a: PeerAddress, b: PeerAddress) {
            socket = net.bind(PeerAddress(10, 0, 0, 9, port: 4000))
            socket.onReceive = { [unowned self] payload, source in
                self.forwarded += 1
                self.socket.send(payload, to: source == a ? b : a)
            }
        }
        var address: PeerAddress { socket.localAddress }
    }

    /// A and B with a session through the forwarder (A initiated it towards the forwarder).
    func relayedPair(_ net: SimNetwork) throws -> (SimPeer, SimPeer, Forwarder, Session, Session) {
        let a = SimPeer(net, ip: 1)
        let b = SimPeer(net, ip: 2)
        let f = Forwarder(net, a: a.address, b: b.address)
        let sa = a.manager.connect(to: f.address, mode: .discovered)
        #expect(runUntil(net, seconds: 30) { sa.isEstablished && b.inbound.first?.isEstablished == true })
        let sb = try #require(b.inbound.first)
        #expect(sa.peerAddress == f.address && sb.peerAddress == f.address)
        return (a, b, f, sa, sb)
    }

    @Test func aRelayedSessionMovesToTheDirectPathAndThePeerValidatesIt() throws {
        let net = SimNetwork(seed: 71)
        let (a, b, f, sa, sb) = try relayedPair(net)
        var gotB: [[UInt8]] = []
        var gotA: [[UInt8]] = []
        sb.reliable.onReceive = { gotB.append($0) }
        sa.reliable.onReceive = { gotA.append($0) }
        sa.migrate(to: b.address)
        #expect(sa.peerAddress == b.address)
        // B saw an authenticated packet from A's own address, challenged it, A answered: B moved.
        #expect(runUntil(net, seconds: 2) { sb.peerAddress == a.address })
        #expect(b.manager.stats.pathsValidated == 1)
        _ = net.run(for: .seconds(4))  // past the migration timeout: it was confirmed, it stays
        #expect(sa.peerAddress == b.address)
        #expect(a.manager.stats.migrationsReverted == 0)
        // Both ways now direct: the forwarder sees nothing more.
        let before = f.forwarded
        try sa.reliable.send([1, 2, 3])
        try sb.reliable.send([4, 5])
        #expect(runUntil(net, seconds: 2) { gotB == [[1, 2, 3]] && gotA == [[4, 5]] })
        _ = net.run(for: .seconds(3))
        #expect(f.forwarded == before)
    }

    @Test func aMigrationNobodyAnswersGoesBackToTheOldPath() throws {
        let net = SimNetwork(seed: 72)
        let (a, b, f, sa, sb) = try relayedPair(net)
        defer { withExtendedLifetime(b) {} }
        var got: [[UInt8]] = []
        sb.reliable.onReceive = { got.append($0) }
        // Nothing listens there (a probe that lied, a path that closed again).
        sa.migrate(to: PeerAddress(10, 0, 0, 77, port: 4000))
        #expect(runUntil(net, seconds: 5) { sa.peerAddress == f.address })
        #expect(a.manager.stats.migrationsReverted == 1)
        // The session still works, through the forwarder, and was never dropped.
        try sa.reliable.send([9])
        #expect(runUntil(net, seconds: 5) { got == [[9]] })
        #expect(sa.isEstablished && sb.isEstablished)
    }

    @Test func aLatePacketOnTheLeftPathDoesNotPullTheSessionBack() throws {
        let net = SimNetwork(seed: 73)
        let (a, b, f, sa, sb) = try relayedPair(net)
        sa.migrate(to: b.address)
        #expect(runUntil(net, seconds: 2) { sb.peerAddress == a.address })
        let challenges = b.manager.stats.pathChallengesSent
        // A packet of A's, newer than any B has seen, arrives the old way (it was in flight
        // through the relay): B reads it but neither challenges the relay nor moves back.
        var payload: [UInt8] = []
        Frame.segment(seq: 0, last: true, data: [7]).encode(into: &payload)
        var got: [[UInt8]] = []
        sb.reliable.onReceive = { got.append($0) }
        b.manager.receive(try #require(sa.seal(payload, now: net.now)), from: f.address)
        _ = net.run(for: .seconds(1))
        #expect(got == [[7]])
        #expect(b.manager.stats.pathChallengesSent == challenges)
        #expect(sb.peerAddress == a.address)
    }
}
