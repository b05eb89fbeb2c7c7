import Foundation
import Testing

#if canImport(Glibc)
    import Glibc
#endif

/// LAN parties with no DHT (docs/nat.md, "LAN parties"): `turf host` and `turf join --topic` as
/// real processes on loopback with no DHT node anywhere (`--bootstrap 127.0.0.1:9`, where nothing
/// answers). Bound to 127.0.0.1, their BEP 14 discovery uses loopback only: nothing leaves the
/// machine. The two-namespace LAN, with the public bootstrap unresolvable, is `natlab.sh
/// lan-party` (LANPartyLabTests, root).
@Suite(.serialized) struct LANPartyCLITests {
    /// A scratch directory; each peer has its own XDG directories (identity, replays).
    final class Party {
        let dir: URL
        private var pids: [pid_t] = []

        init() throws {
            dir = FileManager.default.temporaryDirectory.appendingPathComponent(
                "turf-lan-\(UUID().uuidString.prefix(8))"
            )
            try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        }

        func env(_ peer: String) -> [String: String] { NetPlayTests.Lab.env(dir, peer) }

        func outPath(_ peer: String) -> String { dir.appendingPathComponent("\(peer).out").path }

        /// `turf ARGS --headless --bind 127.0.0.1 --bootstrap 127.0.0.1:9` as `peer`.
        func start(_ peer: String, _ args: [String]) throws -> pid_t {
            let pid = try spawnBackground(
                turfBinary,
                args + ["--headless", "--bind", "127.0.0.1", "--bootstrap", "127.0.0.1:9"],
                environment: env(peer),
                stdout: outPath(peer)
            )
            pids.append(pid)
            return pid
        }

        func wait(_ pid: pid_t, timeout: Double = 90) -> Int32 {
            let status = waitForExit(pid, timeout: timeout)
            pids.removeAll { $0 == pid }
            return status
        }

        func events(_ peer: String) -> [[String: Any]] {
            let text = (try? String(contentsOfFile: outPath(peer), encoding: .utf8)) ?? ""
            return text.split(separator: "\n").compactMap {
                (try? JSONSerialization.jsonObject(with: Data($0.utf8))) as? [String: Any]
            }
        }

        func events(_ peer: String, _ name: String) -> [[String: Any]] {
            events(peer).filter { $0["event"] as? String == name }
        }

        func waitForEvent(_ peer: String, _ name: String, timeout: Double = 60) -> [String: Any]? {
            _ = waitForLine(outPath(peer), containing: "\"event\":\"\(name)\"", timeout: timeout)
            return events(peer, name).last
        }

        deinit {
            for p in pids {
                kill(p, SIGKILL)
                var st: Int32 = 0
                waitpid(p, &st, 0)
            }
            try? FileManager.default.removeItem(at: dir)
        }
    }

    /// Host and joiner meet by discovery alone and play a match to one final hash, over the LAN
    /// path; junk and a flood of searches sent to the group meanwhile are counted by the host and
    /// cost it at most one announce per 250 ms.
    @Test func hostAndJoinerMeetOnTheLANWithNoDHT() throws {
        let party = try Party()
        let topic = "lan-\(UUID().uuidString.prefix(8))"
        let host = try party.start("host", ["host", "--topic", topic, "--seconds", "5", "--start-when", "2"])
        let listening = try #require(party.waitForEvent("host", "lan"), "no lan event: \(party.events("host"))")
        #expect(listening["state"] as? String == "listening")
        #expect(listening["interfaces"] as? [String] == ["lo"])
        let lobby = try #require(party.waitForEvent("host", "lobby"))
        let hostPort = try #require((lobby["address"] as? String)?.split(separator: ":").last.map(String.init))

        // A hostile peer on the LAN: junk, then 100 searches for the lobby, before the real joiner.
        let began = Date()
        let infoHash = try run(turfBinary, ["dht", "infohash", "--topic", topic]).stdout
            .trimmingCharacters(in: .whitespacesAndNewlines)
        #expect(infoHash.count == 40, "\(infoHash)")
        let sender = try LoopbackMulticast()
        defer { sender.close() }
        sender.send(Array(repeating: 0x41, count: 1400))
        sender.send([0, 0xFF, 7])
        sender.send(
            Array(
                "BT-SEARCH * HTTP/1.1\r\nHost: x\r\nPort: 1\r\nInfohash: \(String(repeating: "q", count: 40))\r\n\r\n"
                    .utf8
            )
        )
        let search =
            "BT-SEARCH * HTTP/1.1\r\nHost: 239.192.152.143:6771\r\nPort: 9\r\nInfohash: \(infoHash)\r\ncookie: join.0\r\n\r\n\r\n"
        for _ in 0..<100 { sender.send(Array(search.utf8)) }

        let join = try party.start("joiner", ["join", "--topic", topic])
        #expect(party.wait(join) == 0, "\(party.events("joiner"))")
        #expect(party.wait(host) == 0, "\(party.events("host"))")
        let floodSeconds = Date().timeIntervalSince(began)

        let found = try #require(party.events("joiner", "lan").first { $0["state"] as? String == "found" })
        #expect(found["address"] as? String == "127.0.0.1:\(hostPort)")
        let connected = try #require(party.events("joiner", "connected").last)
        #expect(connected["path"] as? String == "lan" && connected["address"] as? String == "127.0.0.1:\(hostPort)")
        #expect(party.events("joiner", "joined").count == 1)
        // No DHT node answered anyone (nothing listens at 127.0.0.1:9), and no warning: it resolved.
        #expect(party.events("host", "announced").isEmpty && party.events("host", "dht").isEmpty)

        let hostEnd = try #require(party.events("host", "end").last)
        let joinEnd = try #require(party.events("joiner", "end").last)
        #expect(hostEnd["converged"] as? Bool == true && joinEnd["converged"] as? Bool == true)
        #expect(hostEnd["final_hash"] as? String == joinEnd["final_hash"] as? String)
        let lan = try #require(hostEnd["lan"] as? [String: Any], "\(hostEnd)")
        #expect((lan["malformed"] as? Int ?? 0) >= 3, "\(lan)")
        #expect((lan["searches_heard"] as? Int ?? 0) >= 50, "\(lan)")
        let answers = (lan["answers"] as? Int ?? 0) + (lan["announces_sent"] as? Int ?? 0)
        #expect(answers <= 4 + Int(floodSeconds * 4), "\(lan) in \(floodSeconds) s")
        let joinLAN = try #require(joinEnd["lan"] as? [String: Any])
        #expect(joinLAN["lobbies_found"] as? Int == 1, "\(joinLAN)")
    }

    /// `--no-lan`, or `lan_discovery = off` in dht.conf: no discovery at all (no `lan` event, no
    /// counters in `end`). A host alone (`--start-when 1`) plays its match and ends.
    @Test func discoveryCanBeTurnedOff() throws {
        let party = try Party()
        let flag = try party.start(
            "flag",
            ["host", "--topic", "off-a", "--seconds", "5", "--start-when", "1", "--no-lan"]
        )
        let confDir = party.dir.appendingPathComponent("conf/config/turf")
        try FileManager.default.createDirectory(at: confDir, withIntermediateDirectories: true)
        try Data("lan_discovery = off\n".utf8).write(to: confDir.appendingPathComponent("dht.conf"))
        let conf = try party.start("conf", ["host", "--topic", "off-b", "--seconds", "5", "--start-when", "1"])
        for (pid, peer) in [(flag, "flag"), (conf, "conf")] {
            #expect(party.wait(pid) == 0, "\(peer): \(party.events(peer))")
            #expect(party.events(peer, "lan").isEmpty, "\(peer): \(party.events(peer))")
            let end = try #require(party.events(peer, "end").last, "\(peer): \(party.events(peer))")
            #expect(end["lan"] == nil)
        }
    }
}

/// A plain UDP socket sending to BEP 14's IPv4 group out of loopback: a hostile peer in a test.
final class LoopbackMulticast {
    let fd: Int32

    init() throws {
        fd = socket(AF_INET, Int32(SOCK_DGRAM.rawValue), 0)
        guard fd >= 0 else { throw CLIFailure("socket: \(errno)") }
        var lo = in_addr(s_addr: UInt32(0x7F00_0001).bigEndian)
        _ = setsockopt(fd, Int32(IPPROTO_IP), IP_MULTICAST_IF, &lo, socklen_t(MemoryLayout<in_addr>.size))
    }

    func send(_ bytes: [UInt8]) {
        var sin = sockaddr_in()
        sin.sin_family = sa_family_t(AF_INET)
        sin.sin_port = UInt16(6771).bigEndian
        sin.sin_addr.s_addr = UInt32(0xEFC0_988F).bigEndian  // 239.192.152.143
        _ = withUnsafePointer(to: &sin) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                sendto(fd, bytes, bytes.count, 0, $0, socklen_t(MemoryLayout<sockaddr_in>.size))
            }
        }
    }

    func close() { _ = Glibc.close(fd) }
}
