import DHT
import Dispatch
import Foundation
import NetCore
import NetPOSIX
import Testing

@testable import NetStack

#if canImport(Glibc)
    import Glibc
#endif

/// BEP 14 local discovery (docs/nat.md, "LAN parties"): the message codec, the host's answer
/// limiter and the discovery machine, in virtual time; then two services on real multicast
/// sockets on loopback (nothing leaves the machine: bound to 127.0.0.1, they use `lo` only).
@Suite struct LSDMessageTests {
    let hash = Topic.infoHash("friday-night")

    @Test func encodesAndParsesBEP14() throws {
        let m = LSDMessage(port: 41234, infoHashes: [hash], cookie: "host.0011223344556677")
        let text = String(decoding: m.encode(), as: UTF8.self)
        #expect(
            text
                == "BT-SEARCH * HTTP/1.1\r\nHost: 239.192.152.143:6771\r\nPort: 41234\r\nInfohash: \(hash.hexString)\r\ncookie: host.0011223344556677\r\n\r\n\r\n"
        )
        #expect(try LSDMessage.parse(m.encode()).get() == m)
        // What another client may send: header names in any case, upper-case hex, LF line ends,
        // several info-hashes, headers turf does not know, no cookie, the IPv6 group's host.
        let other = Topic.infoHash("other")
        let lt =
            "BT-SEARCH * HTTP/1.1\nhost: [ff15::efc0:988f]:6771\nPORT:6881\nInfohash: \(other.hexString.uppercased())\nInfohash: \(hash.hexString)\nX-Extra: 1\n\n"
        let p = try LSDMessage.parse(Array(lt.utf8)).get()
        #expect(p.host == LSDMessage.host6 && p.port == 6881 && p.infoHashes == [other, hash] && p.cookie == nil)
        #expect(LSDMessage.group4.description == "239.192.152.143:6771")
        #expect(LSDMessage.group6.description == "[ff15::efc0:988f]:6771")
    }

    @Test func refusesWhatIsNotAMessage() {
        let good =
            "BT-SEARCH * HTTP/1.1\r\nHost: 239.192.152.143:6771\r\nPort: 1\r\nInfohash: \(hash.hexString)\r\n\r\n\r\n"
        func problem(_ s: String) -> LSDMessage.Problem? {
            if case .failure(let p) = LSDMessage.parse(Array(s.utf8)) { return p }
            return nil
        }
        #expect(problem(good) == nil)
        func replacing(_ a: String, _ b: String) -> String { good.replacingOccurrences(of: a, with: b) }
        #expect(problem(replacing("BT-SEARCH *", "M-SEARCH *")) == .startLine)
        #expect(problem(replacing("HTTP/1.1", "HTTP/1.0")) == .startLine)
        #expect(problem("") == .startLine)
        #expect(problem(replacing("Port: 1", "Port: 0")) == .port)
        #expect(problem(replacing("Port: 1", "Port: 65536")) == .port)
        #expect(problem(replacing("Port: 1", "Port: +1")) == .port)
        #expect(problem(replacing("Port: 1", "Port: 0000001")) == .port)
        #expect(problem(replacing("Port: 1", "Port: 1\r\nPort: 2")) == .port)
        #expect(problem(replacing("Port: 1\r\n", "")) == .port)
        #expect(problem(replacing("Host: 239.192.152.143:6771\r\n", "")) == .host)
        #expect(problem(replacing("Host: 239.192.152.143:6771", "Host:")) == .host)
        #expect(problem(replacing(hash.hexString, String(hash.hexString.dropLast()))) == .infoHash)
        #expect(problem(replacing(hash.hexString, "g" + hash.hexString.dropFirst())) == .infoHash)
        #expect(problem(replacing("Infohash: \(hash.hexString)\r\n", "")) == .infoHash)
        #expect(problem(replacing("Port: 1", "Port 1")) == .headerLine)
        #expect(problem(replacing("Port: 1", "Po rt: 1")) == .headerLine)
        #expect(problem(replacing("Port: 1", "Port: 1\u{1}")) == .binary)
        #expect(problem(replacing("Port: 1", "Port: 1\u{E9}")) == .binary)
        #expect(problem(replacing("Port: 1", "Port: 1\r\ncookie: " + String(repeating: "c", count: 65))) == .cookie)
        let many = (0..<17).map { i in "Infohash: \(Topic.infoHash("t\(i)").hexString)\r\n" }.joined()
        #expect(problem(replacing("Infohash: \(hash.hexString)\r\n", many)) == .tooManyInfoHashes)
        let headers = String(repeating: "X-A: 1\r\n", count: 30)
        #expect(problem(replacing("Port: 1\r\n", "Port: 1\r\n" + headers)) == .tooManyHeaders)
        #expect(problem(good + String(repeating: " ", count: LSDMessage.maxBytes)) == .oversized)
    }

    /// Random bytes, and every cut and single-byte change of a good message: each is parsed or
    /// refused with a reason, never a crash (the parser's bounds hold for any input).
    @Test func anyBytesAreParsedOrRefused() {
        var rng = SplitMix(seed: 14)
        let good = LSDMessage(port: 6881, infoHashes: [hash], cookie: "join.0123456789abcdef").encode()
        var refused = 0
        for n in 0...good.count {
            if case .failure = LSDMessage.parse(Array(good.prefix(n))) { refused += 1 }
        }
        for _ in 0..<2000 {
            var m = good
            m[Int(rng.next() % UInt64(m.count))] = UInt8(truncatingIfNeeded: rng.next())
            _ = LSDMessage.parse(m)
            let junk = (0..<Int(rng.next() % 1500)).map { _ in UInt8(truncatingIfNeeded: rng.next()) }
            if case .success = LSDMessage.parse(junk) { Issue.record("random bytes parsed as a message") }
        }
        #expect(refused > good.count / 2)
    }
}

/// A tiny seeded generator for the tests (SplitMix64).
struct SplitMix {
    var state: UInt64
    init(seed: UInt64) { state = seed }
    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}

@Suite struct LSDAnswerLimiterTests {
    @Test func oneAnswerPerIntervalAndNoSearchWaitsLonger() {
        let ms: Nanos = 1_000_000
        var l = LSDAnswerLimiter(interval: 250 * ms)
        #expect(l.request(now: 1000 * ms) == .now)
        #expect(l.request(now: 1100 * ms) == .later)
        #expect(l.pendingAt == 1250 * ms)
        #expect(l.request(now: 1200 * ms) == .coalesced)
        #expect(l.fire(now: 1249 * ms) == false)
        #expect(l.fire(now: 1250 * ms) == true)
        #expect(l.fire(now: 1260 * ms) == false)
        #expect(l.request(now: 1300 * ms) == .later)
        #expect(l.fire(now: 1500 * ms) == true)
        #expect(l.request(now: 1800 * ms) == .now)
    }

    /// A flood: a search every millisecond for 10 s. The host sends at most one announce per
    /// interval (41 in 10 s), and none of the searches waits longer than the interval.
    @Test func aFloodCostsAtMostOneAnnouncePerInterval() {
        let ms: Nanos = 1_000_000
        var l = LSDAnswerLimiter(interval: 250 * ms)
        var sent = 0
        var waitingSince: Nanos?
        var longestWait: Nanos = 0
        for t in stride(from: 0 as Nanos, through: 10_000 * ms, by: Int(ms)) {
            if l.fire(now: t) {
                sent += 1
                longestWait = max(longestWait, t - (waitingSince ?? t))
                waitingSince = nil
            }
            switch l.request(now: t) {
            case .now: sent += 1
            case .later, .coalesced: waitingSince = waitingSince ?? t
            }
        }
        #expect(sent <= 41)
        #expect(sent >= 40)
        #expect(longestWait <= 250 * ms)
    }
}

@Suite struct LocalDiscoveryMachineTests {
    let hash = Topic.infoHash("friday-night")
    let ms: Nanos = 1_000_000

    func config(_ role: LocalDiscovery.Role, port: UInt16 = 5000, nonce: String = "00000000000000aa")
        -> LocalDiscovery.Config
    {
        LocalDiscovery.Config(role: role, infoHash: hash, port: port, nonce: nonce)
    }

    func search(port: UInt16 = 6000, cookie: String? = "join.1111111111111111", hash h: NodeID? = nil) -> [UInt8] {
        LSDMessage(port: port, infoHashes: [h ?? hash], cookie: cookie).encode()
    }

    @Test func aHostAnnouncesOnItsScheduleAndAnswersASearchAtOnce() throws {
        var host = LocalDiscovery(config(.host))
        let t0: Nanos = 5_000 * ms
        #expect(host.start(now: t0) == [.multicast(host.message)])
        let m = try LSDMessage.parse(host.message).get()
        #expect(m.port == 5000 && m.infoHashes == [hash] && m.cookie == "host.00000000000000aa")
        #expect(host.nextDeadline == t0 + 1000 * ms)
        #expect(host.tick(now: t0 + 1000 * ms).count == 1)
        #expect(host.nextDeadline == t0 + 61_000 * ms)
        // A search just after a scheduled announce is answered at once all the same.
        #expect(host.receive(search(), from: PeerAddress(10, 0, 0, 4, port: 6771), now: t0 + 1010 * ms).count == 1)
        // A joiner's search, 2 s in: answered at once (the same announce) and limited from then on.
        let joiner = PeerAddress(10, 0, 0, 3, port: 6771)
        #expect(host.receive(search(), from: joiner, now: t0 + 2000 * ms) == [.multicast(host.message)])
        // Another 100 ms later: within the interval, answered when it ends; a third is coalesced.
        #expect(host.receive(search(), from: joiner, now: t0 + 2100 * ms).isEmpty)
        #expect(host.receive(search(), from: joiner, now: t0 + 2150 * ms).isEmpty)
        #expect(host.nextDeadline == t0 + 2250 * ms)
        #expect(host.tick(now: t0 + 2250 * ms) == [.multicast(host.message)])
        #expect(host.stats.searchesHeard == 4 && host.stats.answers == 3 && host.stats.answersCoalesced == 1)
        #expect(host.stats.announcesSent == 2)
        // Its own announce looped back, another host's announce, another topic: nothing sent.
        #expect(host.receive(host.message, from: joiner, now: t0 + 3000 * ms).isEmpty)
        #expect(host.receive(search(cookie: "host.2222222222222222"), from: joiner, now: t0 + 3000 * ms).isEmpty)
        #expect(host.receive(search(hash: Topic.infoHash("x")), from: joiner, now: t0 + 3000 * ms).isEmpty)
        #expect(host.stats.own == 1 && host.stats.ignored == 1 && host.stats.otherInfoHashes == 1)
        // A search from a client that is not turf (no cookie, or any other) is answered too.
        #expect(host.receive(search(cookie: nil), from: joiner, now: t0 + 4000 * ms).count == 1)
    }

    @Test func aJoinerSearchesUntilItConnectsAndTakesEachLobbyOnce() {
        var join = LocalDiscovery(config(.join, port: 7000, nonce: "00000000000000bb"))
        let t0: Nanos = 1_000 * ms
        #expect(join.start(now: t0) == [.multicast(join.message)])
        #expect(join.nextDeadline == t0 + 250 * ms)
        #expect(join.tick(now: t0 + 250 * ms).count == 1)
        #expect(join.nextDeadline == t0 + 1250 * ms)
        #expect(join.tick(now: t0 + 1250 * ms).count == 1)
        #expect(join.stats.searchesSent == 3)
        // A host's announce: the lobby is its source IP at its Port.
        let announce = LSDMessage(port: 41234, infoHashes: [hash], cookie: "host.cccccccccccccccc").encode()
        let found = join.receive(announce, from: PeerAddress(10, 0, 0, 2, port: 6771), now: t0 + 1300 * ms)
        #expect(found == [.found(PeerAddress(10, 0, 0, 2, port: 41234))])
        #expect(join.receive(announce, from: PeerAddress(10, 0, 0, 2, port: 6771), now: t0 + 1301 * ms).isEmpty)
        // Another joiner's search is no lobby; nor is an address no session can reach.
        #expect(join.receive(search(), from: PeerAddress(10, 0, 0, 9, port: 6771), now: t0).isEmpty)
        let linkLocal = PeerAddress("[fe80::1]:6771")!
        #expect(join.receive(announce, from: linkLocal, now: t0).isEmpty)
        #expect(join.receive(announce, from: PeerAddress(ip: 0, port: 6771), now: t0).isEmpty)
        #expect(join.stats.ignored == 3)
        #expect(join.lobbies == [PeerAddress(10, 0, 0, 2, port: 41234)])
        // Connected: no more searches.
        join.stopSearching()
        #expect(join.nextDeadline == nil)
        #expect(join.tick(now: t0 + 5000 * ms).isEmpty)
    }

    /// Hostile datagrams: malformed ones counted by reason, a flood of announces bounded by
    /// `maxLobbies`, a flood of searches costing the host at most one announce per interval.
    @Test func hostileDatagramsAreCountedAndBounded() {
        var join = LocalDiscovery(config(.join))
        _ = join.start(now: 0)
        let src = PeerAddress(10, 0, 0, 66, port: 6771)
        #expect(join.receive(Array(repeating: 0x41, count: 5000), from: src, now: 0).isEmpty)
        #expect(join.receive([0, 1, 2], from: src, now: 0).isEmpty)
        #expect(
            join.receive(
                Array("BT-SEARCH * HTTP/1.1\r\nHost: x\r\nPort: 1\r\nInfohash: nothex\r\n".utf8),
                from: src,
                now: 0
            ).isEmpty
        )
        #expect(join.stats.malformed == [.oversized: 1, .binary: 1, .infoHash: 1])
        for p in 1...100 {
            _ = join.receive(search(port: UInt16(p), cookie: "host.x"), from: src, now: 0)
        }
        #expect(join.lobbies.count == 16 && join.stats.lobbiesFound == 16 && join.stats.lobbiesDropped == 84)

        var host = LocalDiscovery(config(.host))
        var sent = host.start(now: 0).count
        for t in stride(from: 0 as Nanos, to: 10_000 * ms, by: Int(ms / 2)) {
            sent += host.tick(now: t).count
            sent += host.receive(search(), from: src, now: t).count
        }
        #expect(host.stats.searchesHeard == 20_000)
        // 10 s at one per 250 ms, and the schedule's two: at most 42.
        #expect(sent <= 42, "the host sent \(sent) datagrams for 20,000 searches")
        #expect(host.stats.answers + host.stats.announcesSent == sent)
    }
}

/// Two services on real multicast sockets: bound to 127.0.0.1, they join BEP 14's group on
/// loopback only, so nothing leaves the machine. Several processes (and sockets) share port 6771
/// (SO_REUSEPORT): each test uses its own topic, and they run one at a time (one sends junk to
/// the group, which every listener on the machine hears).
@Suite(.serialized) struct LocalDiscoveryLoopbackTests {
    func host(_ role: LocalDiscovery.Role, topic: String) throws -> (UDPHost, LocalDiscoveryService) {
        let udp = try UDPHost.bind(PeerAddress(127, 0, 0, 1, port: 0))
        let nonce = String(format: "%016llx", UInt64.random(in: 0...UInt64.max))
        let config = LocalDiscovery.Config(
            role: role,
            infoHash: Topic.infoHash(topic),
            port: udp.localAddress.port,
            nonce: nonce
        )
        do {
            return (udp, try LocalDiscoveryService.open(on: udp, config: config))
        } catch {
            udp.close()
            throw error
        }
    }

    func close(_ p: (UDPHost, LocalDiscoveryService)) {
        try? p.0.sync { p.1.stop() }
        p.0.close()
    }

    /// Waits for `onFound` (set on the loop) to report a lobby; nil if none came within `seconds`
    /// (a failure bound, not a budget: it comes in milliseconds).
    func firstFound(_ p: (UDPHost, LocalDiscoveryService), seconds: Double = 30) throws -> PeerAddress? {
        let sem = DispatchSemaphore(value: 0)
        let box = Locked<PeerAddress?>(nil)
        try p.0.sync {
            p.1.onFound = { a in
                box.withLock { if $0 == nil { $0 = a } }
                sem.signal()
            }
        }
        if p.1.snapshot.lobbies.isEmpty { _ = sem.wait(timeout: .now() + seconds) }
        return box.withLock { $0 } ?? p.1.snapshot.lobbies.first?.address
    }

    @Test func aJoinerFindsAHostStartedBeforeIt() throws {
        let topic = "lsd-\(UUID().uuidString)"
        let h = try host(.host, topic: topic)
        defer { close(h) }
        #expect(h.1.group.joined == ["lo"])
        let j = try host(.join, topic: topic)
        defer { close(j) }
        let found = try firstFound(j)
        #expect(found == PeerAddress(127, 0, 0, 1, port: h.0.localAddress.port))
        let s = h.1.snapshot.stats
        #expect(s.searchesHeard >= 1 && s.answers >= 1)
        #expect(j.1.snapshot.stats.malformedTotal == 0)
    }

    /// Interfaces named by the caller are the only ones used, loopback included (a socket bound
    /// to every address would otherwise use every LAN interface).
    @Test func namedInterfacesOnly() throws {
        let udp = try UDPHost.bind(PeerAddress(ip: 0, port: 0))
        defer { udp.close() }
        let config = LocalDiscovery.Config(
            role: .host,
            infoHash: Topic.infoHash("lsd-\(UUID().uuidString)"),
            port: udp.localAddress.port,
            nonce: "0000000000000001"
        )
        let s = try LocalDiscoveryService.open(on: udp, config: config, interfaces: ["lo"])
        #expect(s.group.joined == ["lo"])
        #expect(s.group.config.group6 == nil, "an IPv4 socket has no use for the IPv6 group")
        try udp.sync { s.stop() }
    }

    @Test func aHostStartedAfterTheJoinerIsFoundByItsFirstAnnounce() throws {
        let topic = "lsd-\(UUID().uuidString)"
        let j = try host(.join, topic: topic)
        defer { close(j) }
        let h = try host(.host, topic: topic)
        defer { close(h) }
        #expect(try firstFound(j) == PeerAddress(127, 0, 0, 1, port: h.0.localAddress.port))
    }

    /// Junk and a flood of searches sent to the group from a raw socket on loopback: the host
    /// counts the junk by reason, answers the flood at most once per 250 ms, and still answers a
    /// joiner's real search.
    @Test func junkAndAFloodAreCountedAndTheHostStillAnswers() throws {
        let topic = "lsd-\(UUID().uuidString)"
        let h = try host(.host, topic: topic)
        defer { close(h) }
        let hash = Topic.infoHash(topic)
        let junk: [[UInt8]] = [
            Array(repeating: 0x42, count: 1400),
            [0xFF, 0x00, 0x13],
            Array("BT-SEARCH * HTTP/1.1\r\nHost: x\r\nPort: 99999\r\nInfohash: \(hash.hexString)\r\n\r\n".utf8),
            Array(
                "BT-SEARCH * HTTP/1.1\r\nHost: x\r\nPort: 9\r\nInfohash: \(String(repeating: "z", count: 40))\r\n\r\n"
                    .utf8
            ),
        ]
        let flood = LSDMessage(port: 9, infoHashes: [hash], cookie: "join.ffffffffffffffff").encode()
        // The host's loop reports each datagram handled; the sender goes on once a batch is in
        // (so the socket's buffer never overflows), each wait bounded in case one was lost.
        let handled = DispatchSemaphore(value: 0)
        try h.0.sync { h.1.onReceived = { handled.signal() } }
        let sender = try RawMulticastSender()
        defer { sender.close() }
        func deliver(_ batch: [[UInt8]]) {
            for d in batch { sender.send(d) }
            for _ in batch where handled.wait(timeout: .now() + 10) == .timedOut { break }
        }
        let began = monotonicNanos()
        deliver(junk)
        for _ in 0..<10 { deliver(Array(repeating: flood, count: 40)) }
        let elapsed = monotonicNanos() - began
        let s = h.1.snapshot.stats
        #expect(s.malformed[.oversized] ?? 0 >= 1 && s.malformed[.binary] ?? 0 >= 1)
        #expect(s.malformed[.port] ?? 0 >= 1 && s.malformed[.infoHash] ?? 0 >= 1)
        #expect(s.searchesHeard >= 300, "\(s)")
        // Answers: one per 250 ms at most over the flood, plus the start's and the schedule's.
        #expect(s.answers <= 2 + Int(elapsed / 250_000_000), "\(s) in \(elapsed / 1_000_000) ms")
        let j = try host(.join, topic: topic)
        defer { close(j) }
        #expect(try firstFound(j) == PeerAddress(127, 0, 0, 1, port: h.0.localAddress.port))
    }
}

/// A plain UDP socket that sends to BEP 14's IPv4 group out of loopback (a test's hostile LAN peer).
final class RawMulticastSender {
    let fd: Int32

    init() throws {
        fd = socket(AF_INET, Int32(SOCK_DGRAM.rawValue), 0)
        guard fd >= 0 else { throw CocoaError(.fileNoSuchFile) }
        var lo = in_addr(s_addr: UInt32(0x7F00_0001).bigEndian)
        _ = setsockopt(fd, Int32(IPPROTO_IP), IP_MULTICAST_IF, &lo, socklen_t(MemoryLayout<in_addr>.size))
    }

    func send(_ bytes: [UInt8]) {
        var sin = sockaddr_in()
        sin.sin_family = sa_family_t(AF_INET)
        sin.sin_port = LSDMessage.port.bigEndian
        sin.sin_addr.s_addr = LSDMessage.group4.ip.bigEndian
        _ = withUnsafePointer(to: &sin) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                sendto(fd, bytes, bytes.count, 0, $0, socklen_t(MemoryLayout<sockaddr_in>.size))
            }
        }
    }

    func close() { _ = Glibc.close(fd) }
}
