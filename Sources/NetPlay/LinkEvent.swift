import Keys
import NetCore

/// A link: one session with one peer, named by the transport's local index for it. The lobby and
/// match state machines name peers by `PeerKey` and sessions by `LinkID`; they never hold a session.
public typealias LinkID = UInt32

/// What the transport tells the networked game about its links: a session opened (with the peer's
/// verified key, where it is, and whether it runs through a relay), closed, or delivered a
/// reliable (control) message. Plain values: they cross from the event loop to the game's thread.
public enum LinkEvent: Sendable, Equatable {
    case opened(LinkID, key: PeerKey, address: PeerAddress, relayed: Bool)
    case closed(LinkID, reason: String)
    case message(LinkID, bytes: [UInt8])
}

/// The control messages and link commands a state machine asks its driver to carry out. The driver
/// (turf's event loop, or the simulation) does them in order.
public enum LinkAction: Sendable, Equatable {
    /// The message on the link's reliable channel.
    case send(LinkID, [UInt8])
    /// The datagram on the link's unreliable channel (a match's traffic).
    case datagram(LinkID, [UInt8])
    /// Close the link now.
    case close(LinkID)
    /// Close the link once what was sent on it has been acknowledged (or after a bound): a leave
    /// or a refusal reaches the peer before its session goes (never a sleep on the game's thread).
    case closeWhenFlushed(LinkID)
    /// Open a session to `key` at each address (Noise IK: only that key can answer).
    case dial(PeerKey, addresses: [PeerAddress])
    /// Send a few probes to the addresses, so our NAT lets the peer's handshake in (a punch).
    case probe([PeerAddress])
}
