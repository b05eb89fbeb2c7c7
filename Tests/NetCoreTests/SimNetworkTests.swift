import Testing
@testable import NetCore

@Suite struct SimNetworkTests {
    /// Datagrams over the network's limit are dropped at the sender and counted, as `UDPHost`
    /// drops them; a protocol with a stricter budget lowers the limit to catch violations.
    @Test func oversizedDatagramsAreDroppedAndCounted() {
        let net = SimNetwork(seed: 1)
        #expect(net.maxDatagram == UDPHost.maxDatagram)
        let a = net.bind(PeerAddress(10, 0, 0, 1, port: 1)), b = net.bind(PeerAddress(10, 0, 0, 2, port: 1))
        var got: [Int] = []
        b.onReceive = { p, _ in got.append(p.count) }
        a.send([UInt8](repeating: 1, count: UDPHost.maxDatagram), to: b.localAddress)
        a.send([UInt8](repeating: 1, count: UDPHost.maxDatagram + 1), to: b.localAddress)
        net.maxDatagram = 1200
        a.send([UInt8](repeating: 1, count: 1200), to: b.localAddress)
        a.send([UInt8](repeating: 1, count: 1201), to: b.localAddress)
        _ = net.run(for: .seconds(1))
        #expect(got == [UDPHost.maxDatagram, 1200])
        #expect(net.stats.oversized == 2 && net.stats.sent == 2)
    }
}
