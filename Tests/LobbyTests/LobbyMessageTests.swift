import Determinism
import Engine
import Keys
import Lobby
import NetCore
import Testing

@Suite struct LobbyMessageTests {
    let key = [UInt8](repeating: 7, count: 32)
    let commit = [UInt8](repeating: 9, count: 32)

    func config() -> MatchConfig {
        MatchConfig(
            gameID: "turf",
            seed: 42,
            tickRate: 30,
            lengthTicks: 90,
            checkpointInterval: 30,
            players: [
                PlayerInfo(name: "a", kind: .human, owner: PeerKey(bytes: key)),
                PlayerInfo(name: "b", kind: .bot, level: 1, owner: PeerKey(bytes: commit)),
            ],
            settings: [1, 2, 3]
        )
    }

    @Test func everyMessageRoundTrips() throws {
        let messages: [LobbyMessage] = [
            .hello(.init(name: "Bob", key: key, commit: commit, spectate: true)),
            .roster(
                .init(
                    members: [
                        .init(key: key, name: "Alice", commit: commit, path: .local),
                        .init(
                            key: commit,
                            name: "Bob",
                            commit: key,
                            path: .relayed,
                            addresses: [
                                PeerAddress(10, 0, 0, 1, port: 5), PeerAddress(127, 0, 0, 1, port: 9),
                                PeerAddress("[2001:db8::9]:7000")!,
                            ]
                        ),
                    ],
                    maxPlayers: 8
                )
            ),
            .settings(.init(map: "warren", seconds: 90)),
            .revealRequest,
            .reveal(commit),
            .start(.init(config: config(), startAt: 123_456_789, reveals: [key, commit])),
            .start(.init(config: config(), startAt: 1, reveals: [key, commit], match: 300)),
            .leave(.full),
            .ops([1, 2, 3]),
            .snapshot([4, 5]),
            .done([0: 12, 3: 4]),
            .settled,
            .rematchOffer(match: 2),
            .rematchAnswer(.accept(commit: commit)),
            .rematchAnswer(.decline),
            .chat("gg \u{1b}[31m wp"),
            .chat(String(repeating: "é", count: 100)),
            .chatRelay(key: key, text: "well played"),
            .leave(.noAnswer),
            .relayService(true),
            .relayService(false),
        ]
        for m in messages {
            #expect(try LobbyMessage.decode(m.encode()) == m)
        }
    }

    @Test func everyTruncationIsRefused() throws {
        let m = LobbyMessage.start(.init(config: config(), startAt: 1, reveals: [key, commit]))
        let bytes = m.encode()
        for n in 0..<bytes.count {
            #expect(throws: LobbyError.self) { try LobbyMessage.decode(Array(bytes.prefix(n))) }
        }
        #expect(throws: LobbyError.self) { try LobbyMessage.decode(bytes + [0]) }
    }

    @Test func hostileFieldsAreRefused() throws {
        // Another version, an unknown type, an oversized name, too many members, a bad path.
        #expect(throws: LobbyError.version(1)) { try LobbyMessage.decode([1, 1]) }
        #expect(throws: LobbyError.version(2)) { try LobbyMessage.decode([2, 1]) }
        #expect(throws: LobbyError.version(4)) { try LobbyMessage.decode([4, 1]) }
        #expect(throws: LobbyError.unknownType(99)) { try LobbyMessage.decode([3, 99]) }
        // Chat: empty, over 200 bytes, not UTF-8; a rematch for match 1, an unknown answer, an
        // accept without its commit.
        let v = LobbyMessage.protocolVersion
        for bad: [UInt8] in [
            [v, 14, 0], [v, 14, 0xC9, 0x01] + [UInt8](repeating: 0x61, count: 201), [v, 14, 2, 0xC3, 0x28],
            [v, 15] + key + [0], [v, 12, 1], [v, 12, 0], [v, 13, 2], [v, 13, 1] + [UInt8](repeating: 1, count: 31),
            [v, 11, 0],
            // The relay service flag: only 0 or 1, exactly one byte.
            [v, 16], [v, 16, 2], [v, 16, 0xFF], [v, 16, 1, 0],
        ] {
            #expect(throws: LobbyError.self) { try LobbyMessage.decode(bad) }
        }
        var w = ByteWriter()
        w.u8(LobbyMessage.protocolVersion)
        w.u8(1)
        w.string(String(repeating: "x", count: 49))
        w.bytes(key)
        w.bytes(commit)
        w.u8(0)
        #expect(throws: LobbyError.self) { try LobbyMessage.decode(w.bytes) }
        var r = ByteWriter()
        r.u8(LobbyMessage.protocolVersion)
        r.u8(2)
        r.u8(8)
        r.varint(9)
        #expect(throws: LobbyError.self) { try LobbyMessage.decode(r.bytes) }
        var p = ByteWriter()
        p.u8(LobbyMessage.protocolVersion)
        p.u8(2)
        p.u8(8)
        p.varint(1)
        p.bytes(key)
        p.string("a")
        p.bytes(commit)
        p.u8(7)
        #expect(throws: LobbyError.self) { try LobbyMessage.decode(p.bytes) }
        // A member address of a size that is neither IPv4's 6 nor IPv6's 18.
        var q = ByteWriter()
        q.u8(LobbyMessage.protocolVersion)
        q.u8(2)
        q.u8(8)
        q.varint(1)
        q.bytes(key)
        q.string("a")
        q.bytes(commit)
        q.u8(1)
        q.varint(1)
        q.u8(7)
        q.bytes([UInt8](repeating: 1, count: 7))
        #expect(throws: LobbyError.self) { try LobbyMessage.decode(q.bytes) }
        // A small message may not be huge; a snapshot may be up to maxSize, not more.
        #expect(throws: LobbyError.self) {
            try LobbyMessage.decode(
                [LobbyMessage.protocolVersion, 8] + [UInt8](repeating: 0, count: LobbyMessage.maxSmallSize)
            )
        }
        #expect(throws: LobbyError.self) {
            try LobbyMessage.decode(
                [LobbyMessage.protocolVersion, 9] + [UInt8](repeating: 0, count: LobbyMessage.maxSize)
            )
        }
        // A start whose reveals do not match the players.
        var s = ByteWriter()
        var c = ByteWriter()
        config().encode(into: &c)
        s.u8(LobbyMessage.protocolVersion)
        s.u8(6)
        s.blob(c.bytes)
        s.u64(0)
        s.varint(1)
        s.bytes(key)
        #expect(throws: LobbyError.self) { try LobbyMessage.decode(s.bytes) }
    }
}
