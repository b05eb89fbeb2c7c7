import Engine
import Foundation
import Keys
import LocalFiles
import NetCore
import NetMatch
import NetPlay
import TerminalUI
import TextOutput
import TurfRules

/// The end of a networked match on this peer: the recording saved, the `end` event, the end screen.
extension NetRuntime {
    func finish(_ runner: MatchRunner, began: UInt64, clock: ClockFollower, focus: PlayerID?) throws -> MatchResult {
        let session = runner.session
        let config = session.config
        let me = identity.publicKey
        let seconds = Double(monotonicNanos() - began) / 1e9
        let net = session.net
        let recording = try session.recording()
        let final = recording.replica
        let replay = recording.replay
        let converged = recording.converged
        if net.isSettled && net.agreed && !converged, let agreed = net.finalHash {
            printErr("the recording's final hash \(hex64(replay.finalHash)) is not the agreed \(hex64(agreed))")
        }
        runner.reportCheats(final)
        // Owners that crashed and never came back: settled without their final statement.
        var goneKeys: [String] = []
        var gone = session.quit
        for p in recording.gone {
            guard let k = config.players[Int(p)].owner, !goneKeys.contains(k.text) else { continue }
            goneKeys.append(k.text)
            gone.insert(k)
        }
        // The series: one more match, its winner by the scores every converged peer holds.
        tally.record(players: config.players, scores: final.state.scores)

        // Per other peer (players' owners; the host also lists spectators): the path, and for a
        // direct one the session's round trips and bytes (every datagram, 28 B of UDP/IP each).
        var linkObjects: [JSONObject] = []
        var linkSummaries: [LinkSummary] = []  // the same, for the end screen
        var keys: [PeerKey] = []
        for p in config.players {
            guard let k = p.owner, k != me, !keys.contains(k) else { continue }
            keys.append(k)
        }
        if session.isHost {
            keys += session.linksAtEnd.keys.filter { k in !keys.contains(k) }.sorted { $0.text < $1.text }
        }
        for k in keys {
            var j = JSONObject()
            j.add("key", k.text)
            let id = session.linksAtEnd[k]
            let relayed = id.map { relayedLinks.contains($0) } ?? true
            j.add("path", relayed ? "relayed" : "direct")
            let samples = (runner.rttSamples[k] ?? []).sorted()
            let rtt = samples.isEmpty ? nil : Double(samples[samples.count / 2]) / 1e6
            if let rtt { j.add("rtt_ms_p50", rtt) } else { j.addNull("rtt_ms_p50") }
            // This match's share of the session's traffic: a session that played an earlier
            // match of the series counts from that match's end.
            var t = id.flatMap { stats.links[$0] } ?? LinkTraffic()
            if let id, let before = trafficAtLastEnd[id] {
                t.bytesSent -= min(t.bytesSent, before.sent)
                t.bytesReceived -= min(t.bytesReceived, before.received)
            }
            linkSummaries.append(
                LinkSummary(
                    name: config.players.first { $0.owner == k }?.name ?? "spectator",
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
                j.add("ops_forwarded", net.stats(for: k).map { Int($0.opsForwarded) } ?? 0)
            }
            linkObjects.append(j)
        }

        for (id, t) in stats.links { trafficAtLastEnd[id] = (t.bytesSent, t.bytesReceived) }

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
        let rejected = runner.rejectedOps(replica: final)
        // The cheats of the replica recorded (`turf replay --headless` re-derives the same).
        let replayCheats = final.cheats
        event("end") { j in
            j.add("match", Int(session.options.start.match))
            j.add("seed", hex64(config.seed))
            j.add("final_hash", hex64(replay.finalHash))
            j.add("replay", path)
            j.add("converged", converged)
            j.add("gone", goneKeys)
            j.add("desyncs", runner.desyncs)
            if let t = net.desyncReported { j.add("first_bad_tick", Int(t)) }
            j.add("rejected_ops", rejected)
            j.add("bad_signatures", Int(d.badSignatures))
            j.add("cheats", replayCheats.map { cheatJSON($0, config: config) })
            // Events not printed (rate limits): repeated bad signatures and cheat reports.
            j.add("events_suppressed", runner.badSignatureEventsSuppressed + runner.cheats.suppressed)
            // Lobby messages dropped as hostile or out of place, and events the mailbox had no room for.
            j.add("dropped_messages", dropped + lobbyDropped + session.dropped + Int(mailbox.dropped))
            j.add("dropped_datagrams", Int(d.malformed + d.unknownPeer + d.farAhead) + session.strayDatagrams)
            j.add("ops", replay.opCount)
            j.add("signatures", replay.signatures.count)
            j.add("rejoins", session.rejoins)
            // Tick skew measured from NetMatch's packets: the largest, over the peers we have a
            // session with, of the median gap between our tick clock and theirs.
            let skews = keys.compactMap { runner.medianSkew($0) }.map { abs($0) }
            if let m = skews.max() { j.add("tick_skew_ms_max", m) } else { j.addNull("tick_skew_ms_max") }
            if !session.isHost {
                // The clock alignment to the host: the largest correction still owed when a new
                // offset estimate came in, and the estimate's uncertainty (half the best round trip).
                j.add("clock_correction_ms_max", Double(clock.skewSamples.max() ?? 0) / 1e6)
                if let u = clock.uncertainty {
                    j.add("clock_uncertainty_ms", Double(u) / 1e6)
                } else {
                    j.addNull("clock_uncertainty_ms")
                }
            }
            if session.isHost {
                j.add("passphrase_rejected", stats.passphraseRejected)
                addAdmissionCounts(to: &j)
                // Lines of chat over their sender's allowance (docs/lobby.md, "Chat").
                j.add("chat_rate_limited", chatRateLimited)
            }
            addLANCounts(to: &j)
            // What this machine relayed for others (docs/nat.md, "Players relay for each other").
            j.add("relay_service", relayServiceJSON())
            j.add("links", linkObjects)
            j.add("series", seriesJSON())
        }
        // NetPlayUI (call site 3 of 3): the end screen (the lobby after the match draws it on).
        ui.end(
            world: final.state,
            config: config,
            me: focus,
            summary: NetEndSummary(
                finalHash: hex64(replay.finalHash),
                replayPath: path,
                desyncs: runner.desyncs,
                rejectedOps: rejected,
                links: linkSummaries,
                cheats: replayCheats.map { CheatMark(player: Int($0.player), rule: $0.rule, tick: $0.tick) },
                converged: converged
            )
        )
        return MatchResult(
            status: converged && path != nil ? 0 : 1,
            quit: false,
            match: session.options.start.match,
            links: session.links,
            gone: gone,
            lobbyMessages: session.takeLobbyMessages()
        )
    }

    /// The series so far, for the `end` event: matches, ties, each player's wins.
    func seriesJSON() -> JSONObject {
        var j = JSONObject()
        j.add("matches", tally.matches)
        j.add("ties", tally.ties)
        j.add(
            "wins",
            tally.entries.map { e in
                var w = JSONObject()
                w.add("key", e.key.text)
                w.add("name", e.name)
                w.add("wins", e.wins)
                return w
            }
        )
        return j
    }
}
