import Engine
import Keys
import Lobby
import NetCore
import TextOutput

/// The host's lobby as a state machine (docs/lobby.md): link events and time in, link actions and
/// lobby events out; no sockets, no clock, no randomness of its own (the host's seed contribution
/// is passed in). `turf host` drives it with the real event loop, the chaos harness with the
/// simulated network in virtual time.
///
/// Phases: `open` (hellos seat members and spectators, leaves and closed links unseat them, the
/// host may kick), then `revealing` (`requestReveals`: every member opens its seed commit), then
/// `started` (`startIfReady` made the start message and broadcast it).
public struct LobbyHost: Sendable {
    public struct Config: Sendable {
        public var me: PeerKey
        public var name: String
        public var settings: LobbyMessage.Settings
        public var maxPlayers: Int
        public var maxSpectators: Int
        /// How long members have to reveal their contributions before the start leaves them out.
        public var revealTimeoutNanos: UInt64
        public init(
            me: PeerKey,
            name: String,
            settings: LobbyMessage.Settings,
            maxPlayers: Int,
            maxSpectators: Int = 8,
            revealTimeoutNanos: UInt64 = 10_000_000_000
        ) {
            self.me = me
            self.name = name
            self.settings = settings
            self.maxPlayers = maxPlayers
            self.maxSpectators = maxSpectators
            self.revealTimeoutNanos = revealTimeoutNanos
        }
    }

    /// A seat at the table: the host's own (no link) or a member's.
    public struct Seat: Sendable, Equatable {
        public var key: PeerKey
        public var name: String
        public var commit: [UInt8]
        public var link: LinkID?
        public var reveal: [UInt8]?
        public var address: PeerAddress?
        public var relayed: Bool
    }

    /// What happened, for the player (the lobby screen's notice, headless `peer` events).
    public enum Event: Sendable, Equatable {
        case joined(PeerKey, name: String, address: PeerAddress, relayed: Bool)
        case spectating(PeerKey, name: String, address: PeerAddress)
        case left(PeerKey, name: String)
        case kicked(PeerKey, name: String)
        /// Refused by the allow list or a ban (rate-limited hellos are only counted).
        case refused(PeerKey, name: String, reason: LobbyMessage.LeaveReason)
        /// The lobby record (players, addresses) changed: the driver puts it on the DHT again.
        case recordChanged
    }

    public enum Phase: Sendable, Equatable {
        case open
        case revealing(deadline: UInt64)
        case started
    }

    public let config: Config
    public private(set) var seats: [Seat]
    public private(set) var spectators: [PeerKey: LinkID] = [:]
    public private(set) var phase: Phase = .open
    /// Who may sit down: the allow list, kicked keys, the join rate per source address.
    public private(set) var admission: LobbyAdmission
    /// Lobby messages that were malformed, out of place or hostile: dropped and counted.
    public private(set) var dropped = 0
    /// Sessions up whose peer has not said hello yet: its verified key and address.
    private var pending: [LinkID: (key: PeerKey, address: PeerAddress, relayed: Bool)] = [:]
    private var out: [LinkAction] = []
    private var events: [Event] = []

    public init(config: Config, contribution: [UInt8], admission: LobbyAdmission = LobbyAdmission()) {
        self.config = config
        self.admission = admission
        seats = [
            Seat(
                key: config.me,
                name: config.name,
                commit: SeedMix.commit(contribution),
                link: nil,
                reveal: contribution,
                address: nil,
                relayed: false
            )
        ]
    }

    /// The actions and events produced since the last call, oldest first.
    public mutating func take() -> (actions: [LinkAction], events: [Event]) {
        defer {
            out.removeAll()
            events.removeAll()
        }
        return (out, events)
    }

    /// The roster as members see it: the host first (path local), each member's path and the
    /// address the host sees it at (relay-virtual addresses are not shown).
    public var roster: LobbyMessage {
        .roster(
            .init(
                members: seats.map {
                    .init(
                        key: $0.key.bytes,
                        name: $0.name,
                        commit: $0.commit,
                        path: $0.link == nil ? .local : $0.relayed ? .relayed : .direct,
                        addresses: $0.relayed ? [] : $0.address.map { [$0] } ?? []
                    )
                },
                maxPlayers: UInt8(config.maxPlayers)
            )
        )
    }

    /// Every member's and spectator's link.
    public var links: [LinkID] { seats.compactMap(\.link) + spectators.values.sorted() }

    private mutating func send(_ id: LinkID, _ m: LobbyMessage) { out.append(.send(id, m.encode())) }

    private mutating func broadcast(_ m: LobbyMessage) {
        for l in links { send(l, m) }
    }

    // MARK: link events

    public mutating func handle(_ e: LinkEvent, now: UInt64) {
        switch e {
        case .opened(let id, let key, let address, let relayed):
            pending[id] = (key, address, relayed)
        case .closed(let id, _):
            pending[id] = nil
            if let k = spectators.first(where: { $0.value == id })?.key { spectators[k] = nil }
            seatLeft(link: id)
        case .message(let id, let bytes):
            guard let msg = try? LobbyMessage.decode(bytes) else {
                dropped += 1
                return
            }
            switch msg {
            case .hello(let h): hello(h, on: id, now: now)
            case .leave: seatLeft(link: id)
            case .reveal(let r): reveal(r, on: id)
            default: dropped += 1
            }
        }
    }

    /// A link's session moved (a relayed member found its direct path, or roamed): the roster says so.
    public mutating func moved(_ id: LinkID, to address: PeerAddress, relayed: Bool) {
        if var p = pending[id] {
            p.address = address
            p.relayed = relayed
            pending[id] = p
        }
        guard let i = seats.firstIndex(where: { $0.link == id }) else { return }
        guard seats[i].address != address || seats[i].relayed != relayed else { return }
        seats[i].address = address
        seats[i].relayed = relayed
        broadcast(roster)
    }

    private mutating func hello(_ h: LobbyMessage.Hello, on id: LinkID, now: UInt64) {
        guard phase == .open else {
            // Past the lobby, a hello is the match session's (a rejoiner or a late spectator).
            dropped += 1
            return
        }
        guard let p = pending[id], h.key == p.key.bytes, p.key != config.me else {
            dropped += 1
            send(id, .leave(.refused))
            return
        }
        let key = p.key
        let name = NetPlayNames.display(h.name)
        // Friends only, kicked keys, and the join rate per source address.
        if case .refuse(let why) = admission.hello(key: key.bytes, from: p.address, now: now) {
            send(id, .leave(why))
            out.append(.closeWhenFlushed(id))
            if why != .tooManyJoins { events.append(.refused(key, name: name, reason: why)) }
            return
        }
        if h.spectate {
            // A spectator: no seat; it gets the roster, the settings and the start.
            guard spectators.count < config.maxSpectators || spectators[key] != nil else {
                send(id, .leave(.full))
                return
            }
            spectators[key] = id
            send(id, roster)
            send(id, .settings(config.settings))
            events.append(.spectating(key, name: name, address: p.address))
            return
        }
        if let i = seats.firstIndex(where: { $0.key == key }) {
            // The same key again (a restarted joiner): its new session replaces the old one.
            if let old = seats[i].link, old != id { out.append(.close(old)) }
            seats[i].link = id
            seats[i].address = p.address
            seats[i].relayed = p.relayed
            seats[i].commit = h.commit
            seats[i].name = name
        } else {
            guard seats.count < config.maxPlayers else {
                send(id, .leave(.full))
                return
            }
            seats.append(
                Seat(
                    key: key,
                    name: name,
                    commit: h.commit,
                    link: id,
                    reveal: nil,
                    address: p.address,
                    relayed: p.relayed
                )
            )
        }
        events.append(.joined(key, name: name, address: p.address, relayed: p.relayed))
        broadcast(roster)
        broadcast(.settings(config.settings))
        events.append(.recordChanged)
    }

    /// A member's link closed or it said leave: off the roster, and everyone told.
    private mutating func seatLeft(link id: LinkID) {
        guard let i = seats.firstIndex(where: { $0.link == id }) else { return }
        let gone = seats.remove(at: i)
        events.append(.left(gone.key, name: gone.name))
        broadcast(roster)
    }

    private mutating func reveal(_ r: [UInt8], on id: LinkID) {
        guard case .revealing = phase, let i = seats.firstIndex(where: { $0.link == id }),
            SeedMix.opens(r, seats[i].commit)
        else {
            dropped += 1
            return
        }
        seats[i].reveal = r
    }

    // MARK: the host's commands

    /// The host kicked a member: told why, off the roster, banned from this lobby.
    public mutating func kick(_ key: PeerKey) {
        guard phase == .open, let i = seats.firstIndex(where: { $0.key == key && $0.link != nil }),
            let link = seats[i].link
        else { return }
        let gone = seats.remove(at: i)
        admission.kick(gone.key.bytes)
        send(link, .leave(.kicked))
        out.append(.closeWhenFlushed(link))
        events.append(.kicked(gone.key, name: gone.name))
        broadcast(roster)
        events.append(.recordChanged)
    }

    /// The host leaves: everyone told, every link closed once the leave went out.
    public mutating func leave() {
        broadcast(.leave(.quit))
        for l in links { out.append(.closeWhenFlushed(l)) }
        pending.removeAll()
    }

    /// The roster is final: every member reveals the contribution it committed to.
    public mutating func requestReveals(now: UInt64) {
        guard phase == .open else { return }
        phase = .revealing(deadline: now + config.revealTimeoutNanos)
        for s in seats { if let l = s.link { send(l, .revealRequest) } }
    }

    /// Once every member revealed (or the reveal deadline passed: the silent ones are told and
    /// left out), the start: the seed mixed from every reveal, the config `makeConfig` builds for
    /// the seated players, tick 0 at `startAt` on the host's clock. Broadcast to members and
    /// spectators. Nil while reveals are still due.
    public mutating func startIfReady(
        now: UInt64,
        startAt: UInt64,
        makeConfig: (_ seed: UInt64, _ players: [PlayerInfo]) throws -> MatchConfig
    ) rethrows -> LobbyMessage.Start? {
        guard case .revealing(let deadline) = phase else { return nil }
        guard !seats.contains(where: { $0.reveal == nil }) || now >= deadline else { return nil }
        for s in seats where s.reveal == nil {
            if let l = s.link { send(l, .leave(.refused)) }
        }
        seats.removeAll { $0.reveal == nil }
        let reveals = seats.compactMap(\.reveal)
        let players = seats.map { PlayerInfo(name: $0.name, kind: .human, owner: $0.key) }
        let matchConfig = try makeConfig(SeedMix.seed(reveals), players)
        let start = LobbyMessage.Start(config: matchConfig, startAt: startAt, reveals: reveals)
        phase = .started
        broadcast(.start(start))
        return start
    }
}

/// Names peers choose, as shown and recorded: escaped, at most 24 characters and
/// `LobbyMessage.maxNameBytes` bytes of UTF-8 (a replay holds 64).
public enum NetPlayNames {
    public static func display(_ raw: String) -> String { bounded(SafeText.display(raw, limit: 24)) }

    /// A name for hello: whole characters, at most `LobbyMessage.maxNameBytes` bytes of UTF-8.
    public static func bounded(_ raw: String) -> String {
        var out = ""
        for c in raw.prefix(24) {
            guard out.utf8.count + String(c).utf8.count <= LobbyMessage.maxNameBytes else { break }
            out.append(c)
        }
        return out
    }
}
