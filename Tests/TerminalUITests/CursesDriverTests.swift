import TerminalUI
import Testing

/// The curses driver on a pseudo-terminal: what reaches the terminal when a screen with hostile
/// peer text is drawn. (One suite: curses is process-wide state.)
@Suite(.serialized) struct CursesDriverTests {
    @Test func hostileNamesReachTheTerminalEscaped() throws {
        let term = try CursesTerminal(pseudoTerminalColumns: 80, rows: 24, wantColor: false, unicode: true)
        let evil = "\u{1B}]0;pwned\u{07}\u{1B}[2J" + String(repeating: "\u{0301}", count: 10_000)
        var view = LobbyView(
            role: .host,
            topic: "t",
            ownKey: "turf1abc",
            mapName: "Dojo",
            matchSeconds: 90,
            roster: [
                RosterRow(name: "alice", key: "turf1abc", isHost: true, isYou: true),
                RosterRow(name: evil, key: "turf1evil", pingMs: 12, path: .direct),
            ]
        )
        let screen = LobbyScreen(theme: term.theme)
        term.draw(screen.render(view, width: 80, height: 24))
        view.roster[1].pingMs = 13
        term.draw(screen.render(view, width: 80, height: 24))
        term.stop()
        let out = term.pseudoTerminalOutput
        let text = String(decoding: out, as: UTF8.self)
        #expect(term.pseudoTerminalBytes == Int64(out.count))
        #expect(text.contains("\\x1b]0;pwned\\x07\\"))
        // The name's own escape sequences never reach the terminal; no combining mark either.
        #expect(!text.contains("\u{1B}]0;pwned"))
        #expect(!text.unicodeScalars.contains("\u{0301}"))
        #expect(!out.contains(0x07))
        #expect(text.contains("12 ms") && text.contains("direct"))
    }
}
