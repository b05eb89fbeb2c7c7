import Engine
import Keys
import Lobby
import NetCore
import NetMatch
import Sodium

/// A networked match on this peer (GGRS's `P2PSession` is the model): the match loop of this
/// peer's players, `NetMatch` replicating every player's signed ops over the links, and the links
/// themselves (which session reaches which peer; the control messages of the match: a rejoiner's
/// or a late spectator's hello, leave, the roster that restores the mesh). No sockets, no clock,
/// no randomness of its own: link events, datagrams and time in; link actions (control messages,
/// datagrams, dials, closes) and events out; at the end, the recording. `turf` drives it with the
/// real event loop and threads; the chaos harness with the simulated network in virtual time.
///
/// The lifecycle: `advance(now:)` while `isOver` is false (a front end steers `loop`'s
/// controllers and draws between calls); then `settle(now:)` until it returns true (every op and
/// final statement held, acknowledged, final hashes compared) or the driver's deadline; then
/// `announceSettled()` and a short linger of `pump(now:)`; then `recording()`. The sessions stay
/// for the lobby after the match (chat, a rematch): the lobby's messages that arrive while the
/// match still runs here are kept for it (`takeLobbyMessages`). Each match of a series tags its
/// datagrams with its number, so a late datagram of the previous match is never taken for one of
/// this match.
public final class MatchSession<Controller: PlayerController> {
    public typealias Game = Controller.Game

    public struct Options {
        public var me: PeerKey
        public var identity: Ed25519.KeyPair
        public var isHost: Bool
        /// A member's session with the host (nil on the host).
        public var hostLink: LinkID?
        /// The host's start and final roster, owed to a rejoiner or a late spectator.
        public var start: LobbyMessage.Start
        public var roster: LobbyMessage?
        /// Host: the most spectators that may watch.
        public var maxSpectators: Int
        /// Host: why `key` may not come in mid-match (a ban, the allow list), if it may not.
        public var refusal: (PeerKey) -> LobbyMessage.LeaveReason?
        /// Test-only: no direct session with this member (its ops come through relays).
        public var noMesh: (PeerKey) -> Bool
        /// Test-only switches of NetMatch (a modified client), applied before the first tick.
        public var configureNet: (inout NetMatch<Game>) -> Void
        public init(
            me: PeerKey,
            identity: Ed25519.KeyPair,
            isHost: Bool,
            hostLink: LinkID?,
            start: LobbyMessage.Start,
            roster: LobbyMessage? = nil,
            maxSpectators: Int = 8,
            refusal: @escaping (PeerKey) -> LobbyMessage.LeaveReason? = { _ in nil },
            noMesh: @escaping (PeerKey) -> Bool = { _ in false },
            configureNet: @escaping (inout NetMatch<Game>) -> Void = { _ in }
        ) {
            self.me = me
            self.identity = identity
            self.isHost = isHost
            self.hostLink = hostLink
            self.start = start
            self.roster = roster
            self.maxSpectators = maxSpectators
            self.refusal = refusal
            self.noMesh = noMesh
            self.configureNet = configureNet
        }
    }

    /// What the session tells its driver's player (headless events, the HUD).
    public enum Event {
        case net(NetMatchEvent)
        case rejoined(PeerKey)
        case spectating(PeerKey, name: String, address: PeerAddress?)
        /// A peer said it is done with this match: its match settled, or it quit (`quit`: it
        /// left the lobby too).
        case left(PeerKey, quit: Bool)
    }

    public let options: Options
    public var config: MatchConfig { options.start.config }
    /// The match loop of this peer's players: a front end steers their controllers between ticks.
    public var loop: MatchLoop<Controller>
    public private(set) var hook: SessionHook<Controller>!
    /// Host: each member's (and spectator's) current link, by key. Member: the host's link and
    /// the direct sessions to other members (the mesh).
    public private(set) var links: [PeerKey: LinkID] = [:]
    /// Which peer each link reaches (the inverse of `links`).
    public private(set) var peerOf: [LinkID: PeerKey] = [:]
    /// Peers that said they settled or left; NetMatch waits for nothing more from them.
    public private(set) var left: Set<PeerKey> = []
    /// Peers that said they left the lobby (`leave`), not only this match.
    public private(set) var quit: Set<PeerKey> = []
    public private(set) var rejoins = 0
    /// Control messages dropped as malformed or out of place; datagrams from links that are no peer's.
    public private(set) var dropped = 0
    public private(set) var strayDatagrams = 0
    /// The replica that takes the ops accepted after the loop ended (settling).
    public private(set) var final: Replica<Game>?
    /// The links as the match ended (a peer that leaves first closes its own).
    public private(set) var linksAtEnd: [PeerKey: LinkID] = [:]

    var inbox: [(from: PeerKey, bytes: [UInt8])] = []
    /// The lobby's messages that came during the match (chat, a rematch offer or answer), for
    /// the lobby after it; at most `maxLobbyMessages`, the rest dropped and counted.
    private var lobbyMessages: [LinkEvent] = []
    public static var maxLobbyMessages: Int { 256 }
    var outbox: [LinkAction] = []
    var events: [Event] = []
    private var pending: [LinkID: (key: PeerKey, address: PeerAddress)] = [:]
    private var addressOf: [LinkID: PeerAddress] = [:]
    private var silence: [LinkID: UInt64] = [:]
    private var newlyLeft: [PeerKey] = []
    /// Host: peers that said hello while the match runs, owed a snapshot and the start after the
    /// current tick.
    var resumeWanted: [(link: LinkID, key: PeerKey, watcher: Bool)] = []
    private var now: UInt64
    private var rosterMessage: LobbyMessage?
    /// The tick this peer is running and when it began running it (nil once the loop ended).
    public private(set) var tickNow: (tick: Tick, at: UInt64)?

    func tickStarted(_ tick: Tick) { tickNow = (tick, now) }
    var currentNow: UInt64 { now }

    /// `links`: the sessions the lobby left us with (the host: members' and spectators'; a member:
    /// the host's and the mesh's). `startLocal`: tick 0 on our clock. `resume`: the host's snapshot
    /// for a rejoiner or a late spectator, merged before the first tick.
    public init(
        options: Options,
        controllers: [PlayerID: Controller],
        links: [PeerKey: LinkID],
        startLocal: UInt64,
        now: UInt64,
        resume: ReplicaSnapshot<Game>? = nil
    ) throws {
        self.options = options
        self.now = now
        rosterMessage = options.roster
        let config = options.start.config
        loop = try MatchLoop(config: config, controllers: controllers, start: startLocal)
        let owners = Set(config.players.compactMap(\.owner))
        for (k, id) in links.sorted(by: { $0.value < $1.value }) {
            if !options.isHost && (options.noMesh(k) || !owners.contains(k)) && id != options.hostLink {
                outbox.append(.close(id))
                continue
            }
            self.links[k] = id
            peerOf[id] = k
        }
        let watchers = options.isHost ? links.keys.filter { !owners.contains($0) }.sorted() : []
        var net = try NetMatch<Game>(config: config, identity: options.identity, now: now, watchers: watchers)
        options.configureNet(&net)
        if let snap = resume {
            // Joining a running match: every op the host holds, ours included, first.
            try loop.merge(snap)
            net.restore(snap.logs.flatMap { $0 }, now: now)
        }
        hook = SessionHook(
            session: self,
            inner: NetMatchHook(
                net: net,
                now: { [unowned self] in self.now },
                inbound: { [unowned self] in
                    defer { self.inbox.removeAll(keepingCapacity: true) }
                    return self.inbox
                },
                outbound: { [unowned self] ds in
                    let tag = self.tag
                    for d in ds { if let id = self.links[d.to] { self.outbox.append(.datagram(id, [tag] + d.bytes)) } }
                },
                onEvent: { [unowned self] e in self.events.append(.net(e)) }
            )
        )
    }

    public var net: NetMatch<Game> { hook.inner.net }
    public var isOver: Bool { loop.isOver }
    public var isHost: Bool { options.isHost }

    /// The actions and events produced since the last call, oldest first.
    public func take() -> (actions: [LinkAction], events: [Event]) {
        defer {
            outbox.removeAll(keepingCapacity: true)
            events.removeAll(keepingCapacity: true)
        }
        return (outbox, events)
    }

    private func send(_ id: LinkID, _ m: LobbyMessage) { outbox.append(.send(id, m.encode())) }

    func owns(_ k: PeerKey) -> Bool { config.players.contains { $0.owner == k } }

    /// Host: spectators (linked, owning no player), whom NetMatch feeds as watchers.
    public var watchers: [PeerKey] { links.keys.filter { !owns($0) }.sorted() }

    // MARK: input

    /// The first byte of this match's datagrams: its number in the series (the start's), mod 256.
    var tag: UInt8 { UInt8(truncatingIfNeeded: options.start.match) }

    /// A datagram that arrived on `link` (NetMatch's, after the match's tag; merged at the next
    /// tick or `pump`). One of another match (a late one of the previous) is dropped and counted.
    public func receive(_ bytes: [UInt8], on link: LinkID) {
        guard let k = peerOf[link], bytes.first == tag else {
            strayDatagrams += 1
            return
        }
        inbox.append((k, Array(bytes.dropFirst())))
    }

    /// The ticks the sender of a datagram of this match had run (nil if it is none): for the
    /// driver's tick-skew measurement, read before `receive`.
    public func packetTick(_ bytes: [UInt8]) -> Tick? {
        guard bytes.first == tag else { return nil }
        return NetMatch<Game>.packetTick(Array(bytes.dropFirst()))
    }

    /// The lobby's messages that came during the match, oldest first, for the lobby after it.
    public func takeLobbyMessages() -> [LinkEvent] {
        defer { lobbyMessages.removeAll() }
        return lobbyMessages
    }

    /// Datagrams the driver dropped before they reached the session (its queue was full).
    public func noteStray(_ n: Int) { strayDatagrams += n }

    /// How long the peer on `link` has been silent (the driver's figure): a link silent for 2 s
    /// does not count as the mesh's when a roster asks to restore it.
    public func noteSilence(_ link: LinkID, nanos: UInt64) { silence[link] = nanos }

    /// A link's latest round trip, for NetMatch's relay timing.
    public func noteRTT(_ link: LinkID, nanos: UInt64) {
        guard let k = peerOf[link] else { return }
        hook.inner.net.noteRTT(k, nanos: nanos)
    }

    public func handle(_ e: LinkEvent, now: UInt64) {
        self.now = now
        switch e {
        case .opened(let id, let key, let address, _):
            addressOf[id] = address
            if options.isHost {
                pending[id] = (key, address)
            } else if id != options.hostLink {
                // The mesh: a direct session from another player of this match.
                if owns(key) && !options.noMesh(key) {
                    relink(key, to: id, closingOld: false)
                } else {
                    outbox.append(.close(id))
                }
            }
        case .closed(let id, _):
            pending[id] = nil
            if let k = peerOf.removeValue(forKey: id), links[k] == id { links[k] = nil }
        case .message(let id, let bytes):
            guard let msg = try? LobbyMessage.decode(bytes) else {
                dropped += 1
                return
            }
            control(msg, on: id)
        }
    }

    private func control(_ msg: LobbyMessage, on id: LinkID) {
        let fromHost = !options.isHost && id == options.hostLink
        switch msg {
        case .hello(let h) where options.isHost:
            // Once our match is over (settling) nobody can join it any more.
            guard let p = pending[id], h.key == p.key.bytes, let roster = rosterMessage, !loop.isOver else {
                send(id, .leave(.started))
                return
            }
            if let why = options.refusal(p.key) {  // friends only, kicked keys (docs/lobby.md)
                send(id, .leave(why))
                return
            }
            if h.spectate {
                spectatorArrived(p.key, link: id, name: h.name, roster: roster)
                return
            }
            // A member back after a crash (same identity): the roster, then (after this tick)
            // every op and the start.
            guard owns(p.key) else {
                send(id, .leave(.started))
                return
            }
            relink(p.key, to: id, closingOld: true)
            rejoins += 1
            // The roster with the rejoiner's new address, to it and (the rejoin's announcement)
            // to every other member, whose side of the pair dials it again (`restoreMesh`).
            var announced = roster
            if case .roster(var r) = roster, let i = r.members.firstIndex(where: { $0.key == p.key.bytes }) {
                r.members[i].addresses = [p.address]
                announced = .roster(r)
                rosterMessage = announced
            }
            send(id, announced)
            for (k, l) in links.sorted(by: { $0.value < $1.value }) where k != p.key && owns(k) { send(l, announced) }
            resumeWanted.append((id, p.key, false))
            events.append(.rejoined(p.key))
        case .leave, .settled:
            guard let k = peerOf[id] else { break }
            var isQuit = false
            if case .leave = msg { isQuit = quit.insert(k).inserted }
            if left.insert(k).inserted {
                newlyLeft.append(k)
                events.append(.left(k, quit: isQuit))
            } else if isQuit {
                events.append(.left(k, quit: true))
            }
        case .chat, .chatRelay, .rematchOffer, .rematchAnswer:
            // The lobby's, after the match (a peer whose match ended first).
            guard lobbyMessages.count < Self.maxLobbyMessages else {
                dropped += 1
                return
            }
            lobbyMessages.append(.message(id, bytes: msg.encode()))
        case .roster(let r) where fromHost:
            restoreMesh(r)
        case .settings, .roster, .revealRequest, .start:
            break  // late copies of lobby messages
        default:
            dropped += 1  // ops travel by NetMatch; anything else is out of place
        }
    }

    /// `key`'s session is now `id` (a restarted peer's new session replaces its old one).
    private func relink(_ key: PeerKey, to id: LinkID, closingOld: Bool) {
        if let old = links[key], old != id {
            if closingOld { outbox.append(.close(old)) }
            peerOf[old] = nil
        }
        links[key] = id
        peerOf[id] = key
    }

    /// Host: a spectator says hello while the match runs (docs/lobby.md, "Spectators"): it gets
    /// what a rejoiner gets, and from then on NetMatch feeds it as a watcher. A player's key
    /// cannot spectate, and at most `maxSpectators` watch.
    private func spectatorArrived(_ key: PeerKey, link id: LinkID, name: String, roster: LobbyMessage) {
        guard !owns(key) else {
            send(id, .leave(.refused))
            return
        }
        guard watchers.count < options.maxSpectators || links[key] != nil else {
            send(id, .leave(.full))
            return
        }
        relink(key, to: id, closingOld: true)
        send(id, roster)
        resumeWanted.append((id, key, true))
        events.append(.spectating(key, name: NetPlayNames.display(name), address: pending[id]?.address))
    }

    /// Member: the host announced a rejoin (a roster during the match). Of each pair the member
    /// with the greater key dials; here we dial every member below us whose session is missing or
    /// at another address than the roster's, so the mesh is whole again on both sides.
    private func restoreMesh(_ r: LobbyMessage.Roster) {
        for m in r.members where m.path != .local {
            guard let k = PeerKey(bytes: m.key), k < options.me, owns(k), !options.noMesh(k), !m.addresses.isEmpty
            else { continue }
            if let id = links[k], let a = addressOf[id], m.addresses.contains(a), (silence[id] ?? 0) < 2_000_000_000 {
                continue  // a live session to the same address: nothing to restore
            }
            outbox.append(.dial(k, addresses: m.addresses))
        }
    }

    // MARK: running

    /// Runs every tick due at `now` (control messages and datagrams that came in are merged
    /// first), then between ticks keeps the links alive.
    public func advance(now: UInt64) {
        self.now = now
        applyLeaves()
        loop.advance(now: now, hook: &hook!)
        if loop.isOver && final == nil { ended() }
    }

    /// Between ticks: takes what arrived and sends what is due (a remote op is merged at once and
    /// shown at the next draw). After the loop ended, the ops accepted go into the recording.
    public func pump(now: UInt64) {
        self.now = now
        applyLeaves()
        let ops = hook.pump()
        guard final != nil else {
            for op in ops { loop.deliver(op) }
            return
        }
        for r in hook.inner.net.takeRetractions() { final!.retract(r.player, from: r.from) }
        for op in ops { final!.receive(op) }
    }

    /// Between ticks: what arrived (control messages, datagrams) is merged into the match now, not
    /// at the next tick, so a front end draws remote ops as they come (merges commute: the state
    /// after the next tick is the same). Returns how many ops were new.
    @discardableResult
    public func mergeArrivals(now: UInt64) -> Int {
        self.now = now
        applyLeaves()
        guard !loop.isOver else { return 0 }
        return loop.mergeArrivals(hook: &hook!)
    }

    /// Slews the tick clock toward a new estimate of the host's (at most `maxStep` ns a call);
    /// returns what is still owed.
    public func slewClock(by owed: Int64, maxStep: Int64) -> Int64 { loop.slewClock(by: owed, maxStep: maxStep) }

    private func applyLeaves() {
        for k in newlyLeft { hook.inner.net.peerLeft(k) }
        newlyLeft.removeAll()
    }

    private func ended() {
        loop.flushJournal()
        tickNow = nil
        final = loop.replica
        linksAtEnd = links
        // A peer we have no session with now waits on nothing of ours (relays served it).
        for p in config.players {
            guard let o = p.owner, o != options.me, links[o] == nil else { continue }
            hook.inner.net.peerLeft(o)
        }
    }

    /// After the loop: true once NetMatch is settled (every op and final statement held here,
    /// every linked peer acknowledged ours).
    public func settle(now: UInt64) -> Bool {
        pump(now: now)
        return hook.inner.net.isSettled
    }

    /// Tells every linked peer the player quit (the match and the lobby).
    public func leave() {
        for id in links.values.sorted() { send(id, .leave(.quit)) }
    }

    /// Tells every linked peer our match settled: they wait for nothing more from us (the
    /// sessions stay, for the lobby after the match).
    public func announceSettled() {
        for id in links.values.sorted() { send(id, .settled) }
    }

    /// Host, after each tick: the snapshot and the start owed to rejoiners and late spectators.
    /// After the tick merged everything delivered so far (ops that arrived before a rejoiner's
    /// hello went to its old link: they must be in its snapshot). The snapshot goes before the
    /// start: a joiner that gets a start with no snapshot before it is a first-time member whose
    /// start came late, never a rejoiner (docs/lobby.md, "Leaving and rejoining").
    /// Returns the spectators NetMatch starts feeding now (the hook adds them: it holds NetMatch
    /// while the tick runs) and how many ops of each player they hold.
    func serveResumes(_ match: LocalMatch<Controller>) -> (watchers: [PeerKey], held: [Int]) {
        guard !resumeWanted.isEmpty else { return ([], []) }
        let snap = match.replica.snapshot()
        let bytes = snap.encode()
        // Per player, the ops from seq 0 the snapshot holds without a gap: a late spectator has
        // those, so its watcher link sends only what comes after.
        let held = snap.logs.map { log in log.enumerated().prefix { $0.offset == Int($0.element.seq) }.count }
        for w in resumeWanted {
            send(w.link, .snapshot(bytes))
            send(w.link, .start(options.start))
        }
        defer { resumeWanted.removeAll() }
        return (resumeWanted.filter(\.watcher).map(\.key), held)
    }

    // MARK: the end

    /// What was played, as the peers agreed on it.
    public struct Recording {
        public var replay: Replay<Game>
        /// The replica recorded (verdicts applied).
        public var replica: Replica<Game>
        /// Settled, every final hash heard equal to ours, and the recording's hash the agreed one.
        public var converged: Bool
        /// Players whose owner crashed and never came back (settled without its final statement).
        public var gone: [PlayerID]
    }

    /// The recording: the ops every peer agreed on. A player whose owner crashed and never came
    /// back (docs/netmatch.md, "A peer that never comes back"): the survivors agreed on the ops its
    /// best signed statement covers; what it made past that cannot be verified, so the recording
    /// (and the final hash) leaves it out.
    public func recording() throws -> Recording {
        let net = hook.inner.net
        var final = self.final ?? loop.replica
        var converged = net.isSettled && net.agreed
        if net.cutsLogs {
            var cut = try Replica<Game>(config: config)
            for ops in net.settledLogs(final.allLogs) { for op in ops { cut.receive(op) } }
            for op in final.equivocations where net.settledCount(op.player).map({ Int(op.seq) < $0 }) ?? true {
                cut.receive(op)
            }
            final = cut
        }
        for v in net.verdicts { final.applyVerdict(v.player, fromSeq: v.seq, rule: v.rule, tick: v.tick) }
        var replay = try Replay<Game>(
            config: config,
            logs: final.allLogs,
            equivocations: final.equivocations,
            verdicts: net.verdicts
        )
        replay.signatures = net.recordedSignatures
        // The recording must be what the peers agreed on (it is, unless a snapshot brought ops
        // NetMatch never accepted): else this peer did not converge either.
        if converged, let agreed = net.finalHash, agreed != replay.finalHash { converged = false }
        return Recording(
            replay: replay,
            replica: final,
            converged: converged,
            gone: net.cutsLogs ? net.gonePlayers : []
        )
    }
}

/// The per-tick I/O of a `MatchSession`: `NetMatchHook` (receive, deliver the authenticated ops,
/// send what this tick made), then the snapshot and start owed to a rejoiner or a late spectator.
public struct SessionHook<Controller: PlayerController>: MatchHook {
    unowned let session: MatchSession<Controller>
    public var inner: NetMatchHook<Controller>

    public mutating func willRun(tick: Tick, match: inout LocalMatch<Controller>) {
        session.tickStarted(tick)
        inner.willRun(tick: tick, match: &match)
    }

    public mutating func didRun(tick: Tick, match: inout LocalMatch<Controller>) {
        inner.didRun(tick: tick, match: &match)
        guard session.isHost else { return }
        let served = session.serveResumes(match)
        for w in served.watchers { inner.net.addWatcher(w, holding: served.held, now: session.currentNow) }
    }

    public mutating func didSkip(from: Tick, to: Tick, match: inout LocalMatch<Controller>) {
        inner.didSkip(from: from, to: to, match: &match)
    }

    public mutating func between(match: inout LocalMatch<Controller>) { inner.between(match: &match) }

    public mutating func pump() -> [Op<Controller.Game.Payload>] { inner.pump() }
}
