import NetCore
import NetSim
import Testing

/// The demultiplexer is a socket's one receiver; components register by first byte.
@Suite struct DemultiplexerTests {
    /// The socket holds its demultiplexer: routing goes on after its creator let go of it, and
    /// unclaimed first bytes are dropped and counted.
    @Test func theSocketKeepsItsDemultiplexer() {
        let net = SimNetwork(seed: 5, conditions: .perfect)
        let a = net.bind(PeerAddress(10, 0, 0, 1, port: 1))
        let b = net.bind(PeerAddress(10, 0, 0, 2, port: 2))
        var got: [[UInt8]] = []
        weak var weakDemux: Demultiplexer?
        do {
            let d = Demultiplexer(socket: b)
            d.route([0x01]) { p, _ in got.append(p) }
            weakDemux = d
        }
        a.send([0x01, 0x02], to: b.localAddress)
        a.send([0x09], to: b.localAddress)
        a.send([], to: b.localAddress)
        net.runUntilIdle()
        #expect(got == [[0x01, 0x02]])
        #expect(weakDemux?.delivered == 1)
        #expect(weakDemux?.dropped == 2)
        #expect(weakDemux?.isRouted(0x01) == true)
        #expect(weakDemux?.isRouted(0x09) == false)
        // Closing the socket releases it.
        b.close()
        #expect(weakDemux == nil)
    }

    /// A second receiver on the same socket, or a first byte claimed twice, is a programming
    /// error that stops the process at once (instead of one component silently cutting another
    /// off, as when every component set the socket's receive slot).
    @Test func aSecondReceiverIsRefused() async {
        await #expect(processExitsWith: .failure) {
            let net = SimNetwork(seed: 1)
            let s = net.bind(PeerAddress(10, 0, 0, 1, port: 1))
            _ = Demultiplexer(socket: s)
            _ = Demultiplexer(socket: s)
        }
        await #expect(processExitsWith: .failure) {
            let net = SimNetwork(seed: 1)
            let s = net.bind(PeerAddress(10, 0, 0, 1, port: 1))
            let d = Demultiplexer(socket: s)
            d.route([0x64]) { _, _ in }
            d.route([0x01, 0x64]) { _, _ in }
        }
    }
}
