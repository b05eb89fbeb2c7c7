import Determinism
import Testing

/// Regression values: replays, state hashes and fair tie-breaks depend on these exact outputs on
/// every machine, so any change to the generator or the hash must show up here first.
@Suite struct GoldenValueTests {
    @Test func splitMix64MatchesTheReferenceSequence() {
        // Seed 0's first output is the published SplitMix64 reference value 0xE220A8397B1DCDAF.
        var r = SplitMix64(seed: 0)
        #expect(r.next() == 0xE220_A839_7B1D_CDAF)
        #expect(r.next() == 7_960_286_522_194_355_700)
        #expect(r.next() == 487_617_019_471_545_679)
        var s = SplitMix64(seed: 42, stream: 7)
        #expect(
            (0..<3).map { _ in s.next() } == [
                16_048_371_878_293_047_674, 12_360_448_780_400_319_030, 6_187_756_640_478_855_738,
            ]
        )
    }

    @Test func boundedDrawsAreStable() {
        var r = SplitMix64(seed: 1_234_567)
        #expect((0..<8).map { _ in r.below(10) } == [3, 1, 5, 2, 8, 4, 5, 2])
        #expect(r.below(UInt64(1) << 63) == 4_037_932_687_950_419_352)
        #expect(r.unit() == 0.8186698919806352)
        var u = SplitMix64(seed: 5)
        for _ in 0..<1000 {
            let x = u.unit()
            #expect(x >= 0 && x < 1)
        }
    }

    @Test func stableHashIsStable() {
        #expect(StableHash.mix(0) == 0)
        #expect(StableHash.mix(1) == 6_238_072_747_940_578_789)
        #expect(StableHash.mix(.max) == 13_029_008_266_876_403_067)
        #expect(StableHash.combine(0, 0) == 16_294_208_416_658_607_535)
        #expect(StableHash.of(1, 2, 3) == 6_360_444_296_079_011_006)
        #expect(StableHash.of() == 2_611_923_443_488_327_891)
        #expect(StableHash.of(1, 2) != StableHash.of(2, 1))  // order-sensitive
        #expect(StableHash.bytes([UInt8]()) == 2_737_183_428_366_584_608)
        #expect(StableHash.bytes(Array("turf".utf8)) == 14_006_699_173_491_592_573)
        #expect(StableHash.bytes(Array(0..<20)) == 2_141_010_229_084_987_992)
        #expect(StableHash.string("turf", seed: 9) == 14_822_695_547_778_004_150)
        // Trailing zero bytes change the hash (the length is mixed in).
        #expect(StableHash.bytes([1, 0]) != StableHash.bytes([1]))
        #expect(StableHash.bytes([UInt8](repeating: 0, count: 8)) != StableHash.bytes([UInt8](repeating: 0, count: 16)))
    }
}

@Suite struct ByteCodecTests {
    @Test func fixedWidthAndVarintRoundTripAtTheExtremes() throws {
        var w = ByteWriter()
        let varints: [UInt64] = [0, 1, 127, 128, 16383, 16384, UInt64(UInt32.max), UInt64.max - 1, .max]
        w.u8(.max)
        w.u16(.max)
        w.u32(.max)
        w.u64(.max)
        w.u16(0x0102)
        for v in varints { w.varint(v) }
        w.string("")
        w.string("é✱")
        w.blob([])
        w.blob([0, 255])
        var r = ByteReader(w.bytes)
        #expect(try r.u8() == .max)
        #expect(try r.u16() == .max)
        #expect(try r.u32() == .max)
        #expect(try r.u64() == .max)
        #expect(try r.u16() == 0x0102)
        for v in varints { #expect(try r.varint() == v) }
        #expect(try r.string() == "")
        #expect(try r.string() == "é✱")
        #expect(try r.blob() == [])
        #expect(try r.blob() == [0, 255])
        #expect(r.isAtEnd)
        // Little-endian, and the longest varint is 10 bytes.
        var le = ByteWriter()
        le.u32(0x0403_0201)
        #expect(le.bytes == [1, 2, 3, 4])
        var big = ByteWriter()
        big.varint(.max)
        #expect(big.bytes == [0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0x01])
    }

    @Test func truncationIsAnErrorAtTheRightOffset() throws {
        var r = ByteReader([1, 2, 3])
        _ = try? r.u8()
        #expect(throws: ByteReadError(offset: 1, "truncated: u32 needs 4 bytes, 2 left")) { try r.u32() }
        #expect(r.offset == 1)  // a failed read consumes nothing
        #expect(throws: ByteReadError(offset: 1, "truncated: bytes needs 3 bytes, 2 left")) { try r.take(3) }
        // A varint whose continuation bit runs off the end: the offset is where the varint began.
        var v = ByteReader([7, 0x80, 0x80])
        _ = try? v.u8()
        #expect(throws: ByteReadError(offset: 1, "truncated: len (varint) runs past the end")) { try v.varint("len") }
        // `end` bounds a reader inside a larger buffer.
        var sub = ByteReader([1, 2, 3, 4, 5], offset: 1, end: 3)
        #expect(try sub.u16() == 0x0302)
        #expect(throws: ByteReadError(offset: 3, "truncated: byte needs 1 byte, 0 left")) { try sub.u8() }
        // A length prefix larger than what follows, or than the limit.
        var s = ByteReader([5, 0x61])
        #expect(throws: ByteReadError(offset: 1, "truncated: name needs 5 bytes, 1 left")) { try s.string("name") }
        var l = ByteReader([0x80, 0x01])
        #expect(throws: ByteReadError(offset: 0, "n 128 exceeds the limit 100")) { try l.count("n", limit: 100) }
        var bad = ByteReader([2, 0xC3, 0x28])
        #expect(throws: ByteReadError(offset: 1, "s is not valid UTF-8")) { try bad.string("s") }
    }

    @Test func overlongAndOverflowingVarintsAreRejected() throws {
        // Non-minimal encodings of 0 and 1: each value has one encoding only.
        for bytes: [UInt8] in [
            [0x80, 0x00], [0x81, 0x00], [0xFF, 0x80, 0x00],
            [0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x00],
        ] {
            var r = ByteReader([9] + bytes)
            _ = try? r.u8()
            #expect(throws: ByteReadError(offset: 1, "v: overlong varint (non-minimal encoding)")) { try r.varint("v") }
        }
        // More than 64 bits: a 10th byte above 1, or an 11th byte.
        var o = ByteReader([0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0x02])
        #expect(throws: ByteReadError(offset: 0, "v: varint overflows 64 bits")) { try o.varint("v") }
        var eleven = ByteReader([0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0x81, 0x00])
        #expect(throws: ByteReadError(offset: 0, "v: varint overflows 64 bits")) { try eleven.varint("v") }
        // A single zero byte is the one encoding of 0.
        var zero = ByteReader([0x00])
        #expect(try zero.varint() == 0)
        #expect(ByteReadError(offset: 12, "bad").description == "bad at byte 12")
    }
}
