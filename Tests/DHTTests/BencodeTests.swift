import Bencode
import Determinism
import Testing

@testable import DHT

@Suite struct BencodeTests {
    func b(_ s: String) -> [UInt8] { Array(s.utf8) }

    @Test func encodesCanonically() {
        let v = BValue.dictionary([
            ("zeta", .int(-3)), ("a", .list([.string("spam"), .int(0)])), ("m", .bytes([0, 255])),
        ])
        #expect(Bencode.encode(v) == b("d1:al4:spami0ee1:m2:\u{0}") + [255] + b("4:zetai-3ee"))
        // Unsorted input entries are sorted on output; the first of duplicate keys wins.
        let raw = BValue.dict([
            BEntry(key: b("b"), value: .int(1)), BEntry(key: b("a"), value: .int(2)),
            BEntry(key: b("b"), value: .int(3)),
        ])
        #expect(Bencode.encode(raw) == b("d1:ai2e1:bi1ee"))
    }

    @Test func roundTripsRandomValues() throws {
        var rng = SplitMix64(seed: 42)
        func random(_ depth: Int) -> BValue {
            switch rng.below(depth > 3 ? 2 : 4) {
            case 0: return .int(Int64(bitPattern: rng.next()) >> Int64(rng.below(64)))
            case 1: return .bytes((0..<rng.below(20)).map { _ in UInt8(truncatingIfNeeded: rng.next()) })
            case 2: return .list((0..<rng.below(5)).map { _ in random(depth + 1) })
            default:
                var pairs: [(String, BValue)] = []
                for _ in 0..<rng.below(5) { pairs.append(("k\(rng.below(10))", random(depth + 1))) }
                return .dictionary(pairs)
            }
        }
        for _ in 0..<500 {
            let v = random(0)
            let enc = Bencode.encode(v)
            #expect(try Bencode.decode(enc) == v)
            #expect(Bencode.encode(try Bencode.decode(enc)) == enc)
        }
    }

    @Test(arguments: [
        ("i03e", BencodeError.Kind.leadingZero, 1),
        ("i-0e", .negativeZero, 1),
        ("ie", .emptyInteger, 1),
        ("i-e", .emptyInteger, 2),
        ("i12", .truncated, 3),
        ("i1x2e", .unexpectedByte, 2),
        ("i99999999999999999999e", .integerOverflow, 1),
        ("03:abc", .leadingZero, 0),
        ("5:abc", .truncated, 2),
        ("d1:bi1e1:ai2ee", .unsortedKeys, 7),
        ("d1:ai1e1:ai2ee", .unsortedKeys, 7),
        ("di1ei2ee", .nonStringKey, 1),
        ("l", .truncated, 1),
        ("d1:a", .truncated, 4),
        ("i1ei2e", .trailingData, 3),
        ("x", .unexpectedByte, 0),
        ("", .truncated, 0),
        ("1:", .truncated, 2),
    ])
    func rejectsNonCanonicalAndBrokenInputPrecisely(input: String, kind: BencodeError.Kind, offset: Int) {
        do {
            let v = try Bencode.decode(Array(input.utf8))
            Issue.record("accepted \(input) as \(v)")
        } catch {
            #expect(error.kind == kind, "\(input): \(error)")
            #expect(error.offset == offset, "\(input): \(error)")
        }
    }

    @Test func enforcesLimits() {
        let limits = BencodeLimits(maxInput: 100, maxDepth: 3, maxString: 10, maxItems: 8)
        #expect(throws: BencodeError.self) {
            try Bencode.decode(
                Array(repeating: UInt8(ascii: "l"), count: 4) + Array(repeating: UInt8(ascii: "e"), count: 4),
                limits: limits
            )
        }
        #expect((try? Bencode.decode(b("llleee"), limits: limits)) != nil)
        do {
            _ = try Bencode.decode(b("11:abcdefghijk"), limits: limits)
            Issue.record("long string accepted")
        } catch {
            #expect(error.kind == .stringTooLong)
        }
        do {
            _ = try Bencode.decode(b("li1ei2ei3ei4ei5ei6ei7ei8ee"), limits: limits)
            Issue.record("too many items accepted")
        } catch {
            #expect(error.kind == .tooManyItems)
        }
        do {
            _ = try Bencode.decode([UInt8](repeating: 0x31, count: 101), limits: limits)
            Issue.record("long input accepted")
        } catch {
            #expect(error.kind == .inputTooLong)
        }
        // A huge declared length fails on the limit, not on allocation.
        do {
            _ = try Bencode.decode(b("99999999999999:x"))
            Issue.record("accepted")
        } catch {
            #expect(error.kind == .stringTooLong)
        }
        // Deep nesting is bounded: no stack overflow on 100,000 'l's.
        do {
            _ = try Bencode.decode([UInt8](repeating: UInt8(ascii: "l"), count: 60_000))
            Issue.record("accepted")
        } catch {
            #expect(error.kind == .tooDeep)
        }
    }

    @Test func hexHelpers() {
        #expect(hex([0x00, 0xAB, 0xFF]) == "00abff")
        #expect(unhex("00AbfF") == [0x00, 0xAB, 0xFF])
        #expect(unhex("abc") == nil)
        #expect(unhex("zz") == nil)
    }
}
