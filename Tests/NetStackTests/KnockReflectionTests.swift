import Bencode
import DHT
import NetCore
import NetSim
import NetStack
import Testing

/// Issue 17, part 7 (docs/nat.md, "What a knock can make the host send"): turf sends to an address
/// only what that address asked for. A hostile DHT node answers the host's polls of the knock
/// info-hash with 64 addresses it does not own; the host's probes to them never add up to more
/// bytes than the hostile node's answers brought.
@Suite struct KnockReflectionTests {
    /// The fewest bytes a get_peers answer can be: exactly a minimal answer's encoding.
    @Test func answerLowerBoundIsAMinimalAnswer() {
        for (n, token) in [(0, 1), (1, 8), (64, 20)] {
            let values = (0..<n).map { PeerAddress(192, 0, 2, UInt8(n % 250), port: UInt16(1000 + $0)) }
            let answer = Bencode.encode(
                .dictionary([
                    (
                        "r",
                        .dictionary([
                            ("id", .bytes([UInt8](repeating: 7, count: 20))),
                            ("token", .bytes([UInt8](repeating: 1, count: token))),
                            ("values", .list(values.map { .bytes($0.compact) })),
                        ])
                    ),
                    ("t", .bytes([])),
                    ("y", .string("r")),
                ])
            )
            #expect(KnockWatcher.answerBytesLowerBound(values: n, token: token) == answer.count + 28)
        }
    }

    @Test func aHostileNodeCannotAimTheHostsProbes() throws {
        let net = SimNetwork(seed: 17, conditions: LinkConditions(latency: .milliseconds(20)))
        let hostileAddress = PeerAddress(198, 51, 100, 66, port: 6881)
        let hostile = net.bind(hostileAddress)
        let hostileID = [UInt8](repeating: 0x66, count: 20)
        let victims = (1...64).map { PeerAddress(192, 0, 2, UInt8($0), port: UInt16(40_000 + $0)) }
        var victimBytes = 0
        var victimDatagrams = 0
        var victimSockets: [SimSocket] = []
        for v in victims {
            let s = net.bind(v)
            s.onReceive = { payload, _ in
                victimBytes += payload.count + HolePuncher.ipUDPHeaderBytes
                victimDatagrams += 1
            }
            victimSockets.append(s)
        }
        // The hostile node: answers every query, and every get_peers with the 64 victims.
        var hostileBytes = 0
        var answers = 0
        hostile.onReceive = { payload, source in
            guard let q = try? Bencode.decode(payload, limits: .krpc), let t = q["t"]?.bytesValue,
                let method = q["q"]?.stringValue
            else { return }
            var r: [(String, BValue)] = [("id", .bytes(hostileID))]
            if method == "get_peers" {
                r.append(("token", .bytes(Array("tok12345".utf8))))
                r.append(("values", .list(victims.map { .bytes($0.compact) })))
                answers += 1
            }
            let reply = Bencode.encode(.dictionary([("r", .dictionary(r)), ("t", .bytes(t)), ("y", .string("r"))]))
            hostileBytes += reply.count + HolePuncher.ipUDPHeaderBytes
            hostile.send(reply, to: source)
        }
        let host = simPeer(net, PeerAddress(203, 0, 113, 2, port: 6881), bootstrap: [hostileAddress])
        var started = false
        host.start { _ in started = true }
        #expect(net.run(until: net.now + .seconds(10), while: { !started }))
        let watcher = KnockWatcher(peer: host, topic: "lobby", interval: .seconds(1))
        watcher.start()
        // The measurement ran 21 s; the knocks' window is 20 s.
        _ = net.run(for: .seconds(21))
        watcher.stop()
        _ = net.run(for: .seconds(2))
        #expect(answers >= 20)
        #expect(watcher.knocksSeen == 64)
        #expect(victimDatagrams > 0, "each answer still pays for a few probes")
        #expect(victimBytes <= hostileBytes)
        #expect(victimBytes == watcher.probeBytes)
        #expect(watcher.probeBytes <= watcher.creditBytes)
        print(
            "knock reflection: \(answers) answers, hostile node sent \(hostileBytes) B; "
                + "host sent \(victimDatagrams) probes, \(victimBytes) B to the 64 addresses; "
                + "withheld \(watcher.probesWithheld)"
        )
    }

    /// Birthday knocks (port 1) seen on the slow path start nothing: one answer would otherwise
    /// buy up to 2,000 probes at a victim's IP.
    @Test func slowPathBirthdayKnocksStartNothing() {
        let net = SimNetwork(seed: 3)
        let host = Peer(host: net.bind(PeerAddress(203, 0, 113, 2, port: 6881)), identity: .generate())
        let watcher = KnockWatcher(peer: host, topic: "lobby")
        var asked = 0
        watcher.onBirthdayKnock = { _ in asked += 1 }
        watcher.onPlainKnock = { _ in asked += 1 }
        watcher.knocked(
            [PeerAddress(192, 0, 2, 9, port: Birthday.knockPort), PeerAddress(192, 0, 2, 8, port: 5)],
            credit: 37
        )
        #expect(asked == 0)
        #expect(watcher.birthdayKnocksIgnored == 1)
        #expect(host.puncher.probesSent == 1)
    }
}

@Suite struct OwnAddressTests {
    /// Issue 17, part 8: two players who both chose `--port 7000` in different homes. Bound to
    /// 0.0.0.0, the joiner drops only candidates that are its own socket.
    @Test func theSamePortInAnotherHomeIsAPeer() {
        let bound = PeerAddress(ip: 0, port: 7000)
        let lan = PeerAddress.parseIPv4("10.1.0.2")!
        let ours: [UInt32] = [lan, 0x7F00_0001]
        let external = PeerAddress(198, 51, 100, 21, port: 7000)
        func own(_ a: PeerAddress) -> Bool {
            HolePuncher.isOwnAddress(a, bound: bound, localIPs: ours, external: external)
        }
        // The other home: its public address and its LAN address, at the same port.
        #expect(!own(PeerAddress(203, 0, 113, 22, port: 7000)))
        #expect(!own(PeerAddress(10, 2, 0, 2, port: 7000)))
        // Ourselves: our interfaces, loopback, and our public mapping.
        #expect(own(PeerAddress(ip: lan, port: 7000)))
        #expect(own(PeerAddress(127, 0, 0, 1, port: 7000)))
        #expect(own(external))
        // Our own IP at another port is another process.
        #expect(!own(PeerAddress(ip: lan, port: 7001)))
        // Bound to one address: only that address is us.
        let one = PeerAddress(10, 1, 0, 2, port: 7000)
        #expect(HolePuncher.isOwnAddress(one, bound: one, localIPs: ours, external: nil))
        #expect(
            !HolePuncher.isOwnAddress(PeerAddress(10, 1, 0, 3, port: 7000), bound: one, localIPs: ours, external: nil)
        )
        // No external address known yet: nothing public is dropped.
        #expect(!HolePuncher.isOwnAddress(external, bound: bound, localIPs: ours, external: nil))
    }
}
