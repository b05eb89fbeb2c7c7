import CSodium

/// Argon2id (`crypto_pwhash`): turns a human passphrase into a key slowly enough that guessing it
/// offline from a recorded handshake is expensive.
public enum PasswordHash {
    public static let saltLength = 16

    /// A `length`-byte key from `passphrase` and a 16-byte `salt`, with libsodium's "interactive"
    /// cost (about 64 MiB and a fraction of a second).
    public static func deriveKey(passphrase: [UInt8], salt: [UInt8], length: Int = 32) throws -> SecretBytes {
        guard salt.count == saltLength else {
            throw SodiumError.wrongLength(what: "password hash salt", expected: saltLength, got: salt.count)
        }
        Sodium.ensureInitialized()
        let out = SecretBytes(count: length)
        let rc = out.withMutableBytes { po in
            passphrase.withUnsafeBytes { pp in
                salt.withUnsafeBytes { ps in
                    pp.withMemoryRebound(to: CChar.self) { pc in
                        crypto_pwhash(
                            u8(po),
                            UInt64(length),
                            pc.baseAddress ?? UnsafePointer<CChar>(OpaquePointer(u8(ps))),
                            UInt64(passphrase.count),
                            u8(ps),
                            UInt64(crypto_pwhash_opslimit_interactive()),
                            crypto_pwhash_memlimit_interactive(),
                            crypto_pwhash_alg_argon2id13()
                        )
                    }
                }
            }
        }
        guard rc == 0 else { throw SodiumError.operationFailed("crypto_pwhash") }
        return out
    }
}
