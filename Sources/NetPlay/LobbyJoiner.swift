import Engine
import Keys
import Lobby
import NetCore

/// A joiner's lobby as a state machine (docs/lobby.md), from the moment its session with the host
/// is up: the hello, the roster (and the mesh it introduces: of each pair of members the one with
/// the greater key dials, the other probes), the settings, the reveal, and the start, checked
/// against the roster's commits. Link events and time in; link actions, lobby events and at the
/// end an outcome out. No sockets, no clock, no randomness of its own (the contribution is passed in).
///
/// After a match (`matchEnded`) it is the lobby again on the same sessions: chat goes on, and the
/// host may offer a rematch, which the player accepts (`acceptRematch`, with a new contribution:
/// the next start must carry it) or declines (`declineRematch`: it leaves). The host leaving, or
/// its session closing, ends the series (`Outcome.ended`).
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
        /// A line of chat the host relayed: the sender's escaped name (from the roster) and the
        /// text escaped (`SafeText`).
        case chat(PeerKey, name: String, text: String)
        /// After a match, the host offers the `match`th of the series.
        case rematchOffered(match: UInt32)
    }

    public enum Outcome: Sendable, Equatable {
        /// The start, its seed checked against the roster; the host's snapshot of the running
        /// match when this is a rejoin or a late spectator (nil for a first-time member, even if
        /// the host sent one: a member that took its seat has no ops to resume).
        case start(LobbyMessage.Start, roster: LobbyMessage.Roster, snapshot: [UInt8]?)
        /// The lobby ended without a match: the line to show.
        case failed(String)
        /// After a match, the series is over: the host left or its session closed (the line to
        /// show; empty when this player left).
        case ended(String)
    }

    public private(set) var config: Config
    public let hostLink: LinkID
    public let hostKey: PeerKey
    public private(set) var roster: LobbyMessage.Roster?
    public private(set) var settings: LobbyMessage.Settings?
    /// Sessions with other members (the mesh), by key; checked against the config at the start.
    public private(set) var direct: [PeerKey: LinkID] = [:]
    public private(set) var outcome: Outcome?
    /// Lobby messages that were malformed or out of place: dropped and counted.
    public private(set) var dropped = 0
    /// After a match (`matchEnded`) until the next start.
    public private(set) var afterMatch = false
    /// The rematch the host offered (the match's number), until this player answers it.
    public private(set) var offer: UInt32?
    /// This player accepted the rematch: the roster, the reveal request and the start follow.
    public private(set) var accepted = false
    /// The escaped names of the players every roster showed, by key (who said a line of chat).
    private var names: [PeerKey: String] = [:]
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
                let line = "the host closed the session (\(reason))"
                outcome = afterMatch ? .ended(line) : .failed(line)
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
        outcome = afterMatch ? .ended("") : .failed("")
    }

    /// A line of chat, to the host (which relays it to everyone, us too). Spectators do not chat.
    public mutating func say(_ text: String) {
        let line = NetPlayChat.bounded(text)
        guard outcome == nil, !config.spectate, !line.isEmpty else { return }
        send(.chat(line))
    }

    // MARK: after the match: the series

    /// Our match is over: the lobby again. `direct`: the sessions with other members the match
    /// ended with; `hostGone`: the host left during the match, or crashed and never came back
    /// (the series is over).
    public mutating func matchEnded(direct: [PeerKey: LinkID], hostGone: Bool) {
        afterMatch = true
        outcome = hostGone ? .ended("the host closed the lobby") : nil
        self.direct = direct
        snapshot = nil
        heldStart = nil
        offer = nil
        accepted = false
    }

    /// Plays the offered rematch: commits to `contribution` (the next start must carry it). A
    /// spectator only watches on (it sends no answer).
    public mutating func acceptRematch(contribution: [UInt8]) {
        guard outcome == nil, offer != nil, !accepted else { return }
        offer = nil
        accepted = true
        guard !config.spectate else { return }
        config.contribution = contribution
        send(.rematchAnswer(.accept(commit: SeedMix.commit(contribution))))
    }

    /// Does not play the offered rematch: the host is told, and this player leaves the lobby.
    public mutating func declineRematch() {
        guard outcome == nil else { return }
        if offer != nil && !config.spectate { send(.rematchAnswer(.decline)) }
        offer = nil
        leave()
    }

    private mutating func message(_ msg: LobbyMessage, now: UInt64) {
        if afterMatch && !accepted {
            // Between matches, before this player accepted a rematch: no reveal, no start.
            switch msg {
            case .revealRequest, .start, .snapshot:
                dropped += 1
                return
            default: break
            }
        }
        switch msg {
        case .settled: break  // the host's match settled after ours
        case .rematchOffer(let n):
            guard afterMatch, !accepted else {
                dropped += 1
                return
            }
            offer = n
            events.append(.rematchOffered(match: n))
        case .chatRelay(let key, let text):
            guard let k = PeerKey(bytes: key), let name = names[k] else {
                dropped += 1
                return
            }
            events.append(.chat(k, name: name, text: NetPlayChat.display(text)))
        case .leave(let reason) where afterMatch:
            outcome = .ended(reason.joinerLine)
        case .roster(let r):
            roster = r
            if !joinedReported, config.spectate || r.members.contains(where: { $0.key == config.me.bytes }) {
                joinedReported = true
                events.append(.joined(players: r.members.count))
            }
            mesh(r)
            for m in r.members {
                guard let k = PeerKey(bytes: m.key) else { continue }
                names[k] = NetPlayNames.display(m.name)
                guard known.insert(k).inserted else { continue }
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
        afterMatch = false
        accepted = false
    }
}
