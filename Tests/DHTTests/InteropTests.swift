import Bencode
import Dispatch
import Foundation
import NIOCore
import NetCore
import NetPOSIX
import Sodium
import Testing

@testable import DHT

/// Interoperability with libtorrent's Mainline DHT (python3-libtorrent), on loopback only.
/// scripts/dht_libtorrent_interop.py runs three libtorrent nodes; one announces an info-hash.
/// Twice: on 127.0.0.1 (the IPv4 DHT), and on [::1] (BEP 32's IPv6 DHT) against a dual-stack
/// turf node and an IPv6-only one.
@Suite(.serialized) struct InteropTests {
    static let python = "/usr/bin/python3"

    static var libtorrentAvailable: Bool {
        let p = Process()
        p.executableURL = URL(fileURLWithPath: python)
        p.arguments = ["-c", "import libtorrent"]
        p.standardOutput = FileHandle.nullDevice
        p.standardError = FileHandle.nullDevice
        do { try p.run() } catch { return false }
        p.waitUntilExit()
        return p.terminationStatus == 0
    }

    static var scriptPath: String {
        URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
            .deletingLastPathComponent()
            .appendingPathComponent("scripts/dht_libtorrent_interop.py").path
    }

    /// Lines from a child process's stdout, read on a background thread, taken with a deadline.
    // @unchecked Sendable: `lines` and `buffer` are touched only while holding `lock`.
    final class LineReader: @unchecked Sendable {
        private var lines: [String] = []
        private var buffer = Data()
        private let lock = NSLock()
        private let available = DispatchSemaphore(value: 0)

        init(_ handle: FileHandle) {
            handle.readabilityHandler = { [weak self] h in
                let d = h.availableData
                guard let self else { return }
                if d.isEmpty {
                    h.readabilityHandler = nil
                    return
                }
                self.lock.lock()
                self.buffer.append(d)
                var found = 0
                while let nl = self.buffer.firstIndex(of: 0x0A) {
                    self.lines.append(String(decoding: self.buffer[self.buffer.startIndex..<nl], as: UTF8.self))
                    self.buffer.removeSubrange(self.buffer.startIndex...nl)
                    found += 1
                }
                self.lock.unlock()
                for _ in 0..<found { self.available.signal() }
            }
        }

        func next(timeout: Double) -> [String: Any]? {
            guard available.wait(timeout: .now() + timeout) == .success else { return nil }
            lock.lock()
            let l = lines.removeFirst()
            lock.unlock()
            return (try? JSONSerialization.jsonObject(with: Data(l.utf8))) as? [String: Any]
        }
    }

    /// Runs `body` on the host's loop and waits for the callback it is handed (bounded).
    func waitFor<T: Sendable>(
        _ host: UDPHost,
        timeout: Double,
        _ body: @escaping @Sendable (@escaping (T) -> Void) -> Void
    ) -> T? {
        let sem = DispatchSemaphore(value: 0)
        let box = NIOLoopBoundBox.makeEmptyBox(valueType: T.self, eventLoop: host.eventLoop)
        host.execute {
            body { v in
                box.value = v
                sem.signal()
            }
        }
        guard sem.wait(timeout: .now() + timeout) == .success else { return nil }
        return try? host.sync { box.value }
    }

    /// The helper's own deadline (it stops itself past it): longer than the sum of
    /// the waits below (40 + 15 + 15 + 20 + 20 + 40 + 20 + 40 = 210 s), for a loaded CI machine.
    static let helperSeconds = 300

    @Test(arguments: [false, true])
    func bothDirectionsWithLibtorrent(v6: Bool) throws {
        guard Self.libtorrentAvailable else {
            // CI installs python3-libtorrent (scripts/install-deps.sh): there, a missing one is a failure.
            if ProcessInfo.processInfo.environment["CI"].map({ !$0.isEmpty }) ?? false {
                Issue.record(
                    "libtorrent is not importable by \(Self.python) on CI; scripts/install-deps.sh should install python3-libtorrent"
                )
            } else {
                print("SKIPPED: libtorrent is not importable by \(Self.python); install python3-libtorrent (make deps)")
            }
            return
        }
        if v6 {
            // A machine without an IPv6 loopback cannot run this half (the IPv4 one still runs).
            guard let probe = LoopbackIPv6Tests.loopbackHost() else { return }
            probe.close()
        }
        let theirHash = Topic.infoHash("interop: libtorrent announces \(UUID().uuidString)")
        let ourHash = Topic.infoHash("interop: turf announces \(UUID().uuidString)")

        let proc = Process()
        proc.executableURL = URL(fileURLWithPath: Self.python)
        proc.arguments =
            [Self.scriptPath, "--announce-hash", theirHash.hexString, "--max-seconds", "\(Self.helperSeconds)"]
            + (v6 ? ["--v6"] : [])
        let input = Pipe()
        let output = Pipe()
        proc.standardInput = input
        proc.standardOutput = output
        proc.standardError =
            ProcessInfo.processInfo.environment["TURF_INTEROP_DEBUG"] != nil
            ? FileHandle(forWritingAtPath: "/tmp/turf-interop-debug.log") : FileHandle.nullDevice
        try proc.run()
        defer {
            try? input.fileHandleForWriting.write(contentsOf: Data("quit\n".utf8))
            try? input.fileHandleForWriting.close()
            let deadline = Date().addingTimeInterval(5)
            while proc.isRunning && Date() < deadline { Thread.sleep(forTimeInterval: 0.1) }
            if proc.isRunning { proc.terminate() }
            proc.waitUntilExit()
        }
        let reader = LineReader(output.fileHandleForReading)
        let ready = try #require(reader.next(timeout: 40), "libtorrent helper did not start")
        let ports = try #require(ready["ports"] as? [Int])
        #expect(ports.count == 3)
        let peerText = try #require(ready["announce_peer"] as? String)
        let theirPeer = try #require(PeerAddress(peerText))

        // Two turf nodes on loopback, bootstrapping from the libtorrent nodes. Over IPv6, A is
        // dual-stack (bound to `::`, its IPv4 side idle) and B IPv6-only (bound to ::1).
        let loopback = v6 ? PeerAddress(ip6: .loopback, port: 0) : PeerAddress(127, 0, 0, 1, port: 0)
        let hostA = try UDPHost.bind(v6 ? .anyDualStack(port: 0) : loopback)
        let hostB = try UDPHost.bind(loopback)
        defer {
            hostA.close()
            hostB.close()
        }
        var config = DHTConfig()
        config.bootstrap = ports.map { loopback.with(port: UInt16($0)) }
        // The libtorrent helper is a Python process: on a loaded 2-core machine (the whole suite
        // running beside it) one of its nodes can take longer than the default 3 s to answer, and
        // the join would then count it as gone. This test is about the protocol, not latency.
        config.queryTimeout = .milliseconds(10_000)
        let cA = config
        let cB = config
        // Each node lives on its host's event loop; `NIOLoopBound` checks that on every access.
        let nodeA = try hostA.sync { NIOLoopBound(DHTNode.alone(on: hostA, config: cA), eventLoop: hostA.eventLoop) }
        let nodeB = try hostB.sync { NIOLoopBound(DHTNode.alone(on: hostB, config: cB), eventLoop: hostB.eventLoop) }
        defer {
            try? hostA.sync { nodeA.value.stop() }
            try? hostB.sync { nodeB.value.stop() }
        }

        let joinedA = waitFor(hostA, timeout: 40) { done in nodeA.value.start { done($0) } }
        let joinedB = waitFor(hostB, timeout: 40) { done in nodeB.value.start { done($0) } }
        #expect((joinedA?.closest.count ?? 0) >= 3, "turf joined through libtorrent nodes")
        #expect((joinedB?.closest.count ?? 0) >= 3)

        // Direction 1: turf finds what libtorrent announced.
        let found = waitFor(hostA, timeout: 20) { done in nodeA.value.getPeers(theirHash) { done($0) } }
        #expect(found?.peers.contains(theirPeer) == true, "turf found libtorrent's announce: \(found?.peers ?? [])")
        // libtorrent's responses carry BEP 42's `ip` (18 bytes over IPv6): turf learned its
        // address from them.
        let ext = try hostA.sync { v6 ? nodeA.value.externalAddress6 : nodeA.value.externalAddress }
        #expect(ext == loopback.with(port: hostA.localAddress.port))
        // Three libtorrent nodes saw the same port: a consistent mapping (no NAT here).
        #expect(try hostA.sync { v6 ? nodeA.value.natType6 : nodeA.value.natType } == .consistent)
        if v6 {
            #expect(
                try hostA.sync { nodeA.value.routingTableSizes.v6 } >= 3,
                "libtorrent's nodes6 filled the IPv6 table"
            )
        }

        // Direction 2: libtorrent finds what turf announced (implied_port: our socket's port).
        let announced = waitFor(hostB, timeout: 20) { (done: @escaping (Int) -> Void) in
            nodeB.value.announce(ourHash, port: 1, impliedPort: true) { _, stored in done(stored) }
        }
        #expect((announced ?? 0) >= 3, "announce stored on libtorrent and turf nodes")
        try input.fileHandleForWriting.write(contentsOf: Data("lookup \(ourHash.hexString)\n".utf8))
        let reply = try #require(reader.next(timeout: 40), "no lookup reply from libtorrent")
        let peers = (reply["peers"] as? [String]) ?? []
        #expect(
            peers.contains(loopback.with(port: hostB.localAddress.port).description),
            "libtorrent found turf's announce: \(peers)"
        )

        // BEP 44: libtorrent fetches and verifies a signed mutable item that turf stored.
        let key = try Ed25519.KeyPair(seed: [UInt8](repeating: 7, count: 32))
        let salt = Array("lobby".utf8)
        let value = BValue.dictionary([("addr", .string("127.0.0.1:\(hostB.localAddress.port)")), ("v", .int(1))])
        let item = MutableItem(signedBy: key, salt: salt, seq: 3, value: value)
        let put = waitFor(hostB, timeout: 20) { (done: @escaping (Int) -> Void) in
            nodeB.value.put(.mutable(item)) { done($0) }
        }
        #expect((put ?? 0) >= 3, "mutable item stored on libtorrent and turf nodes")
        try input.fileHandleForWriting.write(contentsOf: Data("getmutable \(hex(key.publicKey)) \(hex(salt))\n".utf8))
        let got = try #require(reader.next(timeout: 40), "no getmutable reply from libtorrent")
        let gotItem = got["item"] as? [String: Any]
        #expect(gotItem?["seq"] as? Int == 3, "libtorrent got turf's item: \(got)")
        // libtorrent prints the item it verified, e.g. { 'addr': '127.0.0.1:PORT', 'v': 1 }.
        #expect(
            (gotItem?["value"] as? String)?.contains("'addr': '127.0.0.1:\(hostB.localAddress.port)'") == true,
            "\(got)"
        )

        // libtorrent's nodes also queried turf's nodes, and turf answered them.
        let answered =
            try hostA.sync { nodeA.value.stats.queriesAnswered }
            + (try hostB.sync { nodeB.value.stats.queriesAnswered })
        let (statsA, statsB) = (try hostA.sync { nodeA.value.stats }, try hostB.sync { nodeB.value.stats })
        #expect(answered > 0)
        #expect(statsA.malformed + statsB.malformed == 0, "libtorrent's messages all parsed under the strict decoder")
        #expect(statsA.droppedNodeEntries + statsB.droppedNodeEntries == 0)
        #expect(statsA.ipFamilyMismatches + statsB.ipFamilyMismatches == 0)
    }
}
