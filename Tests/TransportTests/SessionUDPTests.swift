import Foundation
import NIOCore
import NetCore
import NetPOSIX
import Sodium
import Testing

@testable import Transport

/// The same session code over real UDP on 127.0.0.1.
@Suite(.serialized) struct SessionUDPTests {
    /// One side: a socket, and on its event loop the demultiplexer, the session manager and the
    /// sessions others opened (`manager` and `inbound` only on that loop).
    final class Peer: Sendable {
        let host: UDPHost
        let identity = Identity.generate()
        private let state: NIOLoopBound<State>
        final class State {
            let demux: Demultiplexer
            let manager: SessionManager
            var inbound: [Session] = []
            init(host: UDPHost, identity: Identity) {
                demux = Demultiplexer(socket: host)
                manager = SessionManager(host: host, demux: demux, identity: identity)
            }
        }
        var manager: SessionManager { state.value.manager }
        var inbound: [Session] { state.value.inbound }

        init() throws {
            let h = try UDPHost.bind(PeerAddress(127, 0, 0, 1, port: 0))
            host = h
            let id = identity
            state = try h.sync {
                let s = State(host: h, identity: id)
                s.manager.onInbound = { s.inbound.append($0) }
                return NIOLoopBound(s, eventLoop: h.eventLoop)
            }
        }
        func stop() {
            try? host.sync { self.manager.shutdown() }
            host.close()
        }
        /// `make()` run on the loop, its result kept there.
        func onLoop<T>(_ make: @escaping @Sendable () throws -> T) throws -> NIOLoopBound<T> {
            let h = host
            return try host.sync { NIOLoopBound(try make(), eventLoop: h.eventLoop) }
        }
        /// A value for callbacks on the loop to write and `host.sync` to read.
        func box<T>(_ value: sending T) -> NIOLoopBoundBox<T> { .makeBoxSendingValue(value, eventLoop: host.eventLoop) }
    }

    func wait(_ host: UDPHost, seconds: Double = 10, _ cond: @escaping @Sendable () -> Bool) throws -> Bool {
        let deadline = Date().addingTimeInterval(seconds)
        while Date() < deadline {
            if try host.sync(cond) { return true }
            usleep(2_000)
        }
        return false
    }

    @Test(arguments: [0, 1, 2])
    func handshakeAndChannelsOverLoopback(modeIndex: Int) throws {
        let a = try Peer()
        let b = try Peer()
        defer {
            a.stop()
            b.stop()
        }
        let key = SecretBytesFactory.random()
        if modeIndex == 2 { try b.host.sync { b.manager.setLobbyKey(key) } }
        let mode: ConnectMode = [.discovered, .knownKey(b.identity.publicKey), .passphrase(key)][modeIndex]
        let bAddress = b.host.localAddress
        let s = try a.onLoop { a.manager.connect(to: bAddress, mode: mode) }
        #expect(try wait(a.host) { s.value.isEstablished })
        #expect(try wait(b.host) { b.inbound.first?.isEstablished == true })
        let sb = try b.onLoop { b.inbound[0] }
        #expect(try b.host.sync { sb.value.remoteKey } == a.identity.publicKey)

        let reliableGot = b.box([[UInt8]]())
        let unreliableGot = b.box([[UInt8]]())
        try b.host.sync {
            sb.value.reliable.onReceive = { reliableGot.value.append($0) }
            sb.value.unreliable.onReceive = { unreliableGot.value.append($0) }
        }
        let big = (0..<20_000).map { UInt8(truncatingIfNeeded: $0 * 7) }
        try a.host.sync {
            for i in 0..<50 { try s.value.reliable.send([UInt8(i)]) }
            try s.value.reliable.send(big)
        }
        #expect(try wait(b.host) { reliableGot.value.count == 51 })
        let got = try b.host.sync { reliableGot.value }
        #expect(Array(got.prefix(50)) == (0..<50).map { [UInt8($0)] })
        #expect(got.last == big)
        // Unreliable means a datagram may be lost, even on loopback: resend until one arrives
        // (bounded), then check what arrived.
        var sends = 0
        repeat {
            try a.host.sync { try s.value.unreliable.send([1, 2, 3]) }
            sends += 1
        } while try !wait(b.host, seconds: 0.2, { !unreliableGot.value.isEmpty }) && sends < 25
        let unreliable = try b.host.sync { unreliableGot.value }
        #expect(!unreliable.isEmpty, "nothing arrived in \(sends) sends")
        #expect(unreliable.count <= sends && unreliable.allSatisfy { $0 == [1, 2, 3] })
        // A ping round trip gives an RTT sample (pings start right after the handshake).
        #expect(try wait(a.host, seconds: 5) { s.value.metrics.smoothedRTT != nil })
        // Clean close reaches the other side.
        try a.host.sync { s.value.close() }
        #expect(try wait(b.host) { sb.value.state == .closed(.remote) })
    }

    /// A blackout on real sockets (the receiver drops everything) spanning retransmissions of
    /// every message: the session stays up on the event loop's real timers, and reliable messages
    /// sent meanwhile arrive afterwards.
    @Test func sessionSurvivesBlackoutOnRealSockets() throws {
        let a = try Peer()
        let b = try Peer()
        defer {
            a.stop()
            b.stop()
        }
        let bAddress = b.host.localAddress
        let s = try a.onLoop { a.manager.connect(to: bAddress, mode: .discovered) }
        #expect(try wait(b.host) { b.inbound.first?.isEstablished == true })
        let sb = try b.onLoop { b.inbound[0] }
        let blackout = b.box(true)
        let got = b.box([[UInt8]]())
        try b.host.sync {
            guard let inner = b.host.onReceive else { return }
            b.host.onReceive = { p, src in if !blackout.value { inner(p, src) } }
            sb.value.reliable.onReceive = { got.value.append($0) }
        }
        // Each message is sent after the loop's real retransmission timer fired at least once
        // more (the blackout spans them; with per-segment backoff up to 1 s, a few seconds).
        for i in 0..<10 {
            let before = try a.host.sync { s.value.reliable.stats.retransmissions }
            try a.host.sync { try s.value.reliable.send([UInt8(i)]) }
            #expect(
                try wait(a.host) { s.value.reliable.stats.retransmissions > before },
                "no retransmission after \(i)"
            )
        }
        #expect(try b.host.sync { got.value.isEmpty })
        try b.host.sync { blackout.value = false }
        #expect(try wait(b.host, seconds: 5) { got.value.count == 10 })
        #expect(try b.host.sync { got.value } == (0..<10).map { [UInt8($0)] })
        #expect(try a.host.sync { s.value.isEstablished && s.value.reliable.stats.retransmissions > 0 })
        #expect(try b.host.sync { sb.value.isEstablished })
    }

    @Test func wrongPassphraseOverLoopbackIsRejectedAndCounted() throws {
        let a = try Peer()
        let b = try Peer()
        defer {
            a.stop()
            b.stop()
        }
        try b.host.sync { b.manager.setLobbyKey(SecretBytesFactory.random()) }
        let bAddress = b.host.localAddress
        let s = try a.onLoop { a.manager.connect(to: bAddress, mode: .passphrase(SecretBytesFactory.random())) }
        #expect(try wait(b.host) { b.manager.stats.passphraseRejected >= 1 })
        #expect(try a.host.sync { !s.value.isEstablished })
        #expect(try b.host.sync { b.inbound.isEmpty })
    }
}

enum SecretBytesFactory {
    static func random() -> SecretBytes { SecretBytes.random(32) }
}
