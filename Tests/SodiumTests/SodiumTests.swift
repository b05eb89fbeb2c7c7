import Testing

@testable import Sodium

func hex(_ s: String) -> [UInt8] {
    var out: [UInt8] = []
    var it = s.makeIterator()
    while let a = it.next(), let b = it.next() { out.append(UInt8(String([a, b]), radix: 16)!) }
    return out
}

func hexString(_ b: [UInt8]) -> String { b.map { String(format: "%02x", $0) }.joined() }

extension String {
    fileprivate init(format: String, _ v: UInt8) {
        let digits = Array("0123456789abcdef")
        self = String([digits[Int(v >> 4)], digits[Int(v & 15)]])
    }
}

@Suite struct X25519Tests {
    // RFC 7748 section 6.1.
    @Test func rfc7748SharedSecret() throws {
        let alice = try X25519.KeyPair(
            secretKey: hex("77076d0a7318a57d3c16c17251b26645df4c2f87ebc0992ab177fba51db92c2a")
        )
        let bob = try X25519.KeyPair(secretKey: hex("5dab087e624a8a4b79e17f8b83800ee66f3bb1292618b6fd1c2f8b27ff88e0eb"))
        #expect(hexString(alice.publicKey) == "8520f0098930a754748b7ddcb43ef75a0dbf3a0d26381af4eba4a98eaa9b4e6a")
        #expect(hexString(bob.publicKey) == "de9edb7d7b7dc1b4d35b61c2ece435373f8343c85b78674dadfc7e146f882b4f")
        let ab = try X25519.sharedSecret(secretKey: alice.secretKey, publicKey: bob.publicKey)
        let ba = try X25519.sharedSecret(secretKey: bob.secretKey, publicKey: alice.publicKey)
        #expect(hexString(ab.bytes) == "4a5d9d5ba4ce2de1728e3bf480350f25e07e21c947d19e3376f09b3c1e161742")
        #expect(ab.bytes == ba.bytes)
    }

    @Test func lowOrderPointIsRejected() {
        let me = X25519.KeyPair.generate()
        #expect(throws: SodiumError.weakPublicKey) {
            _ = try X25519.sharedSecret(secretKey: me.secretKey, publicKey: [UInt8](repeating: 0, count: 32))
        }
    }

    @Test func wrongLengthsThrow() {
        #expect(throws: SodiumError.self) { _ = try X25519.KeyPair(secretKey: [UInt8](repeating: 1, count: 31)) }
        let me = X25519.KeyPair.generate()
        #expect(throws: SodiumError.self) {
            _ = try X25519.sharedSecret(secretKey: me.secretKey, publicKey: [1, 2, 3])
        }
    }
}

@Suite struct Ed25519Tests {
    // RFC 8032 section 7.1, test 1 (empty message).
    @Test func rfc8032Test1() throws {
        let kp = try Ed25519.KeyPair(seed: hex("9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60"))
        #expect(hexString(kp.publicKey) == "d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a")
        let sig = kp.sign([UInt8]())
        #expect(
            hexString(sig)
                == "e5564300c360ac729086e2cc806e828a84877f1eb8e5d974d873e065224901555fb8821590a33bacc61e39701cf9b46bd25bf5f0595bbe24655141438e7a100b"
        )
        #expect(Ed25519.verify(signature: sig, message: [UInt8](), publicKey: kp.publicKey))
        #expect(kp.seed.bytes == hex("9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60"))
    }

    @Test func tamperedSignatureFails() {
        let kp = Ed25519.KeyPair.generate()
        let msg = Array("turf".utf8)
        var sig = kp.sign(msg)
        #expect(Ed25519.verify(signature: sig, message: msg, publicKey: kp.publicKey))
        sig[10] ^= 1
        #expect(!Ed25519.verify(signature: sig, message: msg, publicKey: kp.publicKey))
        #expect(!Ed25519.verify(signature: [1, 2], message: msg, publicKey: kp.publicKey))
    }

    /// The converted keys agree: DH between two identities' X25519 keys works both ways, and the
    /// public conversion matches the public half of the secret conversion.
    @Test func conversionToX25519() throws {
        let a = Ed25519.KeyPair.generate()
        let b = Ed25519.KeyPair.generate()
        let ax = try a.x25519()
        let bx = try b.x25519()
        #expect(try Ed25519.x25519PublicKey(from: a.publicKey) == ax.publicKey)
        #expect(try Ed25519.x25519PublicKey(from: b.publicKey) == bx.publicKey)
        let s1 = try X25519.sharedSecret(
            secretKey: ax.secretKey,
            publicKey: try Ed25519.x25519PublicKey(from: b.publicKey)
        )
        let s2 = try X25519.sharedSecret(
            secretKey: bx.secretKey,
            publicKey: try Ed25519.x25519PublicKey(from: a.publicKey)
        )
        #expect(s1.bytes == s2.bytes)
    }

    @Test func invalidEdPublicKeyIsRejected() {
        // y = 2 is not on the curve.
        var bad = [UInt8](repeating: 0, count: 32)
        bad[0] = 2
        #expect(throws: SodiumError.invalidPublicKey) { _ = try Ed25519.x25519PublicKey(from: bad) }
    }
}

@Suite struct ChaChaPolyTests {
    // Cross-checked with an independent implementation (Python `cryptography`).
    @Test func knownAnswer() {
        let key = (0..<32).map { UInt8($0) }
        let ct = ChaChaPoly.seal(key: key, counter: 0, ad: Array("ad".utf8), plaintext: Array("hello turf".utf8))
        #expect(hexString(ct) == "70dd2e5dc2c6d2a461073ae851574cf52837eece74f579772236")
        #expect(ChaChaPoly.open(key: key, counter: 0, ad: Array("ad".utf8), ciphertext: ct) == Array("hello turf".utf8))
    }

    @Test func tamperingAndWrongNonceFail() {
        let key = Sodium.randomBytes(32)
        let pt = Sodium.randomBytes(100)
        let ct = ChaChaPoly.seal(key: key, counter: 7, ad: [1], plaintext: pt)
        #expect(ct.count == 116)
        #expect(ChaChaPoly.open(key: key, counter: 7, ad: [1], ciphertext: ct) == pt)
        #expect(ChaChaPoly.open(key: key, counter: 8, ad: [1], ciphertext: ct) == nil)
        #expect(ChaChaPoly.open(key: key, counter: 7, ad: [2], ciphertext: ct) == nil)
        for i in [0, 50, 99, 100, 115] {
            var bad = ct
            bad[i] ^= 0x80
            #expect(ChaChaPoly.open(key: key, counter: 7, ad: [1], ciphertext: bad) == nil)
        }
        #expect(ChaChaPoly.open(key: key, counter: 7, ad: [1], ciphertext: Array(ct[0..<15])) == nil)
        var out: [UInt8] = [9, 9]
        #expect(!ChaChaPoly.open(key: key, counter: 8, ad: [1], ciphertext: ct, appendingTo: &out))
        #expect(out == [9, 9])
    }

    @Test func explicitNonceRoundTrip() {
        let key = SecretBytes.random(32)
        let nonce = Sodium.randomBytes(12)
        let ct = ChaChaPoly.seal(key: key, nonce: nonce, ad: [UInt8](), plaintext: [1, 2, 3])
        #expect(ChaChaPoly.open(key: key, nonce: nonce, ad: [UInt8](), ciphertext: ct) == [1, 2, 3])
        #expect(ChaChaPoly.open(key: key, nonce: Sodium.randomBytes(12), ad: [UInt8](), ciphertext: ct) == nil)
    }
}

@Suite struct BLAKE2bTests {
    @Test func knownAnswers() throws {
        #expect(
            hexString(try BLAKE2b.hash([UInt8]()))
                == "786a02f742015903c6c6fd852552d272912f4740e15847618a86e217f71f5419d25e1031afee585313896444934eb04b903a685b1448b755d56f701afe9be2ce"
        )
        #expect(
            hexString(try BLAKE2b.hash(Array("abc".utf8)))
                == "ba80a53f981c4d0d6a2797b69f12f6e94c212f14685ac4b74b12bb6fdbffa2d17d87c5392aab792dc252d5de4533cc9518d38aa8dbf1925ab92386edd4009923"
        )
        #expect(
            BLAKE2b.hash(concatenating: [Array("a".utf8), Array("bc".utf8)]) == (try BLAKE2b.hash(Array("abc".utf8)))
        )
    }

    @Test func variableOutputAndKey() throws {
        let h16 = try BLAKE2b.hash(Array("abc".utf8), outputLength: 16)
        let h32 = try BLAKE2b.hash(Array("abc".utf8), outputLength: 32)
        #expect(h16.count == 16 && h32.count == 32)
        // The output length is a parameter of the hash, not a truncation.
        #expect(Array(h32[0..<16]) != h16)
        let keyed = try BLAKE2b.hash(Array("abc".utf8), outputLength: 32, key: [1, 2, 3])
        #expect(keyed != h32)
        #expect(throws: SodiumError.self) { _ = try BLAKE2b.hash([UInt8](), outputLength: 65) }
        #expect(throws: SodiumError.self) { _ = try BLAKE2b.hash([UInt8](), outputLength: 8) }
        #expect(throws: SodiumError.self) { _ = try BLAKE2b.hash([UInt8](), key: [UInt8](repeating: 0, count: 65)) }
    }

    /// The non-throwing form gives the throwing form's bytes for every fixed length, keyed or not.
    @Test(arguments: BLAKE2b.Length.allCases)
    func fixedLengthsMatchTheThrowingForm(length: BLAKE2b.Length) throws {
        let data = Array("turf".utf8)
        let key = [UInt8](repeating: 9, count: 32)
        #expect(BLAKE2b.hash(data, length: length) == (try BLAKE2b.hash(data, outputLength: length.rawValue)))
        #expect(
            BLAKE2b.hash(data, length: length, key: key)
                == (try BLAKE2b.hash(data, outputLength: length.rawValue, key: key))
        )
        #expect(BLAKE2b.hash(data, length: length).count == length.rawValue)
    }

    /// A key over 64 bytes is replaced by its 64-byte hash instead of failing.
    @Test func longKeysAreHashedFirst() throws {
        let long = [UInt8](repeating: 5, count: 100)
        let viaHash = try BLAKE2b.hash(Array("abc".utf8), outputLength: 32, key: try BLAKE2b.hash(long))
        #expect(BLAKE2b.hash(Array("abc".utf8), length: .bytes32, key: long) == viaHash)
        let exactly64 = [UInt8](repeating: 5, count: 64)
        #expect(
            BLAKE2b.hash(Array("abc".utf8), length: .bytes32, key: exactly64)
                == (try BLAKE2b.hash(Array("abc".utf8), outputLength: 32, key: exactly64))
        )
    }
}

@Suite struct SodiumUtilityTests {
    @Test func constantTimeCompare() {
        #expect(Sodium.constantTimeEqual([1, 2, 3], [1, 2, 3]))
        #expect(!Sodium.constantTimeEqual([1, 2, 3], [1, 2, 4]))
        #expect(!Sodium.constantTimeEqual([1, 2, 3], [1, 2]))
        #expect(Sodium.constantTimeEqual([UInt8](), [UInt8]()))
    }

    @Test func randomBytesDiffer() {
        let a = Sodium.randomBytes(32)
        let b = Sodium.randomBytes(32)
        #expect(a.count == 32 && a != b)
        #expect(Sodium.randomBytes(0).isEmpty)
        #expect((0..<100).allSatisfy { _ in Sodium.randomUniform(10) < 10 })
    }

    @Test func secretBytesCopiesAndWipe() {
        let s = SecretBytes(copying: [5, 6, 7])
        #expect(s.bytes == [5, 6, 7])
        var plain: [UInt8] = [1, 2, 3]
        Sodium.wipe(&plain)
        #expect(plain == [0, 0, 0])
    }
}

/// The injectable randomness of the network components (`RandomSource`).
@Suite struct RandomSourceTests {
    /// One seed, one stream; another seed, another; the system source is not repeatable.
    @Test func seededSourcesRepeatAndSystemSourcesDoNot() {
        let a = RandomSource.seeded(7)
        let b = RandomSource.seeded(7)
        let c = RandomSource.seeded(8)
        let drawsA = (0..<4).map { _ in a.bytes(16) }
        #expect(drawsA == (0..<4).map { _ in b.bytes(16) })
        #expect(Set(drawsA).count == 4)
        #expect(c.bytes(16) != drawsA[0])
        #expect(RandomSource.seeded(9).x25519KeyPair().publicKey == RandomSource.seeded(9).x25519KeyPair().publicKey)
        #expect((0..<1000).allSatisfy { _ in a.uniform(10) < 10 })
        #expect(RandomSource.system().bytes(32) != RandomSource.system().bytes(32))
        #expect(!RandomSource.system().isSeeded && a.isSeeded)
    }
}
