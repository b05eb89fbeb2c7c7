import Sodium
import Testing

@testable import Noise

@Suite struct HandshakeTests {
    @Test func patternParsing() throws {
        let xx = try HandshakePattern.named("XXpsk3")
        #expect(xx.messages == [[.e], [.e, .ee, .s, .es], [.s, .se, .psk]])
        let nn = try HandshakePattern.named("NNpsk0+psk2")
        #expect(nn.messages == [[.psk, .e], [.e, .ee, .psk]])
        #expect(nn.pskCount == 2)
        for bad in ["", "QQ", "XXpsk9", "XXpsk", "XXfallback", "xx"] {
            #expect(throws: NoiseError.self) { _ = try HandshakePattern.named(bad) }
        }
        #expect(throws: NoiseError.self) { _ = try NoiseProtocol(name: "Noise_XX_448_ChaChaPoly_BLAKE2b") }
        #expect(try NoiseProtocol(name: "Noise_IK_25519_ChaChaPoly_BLAKE2b").pattern.name == "IK")
    }

    func run(_ name: String, initPSK: [UInt8]? = nil, respPSK: [UInt8]? = nil) throws -> (
        HandshakeState, HandshakeState
    ) {
        let proto = try NoiseProtocol(name: name)
        let a = X25519.KeyPair.generate()
        let b = X25519.KeyPair.generate()
        let needsRS = proto.pattern.responderPreMessage.contains(.s)
        var i = try HandshakeState(
            protocol: proto,
            initiator: true,
            prologue: [1],
            localStatic: a,
            remoteStatic: needsRS ? b.publicKey : nil,
            psks: initPSK.map { [SecretBytes(copying: $0)] } ?? []
        )
        var r = try HandshakeState(
            protocol: proto,
            initiator: false,
            prologue: [1],
            localStatic: b,
            psks: respPSK.map { [SecretBytes(copying: $0)] } ?? []
        )
        while !i.isComplete {
            if i.isMyTurn {
                _ = try r.readMessage(try i.writeMessage([7]))
            } else {
                _ = try i.readMessage(try r.writeMessage([8]))
            }
        }
        return (i, r)
    }

    @Test func xxLearnsStaticKeys() throws {
        let (i, r) = try run("Noise_XX_25519_ChaChaPoly_BLAKE2b")
        #expect(i.handshakeHash == r.handshakeHash)
        #expect(i.remoteStatic != nil && r.remoteStatic != nil)
    }

    @Test func wrongPSKIsRejected() throws {
        let good = Sodium.randomBytes(32)
        let bad = Sodium.randomBytes(32)
        _ = try run("Noise_XXpsk3_25519_ChaChaPoly_BLAKE2b", initPSK: good, respPSK: good)
        #expect(throws: NoiseError.decryptionFailed) {
            _ = try run("Noise_XXpsk3_25519_ChaChaPoly_BLAKE2b", initPSK: good, respPSK: bad)
        }
    }

    @Test func ikWithWrongResponderKeyFails() throws {
        let proto = try NoiseProtocol(name: "Noise_IK_25519_ChaChaPoly_BLAKE2b")
        let a = X25519.KeyPair.generate()
        let b = X25519.KeyPair.generate()
        let other = X25519.KeyPair.generate()
        var i = try HandshakeState(protocol: proto, initiator: true, localStatic: a, remoteStatic: other.publicKey)
        var r = try HandshakeState(protocol: proto, initiator: false, localStatic: b)
        let m = try i.writeMessage()
        #expect(throws: NoiseError.decryptionFailed) { _ = try r.readMessage(m) }
        // A failed handshake stays failed.
        #expect(throws: NoiseError.self) { _ = try r.readMessage(m) }
    }

    @Test func truncatedAndOutOfTurnMessages() throws {
        let proto = try NoiseProtocol(name: "Noise_XX_25519_ChaChaPoly_BLAKE2b")
        var r = try HandshakeState(protocol: proto, initiator: false, localStatic: X25519.KeyPair.generate())
        #expect(throws: NoiseError.self) { _ = try r.writeMessage() }
        #expect(throws: NoiseError.truncated(needed: 32, got: 5)) { _ = try r.readMessage([1, 2, 3, 4, 5]) }
        var i = try HandshakeState(protocol: proto, initiator: true, localStatic: X25519.KeyPair.generate())
        #expect(throws: NoiseError.wrongTurn) { _ = try i.readMessage([UInt8](repeating: 0, count: 48)) }
        #expect(throws: NoiseError.missingKey("local static")) {
            var n = try HandshakeState(protocol: proto, initiator: true)
            var m = try HandshakeState(protocol: proto, initiator: false, localStatic: X25519.KeyPair.generate())
            _ = try m.readMessage(try n.writeMessage())
            _ = try n.readMessage(try m.writeMessage())
            _ = try n.writeMessage()
        }
    }

    @Test func lowOrderEphemeralIsRejected() throws {
        let proto = try NoiseProtocol(name: "Noise_NN_25519_ChaChaPoly_BLAKE2b")
        var i = try HandshakeState(protocol: proto, initiator: true)
        _ = try i.writeMessage()
        // Responder "ephemeral" of all zeros: ee yields the zero output.
        #expect(throws: NoiseError.invalidPublicKey) { _ = try i.readMessage([UInt8](repeating: 0, count: 48)) }
    }

    @Test func cipherStateRekeyChangesKey() throws {
        var c1 = CipherState(key: SecretBytes(copying: [UInt8](repeating: 1, count: 32)))
        var c2 = c1
        c2.rekey()
        let a = try c1.encrypt(ad: [], plaintext: [1, 2, 3])
        let b = try c2.encrypt(ad: [], plaintext: [1, 2, 3])
        #expect(a != b && a.count == 19)
    }
}
