import DHT
import Determinism
import Engine
import Foundation
import Keys
import Lobby
import NetCore
import NetPOSIX
import NetPlay
import NetStack
import Sodium
import TerminalUI
import TextOutput
import Transport
import TurfRules

/// `turf join`: finds the lobby (topic, key or invite), connects to its host (NetRuntime+Traversal),
/// then drives NetPlay's `LobbyJoiner` until the start, and plays; after the match, the lobby
/// again on the same sessions until the host offers a rematch or the series ends.
extension NetRuntime {
    // MARK: Join

    enum JoinTarget {
        case topic(String, expected: PeerKey?)
        case key(PeerKey)
        case invite(Invite)
    }

    /// Finds the host, connects (verifying its key in the handshake), and plays.
    func join(_ target: JoinTarget, startedAt: UInt64, spectate: Bool = false) throws -> Int32 {
        processStart = startedAt
        // Where to try, which key to expect, and the topic that salts a passphrase.
        var candidates: [PeerAddress] = []
        var lanCandidates = Set<PeerAddress>()  // found by LAN discovery (NetRuntime+LAN.swift)
        var expected: PeerKey?
        var topic: String
        var memberRelays: [PeerAddress] = []  // the lobby record's `r`: members that relay for others
        var relayLookup: RelayLookup?  // started once the topic is known, beside the lobby's lookup
        switch target {
        case .invite(let i):
            candidates = i.addresses
            expected = i.key
            topic = i.topic
            relayLookup = RelayLookup(rt: self, topic: topic)
        case .key(let k):
            expected = k
            guard let record = findRecord(k) else {
                printErr("no lobby record found for \(k.text) in the DHT")
                return 1
            }
            candidates = record.addresses
            topic = record.topic
            memberRelays = record.relays
            relayLookup = RelayLookup(rt: self, topic: topic)
        case .topic(let t, let k):
            topic = t
            expected = k
            relayLookup = RelayLookup(rt: self, topic: t)
            (candidates, lanCandidates) = findByTopic(t)
            if candidates.isEmpty {
                printErr("no lobby found on topic '\(SafeText.display(t, limit: 80))'")
                return 1
            }
        }
        let psk = try self.psk(topic: topic)
        // Only what really is this socket: another home's player at the same port is a peer.
        let (mine, localIPs, localIPv6) = (live.localAddress, LocalInterfaces.ipv4(), LocalInterfaces.ipv6())
        let external = stats.externalAddress ?? ((try? live.sync { $0.dht.externalAddress }) ?? nil)
        candidates.removeAll {
            HolePuncher.isOwnAddress(
                $0,
                bound: mine,
                localIPs: localIPs,
                localIPv6: localIPv6,
                external: external
            )
        }
        // NetPlayUI: several lobbies on the topic and the screens up: the player picks one (NetPlayUI.swift).
        if case .topic(_, nil) = target, ui.choosesLobby, candidates.count > 1 {
            switch pickLobby(candidates, psk: psk, topic: topic, lan: lanCandidates) {
            case .picked(let key, let addresses):
                expected = key
                candidates = addresses
            case .left: return 0
            case .none: break
            }
        }

        // Knock, probe and try every address at once until a session is up with the right key.
        let connection = connectToHost(
            candidates,
            topic: topic,
            psk: psk,
            expected: expected,
            memberRelays: memberRelays,
            relayLookup: relayLookup
        )
        stopLANSearch()
        guard let hostLink = connection.link, let hostKey = connection.key else {
            if connection.failedOnPassphrase {
                printErr("the lobby did not accept the passphrase (or it is gone)")
            } else {
                printErr(
                    "could not reach the lobby's host (\(candidates.count) address\(candidates.count == 1 ? "" : "es") tried)"
                )
            }
            return 1
        }
        guard hostKey != identity.publicKey else {
            printErr(
                "the host uses your identity (\(hostKey.text)): on one machine, give each player its own XDG_CONFIG_HOME (README.md)"
            )
            return 1
        }

        if connection.relay != nil { relayedLinks.insert(hostLink) }
        var lobby = LobbyJoiner(
            config: .init(
                me: identity.publicKey,
                name: options.name,
                contribution: SeedMix.contribution(),
                spectate: spectate,
                holdStartNanos: Self.testingHoldStart()
            ),
            hostLink: hostLink,
            hostKey: hostKey
        )
        var lastPing: UInt64 = 0
        func lobbyView() -> LobbyView {
            let roster = lobby.roster
            let pings = stats.pings([hostLink] + Array(lobby.direct.values))
            var v = LobbyView(
                role: .joiner,
                phase: roster == nil ? .searching(detail: "connected to the host, waiting for the roster") : .waiting,
                topic: topic,
                ownKey: identity.publicKey.text,
                mapName: lobby.settings?.map ?? "…",
                matchSeconds: Int(lobby.settings?.seconds ?? 0),
                passphrase: psk != nil,
                maxPlayers: Int(roster?.maxPlayers ?? 8),
                roster: (roster?.members ?? []).map { m in
                    let key = PeerKey(bytes: m.key)
                    let isHost = m.path == .local
                    let link = isHost ? hostLink : key.flatMap { lobby.direct[$0] }
                    let isYou = key == identity.publicKey
                    return RosterRow(
                        name: m.name,
                        key: key?.text ?? "?",
                        pingMs: link.flatMap { pings[$0] },
                        // A relayed link that found its direct path since (checkPaths) says direct.
                        path: isYou ? nil : link.map { linkPath($0) } ?? .relayed,
                        isHost: isHost,
                        isYou: isYou,
                        friend: key.flatMap { friends.name(of: $0) }
                    )
                },
                nat: natKind?.rawValue,
                ipv6: natKind == nil ? nil : ipv6Reach().rawValue
            )
            v.relaying = relayingShown
            v.chat = chatLines
            return v
        }
        func carryOut() {
            let (actions, events) = lobby.take()
            perform(actions)
            for e in events {
                switch e {
                case .joined(let players):
                    // Seated: the host hears from now on whether we relay for others (it lists
                    // its relaying members in the lobby record and registers there first).
                    if !spectate && relayService.hostLink == nil {
                        relayService.hostLink = hostLink
                        relayService.toldHost = false
                    }
                    event("joined") { j in
                        j.add("host", hostKey.text)
                        j.add("key", identity.publicKey.text)
                        j.add("join_ms", Double(monotonicNanos() - startedAt) / 1e6)
                        j.add("players", players)
                        j.add("spectating", spectate)
                    }
                case .member(let key, let name, let path):
                    event("peer") { j in
                        j.add("key", key.text)
                        j.add("name", name)
                        j.add("friend", friends.name(of: key))
                        j.add("state", "joined")
                        j.add("path", path == .local ? "direct" : "relayed")
                    }
                case .chat(let key, let name, let text):
                    heardChat(key, name: name, text: text)
                case .rematchOffered(let n):
                    rematchEvent("offered", match: n)
                }
            }
        }
        carryOut()
        var rest: [NetEvent] = []
        /// Pings sample the clock offset to the host that a start is read against.
        func ping() {
            guard monotonicNanos() - lastPing > 200_000_000 else { return }
            let links = self.links
            live.execute { _ in links.ping(hostLink) }
            lastPing = monotonicNanos()
        }
        /// The host's messages until the lobby machine has an outcome; what came after it in the
        /// same batch is the match's.
        func takeIn(_ batch: [NetEvent]) {
            for (index, e) in batch.enumerated() {
                guard let l = e.link else { continue }
                lobby.handle(l, now: monotonicNanos())
                if lobby.outcome != nil {
                    rest = Array(batch[(index + 1)...])
                    break
                }
            }
            carryOut()
        }
        /// The lobby before the first match.
        func firstLobby() {
            while lobby.outcome == nil {
                lobby.tick(now: monotonicNanos())
                if lobby.outcome != nil { break }
                ping()
                switch ui.lobby(lobbyView()) {
                case .leave?:
                    lobby.leave()
                    performAndFlush(lobby.take().actions)
                    return
                case .chat(let text)?:
                    lobby.say(text)
                    carryOut()
                default: break
                }
                takeIn(nextEvents(wait: ui.lobbyWait))
            }
        }
        /// After a match: the end screen (the tally, chat) until the host's next start (an
        /// accepted rematch), or the series is over (the host left, or we did).
        func afterMatch(_ played: UInt32) {
            var accepted: UInt32?
            while true {
                let rematch: AfterMatchView.Rematch
                switch lobby.outcome {
                case .ended(let line)?:
                    guard !line.isEmpty else { return }  // we left
                    rematch = .over(line + ": no rematch")
                case nil:
                    if let n = lobby.offer {
                        rematch = .offeredToYou(match: Int(n))
                    } else if let n = accepted {
                        rematch = .accepted(match: Int(n))
                    } else {
                        rematch = .waiting
                    }
                default: return  // the next start, or a start that failed its check
                }
                lobby.tick(now: monotonicNanos())  // a held start (test-only)
                ping()
                let role: AfterMatchView.Role = spectate ? .spectator : .member
                switch ui.afterMatch(afterMatchView(role: role, match: played, rematch: rematch, notice: "")) {
                case .leave?:
                    if case .ended? = lobby.outcome { return }
                    if lobby.offer != nil { rematchEvent("declined", match: lobby.offer, key: identity.publicKey) }
                    lobby.declineRematch()
                    performAndFlush(lobby.take().actions)
                    return
                case .accept?:
                    accepted = lobby.offer
                    lobby.acceptRematch(contribution: SeedMix.contribution())
                    rematchEvent("accepted", match: accepted, key: identity.publicKey)
                    carryOut()
                case .chat(let text)?:
                    lobby.say(text)
                    carryOut()
                case .rematch?, nil: break
                }
                takeIn(nextEvents(wait: ui.lobbyWait))
                // Stragglers of the match that ended (never the next one's: its start is in).
                if lobby.outcome == nil { discardDatagrams() }
            }
        }

        var status: Int32 = 0
        var played: UInt32?
        while true {
            if let played { afterMatch(played) } else { firstLobby() }
            carryOut()
            lobbyDropped = lobby.dropped
            switch lobby.outcome {
            case .start(let s, _, let snapshotBytes)?:
                var resume: ReplicaSnapshot<TurfWorld>?
                if let bytes = snapshotBytes {
                    guard let snap = try? ReplicaSnapshot<TurfWorld>.decode(bytes, config: s.config) else {
                        printErr("the host's snapshot of the running match is malformed; leaving")
                        performAndFlush([.send(hostLink, LobbyMessage.leave(.quit).encode())])
                        return 1
                    }
                    resume = snap
                }
                // The clock offset to the host, from the lowest-delay pings of the lobby (as they
                // stand now: the start may come within a second of the last stats event).
                mailbox.requeue(rest)
                rest = []
                freshStats()
                let est = stats.links[hostLink]?.clockEstimate
                let offset = est?.offset ?? 0
                let local = UInt64(max(0, Int64(clamping: s.startAt) - offset))
                var links = lobby.direct
                links[hostKey] = hostLink
                let result = try play(
                    start: s,
                    roster: nil,
                    links: links,
                    hostLink: hostLink,
                    startLocal: local,
                    offset: offset,
                    clockDelay: est?.delay,
                    clockSamples: stats.links[hostLink]?.clock.count ?? 0,
                    resume: resume
                )
                status = max(status, result.status)
                if result.quit { return status }
                // The lobby again, on the sessions the match ended with (docs/lobby.md, "Rematch").
                played = result.match
                var direct = result.links
                direct[hostKey] = nil
                let hostGone = result.gone.contains(hostKey) || result.links[hostKey] == nil
                lobby.matchEnded(direct: direct, hostGone: hostGone)
                for e in result.lobbyMessages { lobby.handle(e, now: monotonicNanos()) }
                carryOut()
            case .failed(let line)?:
                if !line.isEmpty { printErr(line) }
                performAndFlush([.closeWhenFlushed(hostLink)])
                return line.isEmpty ? status : 1
            case .ended?:
                // The series is over: the host left (the end screen said so), or we did.
                performAndFlush([.closeWhenFlushed(hostLink)])
                return status
            case nil:
                return 1
            }
        }
    }

    func findRecord(_ key: PeerKey) -> LobbyRecord? {
        keepLooking {
            let item = live.waitFor(timeout: 15) { (p: Peer, done: @escaping (MutableItem?) -> Void) in
                p.dht.getMutable(publicKey: key.bytes) { done($0) }
            }
            return (item ?? nil).flatMap { LobbyRecord($0.value) }
        }
    }

    /// Runs a DHT lookup until it answers: a host that just started may not have announced yet
    /// (its own lookups wait out lost queries), so for up to 15 s, at least 3 times, 1 s apart,
    /// before saying there is no lobby. No separate join lookup first: each lookup starts from the
    /// bootstrap nodes if need be.
    private func keepLooking<T>(_ lookup: () -> T?) -> T? {
        let deadline = monotonicNanos() + 15_000_000_000
        for attempt in 0..<30 {
            if attempt >= 3 && monotonicNanos() >= deadline { break }
            if let r = lookup() { return r }
            _ = nextEvents(wait: 1)  // no session yet: only the loop's stats come in
        }
        return nil
    }
}
