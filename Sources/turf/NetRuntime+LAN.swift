import DHT
import Dispatch
import Foundation
import LocalFiles
import NetCore
import NetPOSIX
import NetStack
import Sodium
import TerminalUI
import TextOutput

/// LAN parties in `turf host` / `turf join --topic` (docs/nat.md, "LAN parties"): BEP 14 local
/// discovery beside the DHT, so that players on one LAN find each other with no DHT node
/// reachable at all. The host announces its lobby's info-hash on the LAN and answers searches at
/// once; the joiner searches while its DHT lookup runs and takes what answers first, LAN lobbies
/// first. `LocalDiscovery` (NetStack) decides; this starts it, reads what it found, and prints.
extension NetRuntime {
    /// Starts discovery for the lobby's info-hash (a host's announces, a joiner's searches) and
    /// prints `{"event":"lan","state":"listening",…}`, or `"unavailable"` when no multicast socket
    /// could be opened (the game goes on without it). False when off or unavailable.
    @discardableResult
    func startLAN(role: LocalDiscovery.Role, infoHash: NodeID) -> Bool {
        guard lanEnabled, lan == nil else { return lan != nil }
        var config = LocalDiscovery.Config(
            role: role,
            infoHash: infoHash,
            port: live.localAddress.port,
            nonce: String(format: "%016llx", Sodium.randomU64())
        )
        config.maxLobbies = NetRuntime.maxProbes
        let began = monotonicNanos()
        do {
            let service = try LocalDiscoveryService.open(on: live.udp, config: config)
            lan = service
            event("lan") { j in
                j.add("state", "listening")
                j.add("role", role.rawValue)
                j.add("interfaces", service.group.joined)
                j.add("open_ms", Double(monotonicNanos() - began) / 1e6)
            }
            return true
        } catch {
            event("lan") { j in
                j.add("state", "unavailable")
                j.add("reason", SafeText.display("\(error)", limit: 200))
            }
            return false
        }
    }

    /// A joiner that connected stops searching (the sockets stay, counting what comes, until `stopLAN`).
    func stopLANSearch() {
        guard let lan else { return }
        live.execute { _ in lan.stopSearching() }
    }

    /// Closes the discovery sockets (the process is ending). Waits for the loop, bounded by it.
    func stopLAN() {
        guard let lan else { return }
        _ = try? live.sync { _ in lan.stop() }
    }

    /// The joiner's search by topic: the DHT and the LAN at once, until one of them lists a lobby
    /// (15 s at most, as the DHT lookup alone waited). The DHT lookup starts first (it runs on the
    /// loop while the multicast sockets open). A lobby found on the LAN ends it at once headless;
    /// on the screens after `lanGather`, so that the picker lists every lobby of the LAN (and the
    /// DHT's, if they came by then). A DHT answer ends it once the LAN's first search had
    /// `lanGrace` to be answered (a LAN answers in a millisecond or two): LAN lobbies are tried
    /// first, and a host on this LAN is reached over it even when the DHT knows only its public
    /// address. Prints one `lan` event per lobby found on the LAN. Returns every address, LAN
    /// first, and which came from the LAN.
    func findByTopic(_ topic: String) -> (addresses: [PeerAddress], lan: Set<PeerAddress>) {
        let h = Topic.infoHash(topic)
        let began = monotonicNanos()
        // Woken by what either finds (the loop signals), not by polling.
        let wake = DispatchSemaphore(value: 0)
        let lookup = TopicLookup(wake: wake, bothFamilies: TopicLookup.bothFamilies(live.localAddress))
        live.execute { peer in lookup.run(peer, infoHash: h) }
        defer { live.execute { _ in lookup.cancel() } }
        let searching = lanEnabled && startLAN(role: .join, infoHash: h)
        let searchedAt = monotonicNanos()
        if let lan { live.execute { _ in lan.onFound = { _ in wake.signal() } } }
        defer { if let lan { live.execute { _ in lan.onFound = nil } } }
        var firstLAN: UInt64?
        var shown = 0
        var lanFound: [PeerAddress] = []
        while monotonicNanos() - began < Self.findSeconds * 1_000_000_000 {
            let found = lan?.snapshot.lobbies ?? []
            for (address, at) in found.dropFirst(shown) {
                lanFound.append(address)
                event("lan") { j in
                    j.add("state", "found")
                    j.add("address", address.description)
                    j.add("search_ms", Double(at > began ? at - began : 0) / 1e6)
                    if let t0 = processStart { j.add("after_ms", Double(at > t0 ? at - t0 : 0) / 1e6) }
                }
            }
            shown = found.count
            let now = monotonicNanos()
            var until = now + 100_000_000
            if !lanFound.isEmpty {
                if firstLAN == nil { firstLAN = now }
                if !ui.choosesLobby || now - firstLAN! >= Self.lanGather { break }
                until = min(until, firstLAN! + Self.lanGather)
            }
            if !(lookup.result.withLock { $0 }).isEmpty {
                if !searching || now - searchedAt >= Self.lanGrace { break }
                until = min(until, searchedAt + Self.lanGrace)
            }
            _ = wake.wait(timeout: .now() + .nanoseconds(Int(until > now ? until - now : 0)))
            _ = nextEvents(wait: 0)  // no session yet: only the loop's stats come in
        }
        let lanSet = Set(lanFound)
        let fromDHT = lookup.result.withLock { $0 }.filter { !lanSet.contains($0) }
        return (lanFound + fromDHT, lanSet)
    }

    /// How long a joiner looks, how long the screens wait for more LAN lobbies after the first,
    /// and how long a DHT answer waits for the LAN's.
    static let findSeconds: UInt64 = 15
    static let lanGather: UInt64 = 500_000_000
    static let lanGrace: UInt64 = 10_000_000

    /// The `end` event's discovery counters (docs/lobby.md): what came, what was refused and why,
    /// what was sent. Nothing when discovery was off.
    func addLANCounts(to j: inout JSONObject) {
        guard let lan else { return }
        let s = lan.snapshot
        var o = JSONObject()
        o.add("received", s.stats.received)
        o.add("malformed", s.stats.malformedTotal)
        var why = JSONObject()
        for p in LSDMessage.Problem.allCases where s.stats.malformed[p] != nil {
            why.add(p.rawValue, s.stats.malformed[p]!)
        }
        o.add("malformed_by_reason", why)
        o.add("other_infohashes", s.stats.otherInfoHashes)
        o.add("ignored", s.stats.ignored)
        o.add("searches_heard", s.stats.searchesHeard)
        o.add("answers", s.stats.answers)
        o.add("answers_coalesced", s.stats.answersCoalesced)
        o.add("announces_sent", s.stats.announcesSent)
        o.add("searches_sent", s.stats.searchesSent)
        o.add("lobbies_found", s.stats.lobbiesFound)
        o.add("lobbies_dropped", s.stats.lobbiesDropped)
        o.add("datagrams_sent", s.socket.sent)
        o.add("send_failures", s.socket.sendFailures)
        j.add("lan", o)
    }
}

/// The joiner's DHT lookup of a topic while the LAN is searched too: again a second after each
/// lookup that found nobody, until cancelled. `result` holds the first answer that listed lobbies.
// @unchecked Sendable: `cancelled`, `found` and `waiting` are touched only on the LivePeer's event loop; `result` is locked.
final class TopicLookup: @unchecked Sendable {
    let result = Locked<[PeerAddress]>([])
    private var cancelled = false
    /// Signalled when `result` is set.
    let wake: DispatchSemaphore
    /// Whether to wait for the other family's answer (`otherFamilyGrace`) after one family's.
    let bothFamilies: Bool
    /// Touched on the loop only.
    private var found: [PeerAddress] = []
    private var waiting = false

    init(wake: DispatchSemaphore, bothFamilies: Bool) {
        self.wake = wake
        self.bothFamilies = bothFamilies
    }

    /// The first answer that lists lobbies is enough (the nodes near the topic store the same
    /// announcements) — per family: the IPv4 and IPv6 DHTs answer apart (BEP 32), so on a
    /// dual-stack socket of a machine with IPv4 and a global IPv6 address the first answer of one
    /// family waits up to `otherFamilyGrace` (or the lookup's end) for the other's, which may hold
    /// the host's IPv6 address: a direct path where IPv4 is not.
    static func bothFamilies(_ bound: PeerAddress) -> Bool {
        bound.isIPv6 && bound.isUnspecified && LocalInterfaces.hasGlobalIPv6()
            && LocalInterfaces.ipv4().contains { $0 >> 24 != 127 }
    }

    /// A second: a loaded machine's IPv6 lookup may answer a few hundred ms after its IPv4 one,
    /// and without the host's IPv6 address a pair behind random IPv4 NATs would play relayed.
    static let otherFamilyGrace: Nanos = .seconds(1)

    func run(_ peer: Peer, infoHash: NodeID) {
        guard !cancelled else { return }
        found = []
        waiting = false
        let (result, wake) = (self.result, self.wake)
        func publish() {
            let list = found
            guard !list.isEmpty else { return }
            let first = result.withLock { r -> Bool in
                guard r.isEmpty else { return false }
                r = list
                return true
            }
            if first { wake.signal() }
        }
        func take(_ peers: [PeerAddress]) {
            for a in peers where !found.contains(a) { found.append(a) }
            guard !found.isEmpty else { return }
            let hasBoth = found.contains(where: \.isIPv6) && found.contains { !$0.isIPv6 }
            if !bothFamilies || hasBoth {
                publish()
            } else if !waiting {
                waiting = true
                peer.host.schedule(after: Self.otherFamilyGrace) { publish() }
            }
        }
        peer.dht.getPeers(infoHash, onPeers: { take($0) }) { [weak self, weak peer] r in
            guard let self, let peer, !self.cancelled else { return }
            take(r.peers)
            publish()
            if result.withLock({ $0.isEmpty }) {
                peer.host.schedule(after: .seconds(1)) { [weak self, weak peer] in
                    guard let self, let peer else { return }
                    self.run(peer, infoHash: infoHash)
                }
            }
        }
    }

    func cancel() { cancelled = true }
}

extension DHTCLI {
    /// The bootstrap nodes of `turf host` / `turf join`. A setting that cannot be read or parsed
    /// is an error as everywhere; nodes that were configured but none of which resolves are an
    /// error only without local discovery (`lan`): with it, the players on this LAN can still
    /// find each other, so the process starts with no DHT and the warning says why.
    static func bootstrapForPlay(_ flags: [String], lan: Bool) throws -> (addresses: [PeerAddress], warning: String?) {
        let specs = try bootstrapSpecs(flags)
        let addresses = specs.flatMap(resolve)
        guard !specs.isEmpty && addresses.isEmpty else { return (addresses, nil) }
        guard lan else { throw CLIError(unresolvedMessage(specs)) }
        return ([], "no bootstrap node could be resolved (\(specs.joined(separator: ", "))): no DHT, only this LAN")
    }

    /// `lan_discovery` in dht.conf (nil when it says nothing); a file that cannot be read or
    /// parsed is an error, as for the bootstrap setting.
    static func lanDiscoverySetting() throws -> Bool? {
        try dhtConfSetting { text, path in try DHTBootstrap.parseLANDiscovery(text, path: path) } ?? nil
    }

    /// Reads dht.conf (bounded, as untrusted) and hands its text to `parse`; nil when there is no
    /// file. A file that cannot be read or parsed is one clean error naming it.
    static func dhtConfSetting<T>(_ parse: (String, String) throws -> T) throws -> T? {
        let path = DHTBootstrap.configPath(
            environment: ProcessInfo.processInfo.environment,
            homeDirectory: NSHomeDirectory()
        )
        do {
            guard
                let text = try UntrustedFile.readTextIfPresent(
                    path,
                    limit: DHTBootstrap.configLimit,
                    what: "DHT config"
                )
            else { return nil }
            return try parse(text, path)
        } catch let e as DHTBootstrap.SettingError {
            throw CLIError(SafeText.display(e.description, limit: 400))
        }
    }
}

extension NetRuntime {
    /// How a link runs, for the lobby roster and the HUD: through a relay, over the LAN (the
    /// session's address is private: a LAN party, players behind one NAT), or directly. The
    /// address is the one the loop last reported, else `address` (where the peer was first seen).
    func linkPath(_ id: UInt32, address: PeerAddress? = nil) -> LinkPath {
        if relayedLinks.contains(id) { return .relayed }
        let a = linkAddresses[id] ?? stats.addresses[id]?.address ?? address
        return a?.isPrivate == true ? .lan : .direct
    }
}
