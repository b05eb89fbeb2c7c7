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
