import NetCore
import NetSim
import Sodium

@testable import Transport

/// A peer on the simulated network: a socket, a demultiplexer and a session manager.
final class SimPeer {
    let socket: SimSocket
    let demux: Demultiplexer
    let manager: SessionManager
    let identity: Identity
    var inbound: [Session] = []

    init(
        _ net: SimNetwork,
        ip: UInt8,
        port: UInt16 = 4000,
        config: SessionManager.Config = .init(),
        identity: Identity = .generate(),
        clockOffset: Nanos = 0
    ) {
        // Every datagram a session sends must fit netcode's 1200 bytes; larger ones are dropped
        // by the simulated network and counted in `net.stats.oversized`.
        net.maxDatagram = Wire.maxDatagram
        socket = net.bind(PeerAddress(10, 0, 0, ip, port: port))
        socket.clockOffset = clockOffset
        demux = Demultiplexer(socket: socket)
        self.identity = identity
        manager = SessionManager(host: socket, demux: demux, identity: identity, config: config)
        manager.onInbound = { [unowned self] s in self.inbound.append(s) }
    }

    var address: PeerAddress { socket.localAddress }
}

/// Runs the simulation until `cond` holds or `seconds` of virtual time pass.
@discardableResult
func runUntil(_ net: SimNetwork, seconds: Int, _ cond: () -> Bool) -> Bool {
    net.run(until: net.now + .seconds(seconds), while: { !cond() })
}

/// Two peers with an established XX session. Returns (initiator side, responder side).
func connectedPair(_ net: SimNetwork, config: SessionManager.Config = .init()) -> (SimPeer, SimPeer, Session, Session)?
{
    let a = SimPeer(net, ip: 1, config: config)
    let b = SimPeer(net, ip: 2, config: config)
    let s = a.manager.connect(to: b.address, mode: .discovered)
    guard runUntil(net, seconds: 30, { s.isEstablished && b.inbound.first?.isEstablished == true }) else { return nil }
    return (a, b, s, b.inbound[0])
}
