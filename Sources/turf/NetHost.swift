import DHT
import Engine
import Foundation
import Keys
import Lobby
import NetCore
import NetPlay
import NetStack
import TerminalUI
import TextOutput
import TurfRules

/// `turf host`: the shell around NetPlay's `LobbyHost`. It announces the lobby (DHT announce and
/// lobby record), runs the host's NAT traversal and relay registration, feeds the state machine
/// the link events and the player's keys, carries out what it asks, and starts the match; after
/// it, the lobby again on the same sessions (chat, a rematch: docs/lobby.md, "Rematch").
extension NetRuntime {
    func host(topic: String, settings: TurfSettings, mapName: String, seconds: Int, maxPlayers: Int) throws -> Int32 {
        let infoHash = Topic.infoHash(topic)
        if let key = try psk(topic: topic) { live.execute { $0.sessions?.setLobbyKey(key) } }
        let port = live.localAddress.port
        // Pinging the nodes that store the announcement keeps our NAT open to them: they relay knocks.
        live.execute { $0.dht.keepAnnouncing(infoHash, port: port, impliedPort: true, keepAlive: .seconds(20)) }
        startLAN(role: .host, infoHash: infoHash)  // and on the LAN (BEP 14), for a party with no DHT
        var lobby = LobbyHost(
            config: .init(
                me: identity.publicKey,
                name: NetPlayNames.display(options.name),
                settings: LobbyMessage.Settings(map: mapName, seconds: UInt32(seconds)),
                maxPlayers: maxPlayers,
                maxSpectators: Self.maxSpectators
            ),
            contribution: SeedMix.contribution(),
            admission: admission
        )
        var recordSeq: Int64 = Int64(Date().timeIntervalSince1970 * 1000)
        func putRecord() {
            recordSeq += 1
            let record = LobbyRecord(
                version: Int(LobbyMessage.protocolVersion),
                addresses: reachableAddresses(),
                passphrase: passphrase != nil,
                players: lobby.seats.count,
                topic: topic,
                relays: lobby.memberRelays
            )
            let item = DHTItem.mutable(MutableItem(signedBy: identity.signing, seq: recordSeq, value: record.value))
            live.execute { $0.dht.put(item) { _ in } }
        }
        putRecord()
        let invite = Invite(key: identity.publicKey, topic: topic, addresses: reachableAddresses())
        event("lobby") { j in
            j.add("topic", SafeText.display(topic, limit: 200))
            j.add("key", identity.publicKey.text)
            j.add("invite", invite.text)
            j.add("address", live.localAddress.description)
            j.add("passphrase", passphrase != nil)
        }
        var lastPut = monotonicNanos()
        // Through the match too: a rejoiner behind a NAT knocks again, and a birthday attempt
        // behind a relayed member goes on (the match loop ticks it); stopped when the match ends.
        let traversal = HostTraversal(rt: self, topic: topic)
        self.traversal = traversal
        defer {
            traversal.stop()
            self.traversal = nil
        }
        let relayWatch = startHostRelay(topic: topic)

        // What the lobby screen shows (NetPlayUI): the notice of the last thing that happened.
        var notice = dhtWarning == nil ? "" : "no DHT reachable: only players on this LAN can find the lobby"
        func lobbyView() -> LobbyView {
            let pings = stats.pings(lobby.seats.compactMap(\.link))
            var v = LobbyView(
                role: .host,
                topic: topic,
                ownKey: identity.publicKey.text,
                invite: invite.text,
                mapName: mapName,
                matchSeconds: seconds,
                passphrase: passphrase != nil,
                maxPlayers: maxPlayers,
                roster: lobby.seats.map { s in
                    RosterRow(
                        name: s.name,
                        key: s.key.text,
                        pingMs: s.link.flatMap { pings[$0] },
                        path: s.link.map { s.relayed ? .relayed : linkPath($0, address: s.address) },
                        isHost: s.link == nil,
                        isYou: s.link == nil,
                        friend: friends.name(of: s.key)
                    )
                },
                rejectedJoins: Int(stats.passphraseRejected),
                notice: notice,
                nat: natKind?.rawValue,
                ipv6: natKind == nil ? nil : ipv6Reach().rawValue
            )
            v.relaying = relayingShown
            v.chat = chatLines
            return v
        }
        /// Members that relay for others (they said so, and the host reaches them directly):
        /// registered at first and listed in the record. True when they changed (the record is
        /// then due again), with a `member_relays` event.
        func syncMemberRelays() -> Bool {
            guard relayWatch.members(lobby.memberRelays) else { return false }
            event("member_relays") { $0.add("relays", lobby.memberRelays.map(\.description)) }
            return true
        }
        /// What the state machine asked for, done; what happened, said.
        func carryOut() {
            let (actions, events) = lobby.take()
            perform(actions)
            for e in events {
                switch e {
                case .joined(let key, let name, let address, let relayed):
                    notice = "\(RosterRow.label(name, friend: friends.name(of: key))) joined"
                    if relayed { relayedLinks.formUnion(lobby.seats.filter { $0.key == key }.compactMap(\.link)) }
                    event("peer") { j in
                        j.add("key", key.text)
                        j.add("name", name)
                        j.add("friend", friends.name(of: key))
                        j.add("state", "joined")
                        j.add("address", address.description)
                        j.add("path", relayed ? "relayed" : Self.pathName(address))
                    }
                case .spectating(let key, let name, let address):
                    event("peer") { j in
                        j.add("key", key.text)
                        j.add("name", name)
                        j.add("friend", friends.name(of: key))
                        j.add("state", "spectating")
                        j.add("address", address.description)
                    }
                case .left(let key, let name):
                    notice = "\(RosterRow.label(name, friend: friends.name(of: key))) left"
                    peerEvent(key, name: name, state: "left")
                case .kicked(let key, let name):
                    notice = "\(RosterRow.label(name, friend: friends.name(of: key))) kicked (banned from this lobby)"
                    peerEvent(key, name: name, state: "kicked")
                case .refused(let key, let name, let reason):
                    event("peer") { j in
                        j.add("key", key.text)
                        j.add("name", name)
                        j.add("friend", friends.name(of: key))
                        j.add("state", "refused")
                        j.add("reason", reason == .banned ? "banned" : "not_allowed")
                    }
                case .recordChanged:
                    _ = syncMemberRelays()
                    putRecord()
                case .chat(let key, let name, let text):
                    heardChat(key, name: name, text: text)
                case .accepted(let key, let name):
                    notice = "\(name) plays again"
                    rematchEvent("accepted", key: key, name: name)
                case .declined(let key, let name):
                    notice = "\(name) declined the rematch"
                    rematchEvent("declined", key: key, name: name)
                case .rematchCancelled:
                    notice = "nobody else plays again"
                    rematchEvent("cancelled")
                }
            }
            admission = lobby.admission
            chatRateLimited = lobby.chatDropped
        }

        // The lobby: until the player starts the match (Enter; headless: --start-when), or leaves.
        lobby: while true {
            if traversal.tick() { putRecord() }
            relayWatch.tick()
            // A relayed member that found a direct path (or roamed): the roster says so.
            for (id, a) in pathsMoved.sorted(by: { $0.key < $1.key }) {
                lobby.moved(id, to: a, relayed: RelayClient.isVirtual(a))
            }
            pathsMoved.removeAll()
            // A member that relays and whose own link just went direct can now carry others.
            if syncMemberRelays() { putRecord() }
            carryOut()
            switch ui.lobby(lobbyView()) {
            case .start?: break lobby
            case .kick(let keyText)?:
                if let key = PeerKey(text: keyText) { lobby.kick(key) }
                carryOut()
            case .chat(let text)?:
                lobby.say(text)
                carryOut()
            case .leave?:
                lobby.leave()
                performAndFlush(lobby.take().actions)
                return 0
            default: break
            }
            for e in nextEvents(wait: ui.lobbyWait) {
                guard let l = e.link else { continue }
                lobby.handle(l, now: monotonicNanos())
            }
            carryOut()
            if monotonicNanos() - lastPut > 60_000_000_000 {
                putRecord()
                lastPut = monotonicNanos()
            }
        }

        /// After a match: the end screen (the tally, chat) until the host offers a rematch that
        /// every member answered (true: its reveals are due) or leaves (false).
        func afterMatch(_ played: UInt32) -> Bool {
            notice = ""
            while true {
                if traversal.tick() { putRecord() }
                relayWatch.tick()
                lobby.tick(now: monotonicNanos())
                carryOut()
                if case .revealing = lobby.phase {
                    rematchAgreedAt = monotonicNanos()
                    return true
                }
                let rematch: AfterMatchView.Rematch
                if case .offering = lobby.phase {
                    let waiting = lobby.seats.filter { lobby.awaitingAnswer.contains($0.key) }.map(\.name)
                    rematch = .offered(match: Int(lobby.match), waitingFor: waiting)
                } else if lobby.seats.count > 1 {
                    rematch = .canOffer(match: Int(lobby.match) + 1)
                } else {
                    rematch = .over("everyone else left: no rematch")
                }
                switch ui.afterMatch(afterMatchView(role: .host, match: played, rematch: rematch, notice: notice)) {
                case .leave?: return false
                case .rematch?:
                    lobby.offerRematch(contribution: SeedMix.contribution(), now: monotonicNanos())
                    rematchEvent("offered", match: lobby.match)
                    carryOut()
                case .chat(let text)?:
                    lobby.say(text)
                    carryOut()
                case .accept?, nil: break
                }
                for e in nextEvents(wait: ui.lobbyWait) {
                    guard let l = e.link else { continue }
                    lobby.handle(l, now: monotonicNanos())
                }
                discardDatagrams()
            }
        }

        // Commit–reveal: the roster is final; every member reveals its contribution. After a
        // rematch offer everyone answered, the reveals are already requested.
        lobby.requestReveals(now: monotonicNanos())
        var status: Int32 = 0
        while true {
            carryOut()
            // A rematch starts sooner: the clocks are aligned already.
            let lead: UInt64 = lobby.match > 1 ? 500_000_000 : 1_000_000_000
            var start: LobbyMessage.Start?
            while start == nil {
                start = lobby.startIfReady(now: monotonicNanos(), startAt: monotonicNanos() + lead) {
                    seed,
                    players in
                    settings.matchConfig(seed: seed, players: players, seconds: seconds)
                }
                if start != nil { break }
                for e in nextEvents(wait: 0.2) {
                    guard let l = e.link else { continue }
                    lobby.handle(l, now: monotonicNanos())
                }
                carryOut()
            }
            carryOut()
            lobbyDropped = lobby.dropped
            var links: [PeerKey: UInt32] = [:]
            for s in lobby.seats { if let l = s.link { links[s.key] = l } }
            // Spectators get every op forwarded like members; they own no player, so any op they
            // send is refused.
            for (k, l) in lobby.spectators { links[k] = l }
            let result = try play(
                start: start!,
                roster: lobby.roster,
                links: links,
                hostLink: nil,
                startLocal: start!.startAt,
                offset: 0
            )
            status = max(status, result.status)
            if result.quit { return status }
            // The lobby again, on the sessions the match ended with (docs/lobby.md, "Rematch").
            lobby.matchEnded(links: result.links, gone: result.gone)
            for e in result.lobbyMessages { lobby.handle(e, now: monotonicNanos()) }
            carryOut()
            guard afterMatch(result.match) else {
                lobby.leave()
                performAndFlush(lobby.take().actions)
                return status
            }
        }
    }

    func peerEvent(_ key: PeerKey, name: String, state: String) {
        event("peer") {
            $0.add("key", key.text)
            $0.add("name", name)
            $0.add("friend", friends.name(of: key))
            $0.add("state", state)
        }
    }
}
