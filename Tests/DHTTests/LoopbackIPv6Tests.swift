import Dispatch
import Foundation
import NIOCore
import NetCore
import NetPOSIX
import Testing

@testable import DHT

/// turf nodes over real UDP on ::1 (BEP 32): IPv6-only sockets and a dual-stack one (`[::]`).
/// Traffic stays on loopback. Skipped with a message where the machine has no IPv6 loopback.
@Suite(.serialized) struct LoopbackIPv6Tests {
    /// Runs `body` on the host's loop and waits for the callback it is handed (bounded).
    static func waitFor<T: Sendable>(
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

    /// A UDP socket on [::1], or nil (with the reason printed) where there is no IPv6 loopback.
    static func loopbackHost() -> UDPHost? {
        do { return try UDPHost.bind(PeerAddress(ip6: .loopback, port: 0)) } catch {
            print("SKIPPED: no IPv6 loopback here (\(error))")
            return nil
        }
    }

    @Test func nodesOnIPv6LoopbackFindEachOthersAnnounces() throws {
        guard let hostA = Self.loopbackHost() else { return }
        let hosts = [hostA] + (try (0..<2).map { _ in try UDPHost.bind(PeerAddress(ip6: .loopback, port: 0)) })
        let dual = try UDPHost.bind(.anyDualStack(port: 0))
        defer { for h in hosts + [dual] { h.close() } }
        #expect(dual.isDualStack, "a socket on [::] takes both families")
        var config = DHTConfig()
        config.queryTimeout = .seconds(5)
        config.bootstrap = [hostA.localAddress]
        let c = config
        let nodes = try hosts.enumerated().map { i, h in
            try h.sync {
                var own = c
                if i == 0 { own.bootstrap = [] }
                return NIOLoopBound(DHTNode.alone(on: h, config: own), eventLoop: h.eventLoop)
            }
        }
        let dualNode = try dual.sync { NIOLoopBound(DHTNode.alone(on: dual, config: c), eventLoop: dual.eventLoop) }
        defer {
            for (n, h) in zip(nodes, hosts) { try? h.sync { n.value.stop() } }
            try? dual.sync { dualNode.value.stop() }
        }
        try hostA.sync { nodes[0].value.startMaintenance() }
        for (n, h) in zip(nodes, hosts).dropFirst() {
            let joined = Self.waitFor(h, timeout: 20) { done in n.value.start { done($0.closest.count) } }
            #expect((joined ?? 0) >= 1)
        }
        let dualJoined = Self.waitFor(dual, timeout: 20) { done in dualNode.value.start { done($0.closest.count) } }
        #expect((dualJoined ?? 0) >= 3, "the dual-stack node joined over IPv6")

        // The second IPv6-only node announces; the others find it at its IPv6 address.
        let h = Topic.infoHash("ipv6 loopback \(UUID().uuidString)")
        let announcer = hosts[1]
        let stored = Self.waitFor(announcer, timeout: 20) { (done: @escaping (Int) -> Void) in
            nodes[1].value.announce(h, port: 1, impliedPort: true) { _, n in done(n) }
        }
        #expect((stored ?? 0) >= 2)
        let byIPv6Only = Self.waitFor(hosts[2], timeout: 20) { done in nodes[2].value.getPeers(h) { done($0.peers) } }
        let byDual = Self.waitFor(dual, timeout: 20) { done in dualNode.value.getPeers(h) { done($0.peers) } }
        #expect(byIPv6Only == [announcer.localAddress], "\(byIPv6Only ?? [])")
        #expect(byDual == [announcer.localAddress], "\(byDual ?? [])")
        #expect(announcer.localAddress.isIPv6)

        // The dual-stack node learned its IPv6 address (18-byte `ip`) from three responders.
        let learned = try dual.sync { (dualNode.value.externalAddress6, dualNode.value.natType6, dualNode.value.stats) }
        #expect(learned.0 == PeerAddress(ip6: .loopback, port: dual.localAddress.port))
        #expect(learned.1 == .consistent)
        #expect(learned.2.malformed == 0 && learned.2.ipFamilyMismatches == 0)
        #expect(try dual.sync { dualNode.value.routingTableSizes.v6 } >= 3)
    }
}
