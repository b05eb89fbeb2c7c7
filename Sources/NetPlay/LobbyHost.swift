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
/// `started` (`startIfReady` made the start message and broadcast it). After the match
/// (`matchEnded`) `ended`: the same seats on the same sessions, chat goes on; `offerRematch` makes
/// it `offering` (each member accepts with a new commit, or declines and leaves), and once every
/// member answered, `revealing` again: the next match of the series starts as the first did.
/// Chat is relayed in every phase the driver feeds it (docs/lobby.md, "Chat").
public struct LobbyHost: Sendable {
    public struct Config: Sendable {
        public var me: PeerKey
        public var name: String
        public var settings: LobbyMessage.Settings
        public var maxPlayers: Int
        public var maxSpectators: Int
        /// How long members have to reveal their contributions before the start leaves them out.
        public var revealTimeoutNanos: UInt64
        /// How long members have to answer a rematch offer before their seats go.
        public var rematchTimeoutNanos: UInt64
        /// Each sender's chat allowance (the host enforces it; more is dropped and counted).
        public var chatLimit: ChatLimit
        public init(
            me: PeerKey,
            name: String,
            settings: LobbyMessage.Settings,
            maxPlayers: Int,
            maxSpectators: Int = 8,
            revealTimeoutNanos: UInt64 = 10_000_000_000,
            rematchTimeoutNanos: UInt64 = 60_000_000_000,
            chatLimit: ChatLimit = ChatLimit()
        ) {
            self.me = me
            self.name = name
            self.settings = settings
            self.maxPlayers = maxPlayers
            self.maxSpectators = maxSpectators
            self.revealTimeoutNanos = revealTimeoutNanos
            self.rematchTimeoutNanos = rematchTimeoutNanos
            self.chatLimit = chatLimit
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
        /// The member says it relays for others (`LobbyMessage.relayService`).
        public var relaysForOthers = false
        /// How often it said so, or took it back: past `maxRelayServiceChanges`, dropped.
        var relayServiceChanges = 0
    }

    /// Most `relayService` changes a member may announce (each one puts the lobby record again).
    public static let maxRelayServiceChanges = 16
    /// The members that relay for others, reached directly (at most `LobbyRecord.maxRelays`, in
    /// seat order): the host registers its lobby there first; the lobby record lists them (`r`).
    public var memberRelays: [PeerAddress] {
        Array(
            seats.filter { $0.link != nil && $0.relaysForOthers && !$0.relayed }.compactMap(\.address)
                .prefix(LobbyRecord.maxRelays)
        )
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
        /// A line of chat the host relayed to everyone (its own too): the sender's escaped name
        /// and the text escaped (`SafeText`: no control or bidi character left).
        case chat(PeerKey, name: String, text: String)
        /// A member accepted the rematch offer.
        case accepted(PeerKey, name: String)
        /// A member declined the rematch offer (it leaves the lobby).
        case declined(PeerKey, name: String)
        /// Every member answered the rematch offer (or its time ran out) and none plays again:
        /// back to `ended`, with the host alone.
        case rematchCancelled
    }

    public enum Phase: Sendable, Equatable {
        case open
        case revealing(deadline: UInt64)
        case started
        /// After a match: the end screens, chat; the host may offer a rematch.
        case ended
        /// A rematch offered: waiting for every member's answer until `deadline`.
        case offering(deadline: UInt64)
    }

    public let config: Config
    public private(set) var seats: [Seat]
    public private(set) var spectators: [PeerKey: LinkID] = [:]
    public private(set) var phase: Phase = .open
    /// Who may sit down: the allow list, kicked keys, the join rate per source address.
    public private(set) var admission: LobbyAdmission
    /// Lobby messages that were malformed, out of place or hostile: dropped and counted.
    public private(set) var dropped = 0
    /// The number of the match this lobby started last (or starts next while revealing): 1, then
    /// one more for each rematch.
    public private(set) var match: UInt32 = 1
    /// Lines of chat dropped because their sender was over its allowance.
    public private(set) var chatDropped = 0
    /// Members whose answer to the rematch offer is still due.
    public private(set) var awaitingAnswer: Set<PeerKey> = []
    private var chatBuckets: [PeerKey: ChatLimit.Bucket] = [:]
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
            seatLeft(link: id, now: now)
        case .message(let id, let bytes):
            guard let msg = try? LobbyMessage.decode(bytes) else {
                dropped += 1
                return
            }
            switch msg {
            case .hello(let h): hello(h, on: id, now: now)
            case .leave: seatLeft(link: id, now: now)
            case .reveal(let r): reveal(r, on: id)
            case .chat(let text): chat(text, on: id, now: now)
            case .rematchAnswer(let a): answer(a, on: id, now: now)
            case .settled: break  // a member's match settled after ours: nothing to do
            case .relayService(let on): relayService(on, on: id)
            default: dropped += 1
            }
        }
    }

    /// A member says whether it relays for others now. From anyone but a seated member, or past
    /// `maxRelayServiceChanges` changes, dropped and counted.
    private mutating func relayService(_ on: Bool, on id: LinkID) {
        guard let i = seats.firstIndex(where: { $0.link == id }),
            seats[i].relayServiceChanges < Self.maxRelayServiceChanges
        else {
            dropped += 1
            return
        }
        guard seats[i].relaysForOthers != on else { return }
        seats[i].relaysForOthers = on
        seats[i].relayServiceChanges += 1
        events.append(.recordChanged)
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
            // Past the lobby, a hello is the match session's (a rejoiner or a late spectator);
            // between the matches of a series nobody new sits down (not built yet).
            dropped += 1
            if phase == .ended || isOffering {
                send(id, .leave(.started))
                out.append(.closeWhenFlushed(id))
            }
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
    private mutating func seatLeft(link id: LinkID, now: UInt64) {
        guard let i = seats.firstIndex(where: { $0.link == id }) else { return }
        let gone = seats.remove(at: i)
        chatBuckets[gone.key] = nil
        events.append(.left(gone.key, name: gone.name))
        if isOffering {
            // Its answer is no longer due; the roster goes out with the rematch's commits.
            awaitingAnswer.remove(gone.key)
            rematchAnswered(now: now)
        } else {
            broadcast(roster)
        }
    }

    private var isOffering: Bool {
        if case .offering = phase { return true }
        return false
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

    // MARK: chat

    /// The host says a line: relayed to everyone at once (the host's own lines are not limited).
    public mutating func say(_ text: String) {
        let line = NetPlayChat.bounded(text)
        guard !line.isEmpty else { return }
        relay(line, from: config.me, name: config.name)
    }

    /// A line from a member: within its sender's allowance, relayed to everyone (the sender too:
    /// the echo is its confirmation, and every screen shows the lines in the host's order).
    private mutating func chat(_ text: String, on id: LinkID, now: UInt64) {
        guard let seat = seats.first(where: { $0.link == id }) else {
            dropped += 1  // spectators and strangers do not chat
            return
        }
        // One allowance per seated key (the others' went with their seats).
        if chatBuckets.count > seats.count {
            chatBuckets = chatBuckets.filter { k, _ in seats.contains { $0.key == k } }
        }
        var bucket = chatBuckets[seat.key] ?? config.chatLimit.full(now: now)
        guard config.chatLimit.take(&bucket, now: now) else {
            chatBuckets[seat.key] = bucket
            chatDropped += 1
            return
        }
        chatBuckets[seat.key] = bucket
        relay(text, from: seat.key, name: seat.name)
    }

    private mutating func relay(_ text: String, from key: PeerKey, name: String) {
        broadcast(.chatRelay(key: key.bytes, text: text))
        events.append(.chat(key, name: name, text: NetPlayChat.display(text)))
    }

    // MARK: after the match: the series

    /// The match is over on this peer: the lobby again, on the sessions the match ended with.
    /// `links`: each peer's session now (a rejoiner's new one; spectators that arrived mid-match);
    /// `gone`: members that left during the match or never came back (their seats go).
    public mutating func matchEnded(links: [PeerKey: LinkID], gone: Set<PeerKey>) {
        guard phase == .started else { return }
        phase = .ended
        pending.removeAll()
        var kept: [Seat] = []
        for var s in seats {
            guard s.link != nil else {
                kept.append(s)
                continue
            }
            guard let l = links[s.key], !gone.contains(s.key) else {
                events.append(.left(s.key, name: s.name))
                if let l = links[s.key] {
                    send(l, .leave(.quit))
                    out.append(.closeWhenFlushed(l))
                }
                continue
            }
            s.link = l
            s.reveal = nil
            kept.append(s)
        }
        seats = kept
        spectators = [:]
        for (k, l) in links where !seats.contains(where: { $0.key == k }) && !gone.contains(k) {
            spectators[k] = l
        }
        events.append(.recordChanged)
    }

    /// The host offers the next match of the series: every member answers (a new commit, or a
    /// decline) within `rematchTimeoutNanos`; the host's own seat commits to `contribution`.
    public mutating func offerRematch(contribution: [UInt8], now: UInt64) {
        guard phase == .ended, seats.count > 1 else { return }
        match += 1
        phase = .offering(deadline: now + config.rematchTimeoutNanos)
        seats[0].commit = SeedMix.commit(contribution)
        seats[0].reveal = contribution
        awaitingAnswer = Set(seats.dropFirst().map(\.key))
        broadcast(.rematchOffer(match: match))
    }

    /// Time passes: a rematch offer whose members did not all answer by its deadline goes on
    /// without them (told `leave(noAnswer)`).
    public mutating func tick(now: UInt64) {
        guard case .offering(let deadline) = phase, now >= deadline else { return }
        for s in seats where awaitingAnswer.contains(s.key) {
            if let l = s.link {
                send(l, .leave(.noAnswer))
                out.append(.closeWhenFlushed(l))
            }
            events.append(.left(s.key, name: s.name))
        }
        seats.removeAll { awaitingAnswer.contains($0.key) }
        awaitingAnswer.removeAll()
        rematchAnswered(now: now)
    }

    private mutating func answer(_ a: LobbyMessage.RematchAnswer, on id: LinkID, now: UInt64) {
        guard isOffering, let i = seats.firstIndex(where: { $0.link == id }),
            awaitingAnswer.contains(seats[i].key)
        else {
            dropped += 1
            return
        }
        awaitingAnswer.remove(seats[i].key)
        switch a {
        case .accept(let commit):
            seats[i].commit = commit
            seats[i].reveal = nil
            events.append(.accepted(seats[i].key, name: seats[i].name))
        case .decline:
            let gone = seats.remove(at: i)
            chatBuckets[gone.key] = nil
            events.append(.declined(gone.key, name: gone.name))
            out.append(.closeWhenFlushed(id))
        }
        rematchAnswered(now: now)
    }

    /// Every answer is in: the roster with the new commits, then the reveals as for the first
    /// match (`startIfReady` starts it). Nobody accepted: back to `ended`.
    private mutating func rematchAnswered(now: UInt64) {
        guard isOffering, awaitingAnswer.isEmpty else { return }
        guard seats.count > 1 else {
            phase = .ended
            broadcast(roster)
            events.append(.rematchCancelled)
            return
        }
        phase = .revealing(deadline: now + config.revealTimeoutNanos)
        broadcast(roster)
        broadcast(.settings(config.settings))
        for s in seats { if let l = s.link { send(l, .revealRequest) } }
        events.append(.recordChanged)
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
        let start = LobbyMessage.Start(config: matchConfig, startAt: startAt, reveals: reveals, match: match)
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

/// Lines of chat as sent and as shown: whole characters, at most `LobbyMessage.maxChatBytes`
/// bytes of UTF-8 on the wire; escaped for display (`SafeText`: control, C1 and bidi characters
/// become visible escapes, so a line never moves the cursor or reorders the screen).
public enum NetPlayChat {
    public static func bounded(_ raw: String) -> String {
        var out = ""
        var bytes = 0
        for c in raw {
            let n = String(c).utf8.count
            guard bytes + n <= LobbyMessage.maxChatBytes else { break }
            out.append(c)
            bytes += n
        }
        return out
    }

    public static func display(_ text: String) -> String { SafeText.escaped(text) }
}

/// Each sender's chat allowance, a token bucket: `burst` lines at once, then one line each
/// `refillNanos` (the host drops what is over and counts it).
public struct ChatLimit: Sendable, Equatable {
    public var burst: Int
    public var refillNanos: UInt64

    public struct Bucket: Sendable, Equatable {
        var tokens: Int
        var at: UInt64
    }

    public init(burst: Int = 5, refillNanos: UInt64 = 1_000_000_000) {
        self.burst = max(1, burst)
        self.refillNanos = max(1, refillNanos)
    }

    func full(now: UInt64) -> Bucket { Bucket(tokens: burst, at: now) }

    /// Takes a token if there is one (after refilling for the time that passed).
    func take(_ b: inout Bucket, now: UInt64) -> Bool {
        if now > b.at {
            let earned = (now - b.at) / refillNanos
            if earned > 0 {
                b.tokens = min(burst, b.tokens + Int(min(earned, UInt64(burst))))
                b.at = b.tokens == burst ? now : b.at + earned * refillNanos
            }
        }
        guard b.tokens > 0 else { return false }
        b.tokens -= 1
        return true
    }
}
