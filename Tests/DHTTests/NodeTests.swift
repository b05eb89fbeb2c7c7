import Determinism
import NetCore
import NetPOSIX
import NetSim
import Testing

@testable import DHT

/// The DHT node on the simulated network: protocol behaviour, abuse limits, address learning.
@Suite struct NodeTests {
    /// A raw socket that records what it receives, to talk KRPC to a node by hand.
    final class Probe {
        let socket: SimSocket
        var received: [(KRPCMessage, PeerAddress)] = []
        var undecodable = 0
        init(_ net: SimNetwork, _ addr: PeerAddress) {
            socket = net.bind(addr)
            socket.onReceive = { [unowned self] p, s in
                if let m = try? KRPCMessage.decode(p) { received.append((m, s)) } else { undecodable += 1 }
            }
        }
        func send(_ m: KRPCMessage, to a: PeerAddress) { socket.send(m.encoded(), to: a) }
        func query(_ q: KRPCQuery, t: [UInt8], to a: PeerAddress) {
            send(KRPCMessage(transactionID: t, body: .query(q)), to: a)
        }
        func response(_ t: [UInt8]) -> KRPCMessage? { received.last { $0.0.transactionID == t }?.0 }
    }

    func config(seed: UInt64) -> DHTConfig {
        var c = DHTConfig()
        c.seed = seed
        return c
    }

    func makeNetwork(_ n: Int, seed: UInt64 = 1, base: UInt32 = 0xCB00_7100) -> (SimNetwork, [DHTNode]) {
        let net = SimNetwork(seed: seed, conditions: LinkConditions(latency: .milliseconds(10)))
        var nodes: [DHTNode] = []
        for i in 0..<n {
            var c = config(seed: seed * 1000 + UInt64(i))
            c.bootstrap = i == 0 ? [] : [PeerAddress(ip: base, port: 6881)]
            nodes.append(DHTNode.alone(on: net.bind(PeerAddress(ip: base + UInt32(i) * 256, port: 6881)), config: c))
        }
        // Nodes arrive one after another, as in a real network.
        for (i, n) in nodes.enumerated() { net.schedule(after: .milliseconds(100 * i)) { n.start() } }
        _ = net.run(for: .seconds(10))
        return (net, nodes)
    }

    @Test func answersQueriesWithTheRequestersAddress() throws {
        let net = SimNetwork(seed: 2, conditions: .perfect)
        let node = DHTNode.alone(on: net.bind(PeerAddress(198, 51, 100, 1, port: 6881)), config: config(seed: 1))
        let probe = Probe(net, PeerAddress(203, 0, 113, 5, port: 5555))
        let me = NodeID(hex: "00000000000000000000000000000000000000ff")!
        probe.query(KRPCQuery(method: .ping, id: me), t: [1], to: node.localAddress)
        probe.query(KRPCQuery(method: .findNode, id: me, target: me), t: [2], to: node.localAddress)
        probe.query(KRPCQuery(method: .unknown("nonsense"), id: me), t: [3], to: node.localAddress)
        _ = net.run(for: .seconds(1))
        let pong = try #require(probe.response([1]))
        #expect(pong.ip == probe.socket.localAddress, "BEP 42: every response carries the requester's address")
        guard case .response(let r) = pong.body else {
            Issue.record("no response")
            return
        }
        #expect(r.id == node.id)
        let found = try #require(probe.response([2]))
        guard case .response(let fr) = found.body else {
            Issue.record("no response")
            return
        }
        #expect(fr.nodes.isEmpty, "an unverified querier is not handed out")
        #expect(probe.response([3])?.body == .error(KRPCErrorBody(code: 204, message: "method unknown")))
        // The unknown querier was pinged, not trusted: it enters the table only by answering.
        let pings = probe.received.filter {
            if case .query(let q) = $0.0.body { return q.method == .ping } else { return false }
        }
        #expect(pings.count == 1)
        #expect(node.table.entry(for: me) == nil)
        let ping = try #require(pings.first)
        probe.send(
            KRPCMessage(transactionID: ping.0.transactionID, body: .response(KRPCResponse(id: me))),
            to: node.localAddress
        )
        _ = net.run(for: .seconds(1))
        #expect(node.table.entry(for: me)?.lastResponse != nil)
    }

    @Test func tokensImpliedPortAndRotation() throws {
        let net = SimNetwork(seed: 3, conditions: .perfect)
        var c = config(seed: 2)
        c.maintenanceInterval = .seconds(30)
        let node = DHTNode.alone(on: net.bind(PeerAddress(198, 51, 100, 1, port: 6881)), config: c)
        node.startMaintenance()
        let probe = Probe(net, PeerAddress(203, 0, 113, 5, port: 41000))
        let other = Probe(net, PeerAddress(203, 0, 113, 6, port: 41000))
        let me = NodeID(hex: "1100000000000000000000000000000000000000")!
        let h = Topic.infoHash("tokens")
        probe.query(KRPCQuery(method: .getPeers, id: me, infoHash: h), t: [1], to: node.localAddress)
        _ = net.run(for: .seconds(1))
        guard case .response(let r)? = probe.response([1])?.body else {
            Issue.record("no get_peers answer")
            return
        }
        let token = try #require(r.token)
        // A token handed to one IP is refused from another.
        other.query(
            KRPCQuery(method: .announcePeer, id: me, infoHash: h, port: 7000, token: token),
            t: [2],
            to: node.localAddress
        )
        // implied_port: the source port is stored, not `port`.
        probe.query(
            KRPCQuery(method: .announcePeer, id: me, infoHash: h, port: 7000, impliedPort: true, token: token),
            t: [3],
            to: node.localAddress
        )
        _ = net.run(for: .seconds(1))
        #expect(other.response([2])?.body == .error(KRPCErrorBody(code: 203, message: "bad token")))
        guard case .response? = probe.response([3])?.body else {
            Issue.record("announce refused")
            return
        }
        #expect(node.stats.badTokens == 1)
        probe.query(KRPCQuery(method: .getPeers, id: me, infoHash: h), t: [4], to: node.localAddress)
        _ = net.run(for: .seconds(1))
        guard case .response(let r2)? = probe.response([4])?.body else {
            Issue.record("no answer")
            return
        }
        #expect(r2.values == [PeerAddress(203, 0, 113, 5, port: 41000)])

        // Still accepted 8 minutes later (within 10), refused after 11.
        _ = net.run(for: .seconds(8 * 60))
        probe.query(
            KRPCQuery(method: .announcePeer, id: me, infoHash: h, port: 7001, token: token),
            t: [5],
            to: node.localAddress
        )
        _ = net.run(for: .seconds(1))
        guard case .response? = probe.response([5])?.body else {
            Issue.record("token refused within 10 minutes")
            return
        }
        _ = net.run(for: .seconds(3 * 60))
        probe.query(
            KRPCQuery(method: .announcePeer, id: me, infoHash: h, port: 7002, token: token),
            t: [6],
            to: node.localAddress
        )
        _ = net.run(for: .seconds(1))
        #expect(probe.response([6])?.body == .error(KRPCErrorBody(code: 203, message: "bad token")))
    }

    @Test func announcedPeersExpireAfterThirtyMinutes() {
        var store = PeerStore(maxPeersPerInfoHash: 2, maxInfoHashes: 2, maxPeersTotal: 3)
        var rng = SplitMixForTests(seed: 1)
        let h1 = Topic.infoHash("a")
        let h2 = Topic.infoHash("b")
        #expect(store.add(PeerAddress(1, 1, 1, 1, port: 1), for: h1, now: 0, using: &rng) == .stored)
        #expect(store.add(PeerAddress(1, 1, 1, 1, port: 1), for: h1, now: 1, using: &rng) == .refreshed)
        #expect(store.add(PeerAddress(1, 1, 1, 2, port: 1), for: h1, now: 0, using: &rng) == .stored)
        #expect(store.add(PeerAddress(1, 1, 1, 3, port: 1), for: h2, now: 0, using: &rng) == .stored)
        #expect(store.peers(for: h1, now: .seconds(29 * 60), max: 10, using: &rng).count == 2)
        #expect(store.peers(for: h1, now: .seconds(31 * 60), max: 10, using: &rng).isEmpty)
        store.expire(now: .seconds(31 * 60))
        #expect(store.total == 0 && store.infoHashCount == 0)
    }

    /// Full caps evict instead of refusing, so nobody can lock a topic or the store.
    @Test func fullPeerStoreEvictsInsteadOfRefusing() {
        var store = PeerStore(maxPeersPerInfoHash: 3, maxInfoHashes: 4, maxPeersTotal: 8)
        var rng = SplitMixForTests(seed: 2)
        let h = Topic.infoHash("full")
        for i in 0..<3 {
            #expect(store.add(PeerAddress(10, 0, 0, UInt8(i), port: 1), for: h, now: 0, using: &rng) == .stored)
        }
        // The topic is full: the newcomer is stored, one of the others goes.
        let newcomer = PeerAddress(10, 0, 1, 1, port: 1)
        #expect(store.add(newcomer, for: h, now: 0, using: &rng) == .storedEvicting)
        var live = store.peers(for: h, now: 1, max: 10, using: &rng)
        #expect(live.count == 3 && live.contains(newcomer))
        // An expired entry is evicted first: the one refreshed at 29 minutes survives at 31.
        let kept = live.first { $0 != newcomer }!
        #expect(store.add(kept, for: h, now: .seconds(29 * 60), using: &rng) == .refreshed)
        let late = PeerAddress(10, 0, 1, 2, port: 1)
        #expect(store.add(late, for: h, now: .seconds(31 * 60), using: &rng) == .storedEvicting)
        #expect(Set(store.peers(for: h, now: .seconds(31 * 60), max: 10, using: &rng)) == [kept, late])
        store.expire(now: .seconds(60 * 60))
        // Too many info-hashes: the new one still gets in.
        for i in 0..<6 {
            let r = store.add(
                PeerAddress(10, 1, 0, UInt8(i), port: 1),
                for: Topic.infoHash("t\(i)"),
                now: 0,
                using: &rng
            )
            #expect(r != .refreshed)
            #expect(store.peers(for: Topic.infoHash("t\(i)"), now: 1, max: 10, using: &rng).count == 1)
        }
        #expect(store.infoHashCount <= 4 && store.total <= 8)
        // The total cap: adding keeps the total at the cap and stores the newcomer.
        for i in 0..<20 {
            let p = PeerAddress(10, 2, 0, UInt8(i), port: 1)
            _ = store.add(p, for: Topic.infoHash("u\(i % 3)"), now: 0, using: &rng)
            #expect(store.peers(for: Topic.infoHash("u\(i % 3)"), now: 1, max: 10, using: &rng).contains(p))
            #expect(store.total <= 8 && store.infoHashCount <= 4)
        }
        live = []
        // Expiry still accounts for everything.
        store.expire(now: .seconds(31 * 60))
        #expect(store.total == 0 && store.infoHashCount == 0 && live.isEmpty)
    }

    /// One IP with a valid token announcing many ports holds one entry; the real host still gets in.
    @Test func oneIPCannotFillATopic() throws {
        let net = SimNetwork(seed: 31, conditions: .perfect)
        var c = config(seed: 31)
        c.queryRate = 1000
        c.queryBurst = 1000
        let node = DHTNode.alone(on: net.bind(PeerAddress(198, 51, 100, 1, port: 6881)), config: c)
        let attacker = Probe(net, PeerAddress(203, 0, 113, 66, port: 666))
        let honest = Probe(net, PeerAddress(203, 0, 113, 77, port: 777))
        let me = NodeID(hex: "4400000000000000000000000000000000000000")!
        let h = Topic.infoHash("contested lobby")
        func token(_ p: Probe, _ t: UInt8) throws -> [UInt8] {
            p.query(KRPCQuery(method: .getPeers, id: me, infoHash: h), t: [t], to: node.localAddress)
            _ = net.run(for: .milliseconds(10))
            var tok: [UInt8]? = nil
            if case .response(let r)? = p.response([t])?.body { tok = r.token }
            return try #require(tok, "no get_peers answer")
        }
        let tok = try token(attacker, 0)
        for i in 0..<300 {
            attacker.query(
                KRPCQuery(method: .announcePeer, id: me, infoHash: h, port: UInt16(10_000 + i), token: tok),
                t: [1, UInt8(i >> 8), UInt8(i & 0xFF)],
                to: node.localAddress
            )
            _ = net.run(for: .milliseconds(5))
        }
        #expect(node.store.total == 1, "one entry per IP per info-hash")
        let htok = try token(honest, 2)
        honest.query(
            KRPCQuery(method: .announcePeer, id: me, infoHash: h, port: 4242, token: htok),
            t: [3],
            to: node.localAddress
        )
        _ = net.run(for: .milliseconds(10))
        guard case .response? = honest.response([3])?.body else {
            Issue.record("the real host was refused: \(String(describing: honest.response([3])))")
            return
        }
        attacker.query(KRPCQuery(method: .getPeers, id: me, infoHash: h), t: [4], to: node.localAddress)
        _ = net.run(for: .milliseconds(10))
        guard case .response(let r)? = attacker.response([4])?.body else {
            Issue.record("no answer")
            return
        }
        #expect(
            Set(r.values) == [PeerAddress(203, 0, 113, 66, port: 10_299), PeerAddress(203, 0, 113, 77, port: 4242)],
            "the newest port wins"
        )
    }

    @Test func hostileInputIsDroppedAndCountedWhileTheNodeKeepsServing() throws {
        let (net, nodes) = makeNetwork(30, seed: 4)
        let victim = nodes[5]
        let attacker = Probe(net, PeerAddress(203, 0, 113, 66, port: 666))
        var rng = SplitMix64(seed: 99)
        // Garbage, truncations and mutations of a valid query; an oversized datagram.
        let valid = KRPCMessage(
            transactionID: [7, 7],
            body: .query(KRPCQuery(method: .getPeers, id: .zero, infoHash: .zero))
        ).encoded()
        var sent = 0
        for i in 0..<300 {
            var p: [UInt8]
            switch i % 3 {
            case 0: p = (0..<rng.below(200)).map { _ in UInt8(truncatingIfNeeded: rng.next()) }
            case 1: p = Array(valid.prefix(rng.below(valid.count)))
            default:
                p = valid
                for _ in 0..<3 { p[rng.below(p.count)] = UInt8(truncatingIfNeeded: rng.next()) }
            }
            attacker.socket.send(p, to: victim.localAddress)
            sent += 1
            _ = net.run(for: .milliseconds(100))
        }
        attacker.socket.maxDatagram = 65_507  // a raw socket, not a UDPHost: the simulation would drop it at the sender
        attacker.socket.send([UInt8](repeating: UInt8(ascii: "d"), count: 4000), to: victim.localAddress)
        _ = net.run(for: .seconds(1))
        #expect(victim.stats.oversized == 1)
        #expect(victim.stats.malformed > 150, "most garbage is malformed: \(victim.stats)")
        // It still serves: another node finds a topic announced through it.
        let h = Topic.infoHash("still serving")
        var stored = -1
        nodes[1].announce(h, port: 1234) { _, n in stored = n }
        _ = net.run(for: .seconds(10))
        #expect(stored >= 3)
        var found: [PeerAddress] = []
        nodes[20].getPeers(h) { found = $0.peers }
        _ = net.run(for: .seconds(10))
        #expect(found.contains(nodes[1].localAddress))
    }

    @Test func queryFloodsAreRateLimitedPerSource() throws {
        let net = SimNetwork(seed: 5, conditions: LinkConditions(latency: .milliseconds(5)))
        var c = config(seed: 3)
        c.queryRate = 20
        c.queryBurst = 50
        let node = DHTNode.alone(on: net.bind(PeerAddress(198, 51, 100, 1, port: 6881)), config: c)
        let flooder = Probe(net, PeerAddress(203, 0, 113, 66, port: 666))
        let honest = Probe(net, PeerAddress(203, 0, 113, 77, port: 777))
        let id = NodeID(hex: "2200000000000000000000000000000000000000")!
        // 5,000 queries in one second from one source, and one honest ping in the middle.
        for i in 0..<5000 {
            flooder.query(KRPCQuery(method: .ping, id: id), t: [UInt8(i >> 8), UInt8(i & 0xFF)], to: node.localAddress)
            if i == 2500 { honest.query(KRPCQuery(method: .ping, id: id), t: [9], to: node.localAddress) }
            _ = net.run(for: Nanos(200_000))
        }
        _ = net.run(for: .seconds(1))
        #expect(flooder.received.count <= 50 + 20 * 2, "answered \(flooder.received.count)")
        #expect(node.stats.rateLimited >= 4900)
        #expect(honest.response([9]) != nil, "an honest source is still answered during the flood")
    }

    @Test func routingTableSplitsLimitsAndReplaces() {
        let own = NodeID(hex: "8000000000000000000000000000000000000000")!
        var t = RoutingTable(ownID: own, k: 8, now: 0)
        var rng = SplitMixForTests(seed: 11)
        // 8 far nodes fill bucket 0 (after splitting, they all sit in the bucket for prefix 0).
        var far: [NodeInfo] = []
        for i in 0..<8 {
            let id = own.randomInBucket(prefix: 0, using: &rng)
            far.append(NodeInfo(id: id, address: PeerAddress(ip: 0x0B00_0000 + UInt32(i) << 8, port: 1)))
            #expect(t.insert(far[i], responded: true, now: 0) == .added)
        }
        // Nodes near us force splits and are all kept.
        for i in 0..<20 {
            let id = own.randomInBucket(prefix: 3 + i, using: &rng)
            #expect(
                t.insert(
                    NodeInfo(id: id, address: PeerAddress(ip: 0x0C00_0000 + UInt32(i) << 8, port: 1)),
                    responded: true,
                    now: 0
                ) == .added
            )
        }
        #expect(t.buckets.count > 10)
        #expect(t.count == 28)
        // A 9th far node goes to the replacement cache and we are asked to ping a questionable one.
        let ninth = NodeInfo(id: own.randomInBucket(prefix: 0, using: &rng), address: PeerAddress(13, 0, 0, 1, port: 1))
        #expect(t.insert(ninth, responded: true, now: 0) == .cached(ping: nil), "all good: nobody to ping")
        let later: Nanos = .seconds(20 * 60)
        let tenth = NodeInfo(id: own.randomInBucket(prefix: 0, using: &rng), address: PeerAddress(13, 0, 1, 1, port: 1))
        if case .cached(ping: let p?) = t.insert(tenth, responded: true, now: later) {
            #expect(far.contains(p))
        } else {
            Issue.record("no ping candidate")
        }
        // That node fails twice: replaced by the newest cached node.
        t.markFailed(far[0].id, now: later)
        t.markFailed(far[0].id, now: later)
        #expect(t.entry(for: far[0].id) == nil)
        #expect(t.entry(for: tenth.id) != nil)
        // Per-IP and per-/24 limits within a bucket.
        let sameIP = NodeInfo(
            id: own.randomInBucket(prefix: 1, using: &rng),
            address: PeerAddress(14, 0, 0, 1, port: 1)
        )
        let sameIP2 = NodeInfo(
            id: own.randomInBucket(prefix: 1, using: &rng),
            address: PeerAddress(14, 0, 0, 1, port: 2)
        )
        let sameNet = NodeInfo(
            id: own.randomInBucket(prefix: 1, using: &rng),
            address: PeerAddress(14, 0, 0, 2, port: 1)
        )
        let sameNet3 = NodeInfo(
            id: own.randomInBucket(prefix: 1, using: &rng),
            address: PeerAddress(14, 0, 0, 3, port: 1)
        )
        #expect(t.insert(sameIP, responded: true, now: later) == .added)
        #expect(t.insert(sameIP2, responded: true, now: later) == .rejected("IP already in bucket"))
        #expect(t.insert(sameNet, responded: true, now: later) == .added)
        #expect(t.insert(sameNet3, responded: true, now: later) == .rejected("too many nodes from this /24 in bucket"))
        // Closest: sorted by XOR distance.
        let target = own.randomInBucket(prefix: 5, using: &rng)
        let closest = t.closest(to: target, count: 8, now: later)
        #expect(closest.count == 8)
        #expect(zip(closest, closest.dropFirst()).allSatisfy { closer($0.id, $1.id, to: target) })
        let all = t.allEntries.map(\.info).sorted { closer($0.id, $1.id, to: target) }
        #expect(closest == Array(all.prefix(8)))
    }

    @Test func tableIsSavedAndRestoredSoARestartRejoinsQuickly() throws {
        let (net, nodes) = makeNetwork(20, seed: 6)
        let saved = nodes[3].serializedState()
        let (id, savedNodes) = try RoutingTable.deserialize(saved)
        #expect(id == nodes[3].id)
        #expect(savedNodes.count >= 10)
        #expect(throws: (any Error).self) { try RoutingTable.deserialize(Array(saved.dropLast())) }
        // A restarted node with the saved id and no bootstrap rejoins from the saved nodes.
        var c = config(seed: 777)
        c.nodeID = id
        let restarted = DHTNode.alone(on: net.bind(PeerAddress(203, 0, 113, 200, port: 6881)), config: c)
        var joined = 0
        restarted.start(savedNodes: savedNodes) { joined = $0.closest.count }
        _ = net.run(for: .seconds(10))
        #expect(restarted.id == id)
        #expect(joined == 8)
    }

    @Test func readOnlyNodesQueryButNeverAnswerAndStayOutOfTables() {
        let (net, nodes) = makeNetwork(20, seed: 7)
        var c = config(seed: 555)
        c.readOnly = true
        c.bootstrap = [nodes[0].localAddress]
        let ro = DHTNode.alone(on: net.bind(PeerAddress(203, 0, 113, 9, port: 6881)), config: c)
        let h = Topic.infoHash("ro")
        nodes[4].announce(h, port: 4444) { _, _ in }
        _ = net.run(for: .seconds(5))
        var found: [PeerAddress] = []
        ro.start { _ in ro.getPeers(h) { found = $0.peers } }
        _ = net.run(for: .seconds(10))
        #expect(found.contains(nodes[4].localAddress), "a read-only node can look up")
        #expect(nodes.allSatisfy { $0.table.entry(for: ro.id) == nil }, "BEP 43: others do not add it")
        let probe = Probe(net, PeerAddress(203, 0, 113, 10, port: 1))
        probe.query(KRPCQuery(method: .ping, id: .zero), t: [1], to: ro.localAddress)
        _ = net.run(for: .seconds(1))
        #expect(probe.received.isEmpty)
        #expect(ro.stats.queriesIgnoredReadOnly == 1)
    }

    /// A NAT in front of one node: the simulated network delivers from the NAT's public address.
    @Test func learnsExternalAddressClassifiesNATAndAdoptsABEP42ID() {
        let net = SimNetwork(seed: 8, conditions: .perfect)
        let node = DHTNode.alone(on: net.bind(PeerAddress(198, 51, 100, 1, port: 6881)), config: config(seed: 8))
        #expect(node.externalAddress == nil && node.natType == .unknown)
        let originalID = node.id
        // Responders that report a consistent mapping 203.0.113.50:40000.
        var responders: [Probe] = []
        for i in 0..<4 {
            let p = Probe(net, PeerAddress(192, 0, 2, UInt8(10 + i), port: 6881))
            p.socket.onReceive = { [unowned p] payload, src in
                guard case .query(let q)? = try? KRPCMessage.decode(payload).body, q.method == .ping,
                    let t = try? KRPCMessage.decode(payload).transactionID
                else { return }
                let id = NodeID(bytes: [UInt8](repeating: UInt8(i + 1), count: 20))!
                p.send(
                    KRPCMessage(
                        transactionID: t,
                        body: .response(KRPCResponse(id: id)),
                        ip: PeerAddress(203, 0, 113, 50, port: 40000)
                    ),
                    to: src
                )
            }
            responders.append(p)
            node.ping(p.socket.localAddress) { _ in }
        }
        _ = net.run(for: .seconds(1))
        #expect(node.externalAddress == PeerAddress(203, 0, 113, 50, port: 40000))
        #expect(node.natType == .consistent)
        #expect(node.id != originalID, "a public external address brings a BEP 42 id")
        #expect(BEP42.isValid(node.id, for: PeerAddress.parseIPv4("203.0.113.50")!))

        // A symmetric NAT: each responder sees a different port.
        let node2 = DHTNode.alone(on: net.bind(PeerAddress(198, 51, 100, 2, port: 6881)), config: config(seed: 9))
        for i in 0..<4 {
            let p = Probe(net, PeerAddress(192, 0, 2, UInt8(50 + i), port: 6881))
            p.socket.onReceive = { [unowned p] payload, src in
                guard let m = try? KRPCMessage.decode(payload) else { return }
                let id = NodeID(bytes: [UInt8](repeating: UInt8(i + 9), count: 20))!
                p.send(
                    KRPCMessage(
                        transactionID: m.transactionID,
                        body: .response(KRPCResponse(id: id)),
                        ip: PeerAddress(192, 168, 1, 2, port: UInt16(50000 + i))
                    ),
                    to: src
                )
            }
            responders.append(p)
            node2.ping(p.socket.localAddress) { _ in }
        }
        _ = net.run(for: .seconds(1))
        #expect(node2.natType == .random)
        #expect(node2.externalAddress?.ip == PeerAddress.parseIPv4("192.168.1.2"))
        #expect(node2.stats.idChanges == 0, "LAN addresses are exempt from BEP 42")
    }

    /// One stable external address, and a few voters that report another: the majority flips
    /// back and forth as their votes arrive. The node adopts a BEP 42 id once and keeps it while
    /// the votes waver (it used to adopt, rebuild its table and rejoin on every flip: three ids in
    /// seconds, as seen in the NAT lab); a change that lasts is followed after the interval.
    @Test func aWaveringTallyDoesNotMakeTheNodeHopIDs() {
        let net = SimNetwork(seed: 8, conditions: .perfect)
        let node = DHTNode.alone(on: net.bind(PeerAddress(10, 0, 0, 2, port: 6881)), config: config(seed: 8))
        let stable = PeerAddress(203, 0, 113, 50, port: 40000)
        let other = PeerAddress(198, 18, 0, 9, port: 40000)
        var next: UInt8 = 10
        var voters: [Probe] = []
        func votes(_ n: Int, reporting reported: PeerAddress) {
            for _ in 0..<n {
                next += 1
                let i = next
                let p = Probe(net, PeerAddress(192, 0, 2, i, port: 6881))
                p.socket.onReceive = { [unowned p] payload, src in
                    guard let m = try? KRPCMessage.decode(payload), case .query = m.body else { return }
                    p.send(
                        KRPCMessage(
                            transactionID: m.transactionID,
                            body: .response(KRPCResponse(id: NodeID(bytes: [UInt8](repeating: i, count: 20))!)),
                            ip: reported
                        ),
                        to: src
                    )
                }
                voters.append(p)
                node.ping(p.socket.localAddress) { _ in }
                _ = net.run(for: .milliseconds(100))
            }
        }
        votes(4, reporting: stable)
        #expect(node.stats.idChanges == 1 && BEP42.isValid(node.id, for: stable.ip))
        let adopted = node.id
        votes(5, reporting: other)  // the majority flips to the other IP…
        votes(2, reporting: stable)  // …and back
        #expect(node.stats.idChanges == 1, "re-adopted \(node.stats.idChanges - 1) times while the tally wavered")
        #expect(node.id == adopted && node.stats.idChangesDeferred >= 1)
        // A majority that holds past the interval is followed.
        _ = net.run(for: .seconds(16 * 60))
        votes(3, reporting: other)
        #expect(node.stats.idChanges == 2 && BEP42.isValid(node.id, for: other.ip))
    }

    @Test func queriesTimeOutAndRetry() {
        let net = SimNetwork(seed: 9, conditions: .perfect)
        var c = config(seed: 10)
        c.retries = 2
        let node = DHTNode.alone(on: net.bind(PeerAddress(198, 51, 100, 1, port: 6881)), config: c)
        let silent = Probe(net, PeerAddress(192, 0, 2, 1, port: 1))
        var outcome = ""
        node.ping(silent.socket.localAddress) { o in if case .timeout = o { outcome = "timeout" } }
        _ = net.run(for: .seconds(20))
        #expect(outcome == "timeout")
        #expect(silent.received.count == 3, "one try and two retries")
        #expect(node.stats.timeouts == 3)
        // A response from the wrong address or with an unknown transaction is not accepted.
        silent.send(
            KRPCMessage(transactionID: [0, 0], body: .response(KRPCResponse(id: .zero))),
            to: node.localAddress
        )
        _ = net.run(for: .seconds(1))
        #expect(node.stats.unexpectedResponses == 1)
    }

    @Test func staleBucketsAreRefreshed() {
        let net = SimNetwork(seed: 13, conditions: LinkConditions(latency: .milliseconds(10)))
        let node = DHTNode.alone(on: net.bind(PeerAddress(198, 51, 100, 1, port: 6881)), config: config(seed: 13))
        var rng = SplitMixForTests(seed: 13)
        // Known nodes that never say anything on their own: only our refreshes can reach them.
        var probes: [Probe] = []
        for i in 0..<24 {
            let p = Probe(net, PeerAddress(192, 0, UInt8(i), 1, port: 6881))
            probes.append(p)
            node.addNode(
                NodeInfo(id: node.id.randomInBucket(prefix: i % 6, using: &rng), address: p.socket.localAddress)
            )
        }
        node.startMaintenance()
        _ = net.run(for: .seconds(14 * 60))
        func findNodes() -> [KRPCQuery] {
            probes.flatMap {
                $0.received.compactMap {
                    if case .query(let q) = $0.0.body, q.method == .findNode { return q } else { return nil }
                }
            }
        }
        #expect(findNodes().isEmpty, "nothing is stale before 15 minutes")
        _ = net.run(for: .seconds(3 * 60))
        let refreshes = findNodes()
        #expect(refreshes.count >= 3, "stale buckets were refreshed with lookups")
        // Each refresh targets a random id inside a stale bucket's range.
        let buckets = Set(
            refreshes.compactMap {
                $0.target.map { min(node.id.commonPrefixLength(with: $0), node.table.buckets.count - 1) }
            }
        )
        #expect(buckets.count >= 3)
    }

    /// A joining node looks up its own id and then refreshes every range farther out than its
    /// closest neighbour, as Kademlia clients do: the own-id lookup alone only meets nodes ever
    /// closer to us, which left the far buckets (half, a quarter, … of the network) with 1–3 nodes
    /// each until the 15-minute refresh. The same holds after adopting a BEP 42 id mid-join (a new
    /// id is a new place: its far ranges must be filled again). Virtual time only, well inside
    /// those 15 minutes.
    @Test(arguments: [false, true]) func aJoiningNodeFillsItsFarBucketsAtOnce(bep42: Bool) {
        let n = 400
        let base: UInt32 = 0xCB00_7100
        let net = SimNetwork(seed: 21, conditions: LinkConditions(latency: .milliseconds(10)))
        var nodes: [DHTNode] = []
        for i in 0..<n {
            var c = config(seed: 21_000 + UInt64(i))
            c.bep42NodeIDs = bep42
            c.bootstrap = i == 0 ? [] : [PeerAddress(ip: base, port: 6881)]
            nodes.append(DHTNode.alone(on: net.bind(PeerAddress(ip: base + UInt32(i) * 256, port: 6881)), config: c))
        }
        var joined = 0
        for (i, node) in nodes.enumerated() {
            net.schedule(after: .milliseconds(100 * i)) { node.start { _ in joined += 1 } }
        }
        _ = net.run(for: .seconds(70))
        #expect(joined == n)
        #expect(net.now < .seconds(5 * 60), "no periodic bucket refresh can have run yet")
        let adopted = nodes.suffix(50).filter { $0.stats.idChanges > 0 }.count
        #expect(bep42 ? adopted == 50 : adopted == 0)
        // The last 50 nodes to join (each among ≥ 350 others): every bucket farther out than the
        // closest holds what it can, k nodes or all the nodes of its range.
        let ids = nodes.map(\.id)
        var have = 0
        var want = 0
        for node in nodes.suffix(50) {
            let t = node.table
            for b in 0..<(t.buckets.count - 1) {
                let inRange = ids.filter { $0 != node.id && node.id.commonPrefixLength(with: $0) == b }.count
                have += t.buckets[b].entries.count
                want += min(t.k, inRange)
            }
        }
        #expect(want >= 50 * 3 * 8, "each late joiner has several far buckets")
        #expect(Double(have) >= 0.95 * Double(want), "far buckets filled: \(have) of \(want)")
    }

    @Test func reannouncesBeforeExpiry() {
        let (net, nodes) = makeNetwork(20, seed: 10)
        let h = Topic.infoHash("long lobby")
        var rounds = 0
        nodes[2].keepAnnouncing(h, port: 9999, duration: .seconds(50 * 60)) { _, stored in if stored > 0 { rounds += 1 }
        }
        _ = net.run(for: .seconds(40 * 60))
        #expect(rounds == 3, "announced at 0, 15 and 30 minutes")
        var found: [PeerAddress] = []
        nodes[9].getPeers(h) { found = $0.peers }
        _ = net.run(for: .seconds(10))
        #expect(
            found.contains(PeerAddress(ip: nodes[2].localAddress.ip, port: nodes[2].localAddress.port)),
            "still findable 40 minutes in (30-minute expiry)"
        )
    }
}

@Suite struct SharedSocketTests {
    /// One socket shared by the DHT and other traffic: KRPC (first byte `d`) reaches the node,
    /// everything else goes to its own handler.
    @Test func demultiplexerRoutesKRPCToTheNode() {
        let net = SimNetwork(seed: 12, conditions: .perfect)
        let socket = net.bind(PeerAddress(198, 51, 100, 1, port: 6881))
        let demux = Demultiplexer(socket: socket)
        var c = DHTConfig()
        c.seed = 12
        let node = DHTNode(host: socket, demux: demux, config: c)
        var game: [[UInt8]] = []
        demux.route([0x01]) { p, _ in game.append(p) }
        let peer = NodeTests.Probe(net, PeerAddress(203, 0, 113, 1, port: 1))
        peer.query(
            KRPCQuery(method: .ping, id: NodeID(hex: "3300000000000000000000000000000000000000")!),
            t: [4],
            to: socket.localAddress
        )
        peer.socket.send([0x01, 0xAA], to: socket.localAddress)
        peer.socket.send([0x7F], to: socket.localAddress)
        _ = net.run(for: .seconds(1))
        #expect(peer.response([4]) != nil)
        #expect(game == [[0x01, 0xAA]])
        #expect(node.stats.received == 1)
        #expect(demux.dropped == 1)
    }
}
