import Determinism
import Engine
import Foundation
import Keys
import Lobby
import LocalFiles
import NetCore
import NetMatch
import TerminalUI
import TextOutput
import Transport
import TurfRules

/// The networked match on this peer, on the thread that runs the match loop (docs/lobby.md,
/// "Match traffic"). The ops travel by `NetMatch` (docs/netmatch.md) on the sessions' unreliable
/// channels: each peer's own ops are applied at once and sent to every peer it has a session with;
/// a peer forwards third players' ops that a receiver lacks, so a pair without a direct session
/// converges through any peer linked to both (path "relayed"); every op is covered by its owner's
/// signed statements. The reliable channel keeps the control messages: the hello of a rejoiner or
/// of a spectator arriving mid-match, the roster, snapshot and start it gets back, and leave.
final class MatchRunner {
    unowned let rt: NetRuntime
    let config: MatchConfig
    let isHost: Bool
    let hostLink: UInt32?
    /// Host: each member's (and spectator's) current link, by key.
    var memberLinks: [PeerKey: UInt32] = [:]
    /// Member: direct sessions to other members (the mesh), by key.
    var directLinks: [PeerKey: UInt32] = [:]
    var pendingKeys: [UInt32: PeerKey] = [:]
    /// Host: where each pending session's peer is (a rejoiner's new address goes into the roster).
    var pendingAddresses: [UInt32: PeerAddress] = [:]
    var startMessage: LobbyMessage.Start?
    var rosterMessage: LobbyMessage?
    /// Host: peers that said hello while the match runs (a rejoiner, or a spectator arriving
    /// late), owed a snapshot and the start after the current tick (`NetHook.didRun`).
    var resumeWanted: [(link: UInt32, key: PeerKey, watcher: Bool)] = []
    /// Peers that said they left (their match settled); NetMatch waits for nothing more from them.
    var left: Set<PeerKey> = []
    var newlyLeft: [PeerKey] = []
    var clockDelay: UInt64?
    var clockSamples = 0
    var rejoins = 0
    /// Desync reports (NetMatch checkpoint mismatches), and datagrams from links that are no peer's.
    var desyncs = 0
    var strayDatagrams = 0
    /// Cheats the rules found (`cheat` events; the HUD and end screen mark the players).
    var cheats = CheatReporter()
    /// Bad signatures reported once per (player, relaying peer); the rest are counted.
    var badSignaturesShown: Set<String> = []
    var badSignatureEventsSuppressed = 0
    /// Round-trip samples per peer with a session (ns), taken once a second.
    var rttSamples: [PeerKey: [UInt64]] = [:]
    /// The tick this peer is running and when it began running it (set by the hook each tick).
    var tickNow: (tick: Tick, at: UInt64)?
    /// Our match loop ended (settling): a rejoiner or spectator can no longer join it.
    var matchOver = false
    /// Tick skew to each peer (ms, positive: we run ahead), one sample per new tick a peer reports.
    var tickSkew: [PeerKey: [Double]] = [:]
    var lastPeerTick: [PeerKey: Tick] = [:]

    /// A packet from `k` saying it had run `p` ticks left it as it finished tick p − 1; it arrived
    /// at `at`, one one-way delay (half the RTT) later. Where our own tick clock stood then, minus
    /// p − 1, is how far ahead of it we run. Only the first arrival of each new tick counts.
    func noteSkew(_ k: PeerKey, packetTick p: Tick, at: UInt64) {
        guard let now = tickNow, p > 0, p > lastPeerTick[k] ?? 0 else { return }
        lastPeerTick[k] = p
        let tickNs = 1e9 / Double(config.tickRate)
        let oneWay = Double(rttSamples[k]?.last ?? 0) / 2
        let ours = Double(now.tick) + (Double(at) - oneWay - Double(now.at)) / tickNs
        if tickSkew[k, default: []].count < 100_000 {
            tickSkew[k, default: []].append((ours - Double(p - 1)) * tickNs / 1e6)
        }
    }

    /// How long after a tick began its packets left here (ms): a peer's packets leave as late
    /// after its own tick began, so our median stands for theirs and is taken off the skew.
    var sendDelay: [Double] = []

    /// Per peer, the median skew (ms) less the median send delay; nil without samples.
    func medianSkew(_ k: PeerKey) -> Double? {
        guard let s = tickSkew[k], !s.isEmpty else { return nil }
        let delay = sendDelay.isEmpty ? 0 : sendDelay.sorted()[sendDelay.count / 2]
        return s.sorted()[s.count / 2] - delay
    }
    /// Peers a `disconnected` event was printed for (and not `connected` since).
    var shownDown: Set<PeerKey> = []

    init(rt: NetRuntime, config: MatchConfig, isHost: Bool, hostLink: UInt32?) {
        self.rt = rt
        self.config = config
        self.isHost = isHost
        self.hostLink = hostLink
    }

    /// The host: the first player's owner (the host takes the first seat).
    var hostKey: PeerKey? { config.players.first?.owner.flatMap { PeerKey(bytes: $0.bytes) } }

    func owns(_ k: PeerKey) -> Bool { config.players.contains { $0.owner?.bytes == k.bytes } }

    /// The session currently linking us to `k`, if any.
    func link(to k: PeerKey) -> UInt32? {
        if isHost { return memberLinks[k] }
        if k == hostKey, let hostLink { return hostLink }
        return directLinks[k]
    }

    /// The peer on session `id` (nil for a session that is no part of this match).
    func key(of id: UInt32) -> PeerKey? {
        if !isHost && id == hostLink { return hostKey }
        if isHost { return memberLinks.first { $0.value == id }?.key }
        return directLinks.first { $0.value == id }?.key
    }

    /// Host: spectators (linked, owning no player), whom NetMatch feeds as watchers.
    var watchers: [PeerKey] {
        memberLinks.keys.filter { !owns($0) }.compactMap { PeerKey(bytes: $0.bytes) }.sorted {
            $0.description < $1.description
        }
    }

    /// Every peer with a session now, by key (for sending the leave and sampling RTTs).
    var linked: [(PeerKey, UInt32)] {
        var out: [(PeerKey, UInt32)] =
            isHost ? memberLinks.map { ($0.key, $0.value) } : directLinks.map { ($0.key, $0.value) }
        if !isHost, let hostLink, let hostKey { out.append((hostKey, hostLink)) }
        return out
    }

    /// Handles every control message and session event the event loop posted.
    func pump(wait: Double = 0) {
        for e in wait > 0 ? rt.mailbox.wait(wait) : rt.mailbox.drain() { handle(e) }
    }

    /// The datagrams that arrived (NetMatch's inbound), named by the sending peer's key.
    func inbound() -> [(from: PeerKey, bytes: [UInt8])] {
        let (items, overflow) = rt.mailbox.drainDatagrams()
        strayDatagrams += Int(overflow)
        var out: [(from: PeerKey, bytes: [UInt8])] = []
        out.reserveCapacity(items.count)
        for d in items {
            guard let k = key(of: d.link), let o = PeerKey(bytes: k.bytes) else {
                strayDatagrams += 1
                continue
            }
            if let p = NetMatch<TurfWorld>.packetTick(d.bytes) { noteSkew(k, packetTick: p, at: d.at) }
            out.append((o, d.bytes))
        }
        return out
    }

    /// NetMatch's datagrams, each on the unreliable channel of the session to its peer (a peer we
    /// have no session with is reached only through relays: its datagrams go nowhere).
    func outbound(_ ds: [(to: PeerKey, bytes: [UInt8])]) {
        if let now = tickNow, !ds.isEmpty, sendDelay.count < 100_000 {
            sendDelay.append(Double(monotonicNanos() - now.at) / 1e6)
        }
        var out: [(id: UInt32, bytes: [UInt8])] = []
        for d in ds {
            guard let k = PeerKey(bytes: d.to.bytes), let id = link(to: k) else { continue }
            out.append((id, d.bytes))
        }
        guard !out.isEmpty else { return }
        let links = rt.links
        let batch = out
        rt.live.execute { _ in links.sendDatagrams(batch) }
    }

    /// What NetMatch reports, as headless events. Liveness is shown for peers we have a session
    /// with (a killed peer's lasts until the transport's 20 s timeout; a relayed peer's silence is
    /// not observable from here).
    func report(_ e: NetMatchEvent) {
        switch e {
        case .linkDown(let o):
            guard let k = PeerKey(bytes: o.bytes), link(to: k) != nil, !left.contains(k), shownDown.insert(k).inserted
            else { return }
            rt.event("peer") {
                $0.add("key", k.text)
                $0.add("state", "disconnected")
            }
        case .linkUp(let o):
            guard let k = PeerKey(bytes: o.bytes), shownDown.remove(k) != nil else { return }
            rt.event("peer") {
                $0.add("key", k.text)
                $0.add("state", "connected")
            }
        case .desync(let tick, let peer, let ours, let theirs):
            desyncs += 1
            rt.event("desync") {
                $0.add("tick", Int(tick))
                $0.add("peer", PeerKey(bytes: peer.bytes)?.text ?? peer.description)
                $0.add("ours", hex64(ours))
                $0.add("theirs", hex64(theirs))
            }
        case .unsignedLie(let player):
            // Only this peer can know (its session is the evidence): said once, nothing voided.
            rt.event("unsigned_ops") {
                $0.add("player", Int(player))
                $0.add("key", ownerText(config.players[Int(player)].owner))
            }
        case .equivocation:
            // The verdict voids the player's log in the match (NetMatchHook), and the `cheat`
            // event follows from the replica like any other cheat.
            break
        case .finalMismatch(let peer, let ours, let theirs):
            // After the end, holding the same ops as we do, a peer ended on another final hash.
            desyncs += 1
            rt.event("desync") {
                $0.add("tick", "final")
                $0.add("peer", PeerKey(bytes: peer.bytes)?.text ?? peer.description)
                $0.add("ours", hex64(ours))
                $0.add("theirs", hex64(theirs))
            }
        case .badSignature(let player, let from):
            guard badSignaturesShown.insert("\(player)/\(from.description)").inserted else {
                badSignatureEventsSuppressed += 1
                return
            }
            rt.event("bad_signature") {
                $0.add("player", Int(player))
                $0.add("from", PeerKey(bytes: from.bytes)?.text ?? from.description)
            }
        }
    }

    /// Prints a `cheat` event for each cheat the rules found since the last call.
    func reportCheats(_ replica: Replica<TurfWorld>) {
        for c in cheats.update(replica) {
            rt.event("cheat") { addCheat(c, config: config, to: &$0) }
        }
    }

    func handle(_ e: LinkEvent) {
        switch e {
        case .opened(let id, let key, let address):
            if isHost {
                pendingKeys[id] = key
                pendingAddresses[id] = address
            } else if id != hostLink {
                // The mesh: a direct session from another player of this match.
                if owns(key) && !NetRuntime.testingNoMesh(with: key) {
                    directLinks[key] = id
                } else {
                    let links = rt.links
                    rt.live.execute { _ in links.close(id) }
                }
            }
        case .closed(let id, _):
            if isHost, let k = key(of: id) { memberLinks[k] = nil }
            if !isHost, let k = directLinks.first(where: { $0.value == id })?.key { directLinks[k] = nil }
        case .message(let id, let bytes):
            let sender = key(of: id)
            let fromHost = !isHost && id == hostLink
            guard let msg = try? LobbyMessage.decode(bytes) else {
                rt.dropped += 1
                return
            }
            switch msg {
            case .hello(let h) where isHost:
                // Once our match is over (settling) nobody can join it any more.
                guard let key = pendingKeys[id], h.key == key.bytes, let roster = rosterMessage, !matchOver else {
                    rt.send(id, .leave(.started))
                    return
                }
                if let why = rt.refusal(of: key) {  // friends only, kicked keys (docs/lobby.md)
                    rt.send(id, .leave(why))
                    return
                }
                if h.spectate {
                    spectatorArrived(key, link: id, name: h.name, roster: roster)
                    return
                }
                // A member back after a crash (same identity): the roster, then (after this tick)
                // every op and the start.
                guard owns(key) else {
                    rt.send(id, .leave(.started))
                    return
                }
                relink(key, to: id)
                rejoins += 1
                // The roster with the rejoiner's new address, to it and (the rejoin's announcement)
                // to every other member, whose side of the pair dials it again (`restoreMesh`).
                var announced = roster
                if case .roster(var r) = roster, let address = pendingAddresses[id],
                    let i = r.members.firstIndex(where: { $0.key == key.bytes })
                {
                    r.members[i].addresses = [address]
                    announced = .roster(r)
                    rosterMessage = announced
                }
                rt.send(id, announced)
                for (k, l) in memberLinks where k != key && owns(k) { rt.send(l, announced) }
                resumeWanted.append((id, key, false))
                rt.event("peer") {
                    $0.add("key", key.text)
                    $0.add("state", "rejoined")
                }
            case .leave:
                if let k = sender, left.insert(k).inserted { newlyLeft.append(k) }
            case .roster(let r) where fromHost:
                restoreMesh(r)
            case .settings, .roster, .revealRequest, .start:
                break  // late copies of lobby messages
            default:
                rt.dropped += 1  // ops and done travel by NetMatch now; anything else is out of place
            }
        }
    }

    /// Host: `key`'s session is now `id` (a restarted peer's new session replaces its old one).
    func relink(_ key: PeerKey, to id: UInt32) {
        if let old = memberLinks[key], old != id {
            let links = rt.links
            rt.live.execute { _ in links.close(old) }
        }
        memberLinks[key] = id
    }

    /// Host: a spectator says hello while the match runs (docs/lobby.md, "Spectators"). It gets
    /// what a rejoiner gets (the roster now; every op held here and the start after this tick),
    /// and from then on NetMatch feeds it as a watcher. A player's key cannot spectate, and at most
    /// `NetRuntime.maxSpectators` watch.
    func spectatorArrived(_ key: PeerKey, link id: UInt32, name: String, roster: LobbyMessage) {
        guard !owns(key), startMessage != nil else {
            rt.send(id, .leave(.refused))
            return
        }
        let watching = memberLinks.keys.filter { !owns($0) }
        guard watching.count < NetRuntime.maxSpectators || memberLinks[key] != nil else {
            rt.send(id, .leave(.full))
            return
        }
        relink(key, to: id)
        rt.send(id, roster)
        resumeWanted.append((id, key, true))
        rt.event("peer") {
            $0.add("key", key.text)
            $0.add("name", NetRuntime.displayName(name))
            $0.add("state", "spectating")
            $0.add("address", pendingAddresses[id]?.description)
        }
    }

    /// Member: the host announced a rejoin (a roster during the match). Of each pair the member with
    /// the greater key dials (the rejoiner dials those below it); here we dial every member below us
    /// whose session is missing, silent for 2 s or at another address than the roster's, so the
    /// mesh is whole again on both sides (not only through relays).
    func restoreMesh(_ r: LobbyMessage.Roster) {
        let mine = rt.identity.publicKey.bytes
        var due: [(key: PeerKey, addresses: [PeerAddress], link: UInt32?)] = []
        for m in r.members where m.path != .local && m.key != mine && m.key.lexicographicallyPrecedes(mine) {
            guard let k = PeerKey(bytes: m.key), owns(k), !NetRuntime.testingNoMesh(with: k), !m.addresses.isEmpty
            else { continue }
            due.append((k, m.addresses, directLinks[k]))
        }
        guard !due.isEmpty else { return }
        let links = rt.links
        let wanted = due
        rt.live.execute { peer in
            for d in wanted {
                if let id = d.link, let a = links.address(id), d.addresses.contains(a),
                    (links.silence(id) ?? .max) < 2_000_000_000
                {
                    continue  // a live session to the same address: nothing to restore
                }
                for addr in d.addresses {
                    guard let s = peer.sessions?.connect(to: addr, mode: .knownKey(d.key)) else { continue }
                    links.adopt(s)
                }
            }
        }
    }

    /// Once a second: each linked peer's latest round trip, for NetMatch's relay timing and the
    /// end event's `rtt_ms_p50`.
    func sampleRTTs(_ net: inout NetMatch<TurfWorld>) {
        let ids = linked
        let links = rt.links
        let rtts =
            (try? rt.live.sync { _ in ids.compactMap { k, id in links.traffic(id).lastRTT.map { (k, $0) } } }) ?? []
        for (k, ns) in rtts {
            rttSamples[k, default: []].append(ns)
            if rttSamples[k]!.count > 600 { rttSamples[k]!.removeFirst() }
            if let o = PeerKey(bytes: k.bytes) { net.noteRTT(o, nanos: ns) }
        }
    }

    /// Tells every linked peer we are done (our match settled).
    func sayLeave() {
        for (_, id) in linked { rt.send(id, .leave(.quit)) }
    }
}

/// The per-tick I/O of a networked match: `NetMatchHook` (receive, deliver the authenticated ops,
/// send what this tick made) plus the control messages, and the snapshot and start owed to a
/// rejoiner or a late spectator after the tick.
struct NetHook: MatchHook {
    typealias Controller = TurfController
    let runner: MatchRunner
    var inner: NetMatchHook<TurfController>

    mutating func applyLeaves() {
        for k in runner.newlyLeft { if let o = PeerKey(bytes: k.bytes) { inner.net.peerLeft(o) } }
        runner.newlyLeft.removeAll()
    }

    mutating func willRun(tick: Tick, match: inout LocalMatch<TurfController>) {
        runner.tickNow = (tick, monotonicNanos())
        runner.pump()
        applyLeaves()
        inner.willRun(tick: tick, match: &match)
    }

    mutating func didRun(tick: Tick, match: inout LocalMatch<TurfController>) {
        inner.didRun(tick: tick, match: &match)
        // After the tick merged everything delivered so far (ops that arrived before a rejoiner's
        // hello went to its old link: they must be in its snapshot). The snapshot goes before the
        // start: a joiner that gets a start with no snapshot before it is a first-time member
        // whose start came late, never a rejoiner (docs/lobby.md, "Leaving and rejoining").
        if !runner.resumeWanted.isEmpty, let start = runner.startMessage {
            let snap = match.replica.snapshot()
            let bytes = snap.encode()
            // Per player, the ops from seq 0 the snapshot holds without a gap: a late spectator
            // has those, so its watcher link sends only what comes after.
            let held = snap.logs.map { log in log.enumerated().prefix { $0.offset == Int($0.element.seq) }.count }
            let now = monotonicNanos()
            for w in runner.resumeWanted {
                runner.rt.send(w.link, .snapshot(bytes))
                runner.rt.send(w.link, .start(start))
                if w.watcher, let o = PeerKey(bytes: w.key.bytes) { inner.net.addWatcher(o, holding: held, now: now) }
            }
            runner.resumeWanted.removeAll()
        }
    }

    mutating func didSkip(from: Tick, to: Tick, match: inout LocalMatch<TurfController>) {
        inner.didSkip(from: from, to: to, match: &match)
    }

    /// Between ticks and after the match: control messages, then NetMatch; the ops it accepted.
    mutating func pump(wait: Double = 0) -> [Op<TurfOp>] {
        runner.pump(wait: wait)
        applyLeaves()
        return inner.pump()
    }
}

extension NetRuntime {
    /// Runs the match from `start` (tick 0 at `startLocal` on our clock; `offset` is the host's
    /// clock minus ours), then keeps NetMatch running until it is settled (every op and final
    /// statement held and acknowledged), saves the replay with its signatures and prints `end`.
    /// `resume`: the host's snapshot for a rejoiner or a spectator arriving mid-match, merged before
    /// the first tick; without one a late start simply skips the ticks it missed. Returns the exit
    /// status.
    func play(
        runner: inout MatchRunner,
        start: LobbyMessage.Start,
        startLocal: UInt64,
        offset: Int64,
        resume: ReplicaSnapshot<TurfWorld>? = nil
    ) throws -> Int32 {
        let config = start.config
        let me = PeerKey(bytes: identity.publicKey.bytes)
        // NetPlayUI (call site 1 of 3): a bot headless, the keyboard under curses.
        let controllers = ui.controllers(for: config.players(ownedBy: me), config: config)
        let focus = config.players(ownedBy: me).first
        var loop = try TurfMatchLoop(config: config, controllers: controllers, start: startLocal)
        var net = try NetMatch<TurfWorld>(
            config: config,
            identity: identity.signing,
            now: monotonicNanos(),
            watchers: runner.isHost ? runner.watchers : []
        )
        Self.testingSwitches(&net)
        if !runner.isHost {
            let cut = runner.directLinks.filter { Self.testingNoMesh(with: $0.key) }
            let links = self.links
            if !cut.isEmpty { live.execute { _ in for id in cut.values { links.close(id) } } }
            for k in cut.keys { runner.directLinks[k] = nil }
        }
        let lateBy = Int64(monotonicNanos()) - Int64(startLocal)
        if let snap = resume {
            // Joining a running match (a rejoin, or a spectator arriving late): every op the host
            // holds, ours included, first. A first-time member whose start came late has none to
            // merge: its loop skips the ticks it missed (its player made no ops in them), its log
            // starts at seq 0, and the others' ops reach it by NetMatch's redundancy.
            try loop.merge(snap)
            net.restore(snap.logs.flatMap { $0 }, now: monotonicNanos())
        }
        event("start") { j in
            j.add("players", config.players.count)
            j.add("seed", hex64(config.seed))
            j.add("ticks", Int(config.lengthTicks))
            j.add("tick_rate", Int(config.tickRate))
            j.add("you", config.players(ownedBy: me).map { Int($0) }.first)
            j.add("clock_offset_ms", Double(offset) / 1e6)
            if let d = runner.clockDelay {
                j.add("clock_uncertainty_ms", Double(d) / 2e6)
            } else {
                j.addNull("clock_uncertainty_ms")
            }
            j.add("clock_samples", runner.clockSamples)
            j.add("late_ms", Double(max(0, lateBy)) / 1e6)
            j.add("resumed_seq", config.players(ownedBy: me).first.map { Int(loop.replica.nextSeq(for: $0)) })
            // From process start until the match runs here (for a rejoin: until it plays on).
            if let t0 = processStart { j.add("playing_ms", Double(monotonicNanos() - t0) / 1e6) }
        }
        let began = monotonicNanos()
        let r = runner
        var hook = NetHook(
            runner: runner,
            inner: NetMatchHook(
                net: net,
                now: { monotonicNanos() },
                inbound: { r.inbound() },
                outbound: { r.outbound($0) },
                onEvent: { r.report($0) }
            )
        )
        // The clock: a member re-estimates its offset to the host every second from the
        // lowest-delay pings and slews toward it (at most 1 ms a tick), so ticks stay aligned.
        var applied = offset
        var owed: Int64 = 0
        var lastEstimate = monotonicNanos()
        var lastUncertainty: UInt64? = runner.clockDelay.map { $0 / 2 }
        // Each second: how far this peer's tick clock stood from the host's as best estimated then
        // (the correction still owed when a new estimate came in), ns.
        var skewSamples: [Int64] = []
        let hostLink = runner.hostLink
        var lastRTTSample = monotonicNanos()
        while !loop.isOver {
            loop.advance(now: monotonicNanos(), hook: &hook)
            runner.reportCheats(loop.replica)
            // NetPlayUI (call site 2 of 3): keys steer our player (no input delay), the screen is drawn.
            if !ui.frame(loop: &loop, me: focus, net: { runner.netStatus(hook.inner.net) }) {
                return leaveMatch(runner)
            }
            if monotonicNanos() - lastRTTSample > 1_000_000_000 {
                lastRTTSample = monotonicNanos()
                runner.sampleRTTs(&hook.inner.net)
                checkPaths()
                _ = traversal?.tick()  // the host's: birthday and NAT events
            }
            if let hostLink, monotonicNanos() - lastEstimate > 1_000_000_000 {
                lastEstimate = monotonicNanos()
                let links = self.links
                live.execute { _ in links.ping(hostLink) }
                if let est = ClockEstimate.offset((try? live.sync { _ in links.traffic(hostLink).clock }) ?? []) {
                    owed += applied - est.offset
                    applied = est.offset
                    lastUncertainty = est.delay / 2
                    skewSamples.append(abs(owed))
                }
            }
            if owed != 0 { owed = loop.slewClock(by: owed, maxStep: 1_000_000) }
            if loop.isOver { break }
            let wait = loop.wait(from: monotonicNanos())
            if wait > 0 { runner.pump(wait: Double(min(wait, 50_000_000)) / 1e9) }
        }
        loop.flushJournal()
        runner.tickNow = nil
        runner.matchOver = true
        // The sessions as the match ended (a peer that leaves first closes its own).
        let linkAtEnd = Dictionary(runner.linked, uniquingKeysWith: { a, _ in a })

        // Settling: NetMatch runs on until every op and final statement is held here and every
        // linked peer has acknowledged ours; ops accepted now go into the recording's replica.
        var final = loop.replica
        // A peer we have no session with now waits on nothing of ours (relays served it).
        for p in config.players {
            guard let o = p.owner, o != me, let k = PeerKey(bytes: o.bytes), linkAtEnd[k] == nil else { continue }
            hook.inner.net.peerLeft(o)
        }
        let deadline = monotonicNanos() + 15_000_000_000
        while !hook.inner.net.isSettled && monotonicNanos() < deadline {
            let ops = hook.pump(wait: 0.02)
            for r in hook.inner.net.takeRetractions() { final.retract(r.player, from: r.from) }
            for op in ops { final.receive(op) }
        }
        // Converged: settled (every final hash we heard equals ours) and no peer ever reported
        // another final hash on the same basis.
        var converged = hook.inner.net.isSettled && hook.inner.net.agreed
        for v in hook.inner.net.verdicts { final.applyVerdict(v.player, fromSeq: v.seq, rule: v.rule, tick: v.tick) }
        runner.reportCheats(final)
        // Say so, and linger a moment so our last acknowledgements reach everyone.
        runner.sayLeave()
        let linger = monotonicNanos() + 300_000_000
        while monotonicNanos() < linger {
            let ops = hook.pump(wait: 0.02)
            for r in hook.inner.net.takeRetractions() { final.retract(r.player, from: r.from) }
            for op in ops { final.receive(op) }
        }
        let seconds = Double(monotonicNanos() - began) / 1e9
        net = hook.inner.net
        // A player whose owner crashed and never came back (docs/netmatch.md, "A peer that never
        // comes back"): the survivors agreed on the ops its best signed statement covers; what it
        // made past that cannot be verified, so the recording (and the final hash) leaves it out.
        let gone = net.gonePlayers
        var goneKeys: [String] = []
        if net.cutsLogs {
            var cut = try Replica<TurfWorld>(config: config)
            for ops in net.settledLogs(final.allLogs) { for op in ops { cut.receive(op) } }
            for op in final.equivocations where net.settledCount(op.player).map({ Int(op.seq) < $0 }) ?? true {
                cut.receive(op)
            }
            for v in net.verdicts { cut.applyVerdict(v.player, fromSeq: v.seq, rule: v.rule, tick: v.tick) }
            final = cut
            for p in gone {
                guard let o = config.players[Int(p)].owner, let k = PeerKey(bytes: o.bytes) else { continue }
                if !goneKeys.contains(k.text) { goneKeys.append(k.text) }
            }
        }

        // Per other peer (players' owners; the host also lists spectators): the path, and for a
        // direct one the session's round trips and bytes (every datagram, 28 B of UDP/IP each).
        var linkObjects: [JSONObject] = []
        var linkSummaries: [LinkSummary] = []  // the same, for the end screen
        var keys: [PeerKey] = []
        for p in config.players {
            guard let o = p.owner, o != me, let k = PeerKey(bytes: o.bytes), !keys.contains(k) else { continue }
            keys.append(k)
        }
        if runner.isHost { keys += runner.memberLinks.keys.filter { !runner.owns($0) }.sorted { $0.text < $1.text } }
        for k in keys {
            var j = JSONObject()
            j.add("key", k.text)
            let id = linkAtEnd[k]
            let relayed = id.map { relayedLinks.contains($0) } ?? true
            j.add("path", relayed ? "relayed" : "direct")
            let samples = (runner.rttSamples[k] ?? []).sorted()
            let rtt = samples.isEmpty ? nil : Double(samples[samples.count / 2]) / 1e6
            if let rtt { j.add("rtt_ms_p50", rtt) } else { j.addNull("rtt_ms_p50") }
            let t = id.flatMap { id in try? live.sync { [links] _ in links.traffic(id) } } ?? LinkTraffic()
            linkSummaries.append(
                LinkSummary(
                    name: config.players.first { $0.owner == PeerKey(bytes: k.bytes) }?.name ?? "spectator",
                    key: k.text,
                    path: relayed ? .relayed : .direct,
                    rttMsP50: rtt,
                    bytesSent: t.bytesSent,
                    bytesReceived: t.bytesReceived,
                    seconds: seconds
                )
            )
            j.add("bytes_sent", t.bytesSent)
            j.add("bytes_received", t.bytesReceived)
            j.add("seconds", seconds)
            if let s = runner.medianSkew(k) { j.add("tick_skew_ms_p50", s) } else { j.addNull("tick_skew_ms_p50") }
            if id != nil {
                // Third players' ops this peer forwarded on the link (it relays for them).
                j.add("ops_forwarded", net.stats(for: PeerKey(bytes: k.bytes)!).map { Int($0.opsForwarded) } ?? 0)
            }
            linkObjects.append(j)
        }

        var replay = try Replay<TurfWorld>(
            config: config,
            logs: final.allLogs,
            equivocations: final.equivocations,
            verdicts: net.verdicts
        )
        replay.signatures = net.recordedSignatures
        // The recording must be what the peers agreed on (it is, unless a snapshot brought ops
        // NetMatch never accepted): else this peer did not converge either.
        if converged, let agreedHash = net.finalHash, agreedHash != replay.finalHash {
            printErr("the recording's final hash \(hex64(replay.finalHash)) is not the agreed \(hex64(agreedHash))")
            converged = false
        }
        var path: String?
        do {
            try StatePaths.ensure(StatePaths.replays)
            path = try DurableFile.createNew(
                ReplayFile.encode(replay),
                base: "\(StatePaths.replays)/\(ReplayNames.base(config))",
                ext: "turfreplay"
            )
        } catch {
            printErr("could not save the replay: \(error)")
        }
        let d = net.drops
        // The cheats of the replica recorded (`turf replay --headless` re-derives the same).
        let replayCheats = final.cheats
        event("end") { j in
            j.add("final_hash", hex64(replay.finalHash))
            j.add("replay", path)
            j.add("converged", converged)
            // Owners that crashed and never came back: settled without their final statement.
            j.add("gone", goneKeys)
            j.add("desyncs", runner.desyncs)
            if let t = net.desyncReported { j.add("first_bad_tick", Int(t)) }
            j.add("rejected_ops", runner.rejectedOps(net, replica: final))
            j.add("bad_signatures", Int(d.badSignatures))
            j.add("cheats", replayCheats.map { cheatJSON($0, config: config) })
            // Events not printed (rate limits): repeated bad signatures and cheat reports.
            j.add("events_suppressed", runner.badSignatureEventsSuppressed + runner.cheats.suppressed)
            // Lobby messages dropped as hostile or out of place, and events the mailbox had no room for.
            j.add("dropped_messages", dropped + Int(mailbox.dropped))
            j.add("dropped_datagrams", Int(d.malformed + d.unknownPeer + d.farAhead) + runner.strayDatagrams)
            j.add("ops", replay.opCount)
            j.add("signatures", replay.signatures.count)
            j.add("rejoins", runner.rejoins)
            // Tick skew measured from NetMatch's packets: the largest, over the peers we have a
            // session with, of the median gap between our tick clock and theirs.
            let skews = keys.compactMap { runner.medianSkew($0) }.map { abs($0) }
            if let m = skews.max() { j.add("tick_skew_ms_max", m) } else { j.addNull("tick_skew_ms_max") }
            if !runner.isHost {
                // The clock alignment to the host: the largest correction still owed when a new
                // offset estimate came in, and the estimate's uncertainty (half the best round trip).
                j.add("clock_correction_ms_max", Double(skewSamples.max() ?? 0) / 1e6)
                if let u = lastUncertainty {
                    j.add("clock_uncertainty_ms", Double(u) / 1e6)
                } else {
                    j.addNull("clock_uncertainty_ms")
                }
            }
            if runner.isHost {
                let refused = (try? live.sync { $0.sessions?.stats.passphraseRejected ?? 0 }) ?? 0
                j.add("passphrase_rejected", refused)
                addAdmissionCounts(to: &j)
            }
            j.add("links", linkObjects)
        }
        // NetPlayUI (call site 3 of 3): the end screen, until the player dismisses it.
        ui.end(
            world: final.state,
            config: config,
            me: focus,
            summary: NetEndSummary(
                finalHash: hex64(replay.finalHash),
                replayPath: path,
                desyncs: runner.desyncs,
                rejectedOps: runner.rejectedOps(net, replica: final),
                links: linkSummaries,
                cheats: replayCheats.map { CheatMark(player: Int($0.player), rule: $0.rule, tick: $0.tick) },
                converged: converged
            )
        )
        return converged && path != nil ? 0 : 1
    }
}
