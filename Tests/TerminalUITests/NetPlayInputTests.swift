import TerminalUI
import Testing
import TurfRules

/// The keys of the networked lobby and match, and the headless start rule: what the seam between
/// the runtime and the screens (turf's NetPlayUI) decides without a terminal.
@Suite struct NetPlayInputTests {
    func view(_ role: LobbyView.Role, players: Int, phase: LobbyView.Phase = .waiting) -> LobbyView {
        LobbyView(
            role: role,
            phase: phase,
            ownKey: "turf1me",
            mapName: "dojo",
            matchSeconds: 60,
            roster: (0..<players).map { RosterRow(name: "p\($0)", key: "turf1k\($0)", isHost: $0 == 0) }
        )
    }

    @Test func aHostsEnterWaitsForAFriend() {
        var input = NetLobbyInput()
        #expect(input.handle(.enter, view: view(.host, players: 1)) == nil)
        #expect(input.notice?.contains("once a friend has joined") == true)
        #expect(input.handle(.enter, view: view(.host, players: 2)) == .start)
        #expect(input.notice == nil)
    }

    @Test func aJoinersEnterStartsNothingAndQOrEscapeLeaves() {
        var input = NetLobbyInput()
        #expect(input.handle(.enter, view: view(.joiner, players: 3)) == nil)
        #expect(input.handle(.char("q"), view: view(.joiner, players: 3)) == .leave)
        #expect(input.handle(.escape, view: view(.host, players: 1)) == .leave)
    }

    @Test func aJoinerPicksTheHighlightedLobby() {
        let lobbies = (0..<3).map {
            LobbyListing(hostKey: "turf1host\($0)", hostName: "h\($0)", players: 1, maxPlayers: 8, passphrase: false)
        }
        let v = view(.joiner, players: 0, phase: .choosing(lobbies))
        var input = NetLobbyInput()
        #expect(input.handle(.down, view: v) == nil)
        #expect(input.handle(.down, view: v) == nil)
        #expect(input.handle(.down, view: v) == nil)  // stays on the last
        #expect(input.handle(.up, view: v) == nil)
        #expect(input.handle(.enter, view: v) == .pick(hostKey: "turf1host1"))
    }

    @Test func matchKeysSteerOrLeave() {
        #expect(NetMatchKey(.up) == .steer(.up))
        #expect(NetMatchKey(.char("a")) == .steer(.left))
        #expect(NetMatchKey(.char("l")) == .steer(.right))
        #expect(NetMatchKey(.char("q")) == .leave)
        #expect(NetMatchKey(.escape) == .leave)
        #expect(NetMatchKey(.resize) == .redraw)
        // No pause in a shared match.
        #expect(NetMatchKey(.char("p")) == nil)
        #expect(NetMatchKey(.char(" ")) == nil)
    }

    @Test func theHeadlessHostStartsAtStartWhen() {
        #expect(view(.host, players: 1).startAction(startWhen: 2) == nil)
        #expect(view(.host, players: 2).startAction(startWhen: 2) == .start)
        #expect(view(.host, players: 1).startAction(startWhen: 1) == .start)
        #expect(view(.host, players: 5).startAction(startWhen: nil) == nil)
        #expect(view(.joiner, players: 5).startAction(startWhen: 2) == nil)
        #expect(view(.host, players: 5, phase: .starting(secondsLeft: 1)).startAction(startWhen: 2) == nil)
    }
}
