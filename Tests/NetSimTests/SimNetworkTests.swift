import NetCore
import Testing

@testable import NetSim

@Suite struct SimNetworkTests {
    /// Datagrams over the network's limit are dropped at the sender and counted, as `UDPHost`
    /// drops them; a protocol with a stricter budget lowers the limit to catch violations.
    @Test func oversizedDatagramsAreDroppedAndCounted() {
        let net = SimNetwork(seed: 1)
        #expect(net.maxDatagram == maxUDPDatagram)
        let a = net.bind(PeerAddress(10, 0, 0, 1, port: 1))
        let b = net.bind(PeerAddress(10, 0, 0, 2, port: 1))
        var got: [Int] = []
        b.onReceive = { p, _ in got.append(p.count) }
        a.send([UInt8](repeating: 1, count: maxUDPDatagram), to: b.localAddress)
        a.send([UInt8](repeating: 1, count: maxUDPDatagram + 1), to: b.localAddress)
        a.maxDatagram = 1200
        a.send([UInt8](repeating: 1, count: 1200), to: b.localAddress)
        a.send([UInt8](repeating: 1, count: 1201), to: b.localAddress)
        // A socket bound after the network's limit changed gets the new limit.
        net.maxDatagram = 1000
        let c = net.bind(PeerAddress(10, 0, 0, 3, port: 1))
        #expect(c.maxDatagram == 1000)
        c.send([UInt8](repeating: 1, count: 1001), to: b.localAddress)
        // An attacker's raw socket can send what the network carries; receivers must cope.
        c.maxDatagram = 65_507
        c.send([UInt8](repeating: 1, count: 4000), to: b.localAddress)
        _ = net.run(for: .seconds(1))
        #expect(got == [maxUDPDatagram, 1200, 4000])
        #expect(net.stats.oversized == 3 && net.stats.sent == 3)
    }
}
