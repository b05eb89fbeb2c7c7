import ArgumentParser
import DHT
import Determinism
import Engine
import Foundation
import Keys
import Lobby
import LocalFiles
import NetCore
import NetPOSIX
import NetPlay
import NetStack
import Sodium
import TerminalUI
import TextOutput
import Transport
import TurfRules

/// One `turf host` or `turf join` process: the shell around the NetPlay state machines. Its socket
/// (DHT and sessions, a `LivePeer`) runs on the event loop; the lobby and match run on the calling
/// thread, which posts commands to the loop (`perform`, `LivePeer.execute`) and hears back only
/// through the `LinkMailbox` (NetCore's `NetworkMailbox`: link events, the once-a-second `stats`,
/// and the match's datagrams).
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
    /// Lobby messages from peers that were malformed, out of place or hostile: dropped and counted.
    var dropped = 0
    /// The figures the event loop pushed last (`NetEvent.stats`, once a second).
    var stats = NetStats()
    /// How many `stats` events came in (a loop acts on each new one once).
    var statsReceived = 0
    /// How many `freshStats` asked for (each waits for the event answering it).
    var statsRequests = 0
    /// When this process started (a joiner's `join_ms` and `playing_ms` count from it).
    var processStart: UInt64?
    /// Links whose session runs through a relay (docs/nat.md): the HUD and the end event say so.
    var relayedLinks = Set<UInt32>()
    /// Links whose address changed since the lobby last looked (`nextEvents` fills it).
    var pathsMoved: [UInt32: PeerAddress] = [:]
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
    /// LAN discovery (docs/nat.md, "LAN parties"): on unless `--no-lan` or `lan_discovery = off`;
    /// its service once started (NetRuntime+LAN.swift).
    let lanEnabled: Bool
    var lan: LocalDiscoveryService?
    /// Relaying for others while this process runs (docs/nat.md, "Players relay for each other"):
    /// on once our NAT lets others in, unless `--no-relay-service` or `relay_service = off`
    /// (NetRuntime+RelayService.swift).
    var relayService: RelayServiceState
    /// Why there is no DHT (no bootstrap node resolved) when discovery plays on without one.
    let dhtWarning: String?
    /// Your friends (`turf friends`): the roster and `peer` events label their keys with the names
    /// you gave them (docs/lobby.md, "Friends").
    var friends = FriendList()
    /// The lobby's messages dropped as hostile or out of place (the lobby machine's count, as of
    /// the last match start), for the `end` event's `dropped_messages`.
    var lobbyDropped = 0
    /// Host: lines of chat dropped over their sender's allowance.
    var chatRateLimited = 0
    /// The series played in this lobby so far (NetSeries.swift).
    var tally = SeriesTally()
    /// The lobby's last lines of chat, for the lobby and end screens.
    var chatLines: [ChatLine] = []
    /// Each session's bytes as the last match ended: the next match's `end` reports its own.
    var trafficAtLastEnd: [UInt32: (sent: UInt64, received: UInt64)] = [:]
    /// Host: when every member had answered the rematch offer (the `start` event's `rematch_ms`).
    var rematchAgreedAt: UInt64?

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
        lanEnabled = try !options.noLan && DHTCLI.lanDiscoverySetting() != false
        let relaySetting = try DHTCLI.relayServiceSetting()
        relayService = RelayServiceState(
            optedOut: options.noRelayService ? "flag" : relaySetting.on == false ? "config" : nil,
            kibPerSecond: relaySetting.kibPerSecond
        )
        // With LAN discovery, no resolvable bootstrap node is a warning, not an error (NetRuntime+LAN.swift).
        let boot = try DHTCLI.bootstrapForPlay(options.socket.bootstrap.map(\.text), lan: lanEnabled)
        dht.bootstrap = boot.addresses
        dhtWarning = boot.warning
        live = try LivePeer.bind(address, dht: dht, identity: identity)
        mailbox = LinkMailbox(loop: live.udp, capacity: 65_536, datagramCapacity: 4096)
        links = Links(mailbox: mailbox)
        let links = self.links
        live.execute { peer in
            peer.sessions?.onInbound = { s in links.adopt(s) }
            links.startStats(peer)
        }
        live.start()
        if let w = boot.warning {
            // On the screens, before they start: the player sees why only the LAN is searched.
            if !options.headless { printErr("turf: \(SafeText.display(w, limit: 400))") }
            event("dht") { j in
                j.add("status", "unreachable")
                j.add("detail", SafeText.display(w, limit: 400))
            }
        }
    }

    func close() {
        stopLAN()
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

    func send(_ id: UInt32, _ m: LobbyMessage) { perform([.send(id, m.encode())]) }

    /// Carries out what a NetPlay state machine asked for, in order, on the event loop.
    func perform(_ actions: [LinkAction], announceFlush: Bool = false) {
        guard !actions.isEmpty || announceFlush else { return }
        let links = self.links
        live.execute { peer in
            var datagrams: [(id: UInt32, bytes: [UInt8])] = []
            var flush: [UInt32] = []
            for a in actions {
                switch a {
                case .send(let id, let bytes): links.send(id, bytes)
                case .datagram(let id, let bytes): datagrams.append((id, bytes))
                case .close(let id): links.close(id)
                case .closeWhenFlushed(let id): flush.append(id)
                case .dial(let key, let addresses):
                    for addr in addresses {
                        guard let s = peer.sessions?.connect(to: addr, mode: .knownKey(key)) else { continue }
                        links.adopt(s)
                    }
                case .probe(let addresses): peer.puncher.probe(addresses, times: 3)
                }
            }
            if !datagrams.isEmpty { links.sendDatagrams(datagrams) }
            if !flush.isEmpty || announceFlush {
                links.closeWhenFlushed(flush, host: peer.host, announce: announceFlush)
            }
        }
    }

    /// Carries out the actions (a leave, a refusal), then waits until the loop says the links
    /// they close have delivered what was sent on them (at most about 2 s): the process may exit.
    func performAndFlush(_ actions: [LinkAction]) {
        perform(actions, announceFlush: true)
        let until = monotonicNanos() + 3_000_000_000
        while monotonicNanos() < until {
            if nextEvents(wait: 0.1).contains(where: { if case .flushed = $0 { true } else { false } }) { return }
        }
    }

    /// Asks the loop for a `stats` event now and takes it in (bounded: 1 s); the other events that
    /// come meanwhile are put back for the caller.
    func freshStats() {
        statsRequests += 1
        let token = statsRequests
        let links = self.links
        live.execute { peer in links.postStats(peer, token: token) }
        var held: [NetEvent] = []
        let until = monotonicNanos() + 1_000_000_000
        while stats.token != token && monotonicNanos() < until { held += nextEvents(wait: 0.05) }
        mailbox.requeue(held)
    }

    /// The mailbox's next events (waiting up to `wait` s for the first), with `stats` taken in
    /// (kept in `stats`, and the links' paths checked) rather than handed on.
    func nextEvents(wait: Double) -> [NetEvent] {
        var out: [NetEvent] = []
        for e in wait > 0 ? mailbox.wait(wait, alsoWatching: ui.inputFD) : mailbox.drain() {
            if case .stats(let s) = e {
                stats = s
                statsReceived += 1
                pathsMoved.merge(checkPaths()) { _, b in b }
                tickRelayService()
            } else {
                out.append(e)
            }
        }
        return out
    }
    func psk(topic: String) throws -> SecretBytes? {
        try passphrase.map { try SessionManager.lobbyKey(passphrase: $0, lobby: topic) }
    }

    /// The addresses friends can reach us at: the external one DHT nodes report, the bound one
    /// (if specific), else every local IPv4 address, and with a dual-stack socket every global and
    /// unique-local IPv6 address, with our port.
    func reachableAddresses() -> [PeerAddress] {
        let bound = live.localAddress
        var out: [PeerAddress] = []
        if let ext = stats.externalAddress ?? ((try? live.sync({ $0.dht.externalAddress })) ?? nil) { out.append(ext) }
        // IPv6 has no NAT as a rule, but a network may translate prefixes (NPTv6): what nodes see.
        if bound.isIPv6, let ext6 = stats.externalAddress6 { out.append(ext6) }
        if !bound.isUnspecified {
            out.append(bound)
        } else {
            for ip in LocalInterfaces.ipv4() { out.append(PeerAddress(ip: ip, port: bound.port)) }
        }
        // IPv6 (no NAT: a global address is what friends reach, once our firewall let them in),
        // when the socket speaks it.
        if bound.isIPv6 && bound.isUnspecified {
            for v6 in LocalInterfaces.ipv6() { out.append(PeerAddress(ip6: v6, port: bound.port)) }
        }
        var seen = Set<PeerAddress>()
        return out.filter { seen.insert($0).inserted }
    }

    /// The most spectators a host lets watch.
    static let maxSpectators = 8
}
