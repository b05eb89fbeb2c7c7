import Sodium

/// Noise's HASH, HMAC and HKDF over BLAKE2b (HASHLEN 64, BLOCKLEN 128).
enum NoiseHash {
    static let hashLength = 64
    static let blockLength = 128

    static func hash(_ parts: [UInt8]...) -> [UInt8] { BLAKE2b.hash(concatenating: parts) }

    /// HMAC (RFC 2104) with BLAKE2b.
    static func hmac(key: [UInt8], _ data: [UInt8]...) -> [UInt8] {
        var k = key.count > blockLength ? hash(key) : key
        k += [UInt8](repeating: 0, count: blockLength - k.count)
        var inner = k.map { $0 ^ 0x36 }
        var outer = k.map { $0 ^ 0x5c }
        for d in data { inner += d }
        let innerHash = BLAKE2b.hash(concatenating: [inner])
        outer += innerHash
        let result = BLAKE2b.hash(concatenating: [outer])
        Sodium.wipe(&k)
        Sodium.wipe(&inner)
        Sodium.wipe(&outer)
        return result
    }

    /// HKDF as Noise defines it: two or three 64-byte outputs.
    static func hkdf(chainingKey: [UInt8], inputKeyMaterial ikm: [UInt8], outputs: Int) -> [[UInt8]] {
        var tempKey = hmac(key: chainingKey, ikm)
        let o1 = hmac(key: tempKey, [0x01])
        let o2 = hmac(key: tempKey, o1, [0x02])
        var result = [o1, o2]
        if outputs == 3 { result.append(hmac(key: tempKey, o2, [0x03])) }
        Sodium.wipe(&tempKey)
        return result
    }
}

/// Noise's CipherState: a ChaChaPoly key (or none) and a 64-bit nonce counter.
public struct CipherState {
    public private(set) var key: SecretBytes?
    public private(set) var nonce: UInt64 = 0

    public init(key: SecretBytes? = nil) { self.key = key }

    public var hasKey: Bool { key != nil }

    mutating func initializeKey(_ k: SecretBytes?) {
        key = k
        nonce = 0
    }

    public mutating func encrypt(ad: [UInt8], plaintext: [UInt8]) throws -> [UInt8] {
        guard let key else { return plaintext }
        guard nonce != UInt64.max else { throw NoiseError.nonceExhausted }
        let ct = ChaChaPoly.seal(key: key, counter: nonce, ad: ad, plaintext: plaintext)
        nonce += 1
        return ct
    }

    public mutating func decrypt(ad: [UInt8], ciphertext: [UInt8]) throws -> [UInt8] {
        guard let key else { return ciphertext }
        guard nonce != UInt64.max else { throw NoiseError.nonceExhausted }
        guard let pt = ChaChaPoly.open(key: key, counter: nonce, ad: ad, ciphertext: ciphertext) else {
            throw NoiseError.decryptionFailed
        }
        nonce += 1
        return pt
    }

    /// Noise's REKEY: the new key is the first 32 bytes of ENCRYPT(k, 2^64-1, empty, zeros).
    public mutating func rekey() {
        guard let key else { return }
        self.key = CipherState.rekeyed(key)
    }

    /// REKEY(k) as a function, for transports that keep their own keys and counters.
    public static func rekeyed(_ key: SecretBytes) -> SecretBytes {
        var out = ChaChaPoly.seal(
            key: key,
            counter: UInt64.max,
            ad: [UInt8](),
            plaintext: [UInt8](repeating: 0, count: 32)
        )
        defer { Sodium.wipe(&out) }
        return SecretBytes(copying: out[0..<32])
    }
}

/// Noise's SymmetricState: chaining key, handshake hash, and the current cipher.
struct SymmetricState {
    private(set) var chainingKey: [UInt8]
    private(set) var handshakeHash: [UInt8]
    private(set) var cipher = CipherState()

    init(protocolName: String) {
        let name = Array(protocolName.utf8)
        if name.count <= NoiseHash.hashLength {
            handshakeHash = name + [UInt8](repeating: 0, count: NoiseHash.hashLength - name.count)
        } else {
            handshakeHash = NoiseHash.hash(name)
        }
        chainingKey = handshakeHash
    }

    mutating func mixKey(_ ikm: [UInt8]) {
        let out = NoiseHash.hkdf(chainingKey: chainingKey, inputKeyMaterial: ikm, outputs: 2)
        Sodium.wipe(&chainingKey)
        chainingKey = out[0]
        cipher.initializeKey(SecretBytes(copying: out[1][0..<32]))
    }

    mutating func mixHash(_ data: [UInt8]) {
        handshakeHash = NoiseHash.hash(handshakeHash, data)
    }

    mutating func mixKeyAndHash(_ ikm: [UInt8]) {
        let out = NoiseHash.hkdf(chainingKey: chainingKey, inputKeyMaterial: ikm, outputs: 3)
        Sodium.wipe(&chainingKey)
        chainingKey = out[0]
        mixHash(out[1])
        cipher.initializeKey(SecretBytes(copying: out[2][0..<32]))
    }

    mutating func encryptAndHash(_ plaintext: [UInt8]) throws -> [UInt8] {
        let ct = try cipher.encrypt(ad: handshakeHash, plaintext: plaintext)
        mixHash(ct)
        return ct
    }

    mutating func decryptAndHash(_ ciphertext: [UInt8]) throws -> [UInt8] {
        let pt = try cipher.decrypt(ad: handshakeHash, ciphertext: ciphertext)
        mixHash(ciphertext)
        return pt
    }

    var hasKey: Bool { cipher.hasKey }

    mutating func split() -> (CipherState, CipherState) {
        let out = NoiseHash.hkdf(chainingKey: chainingKey, inputKeyMaterial: [], outputs: 2)
        Sodium.wipe(&chainingKey)
        return (
            CipherState(key: SecretBytes(copying: out[0][0..<32])),
            CipherState(key: SecretBytes(copying: out[1][0..<32]))
        )
    }
}
