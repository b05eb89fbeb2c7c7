import DHT
import NetCore
import NetSim
import NetStack
import Transport

/// A peer on the simulated network at `address`, its DHT seeded by the address's last byte (the
/// wiring the SimNetwork tests of NetStack share).
func simPeer(_ net: SimNetwork, _ address: PeerAddress, bootstrap: [PeerAddress], identity: Identity? = nil) -> Peer {
    var c = DHTConfig()
    c.seed = UInt64(address.ip & 0xff)
    c.bootstrap = bootstrap
    return Peer(host: net.bind(address), dht: c, identity: identity)
}
