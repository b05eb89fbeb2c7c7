import NetCore
import Noise
import Sodium
import Testing

@testable import Transport

@Suite struct SessionCryptoTests {
    /// Seal and open between two sessions keyed from a real XX handshake, without a network.
    @Test func sealOpenAcrossSplit() throws {
        let proto = try NoiseProtocol(name: HandshakeKind.xx.noiseName)
        var i = try HandshakeState(protocol: proto, initiator: true, localStatic: X25519.KeyPair.generate())
        var r = try HandshakeState(protocol: proto, initiator: false, localStatic: X25519.KeyPair.generate())
        _ = try r.readMessage(try i.writeMessage())
        _ = try i.readMessage(try r.writeMessage())
        _ = try r.readMessage(try i.writeMessage())
        let ci = try i.split()
        let cr = try r.split()
        #expect(ci.send.key?.bytes == cr.receive.key?.bytes)
        #expect(ci.receive.key?.bytes == cr.send.key?.bytes)
        let a = Session(role: .initiator, kind: .xx, localIndex: 1, peer: PeerAddress(1, 1, 1, 1, port: 1), now: 0)
        let b = Session(role: .responder, kind: .xx, localIndex: 2, peer: PeerAddress(1, 1, 1, 2, port: 1), now: 0)
        a.remoteIndex = 2
        b.remoteIndex = 1
        a.send = DirectionKey(key: ci.send.key!, epoch: 0, since: 0)
        a.receive = DirectionKey(key: ci.receive.key!, epoch: 0, since: 0)
        b.send = DirectionKey(key: cr.send.key!, epoch: 0, since: 0)
        b.receive = DirectionKey(key: cr.receive.key!, epoch: 0, since: 0)
        for payload in [[UInt8](), [1, 2, 3], [UInt8](repeating: 9, count: 100)] {
            let p = try #require(a.seal(payload, now: 0))
            let h = try TransportHeader.decode(p)
            #expect(h.receiverIndex == 2 && h.epoch == 0)
            let expected = ChaChaPoly.seal(
                key: ci.send.key!,
                counter: h.counter,
                ad: Array(p[0..<14]),
                plaintext: payload
            )
            #expect(Array(p[14...]) == expected, "seal differs at counter \(h.counter)")
            #expect(
                ChaChaPoly.open(key: cr.receive.key!, counter: h.counter, ad: Array(p[0..<14]), ciphertext: expected)
                    == payload
            )
            var o: [UInt8] = []
            #expect(
                ChaChaPoly.open(
                    key: cr.receive.key!,
                    counter: h.counter,
                    ad: p[0..<14],
                    ciphertext: p[14...],
                    appendingTo: &o
                )
            )
            #expect(b.open(p, header: h, now: 0) == payload, "\(b.counters)")
            let q = try #require(b.seal(payload, now: 0))
            #expect(a.open(q, header: try TransportHeader.decode(q), now: 0) == payload, "\(a.counters)")
        }
    }
}
