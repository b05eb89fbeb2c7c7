import NetCore
import NetSim

/// A dual-stack host on the simulated network, as `UDPHost` is when bound to `[::]`: one
/// `NetworkHost` whose local address is `[::]:port`, made of an IPv4 and an IPv6 simulated socket.
/// Datagrams to IPv4 addresses leave from the IPv4 one, to IPv6 addresses from the IPv6 one, and
/// both deliver to the one receiver, so peers see the host at the address of their own family.
package final class DualStackSimHost: NetworkHost {
    package let v4: SimSocket
    package let v6: SimSocket

    /// Binds `v4` and `v6` (which should share a port, as one dual-stack socket's two faces do).
    package init(network: SimNetwork, v4: PeerAddress, v6: PeerAddress) {
        precondition(!v4.isIPv6 && v6.isIPv6, "an IPv4 and an IPv6 address")
        self.v4 = network.bind(v4)
        self.v6 = network.bind(v6)
    }

    package var localAddress: PeerAddress { .init(ip6: .any, port: v4.localAddress.port) }

    package var onReceive: (([UInt8], PeerAddress) -> Void)? {
        didSet {
            v4.onReceive = onReceive
            v6.onReceive = onReceive
        }
    }

    package func send(_ payload: [UInt8], to destination: PeerAddress) {
        (destination.isIPv6 ? v6 : v4).send(payload, to: destination)
    }

    package var now: Nanos { v4.now }
    package var isInLoop: Bool { v4.isInLoop }

    @discardableResult
    package func schedule(after delay: Nanos, _ action: @escaping () -> Void) -> TimerToken {
        v4.schedule(after: delay, action)
    }

    /// Unbinds both faces.
    package func close() {
        v4.close()
        v6.close()
    }
}
