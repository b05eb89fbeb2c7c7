import Foundation
import NetCore
import NetStack
import Testing
import Transport

#if canImport(Glibc)
    import Glibc
#endif

/// A real `turf dht serve --relay` process on loopback, and two peers on real UDP sockets in this
/// process that reach each other only through it: the host registers its lobby, the joiner joins,
/// and an ordinary IK session (the host's key checked in the handshake) runs inside relay frames.
@Suite(.serialized) struct RelayCLITests {
    @Test func twoSessionsThroughARelayProcess() throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent(
            "turf-relay-\(UUID().uuidString.prefix(8))"
        )
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: dir) }
        var env = ProcessInfo.processInfo.environment
        env["XDG_CONFIG_HOME"] = dir.appendingPathComponent("config").path
        env["XDG_STATE_HOME"] = dir.appendingPathComponent("state").path
        env["TURF_DHT_BOOTSTRAP"] = nil
        let out = dir.appendingPathComponent("relay.out").path
        let pid = try spawnBackground(
            turfBinary,
            [
                "dht", "serve", "--bind", "127.0.0.1", "--bootstrap", "none", "--no-state", "--duration", "120",
                "--status-every", "0", "--relay", "--relay-sessions", "4",
            ],
            environment: env,
            stdout: out
        )
        defer {
            kill(pid, SIGKILL)
            var st: Int32 = 0
            waitpid(pid, &st, 0)
        }
        let line = try #require(waitForLine(out, containing: "listening on", timeout: 60), "the relay did not start")
        #expect(waitForLine(out, containing: "relaying (4 sessions", timeout: 10) != nil)
        let relay = try #require(
            line.split(separator: " ").first { $0.hasPrefix("127.0.0.1:") }.flatMap { PeerAddress(String($0)) }
        )

        let hostID = Identity.generate()
        let host = try LivePeer.bind(PeerAddress(127, 0, 0, 1, port: 0), identity: hostID)
        let joiner = try LivePeer.bind(PeerAddress(127, 0, 0, 1, port: 0), identity: .generate())
        defer {
            host.close()
            joiner.close()
        }
        let tag = RelayFrame.tag(topic: "relay cli test")
        try host.sync { $0.relay?.register(tag: tag, at: [relay]) }
        // The registration's answer (bounded wait).
        var registered: RelayStatus?
        for _ in 0..<100 where registered == nil {
            usleep(50_000)
            registered = try host.sync { $0.relay?.registeredAt[relay] }
        }
        #expect(registered == .ok)
        try host.sync { peer in
            peer.sessions?.onInbound = { s in s.reliable.onReceive = { bytes in try? s.reliable.send(bytes.reversed()) }
            }
        }
        let virtual = joiner.waitFor(timeout: 10) { (peer: Peer, done: @escaping (PeerAddress?) -> Void) in
            peer.relay?.join(tag: tag, relay: relay) { done($0) }
        }
        let address = try #require(virtual ?? nil)
        #expect(RelayClient.isVirtual(address))
        let hostKey = hostID.publicKey
        let echoed = joiner.waitFor(timeout: 20) { (peer: Peer, done: @escaping ([UInt8]) -> Void) in
            guard let s = peer.sessions?.connect(to: address, mode: .knownKey(hostKey)) else { return }
            s.reliable.onReceive = { done($0) }
            s.onStateChange = { state in
                if case .established = state { try? s.reliable.send(Array("relayed".utf8)) }
            }
        }
        #expect(echoed == Array("relayed".utf8).reversed())
        let (sent, received) = try joiner.sync {
            ($0.relay?.stats.framesSent ?? 0, $0.relay?.stats.framesReceived ?? 0)
        }
        #expect(sent >= 2 && received >= 2)
        // The session's peer on the host is the virtual address: nothing went directly.
        let inboundAddresses = try host.sync { $0.sessions?.activeSessions.map(\.peerAddress) ?? [] }
        #expect(inboundAddresses.count == 1 && inboundAddresses.allSatisfy(RelayClient.isVirtual))
    }
}
