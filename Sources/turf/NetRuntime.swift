import ArgumentParser
import DHT
import Determinism
import Engine
import Foundation
import Keys
import Lobby
import LocalFiles
import Logging
import NetCore
import NetStack
import Sodium
import TerminalUI
import TextOutput
import Transport
import TurfRules

/// One `turf host` or `turf join` process: its socket (DHT and sessions, a `LivePeer`), and the
/// lobby and match run on the calling thread, which talks to the event loop only through `Links`
/// (commands in, `LivePeer.execute`/`sync`) and the `LinkMailbox` (NetCore's `NetworkMailbox`:
/// events and the match's datagrams out).
final class NetRuntime {
    let live: LivePeer
    let links: Links
    let mailbox: LinkMailbox
    let identity: Identity
    let lease: IdentityLease
    let options: NetPlayOptions
    /// What the player sees: JSON lines and a bot (headless), or the screens (NetPlayUI.swift).
    let ui: NetPlayUI
    let passphrase: String?
    let log = Logger(label: "turf.net")
    /// Lobby messages from peers that were malformed, out of place or hostile: dropped and counted.
    var dropped = 0
    /// When this process started (a joiner's `join_ms` and `playing_ms` count from it).
    var processStart: UInt64?
    /// Links whose session runs through a relay (docs/nat.md): the HUD and the end event say so.
    var relayedLinks = Set<UInt32>()
    /// Each link's address when `checkPaths` last looked.
    var linkAddresses: [UInt32: PeerAddress] = [:]
    /// The host's NAT traversal (knock watcher and listener, birthday attempts) while it hosts.
    var traversal: HostTraversal?
    /// This machine's NAT as last printed in a `nat` event (the lobby screen and the HUD show it).
    var natKind: NATKind?
    /// A relayed joiner's probes towards a host behind a random NAT (the reversed birthday method).
    let upgradeProbers = ProberBox()
    /// The host's rules for who may sit down: the allow list (`--allow`), kicked keys, the join
    /// rate per source address (docs/lobby.md, "Who may sit down"). NetRuntime+Admission.swift.
    var admission = LobbyAdmission()

    init(options: NetPlayOptions, ui: NetPlayUI, topicForPSK: String?, passphrase: String?) throws {
        Logs.bootstrap()
        self.options = options
        self.ui = ui
        self.passphrase = passphrase
        let address = try options.socket.bindAddress()
        // One process per stored identity; a second on the same XDG_CONFIG_HOME plays as a guest.
        lease = try IdentityLease.acquire()
        identity = lease.identity
        var dht = DHTConfig()
        dht.bootstrap = try options.socket.bootstrapAddresses()
        live = try LivePeer.bind(address, dht: dht, identity: identity)
        mailbox = LinkMailbox(loop: live.udp, capacity: 65_536, datagramCapacity: 4096)
        links = Links(mailbox: mailbox)
        let links = self.links
        live.execute { peer in peer.sessions?.onInbound = { s in links.adopt(s) } }
        live.start()
    }

    func close() {
        live.close()
        lease.release()
    }

    func emit(_ j: JSONObject) { ui.event(j) }

    func event(_ name: String, _ fill: (inout JSONObject) -> Void = { _ in }) {
        var j = JSONObject()
        j.add("event", name)
        fill(&j)
        emit(j)
    }

    func send(_ id: UInt32, _ m: LobbyMessage) {
        let bytes = m.encode()
        let links = self.links
        live.execute { _ in links.send(id, bytes) }
    }

    func psk(topic: String) throws -> SecretBytes? {
        try passphrase.map { try SessionManager.lobbyKey(passphrase: $0, lobby: topic) }
    }

    /// The addresses friends can reach us at: the external one DHT nodes report, the bound one
    /// (if specific), else every local IPv4 address, with our port.
    func reachableAddresses() -> [PeerAddress] {
        let bound = live.localAddress
        var out: [PeerAddress] = []
        if let ext = (try? live.sync({ $0.dht.externalAddress })) ?? nil { out.append(ext) }
        if bound.ip != 0 {
            out.append(bound)
        } else {
            for ip in localIPv4Addresses() { out.append(PeerAddress(ip: ip, port: bound.port)) }
        }
        var seen = Set<PeerAddress>()
        return out.filter { seen.insert($0).inserted }
    }

    /// A peer's name as shown and as the config records it: escaped, at most 24 characters and
    /// 48 bytes (a replay holds 64).
    static let maxSpectators = 8

    static func displayName(_ raw: String) -> String { boundedName(SafeText.display(raw, limit: 24)) }

    /// A name for hello: whole characters, at most `LobbyMessage.maxNameBytes` bytes of UTF-8.
    static func boundedName(_ raw: String) -> String {
        var out = ""
        for c in raw.prefix(24) {
            guard out.utf8.count + String(c).utf8.count <= LobbyMessage.maxNameBytes else { break }
            out.append(c)
        }
        return out
    }

    // MARK: Host

    struct Seat {
        var key: PeerKey
        var name: String
        var commit: [UInt8]
        var link: UInt32?
        var reveal: [UInt8]?
        var address: PeerAddress? = nil
    }

    func host(topic: String, settings: TurfSettings, mapName: String, seconds: Int, maxPlayers: Int) throws -> Int32 {
        let infoHash = Topic.infoHash(topic)
        if let key = try psk(topic: topic) { live.execute { $0.sessions?.setLobbyKey(key) } }
        let port = live.localAddress.port
        // Pinging the nodes that store the announcement keeps our NAT open to them: they relay knocks.
        live.execute { $0.dht.keepAnnouncing(infoHash, port: port, impliedPort: true, keepAlive: .seconds(20)) }
        let myContribution = SeedMix.contribution()
        var seats = [
            Seat(
                key: identity.publicKey,
                name: Self.displayName(options.name),
                commit: SeedMix.commit(myContribution),
                link: nil,
                reveal: myContribution
            )
        ]
        var recordSeq: Int64 = Int64(Date().timeIntervalSince1970 * 1000)
        func putRecord() {
            recordSeq += 1
            let record = LobbyRecord(
                version: Int(LobbyMessage.protocolVersion),
                addresses: reachableAddresses(),
                passphrase: passphrase != nil,
                players: seats.count,
                topic: topic
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
        var pendingKeys: [UInt32: (PeerKey, PeerAddress)] = [:]
        let lobbySettings = LobbyMessage.Settings(map: mapName, seconds: UInt32(seconds))
        func roster() -> LobbyMessage {
            .roster(
                .init(
                    members: seats.map {
                        .init(
                            key: $0.key.bytes,
                            name: $0.name,
                            commit: $0.commit,
                            path: $0.link == nil ? .local : Self.path(of: $0.address),
                            addresses: $0.address.flatMap { RelayClient.isVirtual($0) ? nil : [$0] } ?? []
                        )
                    },
                    maxPlayers: UInt8(maxPlayers)
                )
            )
        }
        var spectators: [PeerKey: UInt32] = [:]
        func broadcast(_ m: LobbyMessage) {
            for s in seats { if let l = s.link { send(l, m) } }
            for l in spectators.values { send(l, m) }
        }
        /// A member's link closed or it said leave: off the roster, and everyone told.
        func seatLeft(link id: UInt32) {
            guard let i = seats.firstIndex(where: { $0.link == id }) else { return }
            let gone = seats.remove(at: i)
            notice = "\(gone.name) left"
            event("peer") {
                $0.add("key", gone.key.text)
                $0.add("name", gone.name)
                $0.add("state", "left")
            }
            broadcast(roster())
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

        // What the lobby screen shows (NetPlayUI): pings and refused passphrases, once a second.
        var notice = ""
        var pings: [UInt32: Int] = [:]
        var rejected = 0
        var refresh = Throttle()
        func lobbyView() -> LobbyView {
            LobbyView(
                role: .host,
                topic: topic,
                ownKey: identity.publicKey.text,
                invite: invite.text,
                mapName: mapName,
                matchSeconds: seconds,
                passphrase: passphrase != nil,
                maxPlayers: maxPlayers,
                roster: seats.map { s in
                    RosterRow(
                        name: s.name,
                        key: s.key.text,
                        pingMs: s.link.flatMap { pings[$0] },
                        path: s.link == nil ? nil : Self.path(of: s.address) == .relayed ? .relayed : .direct,
                        isHost: s.link == nil,
                        isYou: s.link == nil
                    )
                },
                rejectedJoins: rejected,
                notice: notice,
                nat: natKind?.rawValue
            )
        }

        // The lobby: until the player starts the match (Enter; headless: --start-when), or leaves.
        lobby: while true {
            if traversal.tick() { putRecord() }
            relayWatch.tick()
            if refresh.due() {
                pings = self.pings(seats.compactMap(\.link))
                rejected = passphraseRejections()
                // A relayed member that found a direct path (or roamed): the roster says so.
                let moved = checkPaths()
                var rosterChanged = false
                for i in seats.indices {
                    guard let l = seats[i].link, let a = moved[l] else { continue }
                    seats[i].address = a
                    rosterChanged = true
                }
                if rosterChanged { broadcast(roster()) }
            }
            switch ui.lobby(lobbyView()) {
            case .start?: break lobby
            case .kick(let keyText)?:
                // The host kicked a member from the lobby screen: told why, off the roster, banned.
                guard let i = seats.firstIndex(where: { $0.key.text == keyText && $0.link != nil }),
                    let link = seats[i].link
                else { break }
                let gone = seats.remove(at: i)
                admission.kick(gone.key.bytes)
                send(link, .leave(.kicked))
                closeSoon(link)
                notice = "\(gone.name) kicked (banned from this lobby)"
                event("peer") {
                    $0.add("key", gone.key.text)
                    $0.add("name", gone.name)
                    $0.add("state", "kicked")
                }
                broadcast(roster())
                putRecord()
            case .leave?:
                broadcast(.leave(.quit))
                Thread.sleep(forTimeInterval: 0.3)  // the leave goes out before the socket closes
                return 0
            default: break
            }
            for e in mailbox.wait(ui.lobbyWait) {
                switch e {
                case .opened(let id, let key, let addr):
                    pendingKeys[id] = (key, addr)
                    if RelayClient.isVirtual(addr) { relayedLinks.insert(id) }
                case .closed(let id, _):
                    pendingKeys[id] = nil
                    seatLeft(link: id)
                case .message(let id, let bytes):
                    guard let msg = try? LobbyMessage.decode(bytes) else {
                        dropped += 1
                        continue
                    }
                    switch msg {
                    case .hello(let h):
                        guard let (key, addr) = pendingKeys[id], h.key == key.bytes, key != identity.publicKey else {
                            dropped += 1
                            send(id, .leave(.refused))
                            continue
                        }
                        // Friends only, kicked keys, and the join rate per source address.
                        if case .refuse(let why) = admission.hello(key: key.bytes, from: addr, now: monotonicNanos()) {
                            refuseJoin(link: id, key: key, name: h.name, why: why)
                            continue
                        }
                        if h.spectate {
                            // A spectator: no seat; it gets the roster, the settings and the start.
                            guard spectators.count < Self.maxSpectators || spectators[key] != nil else {
                                send(id, .leave(.full))
                                continue
                            }
                            spectators[key] = id
                            send(id, roster())
                            send(id, .settings(lobbySettings))
                            event("peer") { j in
                                j.add("key", key.text)
                                j.add("name", Self.displayName(h.name))
                                j.add("state", "spectating")
                                j.add("address", addr.description)
                            }
                            continue
                        }
                        if let i = seats.firstIndex(where: { $0.key == key }) {
                            // The same key again (a restarted joiner): its new session replaces the old one.
                            if let old = seats[i].link, old != id {
                                let links = self.links
                                live.execute { _ in links.close(old) }
                            }
                            seats[i].link = id
                            seats[i].address = addr
                            seats[i].commit = h.commit
                            seats[i].name = Self.displayName(h.name)
                        } else {
                            guard seats.count < maxPlayers else {
                                send(id, .leave(.full))
                                continue
                            }
                            seats.append(
                                Seat(
                                    key: key,
                                    name: Self.displayName(h.name),
                                    commit: h.commit,
                                    link: id,
                                    address: addr
                                )
                            )
                        }
                        notice = "\(Self.displayName(h.name)) joined"
                        event("peer") { j in
                            j.add("key", key.text)
                            j.add("name", Self.displayName(h.name))
                            j.add("state", "joined")
                            j.add("address", addr.description)
                            j.add("path", Self.path(of: addr) == .relayed ? "relayed" : "direct")
                        }
                        broadcast(roster())
                        broadcast(.settings(lobbySettings))
                        putRecord()
                    case .leave:
                        seatLeft(link: id)
                    default: dropped += 1
                    }
                }
            }
            if monotonicNanos() - lastPut > 60_000_000_000 {
                putRecord()
                lastPut = monotonicNanos()
            }
        }

        // Commit–reveal: the roster is final; every member reveals its contribution.
        for s in seats { if let l = s.link { send(l, .revealRequest) } }
        let revealDeadline = monotonicNanos() + 10_000_000_000
        while seats.contains(where: { $0.reveal == nil }) && monotonicNanos() < revealDeadline {
            for e in mailbox.wait(0.2) {
                guard case .message(let id, let bytes) = e else { continue }
                guard case .reveal(let r)? = try? LobbyMessage.decode(bytes),
                    let i = seats.firstIndex(where: { $0.link == id }), SeedMix.opens(r, seats[i].commit)
                else {
                    dropped += 1
                    continue
                }
                seats[i].reveal = r
            }
        }
        let missing = seats.filter { $0.reveal == nil }
        if !missing.isEmpty {
            for s in missing { if let l = s.link { send(l, .leave(.refused)) } }
            seats.removeAll { $0.reveal == nil }
        }
        let reveals = seats.map { $0.reveal! }
        let players = seats.map { PlayerInfo(name: $0.name, kind: .human, owner: PeerKey(bytes: $0.key.bytes)) }
        let config = settings.matchConfig(seed: SeedMix.seed(reveals), players: players, seconds: seconds)
        let startAt = monotonicNanos() + 1_000_000_000
        let start = LobbyMessage.Start(config: config, startAt: startAt, reveals: reveals)
        let finalRoster = roster()
        broadcast(.start(start))
        var runner = MatchRunner(rt: self, config: config, isHost: true, hostLink: nil)
        for s in seats { if let l = s.link { runner.memberLinks[s.key] = l } }
        // Spectators get every op forwarded like members; they own no player, so any op they
        // send is refused.
        for (k, l) in spectators { runner.memberLinks[k] = l }
        runner.startMessage = start
        runner.rosterMessage = finalRoster
        return try play(runner: &runner, start: start, startLocal: startAt, offset: 0)
    }

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
        var expected: PeerKey?
        var topic: String
        switch target {
        case .invite(let i):
            candidates = i.addresses
            expected = i.key
            topic = i.topic
        case .key(let k):
            expected = k
            guard let record = findRecord(k) else {
                printErr("no lobby record found for \(k.text) in the DHT")
                return 1
            }
            candidates = record.addresses
            topic = record.topic
        case .topic(let t, let k):
            topic = t
            expected = k
            candidates = findAnnounced(t)
            if candidates.isEmpty {
                printErr("no lobby found on topic '\(SafeText.display(t, limit: 80))'")
                return 1
            }
        }
        let psk = try self.psk(topic: topic)
        // Only what really is this socket: another home's player at the same port is a peer.
        let (mine, localIPs) = (live.localAddress, localIPv4Addresses())
        let external = (try? live.sync { $0.dht.externalAddress }) ?? nil
        candidates.removeAll { HolePuncher.isOwnAddress($0, bound: mine, localIPs: localIPs, external: external) }
        // NetPlayUI: several lobbies on the topic and the screens up: the player picks one (NetPlayUI.swift).
        if case .topic(_, nil) = target, ui.choosesLobby, candidates.count > 1 {
            switch pickLobby(candidates, psk: psk, topic: topic) {
            case .picked(let key, let addresses):
                expected = key
                candidates = addresses
            case .left: return 0
            case .none: break
            }
        }

        // Knock, probe and try every address at once until a session is up with the right key.
        let connection = connectToHost(candidates, topic: topic, psk: psk, expected: expected)
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
        let contribution = SeedMix.contribution()
        let commit = SeedMix.commit(contribution)
        send(
            hostLink,
            .hello(
                .init(
                    name: Self.boundedName(options.name),
                    key: identity.publicKey.bytes,
                    commit: commit,
                    spectate: spectate
                )
            )
        )
        var roster: LobbyMessage.Roster?
        // A snapshot of the running match comes before the start only for a rejoiner or a
        // spectator arriving mid-match (docs/lobby.md, "Leaving and rejoining").
        var resumeFrom: [UInt8]?
        // Test-only (docs/lobby.md, "Test-only switches"): act on the start this much later.
        let holdStart = ProcessInfo.processInfo.environment["TURF_TESTING_LATE_START_MS"]
            .flatMap { UInt64($0) }.map { min($0, 60_000) * 1_000_000 }
        var heldStart: (start: LobbyMessage.Start, due: UInt64)?
        var known = Set<[UInt8]>([identity.publicKey.bytes])
        var joinedReported = false
        var lastPing: UInt64 = 0
        var direct: [PeerKey: UInt32] = [:]
        var dialed = Set<[UInt8]>()
        var probedMembers = Set<[UInt8]>()
        // What the lobby screen shows (NetPlayUI).
        var lobbySettings: LobbyMessage.Settings?
        var pings: [UInt32: Int] = [:]
        var refresh = Throttle()
        func lobbyView() -> LobbyView {
            let mine = identity.publicKey.bytes
            return LobbyView(
                role: .joiner,
                phase: roster == nil ? .searching(detail: "connected to the host, waiting for the roster") : .waiting,
                topic: topic,
                ownKey: identity.publicKey.text,
                mapName: lobbySettings?.map ?? "…",
                matchSeconds: Int(lobbySettings?.seconds ?? 0),
                passphrase: psk != nil,
                maxPlayers: Int(roster?.maxPlayers ?? 8),
                roster: (roster?.members ?? []).map { m in
                    let key = PeerKey(bytes: m.key)
                    let isHost = m.path == .local
                    let link = isHost ? hostLink : key.flatMap { direct[$0] }
                    return RosterRow(
                        name: m.name,
                        key: key?.text ?? "?",
                        pingMs: link.flatMap { pings[$0] },
                        // A relayed link that found its direct path since (checkPaths) says direct.
                        path: m.key == mine
                            ? nil : link.map { relayedLinks.contains($0) ? .relayed : .direct } ?? .relayed,
                        isHost: isHost,
                        isYou: m.key == mine
                    )
                },
                nat: natKind?.rawValue
            )
        }
        /// The match starts here: a first-time member or lobby spectator from tick 0 (however late
        /// the start came: it skips the ticks it missed, in which its player made no ops), a
        /// rejoiner or late spectator from the snapshot that came before the start.
        func begin(_ s: LobbyMessage.Start, then rest: [LinkEvent]) throws -> Int32 {
            // A first-time member checks that the start carries its own reveal: it took the seat,
            // so nothing was ever sent under its key and its op log starts at seq 0. Such a member
            // never resumes from a snapshot, even if a host sent one (it could forge our own ops).
            let me = identity.publicKey.bytes
            if resumeFrom != nil && SeedMix.revealed(contribution, in: s, by: me) { resumeFrom = nil }
            guard let r = roster,
                SeedMix.verify(s, roster: r, myKey: me, myContribution: resumeFrom == nil ? contribution : nil)
            else {
                printErr("the host's match seed does not match the players' commitments; leaving")
                send(hostLink, .leave(.quit))
                return 1
            }
            var resume: ReplicaSnapshot<TurfWorld>?
            if let bytes = resumeFrom {
                guard let snap = try? ReplicaSnapshot<TurfWorld>.decode(bytes, config: s.config) else {
                    printErr("the host's snapshot of the running match is malformed; leaving")
                    send(hostLink, .leave(.quit))
                    return 1
                }
                resume = snap
            }
            let links = self.links
            let samples = (try? live.sync { _ in links.traffic(hostLink).clock }) ?? []
            let est = ClockEstimate.offset(samples)
            let offset = est?.offset ?? 0
            let local = UInt64(max(0, Int64(clamping: s.startAt) - offset))
            // What came after the start is the match's.
            mailbox.requeue(rest)
            var runner = MatchRunner(rt: self, config: s.config, isHost: false, hostLink: hostLink)
            for (k, id) in direct {
                if s.config.players.contains(where: { $0.owner?.bytes == k.bytes }) {
                    runner.directLinks[k] = id
                } else {
                    live.execute { _ in links.close(id) }
                }
            }
            runner.clockDelay = est?.delay
            runner.clockSamples = samples.count
            return try play(runner: &runner, start: s, startLocal: local, offset: offset, resume: resume)
        }
        while true {
            if let h = heldStart, monotonicNanos() >= h.due { return try begin(h.start, then: []) }
            if monotonicNanos() - lastPing > 200_000_000 {
                let links = self.links
                live.execute { _ in links.ping(hostLink) }
                lastPing = monotonicNanos()
            }
            if refresh.due() {
                pings = self.pings([hostLink] + Array(direct.values))
                checkPaths()
            }
            if ui.lobby(lobbyView()) == .leave {
                send(hostLink, .leave(.quit))
                Thread.sleep(forTimeInterval: 0.3)  // the leave goes out before the socket closes
                return 0
            }
            let batch = mailbox.wait(ui.lobbyWait)
            for (index, e) in batch.enumerated() {
                switch e {
                case .opened(let id, let key, _):
                    // The mesh: another member's session (checked against the config at the start).
                    if id != hostLink && key != hostKey { direct[key] = id }
                case .closed(let id, let reason):
                    if id == hostLink {
                        printErr("the host closed the session (\(reason))")
                        return 1
                    }
                    direct = direct.filter { $0.value != id }
                case .message(let id, let bytes):
                    guard id == hostLink, let msg = try? LobbyMessage.decode(bytes) else {
                        dropped += 1
                        continue
                    }
                    switch msg {
                    case .roster(let r):
                        roster = r
                        if !joinedReported,
                            spectate || r.members.contains(where: { $0.key == identity.publicKey.bytes })
                        {
                            joinedReported = true
                            event("joined") { j in
                                j.add("host", hostKey.text)
                                j.add("key", identity.publicKey.text)
                                j.add("join_ms", Double(monotonicNanos() - startedAt) / 1e6)
                                j.add("players", r.members.count)
                                j.add("spectating", spectate)
                            }
                        }
                        // The mesh: the member with the greater key dials (each pair once), by IK;
                        // a spectator dials no one (it hears the match from the host). The host's
                        // roster introduces the pair: both get it at about the same moment, and
                        // the member that does not dial probes the dialer's addresses (the host's
                        // view of its NAT mapping), so that its own NAT lets the handshake in: a
                        // punch, as with the host (docs/nat.md).
                        let toProbe = r.members.filter { m in
                            !spectate && m.path != .local && m.key != identity.publicKey.bytes
                                && identity.publicKey.bytes.lexicographicallyPrecedes(m.key)
                                && probedMembers.insert(m.key).inserted
                        }.flatMap(\.addresses)
                        if !toProbe.isEmpty { live.execute { $0.puncher.probe(toProbe, times: 3) } }
                        for m in r.members
                        where !spectate && m.path != .local && m.key != identity.publicKey.bytes
                            && m.key.lexicographicallyPrecedes(identity.publicKey.bytes) && !dialed.contains(m.key)
                        {
                            guard let k = PeerKey(bytes: m.key) else { continue }
                            dialed.insert(m.key)
                            let links = self.links
                            for addr in m.addresses {
                                live.execute { peer in
                                    guard let s = peer.sessions?.connect(to: addr, mode: .knownKey(k)) else { return }
                                    links.adopt(s)
                                }
                            }
                        }
                        for m in r.members where !known.contains(m.key) {
                            known.insert(m.key)
                            event("peer") { j in
                                j.add("key", PeerKey(bytes: m.key)?.text ?? "?")
                                j.add("name", Self.displayName(m.name))
                                j.add("state", "joined")
                                j.add("path", m.path == .local ? "direct" : "relayed")
                            }
                        }
                    case .settings(let s): lobbySettings = s
                    case .snapshot(let b): resumeFrom = b
                    case .revealRequest: send(hostLink, .reveal(contribution))
                    case .leave(let reason):
                        printErr(reason.joinerLine)
                        return 1
                    case .start(let s):
                        if let hold = holdStart, heldStart == nil {
                            heldStart = (s, monotonicNanos() + hold)
                            continue
                        }
                        return try begin(s, then: Array(batch[(index + 1)...]))
                    default: dropped += 1
                    }
                }
            }
        }
    }

    func findAnnounced(_ topic: String) -> [PeerAddress] {
        let h = Topic.infoHash(topic)
        // The first answer that lists lobbies is enough (the nodes near the topic store the same
        // announcements).
        return keepLooking {
            let r = live.waitFor(timeout: 15) { (p: Peer, done: @escaping ([PeerAddress]) -> Void) in
                p.dht.getPeers(h, onPeers: { done($0) }) { done($0.peers) }
            }
            return (r ?? []).isEmpty ? nil : r
        } ?? []
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
            Thread.sleep(forTimeInterval: 1)
        }
        return nil
    }
}
