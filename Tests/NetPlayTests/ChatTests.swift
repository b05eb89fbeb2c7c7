import Determinism
import Keys
import Lobby
import NetPlay
import Testing
import TextOutput

@Suite struct LobbyChatTests {
    /// The chat events a side saw.
    static func lines(_ events: [LobbyHost.Event]) -> [(PeerKey, String, String)] {
        events.compactMap { if case .chat(let k, let n, let t) = $0 { (k, n, t) } else { nil } }
    }

    static func lines(_ events: [LobbyJoiner.Event]?) -> [(PeerKey, String, String)] {
        (events ?? []).compactMap { if case .chat(let k, let n, let t) = $0 { (k, n, t) } else { nil } }
    }

    @Test func aLineIsRelayedToEveryoneWithItsSendersKeyAndNameTheHostsToo() throws {
        var room = try LobbyRoom(players: 3)
        room.connect(1)
        room.connect(2)
        room.joiners[1]!.say("hello from p1")
        room.deliver()
        room.host.say("welcome")
        room.deliver()
        let host = Self.lines(room.hostEvents)
        #expect(host.map(\.0) == [room.key(1), room.key(0)])
        #expect(host.map(\.2) == ["hello from p1", "welcome"])
        // Every member sees both, in the host's order, its own line echoed by the host.
        for i in 1...2 {
            let seen = Self.lines(room.joinerEvents[i])
            #expect(seen.map(\.0) == [room.key(1), room.key(0)], "joiner \(i)")
            #expect(seen.map(\.1) == ["p1", "host"], "joiner \(i)")
            #expect(seen.map(\.2) == ["hello from p1", "welcome"], "joiner \(i)")
        }
    }

    @Test func controlAndBidiCharactersAreEscapedWhereverTheLineIsShown() throws {
        var room = try LobbyRoom(players: 2)
        room.connect(1)
        let hostile = "\u{1b}[2J\u{1b}[H owned\r\n\u{202e}gnp.exe\u{2066}x\u{7f}\u{9b}"
        room.joiners[1]!.say(hostile)
        room.deliver()
        let shown = Self.lines(room.hostEvents).map(\.2) + Self.lines(room.joinerEvents[1]).map(\.2)
        #expect(shown.count == 2)
        for text in shown {
            #expect(SafeText.isClean(text), "\(text.unicodeScalars.map { $0.value })")
            #expect(text.contains("\\x1b[2J") && text.contains("\\u{202e}") && text.contains("\\x0d\\x0a"))
            #expect(text.contains("\\u{2066}") && text.contains("\\x7f") && text.contains("\\x9b"))
        }
    }

    @Test func aFloodIsCutToTheSendersAllowanceAndCounted() throws {
        var room = try LobbyRoom(players: 3)
        room.connect(1)
        room.connect(2)
        for n in 0..<20 { room.joiners[1]!.say("spam \(n)") }
        room.joiners[2]!.say("still heard")
        room.deliver()
        // Five at once (the burst), the other fifteen dropped and counted; the other member's
        // allowance is its own.
        let relayed = Self.lines(room.hostEvents)
        #expect(relayed.filter { $0.0 == room.key(1) }.map(\.2) == (0..<5).map { "spam \($0)" })
        #expect(relayed.contains { $0.0 == room.key(2) && $0.2 == "still heard" })
        #expect(room.host.chatDropped == 15)
        #expect(Self.lines(room.joinerEvents[2]).count == 6)
        // Two seconds later, two more lines.
        room.now += 2_000_000_000
        for n in 0..<4 { room.joiners[1]!.say("later \(n)") }
        room.deliver()
        #expect(Self.lines(room.hostEvents).filter { $0.2.hasPrefix("later") }.count == 2)
        #expect(room.host.chatDropped == 17)
    }

    @Test func anOversizedLineIsRefusedAndAnyLineIsCutToTheLimitBeforeItIsSent() throws {
        var room = try LobbyRoom(players: 2)
        room.connect(1)
        // 201 bytes on the wire: malformed, dropped and counted, nothing relayed.
        var w = ByteWriter()
        w.u8(LobbyMessage.protocolVersion)
        w.u8(14)
        w.string(String(repeating: "x", count: LobbyMessage.maxChatBytes + 1))
        #expect(throws: LobbyError.self) { try LobbyMessage.decode(w.bytes) }
        room.host.handle(.message(101, bytes: w.bytes), now: room.now)
        // An empty line is malformed too.
        room.host.handle(.message(101, bytes: [LobbyMessage.protocolVersion, 14, 0]), now: room.now)
        #expect(room.host.dropped == 2)
        room.deliver()
        #expect(Self.lines(room.hostEvents).isEmpty)
        // What the player types is cut to whole characters within 200 bytes (4-byte emoji: 50).
        room.joiners[1]!.say(String(repeating: "🎉", count: 80))
        room.deliver()
        let line = try #require(Self.lines(room.hostEvents).first?.2)
        #expect(line == String(repeating: "🎉", count: 50))
        #expect(NetPlayChat.bounded(String(repeating: "é", count: 150)).utf8.count == 200)
    }

    @Test func spectatorsAndStrangersDoNotChatAndARelayFromAnUnknownKeyIsDropped() throws {
        var room = try LobbyRoom(players: 3)
        room.connect(1)
        room.connect(2, spectate: true)
        room.joiners[2]!.say("a spectator speaks")  // not even sent
        room.host.handle(.message(102, bytes: LobbyMessage.chat("forced").encode()), now: room.now)
        room.deliver()
        #expect(Self.lines(room.hostEvents).isEmpty)
        #expect(room.host.dropped == 1)
        // A relay naming a key no roster showed: dropped by the member.
        let stranger = Fixture.keyPairs(9)[8].publicKey
        room.joiners[1]!.handle(
            .message(1, bytes: LobbyMessage.chatRelay(key: stranger, text: "boo").encode()),
            now: room.now
        )
        #expect(room.joiners[1]!.dropped == 1)
        #expect(Self.lines(room.joiners[1]!.take().events).isEmpty)
    }
}
