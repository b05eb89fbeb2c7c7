import DHT
import Engine
import Foundation
import Keys
import Lobby
import Logging
import NetCore
import NetMatch
import NetStack
import Sodium
import TerminalUI
import TextOutput
import Transport
import TurfRules

/// The seam between the networked lobby and match (`NetRuntime`, `MatchRunner`'s `play`) and what
/// the player sees and does. The runtime calls it, on its own thread, at a handful of points: every
/// event (headless prints it), every turn of a lobby loop (with the lobby as it is now; the answer
/// is what the player did), the controllers of this peer's players, every turn of the match loop,
/// the end, and every turn of the lobby after it (the end screen: chat, the rematch). `HeadlessUI`
/// is `--headless --bot`: JSON lines, a bot, the `--start-when` and `--matches` rules, `--say`.
/// `CursesUI` is the terminal: the lobby screen, the match screen with the HUD, the end screen.
protocol NetPlayUI: AnyObject {
    /// A headless event (docs/lobby.md). Under curses it is logged, never printed.
    func event(_ j: JSONObject)
    /// How long a lobby loop may wait for the network between two calls of `lobby`, seconds.
    var lobbyWait: Double { get }
    /// The terminal's input while a screen is up (waits watch it with the network, so a key is
    /// read at once); nil headless.
    var inputFD: Int32? { get }
    /// Whether the player picks among several lobbies on a topic (else the first that answers).
    var choosesLobby: Bool { get }
    /// The lobby as it is now; returns what the player did since the last call, if anything.
    func lobby(_ view: LobbyView) -> LobbyAction?
    /// The controllers of this peer's players: a bot, or the keyboard.
    func controllers(for players: [PlayerID], config: MatchConfig) -> [PlayerID: TurfController]
    /// One turn of the match loop, after it advanced: read keys (steer), draw. `net` is the HUD's
    /// link status (costly: call it at most about once a second). Returns false when the player leaves.
    func frame(loop: inout TurfMatchLoop, me: PlayerID?, net: () -> NetStatus) -> Bool
    /// The match is over: `world` as converged, the summary the end screen shows (from now on,
    /// with `afterMatch`'s view).
    func end(world: TurfWorld, config: MatchConfig, me: PlayerID?, summary: NetEndSummary)
    /// One turn of the lobby after a match (the end screen with the tally, the rematch, the
    /// chat); returns what the player did since the last call, if anything.
    func afterMatch(_ view: AfterMatchView) -> AfterMatchAction?
    /// The signal (SIGINT, SIGTERM, …) that asked turf to quit, if one did.
    var quitSignal: Int32? { get }
    /// Gives the terminal back (before the process prints its last lines). Safe to call twice.
    func close()
}

/// `--headless --bot LEVEL`: one JSON object per line on stdout, a bot plays; a host starts when
/// `startWhen` players (itself included) are on the roster and offers rematches until `matches`
/// were played; a member accepts every rematch unless told not to (`rematch` false: it leaves).
/// The `say` lines are said in the lobby once this player is in with someone to hear them (a
/// member: on the roster; the host: once a member joined).
final class HeadlessUI: NetPlayUI {
    let bot: Bot.Level
    let startWhen: Int?
    let matches: Int
    let rematch: Bool
    private var toSay: [String]

    init(bot: Bot.Level, startWhen: Int? = nil, matches: Int = 1, rematch: Bool = true, say: [String] = []) {
        self.bot = bot
        self.startWhen = startWhen
        self.matches = matches
        self.rematch = rematch
        toSay = say
    }

    func event(_ j: JSONObject) { DHTCLI.emit(j.text) }
    var lobbyWait: Double { 0.2 }
    var inputFD: Int32? { nil }
    var choosesLobby: Bool { false }
    func lobby(_ view: LobbyView) -> LobbyAction? {
        let heard = view.role == .host ? view.roster.count > 1 : view.roster.contains { $0.isYou }
        if heard && view.phase == .waiting && !toSay.isEmpty { return .chat(toSay.removeFirst()) }
        return view.startAction(startWhen: startWhen)
    }

    func afterMatch(_ view: AfterMatchView) -> AfterMatchAction? {
        switch view.rematch {
        case .canOffer: return view.match < matches ? .rematch : .leave
        case .offeredToYou: return rematch ? .accept : .leave
        case .over: return .leave
        case .offered, .accepted, .waiting: return nil
        }
    }

    func controllers(for players: [PlayerID], config: MatchConfig) -> [PlayerID: TurfController] {
        var out: [PlayerID: TurfController] = [:]
        for p in players { out[p] = TurfController(bot: Bot(level: bot, seed: config.seed, player: p)) }
        return out
    }

    func frame(loop: inout TurfMatchLoop, me: PlayerID?, net: () -> NetStatus) -> Bool { true }
    func end(world: TurfWorld, config: MatchConfig, me: PlayerID?, summary: NetEndSummary) {}
    var quitSignal: Int32? { nil }
    func close() {}
}

/// The terminal: curses starts at the first screen (so a lookup that fails, or a wrong
/// passphrase, is one plain line on the terminal), and stops at `close`. Peer-provided text is
/// escaped and fitted by the screens (`CellText`).
final class CursesUI: NetPlayUI {
    let wantColor: Bool
    let unicode: Bool
    let stderrCapture: String?
    private(set) var term: CursesTerminal?
    private var lobbyInput = NetLobbyInput()
    private var endInput = NetEndInput()
    /// The match the end screen shows (set by `end`), and what was drawn last.
    private var endShown: (world: TurfWorld, config: MatchConfig, me: PlayerID?, summary: NetEndSummary)?
    private var endDrawn: (AfterMatchView, Int, Int)?
    private var shownLobby: (LobbyView, Int, Int, Int)?
    private var history = TerritoryHistory()
    private var net = NetStatus()
    private var lastNet: UInt64 = 0
    private var lastTickDrawn: Tick?
    private var lastMergedDrawn: UInt64 = 0
    private var lastSize = (0, 0)
    private(set) var quitSignal: Int32?
    /// Curses could not start (said on stderr): the run fails, whatever the network did.
    private(set) var failed = false
    /// The end screen's summary, printed again once the terminal is back (`printSummary`).
    private(set) var ended: NetEndSummary?
    /// Made after `Logs.bootstrap` (a logger made before it would write to stderr, over the screen).
    lazy var log = Logger(label: "turf.net.ui")

    init(wantColor: Bool, unicode: Bool, stderrCapture: String?) {
        self.wantColor = wantColor
        self.unicode = unicode
        self.stderrCapture = stderrCapture
    }

    /// Before the network starts: a TTY that curses can drive, else one line saying what to fix.
    static func check() throws {
        guard isatty(STDIN_FILENO) == 1 && isatty(STDOUT_FILENO) == 1 else {
            throw CLIError(
                "turf needs a terminal (stdin and stdout must be a TTY); for scripts use --headless --bot easy"
            )
        }
        if let problem = CursesTerminal.terminalProblem() { throw CLIError(problem) }
    }

    func terminal() -> CursesTerminal? {
        if let term { return term }
        guard !failed else { return nil }
        do {
            term = try CursesTerminal(wantColor: wantColor, unicode: unicode, stderrCapture: stderrCapture)
        } catch {
            failed = true
            printErr("\(error)")
        }
        return term
    }

    func event(_ j: JSONObject) { log.info("\(j.text)") }

    var lobbyWait: Double { 0.05 }
    var inputFD: Int32? { term == nil ? nil : STDIN_FILENO }
    var choosesLobby: Bool { true }

    func lobby(_ view: LobbyView) -> LobbyAction? {
        guard let term = terminal() else { return .leave }
        if let s = term.quitSignal {
            quitSignal = s
            return .leave
        }
        var shown = view
        var action: LobbyAction?
        for key in term.readKeys() where action == nil {
            if key == .resize {
                term.invalidate()
                shownLobby = nil
                continue
            }
            action = lobbyInput.handle(key, view: view)
        }
        if let n = lobbyInput.notice { shown.notice = n }
        shown.chatInput = lobbyInput.chat.text
        let (w, h) = term.size
        if shownLobby.map({ $0.0 != shown || $0.1 != lobbyInput.selected || $0.2 != w || $0.3 != h }) ?? true {
            term.draw(LobbyScreen(theme: term.theme).render(shown, selected: lobbyInput.selected, width: w, height: h))
            shownLobby = (shown, lobbyInput.selected, w, h)
        }
        return action
    }

    func controllers(for players: [PlayerID], config: MatchConfig) -> [PlayerID: TurfController] {
        // A new match of the series: its own chart and frames.
        history = TerritoryHistory()
        lastTickDrawn = nil
        lastMergedDrawn = 0
        endShown = nil
        endDrawn = nil
        var out: [PlayerID: TurfController] = [:]
        for p in players { out[p] = .human() }
        return out
    }

    func frame(loop: inout TurfMatchLoop, me: PlayerID?, net: () -> NetStatus) -> Bool {
        guard let term = terminal() else { return false }
        if let s = term.quitSignal {
            quitSignal = s
            return false
        }
        // A new tick, or remote ops merged between ticks (drawn as they arrive).
        var dirty = lastTickDrawn != loop.tick || lastMergedDrawn != loop.replica.stats.merged
        for key in term.readKeys() {
            switch NetMatchKey(key) {
            case .steer(let d)?:
                if let me { loop.controllers[me]?.steer(d) }
            case .leave?: return false
            case .redraw?:
                term.invalidate()
                dirty = true
            case nil: break
            }
        }
        let rate = Tick(max(1, loop.config.tickRate))
        if loop.tick % rate == 0 || history.ticks.isEmpty {
            history.record(tick: loop.tick, scores: loop.replica.state.scores)
        }
        let now = monotonicNanos()
        if now - lastNet > 1_000_000_000 {
            lastNet = now
            let fresh = net()
            if fresh != self.net {
                self.net = fresh
                dirty = true
            }
        }
        let (w, h) = term.size
        if (w, h) != lastSize {
            lastSize = (w, h)
            dirty = true
        }
        guard dirty else { return true }
        let scene = ArenaScene(
            world: loop.replica.state,
            tick: min(loop.tick, loop.config.lengthTicks),
            config: loop.config,
            focus: me,
            title: "turf",
            status: "arrows, WASD or hjkl steer · q leaves the match"
        )
        term.draw(NetMatchRenderer(theme: term.theme).render(scene, net: self.net, width: w, height: h))
        lastTickDrawn = loop.tick
        lastMergedDrawn = loop.replica.stats.merged
        return true
    }

    func end(world: TurfWorld, config: MatchConfig, me: PlayerID?, summary: NetEndSummary) {
        ended = summary
        history.record(tick: config.lengthTicks, scores: world.scores)
        endShown = (world, config, me, summary)
        endDrawn = nil
    }

    func afterMatch(_ view: AfterMatchView) -> AfterMatchAction? {
        guard let term = terminal(), let end = endShown else { return .leave }
        if let s = term.quitSignal {
            quitSignal = s
            return .leave
        }
        var action: AfterMatchAction?
        for key in term.readKeys() where action == nil {
            if key == .resize {
                term.invalidate()
                endDrawn = nil
                continue
            }
            action = endInput.handle(key, view: view)
        }
        var shown = view
        shown.chatInput = endInput.chat.text
        let (w, h) = term.size
        if endDrawn.map({ $0.0 != shown || $0.1 != w || $0.2 != h }) ?? true {
            term.draw(
                NetEndScreen(theme: term.theme).render(
                    world: end.world,
                    config: end.config,
                    history: history,
                    focus: end.me,
                    summary: end.summary,
                    footer: NetEndInput.footer(shown, chatting: shown.chatInput != nil),
                    after: shown,
                    width: w,
                    height: h
                )
            )
            endDrawn = (shown, w, h)
        }
        return action
    }

    func close() {
        term?.stop()
        term = nil
    }

    /// The final hash and where the replay went, on the terminal after curses is gone.
    func printSummary() {
        guard let s = ended else { return }
        print("final hash: \(s.finalHash)")
        if let p = s.replayPath { print("replay saved: " + SafeText.display(p, limit: 400)) }
    }
}

extension MatchRunner {
    /// The HUD's view of the peers: per player, the ping and path of our session to its owner, and
    /// whether it is connected: NetMatch's liveness for a peer we have a session with; a peer we reach
    /// only through relays cannot be observed, so it shows connected until it says it left. A
    /// member reaches the host and its mesh directly and everyone else through the host.
    func netStatus() -> NetStatus {
        let me = rt.identity.publicKey
        let pings = rt.stats.pings(Array(session.links.values))
        var peers: [PeerStatus] = []
        for (i, p) in config.players.enumerated() {
            guard let k = p.owner else { continue }
            if k == me {
                peers.append(PeerStatus(player: i))
                continue
            }
            let link = link(to: k)
            let connected = !session.left.contains(k) && (link == nil || session.net.isConnected(k))
            peers.append(
                PeerStatus(
                    player: i,
                    pingMs: link.flatMap { pings[$0] },
                    path: link.map { rt.linkPath($0) } ?? .relayed,
                    connected: connected
                )
            )
        }
        var status = NetStatus(peers: peers, rejectedOps: rejectedOps(), nat: rt.natKind?.rawValue)
        status.cheats = cheats.marks
        return status
    }

    /// Ops refused: by the replica (`replicaRejected`: the match's as of the last `carryOut`, so
    /// the HUD never reads the loop while the front end steers it), forged or unverifiable relayed
    /// ops, a spectator's ops.
    func rejectedOps(replica: Replica<TurfWorld>? = nil) -> Int {
        let d = session.net.drops
        let r = replica.map { Int($0.stats.rejected) } ?? replicaRejected
        return r + Int(d.unverifiedDropped + d.watcherOps)
    }
}

/// What the joiner chose among the lobbies on its topic.
enum LobbyPick {
    /// This host: the connect phase dials it by key at these addresses.
    case picked(PeerKey, [PeerAddress])
    /// Nothing to choose (one lobby answered, or none): try the addresses in order.
    case none
    /// The player left (q, Esc, a signal).
    case left
}

extension NetRuntime {
    /// How long the probe of a topic's addresses may take, and how many it tries.
    static let probeSeconds: UInt64 = 4
    static let maxProbes = 16

    /// Several lobbies share the topic (the screens only; headless takes the first that answers):
    /// a handshake with each announced address (at most `maxProbes`, `probeSeconds`) tells its host's
    /// key, each host's lobby record (BEP 44) its players and passphrase, and the player picks one
    /// from the list, LAN lobbies (a host that answered at an address of `lan`, found by LAN
    /// discovery) first. The probe sessions are closed before the connect phase dials the pick.
    func pickLobby(_ candidates: [PeerAddress], psk: SecretBytes?, topic: String, lan: Set<PeerAddress> = [])
        -> LobbyPick
    {
        let links = self.links
        var choices = LobbyChoices()
        var answeredAt: [PeerKey: [PeerAddress]] = [:]
        var probes = Set<UInt32>()
        var keyOf: [UInt32: PeerKey] = [:]
        var pending = 0
        func view(_ phase: LobbyView.Phase) -> LobbyView {
            LobbyView(
                role: .joiner,
                phase: phase,
                topic: topic,
                ownKey: identity.publicKey.text,
                mapName: "…",
                matchSeconds: 0,
                passphrase: psk != nil
            )
        }
        for addr in candidates.prefix(Self.maxProbes) {
            pending += 1
            live.execute { peer in
                // Made here from Sendable parts: the mode itself stays on the loop.
                let mode = ConnectMode.joining(psk: psk, expected: nil)
                guard let s = peer.sessions?.connect(to: addr, mode: mode) else { return }
                links.adopt(s)
            }
        }
        let deadline = monotonicNanos() + Self.probeSeconds * 1_000_000_000
        while pending > 0 && !choices.isFull && monotonicNanos() < deadline {
            let n = candidates.count
            if ui.lobby(view(.searching(detail: "\(n) addresses on this topic, asking each who hosts"))) == .leave {
                closeProbes(probes)
                return .left
            }
            for e in mailbox.wait(ui.lobbyWait, alsoWatching: ui.inputFD) {
                switch e {
                case .opened(let id, let key, let addr):
                    probes.insert(id)
                    keyOf[id] = key
                    pending -= 1
                    if key != identity.publicKey {
                        answeredAt[key, default: []].append(addr)
                        choices.answered(hostKey: key.text, lan: lan.contains(addr))
                    }
                case .closed(let id, _):
                    if !probes.contains(id) { pending -= 1 }
                case .message: dropped += 1
                case .stats, .flushed: break
                }
            }
        }
        // Pings while the sessions are up (the handshake measured a round trip).
        freshStats()
        let rtts = stats.pings(Array(probes))
        closeProbes(probes)
        guard choices.listings.count > 1 else { return .none }
        var listed = LobbyChoices()
        for l in choices.listings {
            let id = keyOf.first { $0.value.text == l.hostKey }?.key
            listed.answered(hostKey: l.hostKey, pingMs: id.flatMap { rtts[$0] }, lan: l.lan)
        }
        // Each host's record: bounded by a time budget, not one full lookup per host.
        let recordsUntil = monotonicNanos() + 3_000_000_000
        for l in listed.listings {
            guard monotonicNanos() < recordsUntil, let key = PeerKey(text: l.hostKey) else { break }
            let item = live.waitFor(timeout: 1.5) { (p: Peer, done: @escaping (MutableItem?) -> Void) in
                p.dht.getMutable(publicKey: key.bytes) { done($0) }
            }
            if let item = item ?? nil, let r = LobbyRecord(item.value) {
                listed.describe(hostKey: l.hostKey, players: r.players, passphrase: r.passphrase)
            }
        }
        while true {
            switch ui.lobby(view(.choosing(listed.listings))) {
            case .pick(let text)?:
                guard let key = PeerKey(text: text) else { continue }
                return .picked(key, answeredAt[key] ?? [])
            case .leave?: return .left
            default: break
            }
            _ = mailbox.wait(ui.lobbyWait, alsoWatching: ui.inputFD)  // the probes' last events: nothing to act on
        }
    }

    /// Closes the probe sessions and waits (bounded) for their close events, so the connect phase
    /// never mistakes one for its own attempt failing.
    func closeProbes(_ ids: Set<UInt32>) {
        guard !ids.isEmpty else { return }
        let links = self.links
        live.execute { _ in for id in ids { links.close(id) } }
        var open = ids
        let until = monotonicNanos() + 2_000_000_000
        while !open.isEmpty && monotonicNanos() < until {
            for e in mailbox.wait(0.1) {
                if case .closed(let id, _) = e { open.remove(id) }
            }
        }
    }
}
