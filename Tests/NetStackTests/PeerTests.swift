import DHT
import Foundation
import NetCore
import NetStack
import Testing
import Transport

/// What the host's session callbacks saw.
// @unchecked Sendable: written and read only on the host's event loop (in callbacks and `sync`).
final class Seen: @unchecked Sendable {
    var inbound: [Session] = []
    var received: [[UInt8]] = []
}

/// Peers on loopback, each over its one UDP socket: the DHT and the sessions share it.
@Suite(.serialized) struct PeerTests {
    func bind(bootstrap: [PeerAddress], identity: Identity?) throws -> LivePeer {
        var c = DHTConfig()
        c.bootstrap = bootstrap
        return try LivePeer.bind(PeerAddress(127, 0, 0, 1, port: 0), dht: c, identity: identity)
    }

    /// The flow of `turf host` / `turf join`: the host announces a topic with `implied_port`, a
    /// joiner looks the topic up and opens a Noise session to the address it found. That address
    /// is the host's one socket, which its DHT node and its sessions share.
    @Test func aLookupFindsTheSocketThatSessionsReach() throws {
        let router = try bind(bootstrap: [], identity: nil)
        defer { router.close() }
        router.start()
        let hostKey = Identity.generate()
        let joinerKey = Identity.generate()
        let host = try bind(bootstrap: [router.localAddress], identity: hostKey)
        defer { host.close() }
        let joiner = try bind(bootstrap: [router.localAddress], identity: joinerKey)
        defer { joiner.close() }
        let topic = Topic.infoHash("net-stack test")

        let stored = host.waitFor(timeout: 20) { (p: Peer, done: @escaping (Int) -> Void) in
            p.start { _ in p.dht.announce(topic, port: 1, impliedPort: true) { _, n in done(n) } }
        }
        #expect(stored == 1)
        let found = joiner.waitFor(timeout: 20) { (p: Peer, done: @escaping ([PeerAddress]) -> Void) in
            p.start { _ in p.dht.getPeers(topic) { done($0.peers) } }
        }
        // implied_port: the router stored the port the announce came from, the host's one socket.
        #expect(found == [host.localAddress])
        guard let address = found?.first else { return }

        let seen = Seen()
        try host.sync { p in
            p.sessions?.onInbound = { s in
                seen.inbound.append(s)
                s.reliable.onReceive = { seen.received.append($0) }
            }
        }
        let established = joiner.waitFor(timeout: 20) { (p: Peer, done: @escaping (Bool) -> Void) in
            guard let sessions = p.sessions else { return done(false) }
            let s = sessions.connect(to: address, mode: .knownKey(hostKey.publicKey))
            s.onStateChange = { state in
                guard state == .established else { return done(false) }
                try? s.reliable.send(Array("hello".utf8))
                done(true)
            }
        }
        #expect(established == true)
        let gotHello = try wait(host) { _ in seen.received == [Array("hello".utf8)] }
        #expect(gotHello)
        #expect(try host.sync { _ in seen.inbound.first?.remoteKey } == joinerKey.publicKey)
        // Both kinds of traffic arrived through the host's one demultiplexer; nothing was dropped.
        let (dhtReceived, handshakes, dropped) = try host.sync { p in
            (p.dht.stats.received, p.sessions?.stats.handshakesCompleted ?? 0, p.demux.dropped)
        }
        #expect(dhtReceived > 0)
        #expect(handshakes == 1)
        #expect(dropped == 0)
    }

    /// A peer without an identity (the `turf dht` commands) runs no session manager: turf's
    /// packets to it are dropped and counted by its demultiplexer, and its DHT still answers.
    @Test func aPeerWithoutIdentityDropsSessionPackets() throws {
        let bare = try bind(bootstrap: [], identity: nil)
        defer { bare.close() }
        bare.start()
        let other = try bind(bootstrap: [bare.localAddress], identity: .generate())
        defer { other.close() }
        #expect(try bare.sync { $0.sessions == nil })
        try other.sync { p in _ = p.sessions?.connect(to: bare.localAddress, mode: .discovered) }
        let joined = other.waitFor(timeout: 10) { (p: Peer, done: @escaping ([NodeInfo]) -> Void) in
            p.start { done($0.closest) }
        }
        #expect(joined?.map(\.address) == [bare.localAddress])
        #expect(try wait(bare) { $0.demux.dropped >= 1 })
    }

    func wait(_ live: LivePeer, seconds: Double = 10, _ cond: @escaping @Sendable (Peer) -> Bool) throws -> Bool {
        let deadline = Date().addingTimeInterval(seconds)
        while Date() < deadline {
            if try live.sync(cond) { return true }
            usleep(2_000)
        }
        return false
    }
}
