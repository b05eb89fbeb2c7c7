import Lobby
import NetCore
import NetPlay
import Testing

/// Members that relay for others (docs/nat.md, "Players relay for each other"): a seated member
/// says so (`LobbyMessage.relayService`), and the host lists it (`memberRelays`: its lobby record's
/// `r`, and where it registers its lobby first). Anyone else saying it, or a member flipping it
/// without end, is dropped and counted.
@Suite struct MemberRelayLobbyTests {
    @Test func aSeatedMemberThatRelaysIsListedFirstAndOnlyWhileItSaysSo() throws {
        var room = try LobbyRoom(players: 4)
        room.connect(1)
        room.connect(2)
        _ = room.host.take()
        #expect(room.host.memberRelays.isEmpty)
        room.host.handle(.message(101, bytes: LobbyMessage.relayService(true).encode()), now: room.now)
        #expect(room.host.memberRelays == [Fixture.address(1)])
        #expect(room.host.take().events.contains(.recordChanged))
        // Said again: nothing changes, the record is not put again.
        room.host.handle(.message(101, bytes: LobbyMessage.relayService(true).encode()), now: room.now)
        #expect(!room.host.take().events.contains(.recordChanged))
        // A member the host reaches only through a relay is no relay for the lobby.
        room.host.moved(102, to: PeerAddress(ip: 5, port: 1), relayed: true)
        room.host.handle(.message(102, bytes: LobbyMessage.relayService(true).encode()), now: room.now)
        #expect(room.host.memberRelays == [Fixture.address(1)])
        // Taken back (its NAT turned random): off the list.
        room.host.handle(.message(101, bytes: LobbyMessage.relayService(false).encode()), now: room.now)
        #expect(room.host.memberRelays.isEmpty)
        #expect(room.host.dropped == 0)
    }

    @Test func strangersAndEndlessFlipsAreDroppedAndCounted() throws {
        var room = try LobbyRoom(players: 3)
        // A session with no hello yet (not seated) says it relays.
        room.host.handle(.opened(103, key: room.key(2), address: Fixture.address(2), relayed: false), now: 0)
        room.host.handle(.message(103, bytes: LobbyMessage.relayService(true).encode()), now: 0)
        #expect(room.host.dropped == 1)
        #expect(room.host.memberRelays.isEmpty)
        // A malformed flag.
        room.host.handle(.message(103, bytes: [LobbyMessage.protocolVersion, 16, 7]), now: 0)
        #expect(room.host.dropped == 2)
        // A seated member flipping: each change puts the record again, so past the bound it is dropped.
        room.connect(1)
        _ = room.host.take()
        for i in 0..<(LobbyHost.maxRelayServiceChanges + 4) {
            room.host.handle(.message(101, bytes: LobbyMessage.relayService(i % 2 == 0).encode()), now: room.now)
        }
        #expect(room.host.dropped == 2 + 4)
        let changes = room.host.take().events.filter { $0 == .recordChanged }.count
        #expect(changes == LobbyHost.maxRelayServiceChanges)
    }
}
