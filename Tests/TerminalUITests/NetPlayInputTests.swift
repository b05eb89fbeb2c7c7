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
        let alone = input.handle(.enter, view: view(.host, players: 1))
        #expect(alone == nil)
        #expect(input.notice?.contains("once a friend has joined") == true)
        let two = input.handle(.enter, view: view(.host, players: 2))
        #expect(two == .start)
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

/// The list a joiner picks from when several lobbies share its topic.
@Suite struct LobbyChoicesTests {
    @Test func oneRowPerHostInAnswerOrderBounded() {
        var c = LobbyChoices()
        let first = c.answered(hostKey: "turf1b", pingMs: 3)
        let second = c.answered(hostKey: "turf1a")
        let again = c.answered(hostKey: "turf1b", pingMs: 1)  // the same host at another address
        #expect(first && second && !again)
        #expect(c.listings.map(\.hostKey) == ["turf1b", "turf1a"])
        #expect(c.listings[0].pingMs == 3)
        for i in 0..<20 { c.answered(hostKey: "turf1x\(i)") }
        #expect(c.listings.count == LobbyChoices.maxLobbies)
        #expect(c.isFull)
        let late = c.answered(hostKey: "turf1late")
        #expect(!late)
    }

    /// Lobbies found on the LAN (BEP 14 discovery) are listed first, each group in answer order,
    /// numbered in list order; a DHT lobby that also answers on the LAN moves up.
    @Test func lanLobbiesComeFirst() {
        var c = LobbyChoices()
        c.answered(hostKey: "turf1a")
        c.answered(hostKey: "turf1b", lan: true)
        c.answered(hostKey: "turf1c")
        c.answered(hostKey: "turf1d", lan: true)
        #expect(c.listings.map(\.hostKey) == ["turf1b", "turf1d", "turf1a", "turf1c"])
        #expect(c.listings.map(\.hostName) == ["lobby 1", "lobby 2", "lobby 3", "lobby 4"])
        #expect(c.listings.map(\.lan) == [true, true, false, false])
        let again = c.answered(hostKey: "turf1c", lan: true)
        #expect(!again)
        #expect(c.listings.map(\.hostKey) == ["turf1b", "turf1d", "turf1c", "turf1a"])
    }

    @Test func recordsFillPlayersAndPassphraseClamped() {
        var c = LobbyChoices()
        c.answered(hostKey: "turf1a")
        c.describe(hostKey: "turf1a", players: 5, passphrase: true)
        c.describe(hostKey: "turf1unknown", players: 3, passphrase: false)
        #expect(c.listings.count == 1)
        #expect(c.listings[0].players == 5 && c.listings[0].passphrase)
        c.describe(hostKey: "turf1a", players: 1_000_000, passphrase: false)
        #expect(c.listings[0].players == 8)
        c.describe(hostKey: "turf1a", players: -4, passphrase: false)
        #expect(c.listings[0].players == 1)
    }
}

/// The host kicks a member from the lobby screen (issue 17, part 6): ↑/↓ to the seat, k twice.
@Suite struct LobbyKickInputTests {
    func hostView(players: Int) -> LobbyView {
        LobbyView(
            role: .host,
            ownKey: "turf1k0",
            mapName: "dojo",
            matchSeconds: 60,
            roster: (0..<players).map {
                RosterRow(name: "p\($0)", key: "turf1k\($0)", isHost: $0 == 0, isYou: $0 == 0)
            }
        )
    }

    @Test func kTwiceOnASeatKicksItAndAnyOtherKeyCancels() {
        let v = hostView(players: 3)
        var input = NetLobbyInput()
        // The host's own seat cannot be kicked.
        #expect(input.handle(.char("k"), view: v) == nil)
        #expect(input.notice == nil)
        #expect(input.handle(.down, view: v) == nil)
        #expect(input.handle(.char("k"), view: v) == nil)
        #expect(input.notice?.contains("k again kicks p1") == true)
        #expect(input.handle(.down, view: v) == nil)  // cancels, and moves to p2
        #expect(input.notice == nil)
        #expect(input.handle(.char("k"), view: v) == nil)
        #expect(input.handle(.char("k"), view: v) == .kick(key: "turf1k2"))
        #expect(input.notice == nil)
        // Down stays on the last seat; up goes back (k is kick here, not up).
        #expect(input.handle(.down, view: v) == nil)
        #expect(input.handle(.up, view: v) == nil)
        #expect(input.handle(.char("k"), view: v) == nil)
        #expect(input.handle(.char("k"), view: v) == .kick(key: "turf1k1"))
    }

    @Test func aJoinerCannotKick() {
        var v = hostView(players: 3)
        v.role = .joiner
        var input = NetLobbyInput()
        _ = input.handle(.down, view: v)
        #expect(input.handle(.char("k"), view: v) == nil)
        #expect(input.handle(.char("k"), view: v) == nil)
    }

    @Test func theHighlightedSeatAndTheKickKeyShow() {
        let screen = LobbyScreen(theme: Theme(color: false, unicode: false))
        let f = screen.render(hostView(players: 2), selected: 1, width: 100, height: 24)
        #expect(f.text.contains("k: kick"))
    }
}
