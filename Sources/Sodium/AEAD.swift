import CSodium

/// ChaCha20-Poly1305, IETF variant (96-bit nonce), as Noise's `ChaChaPoly` cipher uses it.
public enum ChaChaPoly {
    public static let keyLength = 32
    public static let nonceLength = 12
    public static let tagLength = 16

    /// Noise's nonce encoding: 32 bits of zeros followed by the little-endian 64-bit counter.
    @inline(__always)
    static func withNoiseNonce<R>(_ counter: UInt64, _ body: (UnsafePointer<UInt8>) -> R) -> R {
        // Three 32-bit words are laid out contiguously: 12 bytes, no padding.
        var words: (UInt32, UInt32, UInt32) = (
            0, UInt32(truncatingIfNeeded: counter).littleEndian,
            UInt32(truncatingIfNeeded: counter >> 32).littleEndian
        )
        // `!`: a tuple of words is never empty, so its bytes have an address.
        return withUnsafeBytes(of: &words) { body($0.baseAddress!.assumingMemoryBound(to: UInt8.self)) }
    }

    /// Encrypts `plaintext` with associated data `ad`, appending ciphertext and tag to `out`.
    /// `key` must be 32 bytes. `ad` must not be a copy of `out` itself: in release builds of
    /// Swift 6.3 such a copy was seen to follow `out`'s growth, authenticating the wrong bytes.
    /// To authenticate a header already in the buffer, use `sealAppending(key:counter:plaintext:to:)`.
    public static func seal<K: ContiguousBytes, A: ContiguousBytes, P: ContiguousBytes>(
        key: K,
        counter: UInt64,
        ad: A,
        plaintext: P,
        appendingTo out: inout [UInt8]
    ) {
        let start = out.count
        let n = plaintext.withBytes { $0.count }
        out.append(contentsOf: repeatElement(0, count: n + tagLength))
        out.withUnsafeMutableBytes { po in
            key.withBytes { pk in
                precondition(pk.count == keyLength, "ChaChaPoly key must be 32 bytes")
                ad.withBytes { pa in
                    plaintext.withBytes { pp in
                        withNoiseNonce(counter) { nonce in
                            _ = crypto_aead_chacha20poly1305_ietf_encrypt(
                                u8(po) + start,
                                nil,
                                u8(pp),
                                UInt64(pp.count),
                                u8(pa),
                                UInt64(pa.count),
                                nil,
                                nonce,
                                u8(pk)
                            )
                        }
                    }
                }
            }
        }
    }

    /// Low level, for packet paths that manage their own buffers: encrypts `plaintext` with `ad`
    /// into `output`, which must have room for `plaintext.count + 16` bytes.
    @inline(__always)
    public static func seal(
        key: SecretBytes,
        counter: UInt64,
        ad: UnsafeRawBufferPointer,
        plaintext: UnsafeRawBufferPointer,
        output: UnsafeMutableRawPointer
    ) {
        precondition(key.count == keyLength, "ChaChaPoly key must be 32 bytes")
        key.withBytes { pk in
            withNoiseNonce(counter) { nonce in
                _ = crypto_aead_chacha20poly1305_ietf_encrypt(
                    output.assumingMemoryBound(to: UInt8.self),
                    nil,
                    u8(plaintext),
                    UInt64(plaintext.count),
                    u8(ad),
                    UInt64(ad.count),
                    nil,
                    nonce,
                    u8(pk)
                )
            }
        }
    }

    /// Low level: authenticates and decrypts `ciphertext` (with its tag) into `output`, which must
    /// have room for `ciphertext.count - 16` bytes. False if it does not authenticate.
    @inline(__always)
    public static func open(
        key: SecretBytes,
        counter: UInt64,
        ad: UnsafeRawBufferPointer,
        ciphertext: UnsafeRawBufferPointer,
        output: UnsafeMutableRawPointer
    ) -> Bool {
        guard ciphertext.count >= tagLength, key.count == keyLength else { return false }
        return key.withBytes { pk in
            withNoiseNonce(counter) { nonce in
                crypto_aead_chacha20poly1305_ietf_decrypt(
                    output.assumingMemoryBound(to: UInt8.self),
                    nil,
                    nil,
                    u8(ciphertext),
                    UInt64(ciphertext.count),
                    u8(ad),
                    UInt64(ad.count),
                    nonce,
                    u8(pk)
                ) == 0
            }
        }
    }

    /// Appends the ciphertext and tag of `plaintext` to `packet`, authenticating the bytes already
    /// in `packet` (a cleartext header) as associated data. One buffer, no copy of the header.
    public static func sealAppending<K: ContiguousBytes, P: ContiguousBytes>(
        key: K,
        counter: UInt64,
        plaintext: P,
        to packet: inout [UInt8]
    ) {
        let adLength = packet.count
        let n = plaintext.withBytes { $0.count }
        packet.append(contentsOf: repeatElement(0, count: n + tagLength))
        packet.withUnsafeMutableBytes { po in
            let base = u8(po)
            key.withBytes { pk in
                precondition(pk.count == keyLength, "ChaChaPoly key must be 32 bytes")
                plaintext.withBytes { pp in
                    withNoiseNonce(counter) { nonce in
                        _ = crypto_aead_chacha20poly1305_ietf_encrypt(
                            base + adLength,
                            nil,
                            u8(pp),
                            UInt64(pp.count),
                            base,
                            UInt64(adLength),
                            nil,
                            nonce,
                            u8(pk)
                        )
                    }
                }
            }
        }
    }

    /// Opens a packet whose first `headerLength` bytes are the associated data and whose rest is
    /// ciphertext and tag, appending the plaintext to `out`. False if it does not authenticate.
    public static func openPacket<K: ContiguousBytes>(
        key: K,
        counter: UInt64,
        packet: [UInt8],
        headerLength: Int,
        appendingTo out: inout [UInt8]
    ) -> Bool {
        let n = packet.count - headerLength
        guard headerLength >= 0, n >= tagLength, key.withBytes({ $0.count }) == keyLength else { return false }
        let start = out.count
        out.append(contentsOf: repeatElement(0, count: n - tagLength))
        let rc: Int32 = out.withUnsafeMutableBytes { po in
            packet.withUnsafeBytes { pc in
                key.withBytes { pk in
                    withNoiseNonce(counter) { nonce in
                        crypto_aead_chacha20poly1305_ietf_decrypt(
                            u8(po) + start,
                            nil,
                            nil,
                            u8(pc) + headerLength,
                            UInt64(n),
                            u8(pc),
                            UInt64(headerLength),
                            nonce,
                            u8(pk)
                        )
                    }
                }
            }
        }
        if rc != 0 {
            out.removeLast(n - tagLength)
            return false
        }
        return true
    }

    /// Encrypts `plaintext`, returning ciphertext followed by the 16-byte tag.
    public static func seal<K: ContiguousBytes, A: ContiguousBytes, P: ContiguousBytes>(
        key: K,
        counter: UInt64,
        ad: A,
        plaintext: P
    ) -> [UInt8] {
        var out: [UInt8] = []
        out.reserveCapacity(plaintext.withBytes { $0.count } + tagLength)
        seal(key: key, counter: counter, ad: ad, plaintext: plaintext, appendingTo: &out)
        return out
    }

    /// Decrypts and authenticates `ciphertext` (which ends with the tag), appending the plaintext
    /// to `out`. Returns false, leaving `out` as it was, when authentication fails.
    @discardableResult
    public static func open<K: ContiguousBytes, A: ContiguousBytes, C: ContiguousBytes>(
        key: K,
        counter: UInt64,
        ad: A,
        ciphertext: C,
        appendingTo out: inout [UInt8]
    ) -> Bool {
        let n = ciphertext.withBytes { $0.count }
        guard n >= tagLength else { return false }
        let start = out.count
        out.append(contentsOf: repeatElement(0, count: n - tagLength))
        let rc: Int32 = out.withUnsafeMutableBytes { po in
            key.withBytes { pk in
                guard pk.count == keyLength else { return -1 }
                return ad.withBytes { pa in
                    ciphertext.withBytes { pc in
                        withNoiseNonce(counter) { nonce in
                            crypto_aead_chacha20poly1305_ietf_decrypt(
                                u8(po) + start,
                                nil,
                                nil,
                                u8(pc),
                                UInt64(pc.count),
                                u8(pa),
                                UInt64(pa.count),
                                nonce,
                                u8(pk)
                            )
                        }
                    }
                }
            }
        }
        if rc != 0 {
            out.removeLast(n - tagLength)
            return false
        }
        return true
    }

    /// Decrypts and authenticates; nil when the tag does not verify.
    public static func open<K: ContiguousBytes, A: ContiguousBytes, C: ContiguousBytes>(
        key: K,
        counter: UInt64,
        ad: A,
        ciphertext: C
    ) -> [UInt8]? {
        var out: [UInt8] = []
        return open(key: key, counter: counter, ad: ad, ciphertext: ciphertext, appendingTo: &out) ? out : nil
    }

    /// Seals with an arbitrary 12-byte nonce (used for cookie replies, whose nonce is random).
    public static func seal<K: ContiguousBytes, A: ContiguousBytes, P: ContiguousBytes>(
        key: K,
        nonce: [UInt8],
        ad: A,
        plaintext: P
    ) -> [UInt8] {
        precondition(nonce.count == nonceLength, "ChaChaPoly nonce must be 12 bytes")
        let n = plaintext.withBytes { $0.count }
        var out = [UInt8](repeating: 0, count: n + tagLength)
        out.withUnsafeMutableBytes { po in
            key.withBytes { pk in
                precondition(pk.count == keyLength, "ChaChaPoly key must be 32 bytes")
                ad.withBytes { pa in
                    plaintext.withBytes { pp in
                        nonce.withUnsafeBytes { pn in
                            _ = crypto_aead_chacha20poly1305_ietf_encrypt(
                                u8(po),
                                nil,
                                u8(pp),
                                UInt64(pp.count),
                                u8(pa),
                                UInt64(pa.count),
                                nil,
                                u8(pn),
                                u8(pk)
                            )
                        }
                    }
                }
            }
        }
        return out
    }

    public static func open<K: ContiguousBytes, A: ContiguousBytes, C: ContiguousBytes>(
        key: K,
        nonce: [UInt8],
        ad: A,
        ciphertext: C
    ) -> [UInt8]? {
        let n = ciphertext.withBytes { $0.count }
        guard n >= tagLength, nonce.count == nonceLength, key.withBytes({ $0.count }) == keyLength else { return nil }
        var out = [UInt8](repeating: 0, count: n - tagLength)
        let rc: Int32 = out.withUnsafeMutableBytes { po in
            key.withBytes { pk in
                ad.withBytes { pa in
                    ciphertext.withBytes { pc in
                        nonce.withUnsafeBytes { pn in
                            crypto_aead_chacha20poly1305_ietf_decrypt(
                                u8(po),
                                nil,
                                nil,
                                u8(pc),
                                UInt64(pc.count),
                                u8(pa),
                                UInt64(pa.count),
                                u8(pn),
                                u8(pk)
                            )
                        }
                    }
                }
            }
        }
        return rc == 0 ? out : nil
    }
}
