import Determinism
import Engine
import Foundation
import Keys
import Lobby
import NetCore
import NetMatch
import NetPlay
import TerminalUI
import TextOutput
import TurfRules

/// The networked match on this peer, on the thread that runs the match loop (docs/lobby.md,
/// "Match traffic"): the shell around NetPlay's `MatchSession`. It feeds the session the link
/// events, the datagrams and the clock; carries out its actions on the event loop; turns its
/// events into headless events and the HUD; and measures what the end event reports (tick skew,
/// round trips, the clock's corrections).
final class MatchRunner {
    unowned let rt: NetRuntime
    let session: MatchSession<TurfController>
    var config: MatchConfig { session.config }
    var isHost: Bool { session.isHost }
    var desyncs = 0
    /// Cheats the rules found (`cheat` events; the HUD and end screen mark the players).
    var cheats = CheatReporter()
    /// Bad signatures reported once per (player, relaying peer); the rest are counted.
    var badSignaturesShown: Set<String> = []
    var badSignatureEventsSuppressed = 0
    /// Round-trip samples per peer with a session (ns), one per `stats` event.
    var rttSamples: [PeerKey: [UInt64]] = [:]
    /// Tick skew to each peer (ms, positive: we run ahead), one sample per new tick a peer reports.
    var tickSkew: [PeerKey: [Double]] = [:]
    var lastPeerTick: [PeerKey: Tick] = [:]
    /// How long after a tick began its packets left here (ms).
    var sendDelay: [Double] = []
    /// Ops the match's replica refused, as of the last `carryOut` (the HUD's figure).
    var replicaRejected = 0
    /// Peers a `disconnected` event was printed for (and not `connected` since).
    var shownDown: Set<PeerKey> = []

    init(rt: NetRuntime, session: MatchSession<TurfController>) {
        self.rt = rt
        self.session = session
    }

    /// The session currently linking us to `k`, if any.
    func link(to k: PeerKey) -> UInt32? { session.links[k] }

    // MARK: the shell's side of the session

    /// Everything the event loop posted: link events to the session, datagrams (with their tick
    /// skew measured) to NetMatch, stats (round trips, the HUD's pings, paths).
    func takeIn(_ events: [NetEvent]) {
        for e in events {
            if let l = e.link { session.handle(l, now: monotonicNanos()) }
        }
        let (items, overflow) = rt.mailbox.drainDatagrams()
        session.noteStray(Int(overflow))
        for d in items {
            if let k = session.peerOf[d.link], let p = session.packetTick(d.bytes) {
                noteSkew(k, packetTick: p, at: d.at)
            }
            session.receive(d.bytes, on: d.link)
        }
    }

    /// What the session asked for, done; what it said, reported.
    func carryOut() {
        let (actions, events) = session.take()
        if let now = session.tickNow, sendDelay.count < 100_000,
            actions.contains(where: { if case .datagram = $0 { true } else { false } })
        {
            sendDelay.append(Double(monotonicNanos() - now.at) / 1e6)
        }
        rt.perform(actions)
        for e in events { report(e) }
        let replica = session.final ?? session.loop.replica
        replicaRejected = Int(replica.stats.rejected)
        reportCheats(replica)
    }

    /// On every `stats` event: each linked peer's latest round trip, for NetMatch's relay timing
    /// and the end event's `rtt_ms_p50`, and how long each link has been silent.
    func sampleStats() {
        for (k, id) in session.links {
            guard let t = rt.stats.links[id] else { continue }
            if let ns = t.lastRTT {
                rttSamples[k, default: []].append(ns)
                if rttSamples[k]!.count > 600 { rttSamples[k]!.removeFirst() }
                session.noteRTT(id, nanos: ns)
            }
            if let s = t.silence { session.noteSilence(id, nanos: s) }
        }
    }

    /// A packet from `k` saying it had run `p` ticks left it as it finished tick p − 1; it arrived
    /// at `at`, one one-way delay (half the RTT) later. Where our own tick clock stood then, minus
    /// p − 1, is how far ahead of it we run. Only the first arrival of each new tick counts.
    func noteSkew(_ k: PeerKey, packetTick p: Tick, at: UInt64) {
        guard let now = session.tickNow, p > 0, p > lastPeerTick[k] ?? 0 else { return }
        lastPeerTick[k] = p
        let tickNs = 1e9 / Double(config.tickRate)
        let oneWay = Double(rttSamples[k]?.last ?? 0) / 2
        let ours = Double(now.tick) + (Double(at) - oneWay - Double(now.at)) / tickNs
        if tickSkew[k, default: []].count < 100_000 {
            tickSkew[k, default: []].append((ours - Double(p - 1)) * tickNs / 1e6)
        }
    }

    /// Per peer, the median skew (ms) less the median send delay (a peer's packets leave as late
    /// after its own tick began, so our median stands for theirs); nil without samples.
    func medianSkew(_ k: PeerKey) -> Double? {
        guard let s = tickSkew[k], !s.isEmpty else { return nil }
        let delay = sendDelay.isEmpty ? 0 : sendDelay.sorted()[sendDelay.count / 2]
        return s.sorted()[s.count / 2] - delay
    }

    /// What the session reports, as headless events. Liveness is shown for peers we have a session
    /// with (a killed peer's lasts until the transport's 20 s timeout; a relayed peer's silence is
    /// not observable from here).
    func report(_ e: MatchSession<TurfController>.Event) {
        switch e {
        case .rejoined(let k):
            rt.event("peer") {
                $0.add("key", k.text)
                $0.add("state", "rejoined")
            }
        case .spectating(let k, let name, let address):
            rt.event("peer") {
                $0.add("key", k.text)
                $0.add("name", name)
                $0.add("friend", rt.friends.name(of: k))
                $0.add("state", "spectating")
                $0.add("address", address?.description)
            }
        case .left: break
        case .net(let n): report(n)
        }
    }

    func report(_ e: NetMatchEvent) {
        switch e {
        case .linkDown(let k):
            guard link(to: k) != nil, !session.left.contains(k), shownDown.insert(k).inserted else { return }
            rt.event("peer") {
                $0.add("key", k.text)
                $0.add("state", "disconnected")
            }
        case .linkUp(let k):
            guard shownDown.remove(k) != nil else { return }
            rt.event("peer") {
                $0.add("key", k.text)
                $0.add("state", "connected")
            }
        case .desync(let tick, let peer, let ours, let theirs):
            desyncs += 1
            rt.event("desync") {
                $0.add("tick", Int(tick))
                $0.add("peer", peer.text)
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
                $0.add("peer", peer.text)
                $0.add("ours", hex64(ours))
                $0.add("theirs", hex64(theirs))
            }
        case .badSignature(let player, let from):
            guard badSignaturesShown.insert("\(player)/\(from.text)").inserted else {
                badSignatureEventsSuppressed += 1
                return
            }
            rt.event("bad_signature") {
                $0.add("player", Int(player))
                $0.add("from", from.text)
            }
        }
    }

    /// Prints a `cheat` event for each cheat the rules found since the last call.
    func reportCheats(_ replica: Replica<TurfWorld>) {
        for c in cheats.update(replica) {
            rt.event("cheat") { addCheat(c, config: config, to: &$0) }
        }
    }
}

/// How a match ended on this peer, for the lobby after it (docs/lobby.md, "Rematch").
struct MatchResult {
    /// 0: completed, converged and saved; else 1.
    var status: Int32
    /// The player left the running match (q, Esc, a signal): no lobby after it.
    var quit: Bool
    /// The match's number in the series.
    var match: UInt32
    /// The sessions the match ended with, by peer.
    var links: [PeerKey: UInt32] = [:]
    /// Peers that left the lobby during the match, or crashed and never came back.
    var gone: Set<PeerKey> = []
    /// The lobby's messages that came while the match still ran here (chat, a rematch).
    var lobbyMessages: [LinkEvent] = []
}

extension NetRuntime {
    /// Runs the match from `start` (tick 0 at `startLocal` on our clock; `offset` is the host's
    /// clock minus ours), then keeps NetMatch running until it is settled (every op and final
    /// statement held and acknowledged), says so to its peers, saves the replay with its
    /// signatures and prints `end`. `links`: the sessions the lobby left (by peer). `resume`: the
    /// host's snapshot for a rejoiner or a spectator arriving mid-match, merged before the first
    /// tick; without one a late start simply skips the ticks it missed. The sessions stay open
    /// for the lobby after the match.
    func play(
        start: LobbyMessage.Start,
        roster: LobbyMessage?,
        links: [PeerKey: UInt32],
        hostLink: UInt32?,
        startLocal: UInt64,
        offset: Int64,
        clockDelay: UInt64? = nil,
        clockSamples: Int = 0,
        resume: ReplicaSnapshot<TurfWorld>? = nil
    ) throws -> MatchResult {
        let config = start.config
        let me = identity.publicKey
        // NetPlayUI (call site 1 of 3): a bot headless, the keyboard under curses.
        let controllers = ui.controllers(for: config.players(ownedBy: me), config: config)
        let focus = config.players(ownedBy: me).first
        let admission = self.admission
        let session = try MatchSession<TurfController>(
            options: .init(
                me: me,
                identity: identity.signing,
                isHost: hostLink == nil,
                hostLink: hostLink,
                start: start,
                roster: roster,
                maxSpectators: Self.maxSpectators,
                refusal: { admission.refusal(of: $0.bytes) },
                noMesh: { Self.testingNoMesh(with: $0) },
                configureNet: { Self.testingSwitches(&$0) }
            ),
            controllers: controllers,
            links: links,
            startLocal: startLocal,
            now: monotonicNanos(),
            resume: resume
        )
        let runner = MatchRunner(rt: self, session: session)
        runner.carryOut()
        let lateBy = Int64(monotonicNanos()) - Int64(startLocal)
        event("start") { j in
            j.add("players", config.players.count)
            j.add("match", Int(start.match))
            j.add("seed", hex64(config.seed))
            j.add("ticks", Int(config.lengthTicks))
            j.add("tick_rate", Int(config.tickRate))
            j.add("you", focus.map { Int($0) })
            j.add("clock_offset_ms", Double(offset) / 1e6)
            if let d = clockDelay {
                j.add("clock_uncertainty_ms", Double(d) / 2e6)
            } else {
                j.addNull("clock_uncertainty_ms")
            }
            j.add("clock_samples", clockSamples)
            j.add("late_ms", Double(max(0, lateBy)) / 1e6)
            j.add("resumed_seq", focus.map { Int(session.loop.replica.nextSeq(for: $0)) })
            // From process start until the match runs here (for a rejoin: until it plays on).
            if let t0 = processStart { j.add("playing_ms", Double(monotonicNanos() - t0) / 1e6) }
            // Host, a rematch: from every member's answer to tick 0.
            if let t = rematchAgreedAt { j.add("rematch_ms", Double(Int64(startLocal) - Int64(t)) / 1e6) }
        }
        let began = monotonicNanos()
        // The clock: a member re-estimates its offset to the host on every `stats` event (once a
        // second) from the lowest-delay pings and slews toward it (at most 1 ms a tick), so ticks
        // stay aligned.
        var clock = ClockFollower(applied: offset, uncertainty: clockDelay.map { $0 / 2 })
        var lastPing = monotonicNanos()
        var statsSeen = 0
        var waiter = TickWait()
        while !session.isOver {
            takeIn(runner, wait: 0)
            session.advance(now: monotonicNanos())
            runner.carryOut()
            // NetPlayUI (call site 2 of 3): keys steer our player (no input delay), the screen is drawn.
            if !ui.frame(loop: &session.loop, me: focus, net: { runner.netStatus() }) {
                return leaveMatch(runner)
            }
            if let hostLink, monotonicNanos() - lastPing > 1_000_000_000 {
                lastPing = monotonicNanos()
                let links = self.links
                live.execute { _ in links.ping(hostLink) }
            }
            if statsSeen != statsReceived {
                statsSeen = statsReceived
                runner.sampleStats()
                _ = traversal?.tick()  // the host's: birthday and NAT events
                if let hostLink, let est = stats.links[hostLink]?.clockEstimate { clock.estimate(est) }
            }
            clock.slew(session)
            if session.isOver { break }
            // Until the next tick, a key or network traffic, merged at once (InputWait.swift).
            waitForNextTick(runner, waiter: &waiter)
        }

        // Settling: NetMatch runs on until every op and final statement is held here and every
        // linked peer has acknowledged ours; ops accepted now go into the recording's replica.
        let deadline = monotonicNanos() + 15_000_000_000
        while monotonicNanos() < deadline {
            takeIn(runner, wait: 0.02)
            let settled = session.settle(now: monotonicNanos())
            runner.carryOut()
            if settled { break }
        }
        // Say so (the sessions stay, for the lobby after the match), and linger a moment (still
        // answering) so our last acknowledgements reach everyone.
        session.announceSettled()
        runner.carryOut()
        let linger = monotonicNanos() + 300_000_000
        while monotonicNanos() < linger {
            takeIn(runner, wait: 0.02)
            session.pump(now: monotonicNanos())
            runner.carryOut()
        }
        // The figures as they are now (the end event's bytes and round trips).
        freshStats()
        return try finish(runner, began: began, clock: clock, focus: focus)
    }

    /// Takes in what the event loop posted (waiting up to `wait` s for the first event).
    func takeIn(_ runner: MatchRunner, wait: Double) {
        runner.takeIn(nextEvents(wait: wait))
    }

    /// The player left a running match (q, Esc, or a signal under curses): the others are told
    /// (the process exits once the leave went out), and the match goes on without us (our avatar
    /// stays). Exit status 0: leaving is not a failure.
    func leaveMatch(_ runner: MatchRunner) -> MatchResult {
        runner.session.leave()
        let (actions, _) = runner.session.take()
        performAndFlush(actions + runner.session.links.values.sorted().map { .closeWhenFlushed($0) })
        ui.close()
        printErr("you left the match")
        return MatchResult(status: 0, quit: true, match: runner.session.options.start.match)
    }

    /// Between matches the datagram lane holds only stragglers of the match that ended (or the
    /// first of the next, which NetMatch sends again): dropped.
    func discardDatagrams() { _ = mailbox.drainDatagrams() }
}

/// A member's tick clock following the host's: each new estimate of the offset adds what it
/// moved to what is owed, and the loop slews by at most 1 ms a tick toward it.
struct ClockFollower {
    var applied: Int64
    var owed: Int64 = 0
    var uncertainty: UInt64?
    /// Each estimate: how far this peer's tick clock stood from the host's (the correction still
    /// owed when it came in), ns.
    var skewSamples: [Int64] = []

    init(applied: Int64, uncertainty: UInt64?) {
        self.applied = applied
        self.uncertainty = uncertainty
    }

    mutating func estimate(_ est: (offset: Int64, delay: UInt64)) {
        owed += applied - est.offset
        applied = est.offset
        uncertainty = est.delay / 2
        skewSamples.append(abs(owed))
    }

    mutating func slew(_ session: MatchSession<TurfController>) {
        if owed != 0 { owed = session.slewClock(by: owed, maxStep: 1_000_000) }
    }
}
