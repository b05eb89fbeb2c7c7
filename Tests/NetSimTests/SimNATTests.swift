import NetCore
import Testing

@testable import NetSim

/// The NAT model of `bench internet` (SimNAT): each mapping and filtering behaviour it claims.
@Suite struct SimNATTests {
    /// Two servers on the open internet that record the source each datagram came from.
    private func servers(_ net: SimNetwork) -> (SimSocket, SimSocket, () -> [PeerAddress]) {
        let s1 = net.bind(PeerAddress(11, 0, 0, 1, port: 6881))
        let s2 = net.bind(PeerAddress(11, 0, 1, 1, port: 6881))
        var seen: [PeerAddress] = []
        s1.onReceive = { _, from in seen.append(from) }
        s2.onReceive = { _, from in seen.append(from) }
        return (s1, s2, { seen })
    }

    @Test func consistentMapsOnePortForEveryDestination() {
        let net = SimNetwork(seed: 1, conditions: .perfect)
        let (s1, s2, seen) = servers(net)
        let nat = SimNAT.consistent(publicIP: 0xC612_0001, seed: 1)
        let inside = PeerAddress(10, 0, 0, 2, port: 7000)
        net.attach(nat, inside: [inside])
        let player = net.bind(inside)
        player.send([1], to: s1.localAddress)
        player.send([1], to: s2.localAddress)
        _ = net.run(for: .seconds(1))
        #expect(seen().count == 2)
        #expect(Set(seen()).count == 1)
        #expect(seen()[0].ip == 0xC612_0001)
        // Port preservation: the inside port was free.
        #expect(seen()[0].port == 7000)
    }

    @Test func randomMapsANewPortPerDestination() {
        let net = SimNetwork(seed: 1, conditions: .perfect)
        let (s1, s2, seen) = servers(net)
        let nat = SimNAT.random(publicIP: 0xC612_0001, seed: 1)
        let inside = PeerAddress(10, 0, 0, 2, port: 7000)
        net.attach(nat, inside: [inside])
        let player = net.bind(inside)
        player.send([1], to: s1.localAddress)
        player.send([1], to: s2.localAddress)
        player.send([1], to: s1.localAddress)
        _ = net.run(for: .seconds(1))
        #expect(seen().count == 3)
        #expect(seen()[0] != seen()[1])
        // The same destination keeps its mapping.
        #expect(seen()[0] == seen()[2])
    }

    @Test func filterDropsUnsolicitedAndLetsAnswersIn() {
        let net = SimNetwork(seed: 1, conditions: .perfect)
        let (s1, s2, seen) = servers(net)
        let nat = SimNAT.consistent(publicIP: 0xC612_0001, seed: 1)
        let inside = PeerAddress(10, 0, 0, 2, port: 7000)
        net.attach(nat, inside: [inside])
        let player = net.bind(inside)
        var got: [PeerAddress] = []
        player.onReceive = { _, from in got.append(from) }
        player.send([1], to: s1.localAddress)
        _ = net.run(for: .seconds(1))
        let mapped = seen()[0]
        s1.send([2], to: mapped)  // an answer: in
        s2.send([3], to: mapped)  // unsolicited: dropped
        _ = net.run(for: .seconds(1))
        #expect(got == [s1.localAddress])
        #expect(net.stats.filtered == 1)
        // After the mapping expired, even the server's datagrams are dropped.
        _ = net.run(for: .seconds(200))
        s1.send([4], to: mapped)
        _ = net.run(for: .seconds(1))
        #expect(got.count == 1)
    }

    @Test func ipv6FirewallDropsUnsolicited() {
        let net = SimNetwork(seed: 1, conditions: .perfect)
        let a = PeerAddress(ip6: IPv6Address(hi: 0x2001_0DB8_0001_0000, lo: 1), port: 7000)
        let b = PeerAddress(ip6: IPv6Address(hi: 0x2001_0DB8_0002_0000, lo: 1), port: 7000)
        net.attach(SimNAT.firewall(seed: 1), inside: [a])
        let sa = net.bind(a)
        let sb = net.bind(b)
        var atA: [PeerAddress] = []
        var atB: [PeerAddress] = []
        sa.onReceive = { _, from in atA.append(from) }
        sb.onReceive = { _, from in atB.append(from) }
        sb.send([1], to: a)  // unsolicited: dropped
        _ = net.run(for: .seconds(1))
        #expect(atA.isEmpty)
        sa.send([2], to: b)  // no translation: b sees a's own address
        _ = net.run(for: .seconds(1))
        #expect(atB == [a])
        sb.send([3], to: a)  // now asked for
        _ = net.run(for: .seconds(1))
        #expect(atA == [b])
    }

    @Test func cgnatSharesPublicIPsAndDoesNotHairpin() {
        let net = SimNetwork(seed: 1, conditions: .perfect)
        let (s1, _, seen) = servers(net)
        let nat = SimNAT.cgnat(publicIPs: [0xC612_0001], seed: 1)
        let a = PeerAddress(100, 64, 0, 2, port: 7000)
        let b = PeerAddress(100, 64, 0, 3, port: 7000)
        net.attach(nat, inside: [a, b])
        let sa = net.bind(a)
        let sb = net.bind(b)
        var atB = 0
        sb.onReceive = { _, _ in atB += 1 }
        sa.send([1], to: s1.localAddress)
        sb.send([1], to: s1.localAddress)
        _ = net.run(for: .seconds(1))
        #expect(seen().count == 2)
        #expect(seen()[0].ip == seen()[1].ip)
        #expect(seen()[0].port != seen()[1].port)
        // b opens its mapping towards a's public endpoint; a's datagram to it would need a hairpin.
        let bPublic = seen()[1]
        sb.send([2], to: seen()[0])
        sa.send([3], to: bPublic)
        _ = net.run(for: .seconds(1))
        #expect(atB == 0)
        #expect(nat.stats.hairpinDropped == 2)
    }
}
