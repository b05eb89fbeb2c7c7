import Bencode
import DHT
import Lobby
import NetCore
import Testing
import Transport

@Suite struct LobbyRecordTests {
    let key = Identity.generate().publicKey

    @Test func recordRoundTripsThroughBencode() throws {
        let r = LobbyRecord(
            version: 1,
            addresses: [
                PeerAddress(192, 168, 1, 20, port: 6881), PeerAddress(127, 0, 0, 1, port: 40000),
                try #require(PeerAddress("[2001:db8:5::20]:6881")),
            ],
            passphrase: true,
            players: 3,
            topic: "friday-night"
        )
        let back = try #require(LobbyRecord(try Bencode.decode(Bencode.encode(r.value))))
        #expect(back == r)
        #expect(Bencode.encode(r.value).count <= DHTItem.maxValueSize)
    }

    @Test func hostileRecordsAreRefused() {
        let ok: [(String, BValue)] = [
            ("a", .bytes([127, 0, 0, 1, 0, 80])), ("n", .int(1)), ("p", .int(0)), ("t", .string("x")), ("v", .int(1)),
        ]
        #expect(LobbyRecord(.dictionary(ok)) != nil)
        func with(_ k: String, _ v: BValue) -> BValue { .dictionary(ok.filter { $0.0 != k } + [(k, v)]) }
        #expect(LobbyRecord(with("a", .bytes([1, 2, 3]))) == nil)  // not whole addresses
        #expect(LobbyRecord(with("a", .bytes([UInt8](repeating: 1, count: 6 * 17)))) == nil)  // too many
        #expect(LobbyRecord(with("a6", .bytes([UInt8](repeating: 1, count: 17)))) == nil)  // not whole IPv6
        #expect(LobbyRecord(with("a6", .int(1))) == nil)
        #expect(LobbyRecord(with("a6", .bytes([UInt8](repeating: 1, count: 18 * 16)))) == nil)  // 17 in all
        #expect(LobbyRecord(with("a6", .bytes([UInt8](repeating: 0x20, count: 18))))?.addresses.count == 2)
        #expect(LobbyRecord(with("t", .bytes([0xFF, 0xFE]))) == nil)  // not UTF-8
        #expect(LobbyRecord(with("t", .bytes([UInt8](repeating: 65, count: 201)))) == nil)  // too long
        #expect(LobbyRecord(with("v", .string("1"))) == nil)
        #expect(LobbyRecord(.list([])) == nil)
    }

    /// `r`: the lobby's members that relay for others (docs/nat.md, "Players relay for each
    /// other"). Either family, at most 4; a reader drops a malformed `r` and keeps the record.
    @Test func memberRelaysRoundTripAndHostileOnesAreDropped() throws {
        let relays = [
            PeerAddress(198, 51, 100, 21, port: 40_000), try #require(PeerAddress("[2001:db8:7::2]:6881")),
            PeerAddress(203, 0, 113, 50, port: 1),
        ]
        let r = LobbyRecord(
            version: 3,
            addresses: [PeerAddress(192, 0, 2, 1, port: 9)],
            passphrase: false,
            players: 2,
            topic: "t",
            relays: relays + relays
        )  // more than 4: the first 4 kept
        #expect(r.relays.count == LobbyRecord.maxRelays)
        let back = try #require(LobbyRecord(try Bencode.decode(Bencode.encode(r.value))))
        #expect(back == r)
        #expect(Array(back.relays.prefix(3)) == relays)
        // Without relays, no `r` at all: what an older host writes, and what an older reader reads.
        let plain = LobbyRecord(version: 3, addresses: [], passphrase: false, players: 1, topic: "t")
        #expect(plain.value["r"] == nil)
        #expect(LobbyRecord(plain.value)?.relays == [])

        let ok: [(String, BValue)] = [
            ("a", .bytes([127, 0, 0, 1, 0, 80])), ("n", .int(1)), ("p", .int(0)), ("t", .string("x")), ("v", .int(1)),
        ]
        func relaysOf(_ v: BValue) -> [PeerAddress]? { LobbyRecord(.dictionary(ok + [("r", v)]))?.relays }
        let one: [UInt8] = [6, 198, 51, 100, 21, 0x9C, 0x40]
        #expect(relaysOf(.bytes(one)) == [PeerAddress(198, 51, 100, 21, port: 40_000)])
        let hostile: [BValue] = [
            .int(5), .list([.bytes(one)]), .string("relay"),
            .bytes([7] + one.dropFirst()),  // a size that is neither 6 nor 18
            .bytes(Array(one.dropLast())),  // cut short
            .bytes(one + [6]),  // a size with nothing after it
            .bytes([UInt8](repeating: 0, count: 0) + [18] + [UInt8](repeating: 0x20, count: 17)),  // short IPv6
            .bytes(Array([[UInt8]](repeating: one, count: 5).joined())),  // 5 relays
            .bytes([6, 198, 51, 100, 21, 0, 0]),  // port 0
            .bytes([6, 0, 0, 0, 0, 0x1A, 0xE1]),  // 0.0.0.0
            .bytes([UInt8](repeating: 6, count: 100_000)),  // far too long
        ]
        for v in hostile {
            // The record still parses (r is only a hint), without relays.
            #expect(relaysOf(v) == [], "\(v)")
        }
    }

    @Test func invitesRoundTripAndRefuseGarbage() throws {
        let i = Invite(
            key: key,
            topic: "friday night ☕.",
            addresses: [
                PeerAddress(10, 0, 0, 2, port: 1234), PeerAddress(127, 0, 0, 1, port: 9),
                try #require(PeerAddress("[2001:db8::2]:1234")),
            ]
        )
        #expect(Invite(text: i.text) == i)
        #expect(!i.text.contains(" "))
        for bad in [
            "", "turf-invite1.", "turf-invite1.\(key.text).zz.127.0.0.1:1", "turf-invite1.\(key.text).41.",
            "turf-invite1.turf1nope.41.127.0.0.1:1", "turf-invite2.\(key.text).41.127.0.0.1:1",
            "turf-invite1.\(key.text).41." + String(repeating: "127.0.0.1:1,", count: 17),
        ] {
            #expect(Invite(text: bad) == nil, "\(bad)")
        }
    }
}
