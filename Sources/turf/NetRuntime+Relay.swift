import DHT
import Keys
import Lobby
import NIOConcurrencyHelpers
import NetCore
import NetStack
import Sodium
import Transport

/// Relaying in `turf host` / `turf join` (docs/nat.md, "Relaying"): when punching cannot work
/// (random ↔ random) or has not worked yet, the session runs through a volunteer relay found on
/// the DHT. The host registers its lobby at relays for as long as it runs; the joiner, after a
/// short wait, joins one and starts the same handshake there as at the host's own addresses.
extension NetRuntime {
    /// Where each link's session runs now, against what was seen last: a relayed link that
    /// upgraded to a direct path, or a peer that roamed (its NAT mapping changed), gets a `path`
    /// event, and `relayedLinks` (the HUD's and the end event's) follows. Returns the links whose
    /// address changed. Called on every `stats` event (once a second) with the addresses it carries.
    @discardableResult
    func checkPaths() -> [UInt32: PeerAddress] {
        let now = stats.addresses
        var changed: [UInt32: PeerAddress] = [:]
        for (id, seen) in now.sorted(by: { $0.key < $1.key }) {
            let addr = seen.address
            if RelayClient.isVirtual(addr) { relayedLinks.insert(id) } else { relayedLinks.remove(id) }
            let before = linkAddresses.updateValue(addr, forKey: id)
            guard let before, before != addr else { continue }
            changed[id] = addr
            event("path") { j in
                j.add("key", seen.key?.text)
                j.add("path", Self.pathName(addr))
                j.add("address", addr.description)
                j.add("was", Self.pathName(before))
                if let t0 = self.processStart { j.add("after_ms", Double(monotonicNanos() - t0) / 1e6) }
            }
        }
        linkAddresses = linkAddresses.filter { now[$0.key] != nil }
        return changed
    }

    /// "relayed", "lan" or "direct", as the events say a path.
    static func pathName(_ a: PeerAddress) -> String {
        RelayClient.isVirtual(a) ? "relayed" : a.isPrivate ? "lan" : "direct"
    }

    /// The host's side: finds relays on the DHT (volunteers and players that relay for others)
    /// and registers the lobby at the two it ranks first, again after every lookup (every 30 s;
    /// every 2 s while none is found), and at up to two of its own members that relay (they come
    /// first: `memberRelays`, set from the lobby loop). The returned watch, ticked from the lobby
    /// loop, prints a `relay` event whenever a relay's answer changes.
    func startHostRelay(topic: String) -> HostRelayWatch {
        let tag = RelayFrame.tag(topic: topic)
        let finder = HostRelayFinder(tag: tag)
        live.execute { peer in finder.find(peer) }
        return HostRelayWatch(rt: self, finder: finder)
    }
}

/// The host's relay lookups and registration, on the event loop: both classes of relay found on
/// the DHT (volunteers and players), its members that relay, and the registration built from them.
final class HostRelayFinder: @unchecked Sendable {
    let tag: NodeID
    /// Confined to the loop.
    private var found = RelaysFound()
    private var members: [PeerAddress] = []

    init(tag: NodeID) { self.tag = tag }

    /// Looks the relays up (`Peer.findRelays`); registers when every lookup answered, and again
    /// 30 s later (2 s while it found none).
    func find(_ peer: Peer) {
        peer.findRelays(tag: tag, holders: false) { [weak peer] found in
            guard let peer else { return }
            self.found = found
            let any = self.register(peer)
            peer.host.schedule(after: .seconds(any ? 30 : 2)) { [weak peer] in
                if let peer { self.find(peer) }
            }
        }
    }

    /// The lobby's members that relay for others, at the addresses its sessions see: registered
    /// at first (at most two), at once when they change.
    func setMembers(_ addresses: [PeerAddress], peer: Peer) {
        guard addresses != members else { return }
        members = addresses
        register(peer)
    }

    /// Registers at up to two members and the two strangers ranked first (volunteers before
    /// players), never at this peer itself. Returns whether any stranger was found.
    @discardableResult
    private func register(_ peer: Peer) -> Bool {
        guard let client = peer.relay else { return false }
        let own = Set([peer.dht.externalAddress, peer.dht.externalAddress6, peer.localAddress].compactMap { $0 })
        let chosen = Self.choose(members: members, found: found, tag: tag, own: own)
        if !chosen.relays.isEmpty { client.register(tag: tag, at: chosen.relays) }
        return chosen.strangers > 0
    }

    /// Where the host registers: up to two members that relay, then strangers ranked first
    /// (volunteers before players) up to `RelayClient`'s four, never `own`; and how many
    /// strangers there were. More than two strangers: a player relay may turn out unreachable or
    /// full, and the joiner walks down the same ranking.
    static func choose(
        members: [PeerAddress],
        found: RelaysFound,
        tag: NodeID,
        own: Set<PeerAddress>
    ) -> (relays: [PeerAddress], strangers: Int) {
        let mine = Array(
            RelayFrame.order(members: members, volunteers: [], players: [], tag: tag, excluding: own).prefix(2)
        )
        let strangers = RelayFrame.order(
            members: [],
            volunteers: found.volunteers,
            players: found.players,
            tag: tag,
            excluding: own.union(mine)
        )
        return (mine + Array(strangers.prefix(RelayClient.maxRegistrations - mine.count)), strangers.count)
    }
}

/// The host's relay registrations as its events show them: `{"event":"relay","relay":…,"status":"ok"}`.
final class HostRelayWatch {
    let rt: NetRuntime
    let finder: HostRelayFinder
    private var shown: [PeerAddress: String] = [:]
    private var lastCheck: UInt64 = 0
    private var members: [PeerAddress] = []

    init(rt: NetRuntime, finder: HostRelayFinder) {
        self.rt = rt
        self.finder = finder
    }

    /// The members that relay for others (the lobby's roster, where the host's sessions see
    /// them): the registration puts them first. Returns whether they changed.
    @discardableResult
    func members(_ addresses: [PeerAddress]) -> Bool {
        guard addresses != members else { return false }
        members = addresses
        let finder = self.finder
        rt.live.execute { peer in finder.setMembers(addresses, peer: peer) }
        return true
    }

    func tick() {
        let now = monotonicNanos()
        guard now - lastCheck > 500_000_000 else { return }
        lastCheck = now
        let answers = (try? rt.live.sync { $0.relay?.registeredAt.mapValues { "\($0)" } ?? [:] }) ?? [:]
        for (relay, status) in answers.sorted(by: { $0.key < $1.key }) where shown[relay] != status {
            shown[relay] = status
            rt.event("relay") { j in
                j.add("relay", relay.description)
                j.add("status", status)
            }
        }
    }
}

/// A joiner's relay lookups (`Peer.findRelays`), started as soon as the topic is known: the
/// topic names the relay shard, so they run beside the lobby's lookup instead of after it.
final class RelayLookup: Sendable {
    struct State {
        /// What the lookups found so far (nil: nothing yet), and whether they all ended.
        var found: RelaysFound?
        var complete = false
    }
    let state = NIOLockedValueBox(State())
    let started = monotonicNanos()

    init(rt: NetRuntime, tag: NodeID) {
        let state = self.state
        rt.live.execute { peer in
            peer.findRelays(
                tag: tag,
                onUpdate: { found in state.withLockedValue { $0.found = found } }
            ) { found in
                state.withLockedValue {
                    $0.found = found
                    $0.complete = true
                }
            }
        }
    }

    convenience init(rt: NetRuntime, topic: String) { self.init(rt: rt, tag: RelayFrame.tag(topic: topic)) }
}

/// The joiner's relay attempt inside `connectToHost`: looks relays up (or takes the lookup the
/// join started with the topic), and once `after` has passed without a session joins the two it
/// ranks first and starts a handshake through each. Driven from the joiner's thread; the loop's
/// answers come back through a lock.
final class JoinRelay {
    struct Shared {
        /// The rounds of joins, and the relays that failed (later rounds try others first).
        var walk = RelayWalk()
        /// Sessions started through a relay, not yet taken by `tick`.
        var started: [UInt32] = []
        /// Relay address of each relayed session.
        var relayOf: [UInt32: PeerAddress] = [:]
    }

    let rt: NetRuntime
    let tag: NodeID
    private var startAt: UInt64
    private var firstStarted: UInt64?

    /// A relayed handshake started late (after several join rounds) gets its full 10 s: the
    /// connect phase may run until then, past its usual 12 s.
    var deadline: UInt64 { firstStarted.map { $0 + 10_000_000_000 } ?? 0 }
    let psk: SecretBytes?
    let expected: PeerKey?
    /// The lobby's members that relay for others (its record's `r`): tried before strangers.
    let members: [PeerAddress]
    /// Never a relay: this process's own addresses, and the host's.
    let excluding: Set<PeerAddress>
    let shared = NIOLockedValueBox(Shared())
    private(set) var joined = false

    init(
        rt: NetRuntime,
        topic: String,
        psk: SecretBytes?,
        expected: PeerKey?,
        after: UInt64,
        members: [PeerAddress] = [],
        excluding: Set<PeerAddress> = [],
        lookup: RelayLookup? = nil
    ) {
        self.rt = rt
        tag = RelayFrame.tag(topic: topic)
        self.psk = psk
        self.expected = expected
        self.members = members
        self.excluding = excluding
        startAt = monotonicNanos() + after
        current = lookup ?? RelayLookup(rt: rt, tag: tag)
    }

    /// The lookup whose answers are used (the latest), and how many were started.
    private var current: RelayLookup
    private var lookups = 1

    /// Every relay found so far, in the order to try them: members, volunteers, players
    /// (`RelayFrame.order`), then those that failed fewer times first. Nil until a lookup
    /// found one or they all ended (members alone are known from the start).
    private var ordered: [PeerAddress]? {
        let walk = shared.withLockedValue { $0.walk }
        let state = current.state.withLockedValue { $0 }
        guard let found = state.found ?? (state.complete || !members.isEmpty ? RelaysFound() : nil) else { return nil }
        return walk.ordered(
            RelayFrame.order(
                members: members,
                holders: found.holders,
                volunteers: found.volunteers,
                players: found.players,
                tag: tag,
                excluding: excluding
            )
        )
    }

    /// How long a joiner waits for a direct path before it also tries relays: half a second.
    /// A direct path that exists is usually up by then (the lab's cone ↔ cone: 41 ms; through
    /// libtorrent nodes only, 300–400 ms); one that takes longer (the knock's slow path on a DHT
    /// of plain nodes, the birthday method) may still win the race, and a relayed session moves
    /// to the direct path once a probe gets through (`Repunch`). `bench internet` measured the
    /// wait: join p95 4.8 s with 3 s (1 s behind a random NAT), about 2.7 s with 0.5 s, while
    /// with no wait at all the first rounds went to relays the host had not registered at.
    static let delay: UInt64 = RelayClient.joinDelay

    /// Whether relayed sessions may still come (so the connect loop should keep waiting).
    var mayStillAdd: Bool {
        !joined || shared.withLockedValue { $0.walk.outstanding > 0 || !$0.started.isEmpty }
    }

    /// Starts the joins when due (or at once when `force`: every direct attempt has failed), and
    /// moves the relayed sessions started since the last call into `pending`.
    func tick(_ pending: inout Set<UInt32>, force: Bool) {
        // Every join of the round came back without a channel, or the channels carried no
        // session within `RelayWalk.handshakeGrace`: the next ranks at once while some are
        // untried (our view of the relays and the host's may differ), else again in a second
        // (the host had not registered yet, say).
        let now = monotonicNanos()
        if joined, shared.withLockedValue({ $0.walk.endRound(now: now) }) {
            joined = false
            let untried = shared.withLockedValue { $0.walk }.hasUntried(ordered ?? [])
            startAt = now + (untried ? 0 : 1_000_000_000)
        }
        if !joined, force || monotonicNanos() >= startAt, let relays = ordered {
            let complete = current.state.withLockedValue { $0.complete }
            if relays.isEmpty && (!complete || lookups < 4) {
                // None found yet (a relay's announcement may not have landed): once the lookups
                // ended empty, ask again, 2 s apart.
                if complete && monotonicNanos() - current.started > 2_000_000_000 {
                    lookups += 1
                    current = RelayLookup(rt: rt, tag: tag)
                }
            } else {
                joined = true
                // Members first: the first round goes to the lobby's own relaying members alone
                // (else a stranger's channel might win the race); strangers follow if they fail.
                let next = Array(relays.prefix(RelayWalk.perRound))
                let mine = next.filter { members.contains($0) }
                start(shared.withLockedValue { $0.walk.rounds } == 0 && !mine.isEmpty ? mine : next)
            }
        }
        for id in shared.withLockedValue({ s in
            defer { s.started = [] }
            return s.started
        }) { pending.insert(id) }
        if firstStarted == nil && !pending.isEmpty && shared.withLockedValue({ !$0.relayOf.isEmpty }) {
            firstStarted = monotonicNanos()
        }
    }

    func relay(of id: UInt32) -> PeerAddress? { shared.withLockedValue { $0.relayOf[id] } }

    /// How many relays the lookups found, members included (nil: they have not answered).
    var found: Int? { ordered?.count }

    private func start(_ relays: [PeerAddress]) {
        shared.withLockedValue { $0.walk.begin(relays) }
        guard !relays.isEmpty else { return }
        let (tag, psk, expected, shared, links) = (self.tag, self.psk, self.expected, self.shared, rt.links)
        rt.live.execute { peer in
            for relay in relays {
                peer.relay?.join(tag: tag, relay: relay) { virtual in
                    let mode = ConnectMode.joining(psk: psk, expected: expected)
                    let s = virtual.flatMap { peer.sessions?.connect(to: $0, mode: mode) }
                    shared.withLockedValue { sh in
                        sh.walk.answered(relay, channel: s != nil, now: monotonicNanos())
                        if let s {
                            sh.started.append(s.localIndex)
                            sh.relayOf[s.localIndex] = relay
                        }
                    }
                    if let s { links.adopt(s) }
                }
            }
        }
    }
}
