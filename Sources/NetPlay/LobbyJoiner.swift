import Engine
import Keys
import Lobby
import NetCore

/// A joiner's lobby as a state machine (docs/lobby.md), from the moment its session with the host
/// is up: the hello, the roster (and the mesh it introduces: of each pair of members the one with
/// the greater key dials, the other probes), the settings, the reveal, and the start, checked
/// against the roster's commits. Link events and time in; link actions, lobby events and at the
/// end an outcome out. No sockets, no clock, no randomness of its own (the contribution is passed in).
public struct LobbyJoiner: Sendable {
    public struct Config: Sendable {
        public var me: PeerKey
        public var name: String
        /// The seed contribution this joiner commits to in its hello and reveals when asked.
        public var contribution: [UInt8]
        public var spectate: Bool
        /// Test-only (docs/lobby.md, "Test-only switches"): act on the start this much later.
        public var holdStartNanos: UInt64?
        public init(
            me: PeerKey,
            name: String,
            contribution: [UInt8],
            spectate: Bool = false,
            holdStartNanos: UInt64? = nil
        ) {
            self.me = me
            self.name = name
            self.contribution = contribution
            self.spectate = spectate
            self.holdStartNanos = holdStartNanos
        }
    }

    public enum Event: Sendable, Equatable {
        /// We are on the roster (or spectating): the first roster that says so.
        case joined(players: Int)
        /// A member the roster shows for the first time.
        case member(PeerKey, name: String, path: LobbyMessage.Member.Path)
    }

    public enum Outcome: Sendable, Equatable {
        /// The start, its seed checked against the roster; the host's snapshot of the running
        /// match when this is a rejoin or a late spectator (nil for a first-time member, even if
        /// the host sent one: a member that took its seat has no ops to resume).
        case start(LobbyMessage.Start, roster: LobbyMessage.Roster, snapshot: [UInt8]?)
        /// The lobby ended without a match: the line to show.
        case failed(String)
    }

    public let config: Config
    public let hostLink: LinkID
    public let hostKey: PeerKey
    public private(set) var roster: LobbyMessage.Roster?
    public private(set) var settings: LobbyMessage.Settings?
    /// Sessions with other members (the mesh), by key; checked against the config at the start.
    public private(set) var direct: [PeerKey: LinkID] = [:]
    public private(set) var outcome: Outcome?
    /// Lobby messages that were malformed or out of place: dropped and counted.
    public private(set) var dropped = 0
    private var snapshot: [UInt8]?
    private var heldStart: (start: LobbyMessage.Start, due: UInt64)?
    private var known: Set<PeerKey>
    private var joinedReported = false
    private var dialed = Set<PeerKey>()
    private var probed = Set<PeerKey>()
    private var out: [LinkAction] = []
    private var events: [Event] = []

    /// Says hello to the host on `hostLink` (whose key the handshake verified).
    public init(config: Config, hostLink: LinkID, hostKey: PeerKey) {
        self.config = config
        self.hostLink = hostLink
        self.hostKey = hostKey
        known = [config.me]
        send(
            .hello(
                .init(
                    name: NetPlayNames.bounded(config.name),
                    key: config.me.bytes,
                    commit: SeedMix.commit(config.contribution),
                    spectate: config.spectate
                )
            )
        )
    }

    public mutating func take() -> (actions: [LinkAction], events: [Event]) {
        defer {
            out.removeAll()
            events.removeAll()
        }
        return (out, events)
    }

    private mutating func send(_ m: LobbyMessage) { out.append(.send(hostLink, m.encode())) }

    public mutating func handle(_ e: LinkEvent, now: UInt64) {
        guard outcome == nil else { return }
        switch e {
        case .opened(let id, let key, _, _):
            if id != hostLink && key != hostKey { direct[key] = id }
        case .closed(let id, let reason):
            if id == hostLink {
                outcome = .failed("the host closed the session (\(reason))")
                return
            }
            direct = direct.filter { $0.value != id }
        case .message(let id, let bytes):
            guard id == hostLink, let msg = try? LobbyMessage.decode(bytes) else {
                dropped += 1
                return
            }
            message(msg, now: now)
        }
    }

    /// Acts on a start it was told to hold (test-only) once it is due.
    public mutating func tick(now: UInt64) {
        guard outcome == nil, let h = heldStart, now >= h.due else { return }
        begin(h.start)
    }

    /// The player left the lobby: the host is told, the session closes once the leave went out.
    public mutating func leave() {
        guard outcome == nil else { return }
        send(.leave(.quit))
        out.append(.closeWhenFlushed(hostLink))
        outcome = .failed("")
    }

    private mutating func message(_ msg: LobbyMessage, now: UInt64) {
        switch msg {
        case .roster(let r):
            roster = r
            if !joinedReported, config.spectate || r.members.contains(where: { $0.key == config.me.bytes }) {
                joinedReported = true
                events.append(.joined(players: r.members.count))
            }
            mesh(r)
            for m in r.members {
                guard let k = PeerKey(bytes: m.key), known.insert(k).inserted else { continue }
                events.append(.member(k, name: NetPlayNames.display(m.name), path: m.path))
            }
        case .settings(let s): settings = s
        case .snapshot(let b): snapshot = b
        case .revealRequest: send(.reveal(config.contribution))
        case .leave(let reason): outcome = .failed(reason.joinerLine)
        case .start(let s):
            if let hold = config.holdStartNanos, heldStart == nil {
                heldStart = (s, now + hold)
                return
            }
            begin(s)
        default: dropped += 1
        }
    }

    /// The mesh: the member with the greater key dials (each pair once), by IK; a spectator dials
    /// no one (it hears the match from the host). The host's roster introduces the pair: both get
    /// it at about the same moment, and the member that does not dial probes the dialer's
    /// addresses (the host's view of its NAT mapping), so that its own NAT lets the handshake in:
    /// a punch, as with the host (docs/nat.md).
    private mutating func mesh(_ r: LobbyMessage.Roster) {
        guard !config.spectate else { return }
        var toProbe: [PeerAddress] = []
        for m in r.members where m.path != .local {
            guard let k = PeerKey(bytes: m.key), k != config.me else { continue }
            if config.me < k {
                if probed.insert(k).inserted { toProbe += m.addresses }
            } else if dialed.insert(k).inserted, !m.addresses.isEmpty {
                out.append(.dial(k, addresses: m.addresses))
            }
        }
        if !toProbe.isEmpty { out.append(.probe(toProbe)) }
    }

    /// The start: a first-time member checks that it carries its own reveal (it took the seat, so
    /// nothing was ever sent under its key and its op log starts at seq 0); such a member never
    /// resumes from a snapshot, even if a host sent one (it could forge our own ops).
    private mutating func begin(_ s: LobbyMessage.Start) {
        let me = config.me.bytes
        if snapshot != nil && SeedMix.revealed(config.contribution, in: s, by: me) { snapshot = nil }
        guard let r = roster,
            SeedMix.verify(s, roster: r, myKey: me, myContribution: snapshot == nil ? config.contribution : nil)
        else {
            send(.leave(.quit))
            outcome = .failed("the host's match seed does not match the players' commitments; leaving")
            return
        }
        outcome = .start(s, roster: r, snapshot: snapshot)
    }
}
