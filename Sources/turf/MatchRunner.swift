import Determinism
import Engine
import Foundation
import Lobby
import LocalFiles
import NetCore
import TerminalUI
import TextOutput
import Transport
import TurfRules

/// The networked match on this peer, on the thread that runs the match loop: the minimal
/// replication until the replication module of issue #9 part 5 replaces it (docs/lobby.md,
/// "Match traffic"). Each peer sends its own ops as `ops` messages on the reliable channel: a
/// member to the host and to every member it has a direct session with (the mesh), the host to
/// every member; the host merges members' ops and forwards them to every other member. So every
/// op reaches every peer at least once, in order per link, and all replicas converge (a second
/// copy is a duplicate, which the replica ignores); where two members have no direct session,
/// their traffic is relayed by the host (path "relayed").
final class MatchRunner {
    typealias TurfOpT = Op<TurfWorld.Payload>
    unowned let rt: NetRuntime
    let config: MatchConfig
    let isHost: Bool
    let hostLink: UInt32?
    /// Host: each member's current link, by key.
    var memberLinks: [PeerKey: UInt32] = [:]
    /// Member: direct sessions to other members (the mesh), by key.
    var directLinks: [PeerKey: UInt32] = [:]
    var pendingKeys: [UInt32: PeerKey] = [:]
    var startMessage: LobbyMessage.Start?
    var rosterMessage: LobbyMessage?
    var pending: [TurfOpT] = []
    var snapshotWanted: [UInt32] = []
    var snapshot: ReplicaSnapshot<TurfWorld>?
    /// Per player: how many ops its owner says it made, once its match ended.
    var done: [PlayerID: UInt32] = [:]
    var left: Set<PeerKey> = []
    /// Ops refused before the replica saw them (a player the sender does not own, a bad batch).
    var rejectedOps = 0
    var clockDelay: UInt64?
    var clockSamples = 0
    var rejoins = 0
    /// Host: members shown as disconnected (silent for `silentAfter`); their avatars stay.
    var silent: Set<PeerKey> = []
    static let silentAfter: UInt64 = 5_000_000_000

    /// Host, once a second: a member silent for 5 s shows as disconnected, and as connected again
    /// when it is heard from (a rejoin is announced as such).
    func checkSilence() {
        guard isHost else { return }
        let links = rt.links
        let current = memberLinks
        let quiet = (try? rt.live.sync { _ in current.compactMapValues { links.silence($0) } }) ?? [:]
        for (k, ns) in quiet {
            if ns >= Self.silentAfter && !silent.contains(k) && !left.contains(k) {
                silent.insert(k)
                rt.event("peer") {
                    $0.add("key", k.text)
                    $0.add("state", "disconnected")
                }
            } else if ns < Self.silentAfter && silent.contains(k) {
                silent.remove(k)
                rt.event("peer") {
                    $0.add("key", k.text)
                    $0.add("state", "connected")
                }
            }
        }
    }

    init(rt: NetRuntime, config: MatchConfig, isHost: Bool, hostLink: UInt32?) {
        self.rt = rt
        self.config = config
        self.isHost = isHost
        self.hostLink = hostLink
    }

    func owner(of p: PlayerID) -> PeerKey? {
        config.players[Int(p)].owner.flatMap { PeerKey(bytes: $0.bytes) }
    }

    func key(of link: UInt32) -> PeerKey? { memberLinks.first { $0.value == link }?.key }

    /// Sends to every other peer this one talks to (host: every member but `except`; member: the host).
    func sendOn(_ m: LobbyMessage, except: UInt32? = nil) {
        if isHost {
            for l in memberLinks.values where l != except { rt.send(l, m) }
        } else {
            if let h = hostLink { rt.send(h, m) }
            for l in directLinks.values { rt.send(l, m) }
        }
    }

    /// Handles everything the event loop posted.
    func pump(wait: Double = 0) {
        for e in wait > 0 ? rt.mailbox.wait(wait) : rt.mailbox.drain() { handle(e) }
    }

    func handle(_ e: LinkEvent) {
        switch e {
        case .opened(let id, let key, _):
            if isHost {
                pendingKeys[id] = key
            } else if id != hostLink {
                // The mesh: a direct session from another player of this match.
                if config.players.contains(where: { $0.owner?.bytes == key.bytes }) {
                    directLinks[key] = id
                } else {
                    let links = rt.links
                    rt.live.execute { _ in links.close(id) }
                }
            }
        case .closed(let id, _):
            if isHost, let k = key(of: id) {
                memberLinks[k] = nil
                if silent.insert(k).inserted && !left.contains(k) {
                    rt.event("peer") {
                        $0.add("key", k.text)
                        $0.add("state", "disconnected")
                    }
                }
            }
            if let k = directKey(of: id) { directLinks[k] = nil }
        case .message(let id, let bytes):
            let fromHost = !isHost && id == hostLink
            let sender: PeerKey? = isHost ? key(of: id) : (fromHost ? nil : directKey(of: id))
            if !isHost && !fromHost && sender == nil {
                rt.dropped += 1
                return
            }
            guard let msg = try? LobbyMessage.decode(bytes) else {
                rt.dropped += 1
                return
            }
            switch msg {
            case .ops(let b):
                guard let ops = try? OpCodec<TurfWorld>.decodeBatch(b, config: config, maxOps: 4096) else {
                    rt.dropped += 1
                    return
                }
                if fromHost {
                    pending += ops  // the host forwards every player's ops
                } else {
                    // A member (to the host, or directly to another member) sends only its own players' ops.
                    guard let sender else {
                        rt.dropped += 1
                        return
                    }
                    let own = ops.filter { owner(of: $0.player) == sender }
                    rejectedOps += ops.count - own.count
                    pending += own
                    if isHost && !own.isEmpty {
                        sendOn(.ops(own.count == ops.count ? b : OpCodec<TurfWorld>.encodeBatch(own)), except: id)
                    }
                }
            case .done(let counts):
                for (p, n) in counts where Int(p) < config.players.count {
                    let pid = PlayerID(p)
                    if !fromHost {
                        guard let sender, owner(of: pid) == sender else {
                            rt.dropped += 1
                            continue
                        }
                    }
                    done[pid] = n
                }
                if isHost { sendOn(.done(counts), except: id) }
            case .hello(let h) where isHost:
                // A member back after a crash (same identity): the roster, the start and every op.
                guard let key = pendingKeys[id], h.key == key.bytes,
                    config.players.contains(where: { $0.owner?.bytes == key.bytes }),
                    let start = startMessage, let roster = rosterMessage
                else {
                    rt.send(id, .leave(.started))
                    return
                }
                if let old = memberLinks[key], old != id {
                    let links = rt.links
                    rt.live.execute { _ in links.close(old) }
                }
                memberLinks[key] = id
                silent.remove(key)
                rejoins += 1
                rt.send(id, roster)
                rt.send(id, .start(start))
                snapshotWanted.append(id)
                rt.event("peer") {
                    $0.add("key", key.text)
                    $0.add("state", "rejoined")
                }
            case .snapshot(let b) where fromHost:
                guard let s = try? ReplicaSnapshot<TurfWorld>.decode(b, config: config) else {
                    rt.dropped += 1
                    return
                }
                snapshot = s
            case .leave:
                if isHost, let k = sender { left.insert(k) }
            case .settings, .roster, .revealRequest, .start:
                break  // late copies of lobby messages
            default:
                rt.dropped += 1
            }
        }
    }

    func directKey(of link: UInt32) -> PeerKey? { directLinks.first { $0.value == link }?.key }

    /// The ops this peer's players made, per player: what `done` announces.
    func ownCounts(_ replica: Replica<TurfWorld>) -> [UInt32: UInt32] {
        var out: [UInt32: UInt32] = [:]
        for p in config.players(ownedBy: OwnerKey(rt.identity.publicKey.bytes)) {
            out[UInt32(p)] = replica.nextSeq(for: p)
        }
        return out
    }

    func complete(_ replica: Replica<TurfWorld>) -> Bool {
        (0..<config.players.count).allSatisfy { p in
            guard let n = done[PlayerID(p)] else { return false }
            return replica.contiguousCount(for: PlayerID(p)) >= Int(n)
        }
    }
}

/// The per-tick I/O of a networked match: merge what arrived, send what this tick made.
struct NetHook: MatchHook {
    typealias Controller = TurfController
    let runner: MatchRunner

    mutating func willRun(tick: Tick, match: inout LocalMatch<TurfController>) {
        match.recordOutbox = true
        runner.pump()
        for op in runner.pending { match.deliver(op) }
        runner.pending.removeAll()
    }

    mutating func didRun(tick: Tick, match: inout LocalMatch<TurfController>) {
        // After the tick merged everything delivered so far (ops that arrived before a rejoiner's
        // hello went to its old link: they must be in its snapshot).
        if !runner.snapshotWanted.isEmpty {
            let bytes = match.replica.snapshot().encode()
            for id in runner.snapshotWanted { runner.rt.send(id, .snapshot(bytes)) }
            runner.snapshotWanted.removeAll()
        }
        guard !match.outbox.isEmpty else { return }
        runner.sendOn(.ops(OpCodec<TurfWorld>.encodeBatch(match.outbox)))
        match.outbox.removeAll(keepingCapacity: true)
    }
}

extension NetRuntime {
    /// Runs the match from `start` (tick 0 at `startLocal` on our clock; `offset` is the host's
    /// clock minus ours), then waits until every player's ops are held, saves the replay and
    /// prints `end`. Returns the exit status.
    func play(runner: inout MatchRunner, start: LobbyMessage.Start, startLocal: UInt64, offset: Int64) throws -> Int32 {
        let config = start.config
        let me = OwnerKey(identity.publicKey.bytes)
        // NetPlayUI (call site 1 of 3): a bot headless, the keyboard under curses.
        let controllers = ui.controllers(for: config.players(ownedBy: me), config: config)
        let focus = config.players(ownedBy: me).first
        var loop = try TurfMatchLoop(config: config, controllers: controllers, start: startLocal)
        let lateBy = Int64(monotonicNanos()) - Int64(startLocal)
        if !runner.isHost && lateBy > 0 {
            // Joining a running match (a rejoin): every op the host holds, ours included, first.
            let deadline = monotonicNanos() + 5_000_000_000
            while runner.snapshot == nil && monotonicNanos() < deadline { runner.pump(wait: 0.1) }
            guard let snap = runner.snapshot else {
                printErr("the host sent no snapshot of the running match")
                return 1
            }
            try loop.merge(snap)
            runner.snapshot = nil
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
        var hook = NetHook(runner: runner)
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
        var lastSilenceCheck = monotonicNanos()
        while !loop.isOver {
            loop.advance(now: monotonicNanos(), hook: &hook)
            // NetPlayUI (call site 2 of 3): keys steer our player (no input delay), the screen is drawn.
            if !ui.frame(loop: &loop, me: focus, net: { runner.netStatus() }) {
                return leaveMatch(runner)
            }
            if monotonicNanos() - lastSilenceCheck > 1_000_000_000 {
                lastSilenceCheck = monotonicNanos()
                runner.checkSilence()
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

        // Convergence: announce our counts, merge until every player's announced ops are held.
        var final = loop.replica
        for op in runner.pending { final.receive(op) }
        runner.pending.removeAll()
        let mine = runner.ownCounts(final)
        for (p, n) in mine { runner.done[PlayerID(p)] = n }
        runner.sendOn(.done(mine))
        let deadline = monotonicNanos() + 10_000_000_000
        while !runner.complete(final) && monotonicNanos() < deadline {
            runner.pump(wait: 0.05)
            for op in runner.pending { final.receive(op) }
            runner.pending.removeAll()
        }
        let converged = runner.complete(final)
        var linkObjects: [JSONObject] = []
        var linkIDs: [(PeerKey, UInt32)] =
            runner.isHost
            ? runner.memberLinks.map { ($0.key, $0.value) }
            : (hostLink.flatMap { h in
                config.players.first.flatMap { $0.owner }.flatMap { PeerKey(bytes: $0.bytes) }.map { [($0, h)] }
            } ?? [])
        linkIDs += runner.directLinks.map { ($0.key, $0.value) }
        for (key, id) in linkIDs {
            let t = (try? live.sync { [links] _ in links.traffic(id) }) ?? LinkTraffic()
            var j = JSONObject()
            j.add("key", key.text)
            j.add("path", "direct")
            if let r = t.rttMs { j.add("rtt_ms", r) } else { j.addNull("rtt_ms") }
            j.add("bytes_sent", t.bytesSent)
            j.add("bytes_received", t.bytesReceived)
            j.add("seconds", Double(monotonicNanos() - began) / 1e9)
            linkObjects.append(j)
        }
        if !runner.isHost {
            for p in config.players {
                guard let o = p.owner, o != me, let k = PeerKey(bytes: o.bytes), !linkIDs.contains(where: { $0.0 == k })
                else { continue }
                var j = JSONObject()
                j.add("key", k.text)
                j.add("path", "relayed")
                linkObjects.append(j)
            }
        }
        if runner.isHost {
            // Stay until members have what we forward (they leave once complete).
            let until = monotonicNanos() + 3_000_000_000
            while runner.memberLinks.keys.contains(where: { !runner.left.contains($0) }) && monotonicNanos() < until {
                runner.pump(wait: 0.05)
            }
        } else {
            runner.sendOn(.leave(.quit))
            Thread.sleep(forTimeInterval: 0.3)
        }

        let replay = try Replay<TurfWorld>(config: config, logs: final.allLogs, equivocations: final.equivocations)
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
        event("end") { j in
            j.add("final_hash", hex64(replay.finalHash))
            j.add("replay", path)
            j.add("converged", converged)
            j.addNull("desyncs")  // desync detection is issue #9 part 7 (not built yet)
            j.add("rejected_ops", Int(final.stats.rejected) + runner.rejectedOps)
            j.add("dropped_messages", dropped)
            j.add("ops", replay.opCount)
            j.add("rejoins", runner.rejoins)
            if !runner.isHost {
                // Tick skew to the host: the largest gap between our tick clock and the host's
                // estimated one, and the estimate's own uncertainty (half the best round trip).
                j.add("tick_skew_ms_max", Double(skewSamples.max() ?? 0) / 1e6)
                if let u = lastUncertainty {
                    j.add("clock_uncertainty_ms", Double(u) / 1e6)
                } else {
                    j.addNull("clock_uncertainty_ms")
                }
            }
            if runner.isHost {
                let refused = (try? live.sync { $0.sessions?.stats.passphraseRejected ?? 0 }) ?? 0
                j.add("passphrase_rejected", refused)
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
                rejectedOps: Int(final.stats.rejected) + runner.rejectedOps
            )
        )
        return converged && path != nil ? 0 : 1
    }
}
