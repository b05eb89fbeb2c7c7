import Testing
import Foundation
import NetCore
@testable import Transport

/// The same session code over real UDP on 127.0.0.1.
@Suite(.serialized) struct SessionUDPTests {
    final class Peer {
        let host: UDPHost
        var manager: SessionManager!
        var demux: Demultiplexer!
        let identity = Identity.generate()
        var inbound: [Session] = []
        init() throws {
            host = try UDPHost.bind(PeerAddress(127, 0, 0, 1, port: 0))
            try host.sync {
                self.demux = Demultiplexer(socket: self.host)
                self.manager = SessionManager(host: self.host, demux: self.demux, identity: self.identity)
                self.manager.onInbound = { self.inbound.append($0) }
            }
        }
        func stop() {
            try? host.sync { self.manager.shutdown() }
            host.close()
        }
    }

    func wait(_ host: UDPHost, seconds: Double = 10, _ cond: @escaping () -> Bool) throws -> Bool {
        let deadline = Date().addingTimeInterval(seconds)
        while Date() < deadline {
            if try host.sync(cond) { return true }
            usleep(2_000)
        }
        return false
    }

    @Test(arguments: [0, 1, 2])
    func handshakeAndChannelsOverLoopback(modeIndex: Int) throws {
        let a = try Peer(), b = try Peer()
        defer { a.stop(); b.stop() }
        let key = SecretBytesFactory.random()
        if modeIndex == 2 { try b.host.sync { b.manager.setLobbyKey(key) } }
        let mode: ConnectMode = [.discovered, .knownKey(b.identity.publicKey), .passphrase(key)][modeIndex]
        let s = try a.host.sync { a.manager.connect(to: b.host.localAddress, mode: mode) }
        #expect(try wait(a.host) { s.isEstablished })
        #expect(try wait(b.host) { b.inbound.first?.isEstablished == true })
        let sb = try b.host.sync { b.inbound[0] }
        #expect(try b.host.sync { sb.remoteKey } == a.identity.publicKey)

        var reliableGot: [[UInt8]] = []
        var unreliableGot: [[UInt8]] = []
        try b.host.sync {
            sb.reliable.onReceive = { reliableGot.append($0) }
            sb.unreliable.onReceive = { unreliableGot.append($0) }
        }
        let big = (0..<20_000).map { UInt8(truncatingIfNeeded: $0 * 7) }
        try a.host.sync {
            for i in 0..<50 { try s.reliable.send([UInt8(i)]) }
            try s.reliable.send(big)
        }
        #expect(try wait(b.host) { reliableGot.count == 51 })
        let got = try b.host.sync { reliableGot }
        #expect(Array(got.prefix(50)) == (0..<50).map { [UInt8($0)] })
        #expect(got.last == big)
        // Unreliable means a datagram may be lost, even on loopback: resend until one arrives
        // (bounded), then check what arrived.
        var sends = 0
        repeat {
            try a.host.sync { try s.unreliable.send([1, 2, 3]) }
            sends += 1
        } while try !wait(b.host, seconds: 0.2, { !unreliableGot.isEmpty }) && sends < 25
        let unreliable = try b.host.sync { unreliableGot }
        #expect(!unreliable.isEmpty, "nothing arrived in \(sends) sends")
        #expect(unreliable.count <= sends && unreliable.allSatisfy { $0 == [1, 2, 3] })
        // A ping round trip gives an RTT sample (pings start right after the handshake).
        #expect(try wait(a.host, seconds: 5) { s.metrics.smoothedRTT != nil })
        // Clean close reaches the other side.
        try a.host.sync { s.close() }
        #expect(try wait(b.host) { sb.state == .closed(.remote) })
    }

    /// A 3-second blackout on real sockets (the receiver drops everything): the session stays up
    /// on the event loop's real timers, and reliable messages sent meanwhile arrive afterwards.
    @Test func sessionSurvivesBlackoutOnRealSockets() throws {
        let a = try Peer(), b = try Peer()
        defer { a.stop(); b.stop() }
        let s = try a.host.sync { a.manager.connect(to: b.host.localAddress, mode: .discovered) }
        #expect(try wait(b.host) { b.inbound.first?.isEstablished == true })
        let sb = try b.host.sync { b.inbound[0] }
        var blackout = true
        var got: [[UInt8]] = []
        try b.host.sync {
            let inner = b.host.onReceive!
            b.host.onReceive = { p, src in if !blackout { inner(p, src) } }
            sb.reliable.onReceive = { got.append($0) }
        }
        for i in 0..<10 {
            try a.host.sync { try s.reliable.send([UInt8(i)]) }
            usleep(300_000)
        }
        #expect(try b.host.sync { got.isEmpty })
        try b.host.sync { blackout = false }
        #expect(try wait(b.host, seconds: 5) { got.count == 10 })
        #expect(try b.host.sync { got } == (0..<10).map { [UInt8($0)] })
        #expect(try a.host.sync { s.isEstablished && s.reliable.stats.retransmissions > 0 })
        #expect(try b.host.sync { sb.isEstablished })
    }

    @Test func wrongPassphraseOverLoopbackIsRejectedAndCounted() throws {
        let a = try Peer(), b = try Peer()
        defer { a.stop(); b.stop() }
        try b.host.sync { b.manager.setLobbyKey(SecretBytesFactory.random()) }
        let s = try a.host.sync { a.manager.connect(to: b.host.localAddress, mode: .passphrase(SecretBytesFactory.random())) }
        #expect(try wait(b.host) { b.manager.stats.passphraseRejected >= 1 })
        #expect(try a.host.sync { !s.isEstablished })
        #expect(try b.host.sync { b.inbound.isEmpty })
    }
}

import Sodium
enum SecretBytesFactory {
    static func random() -> SecretBytes { SecretBytes.random(32) }
}
