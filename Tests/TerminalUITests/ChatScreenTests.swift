import Engine
import Testing
import TextOutput
import TurfRules

@testable import TerminalUI

/// The chat on the lobby and end screens, the rematch on the end screen, and their keys: peers'
/// lines stay on their own row, escaped and cut, whatever they hold.
@Suite struct ChatScreenTests {
    let screens = NetScreenTests()

    func chat(_ texts: [String]) -> [ChatLine] {
        texts.enumerated().map {
            ChatLine(
                name: "p\($0.offset)",
                key: "turf1" + String(repeating: "k", count: 52) + "\($0.offset)",
                text: $0.element
            )
        }
    }

    @Test func theLobbyShowsTheLastLinesOneRowEachHostileOnesEscaped() {
        var v = screens.lobby()
        v.chat = chat(
            ["first", "second"] + NetScreenTests.hostile + ["hi \u{1b}[2J\u{1b}[H\r\nthere\u{202e}", "last"]
        )
        let f = LobbyScreen(theme: Theme(color: false, unicode: true)).render(v, width: 80, height: 24)
        let r = screens.rows(f)
        // The last four lines, in order, just above the notice line; nothing else moved.
        let shown = (17...20).map { r[$0] }
        #expect(shown[3].hasPrefix(" p\(v.chat.count - 1) turf1kkkk") && shown[3].contains(": last"), "\(shown)")
        #expect(shown[2].contains(": hi \\x1b[2J\\x1b[H\\x0d\\x0athere\\u{202e}"), "\(shown)")
        #expect(!r.joined().contains("first") && !r.joined().contains("second"))
        #expect(r[23].contains("c: chat"))
        #expect(r.count == 24 && r.allSatisfy { $0.count == 80 })
        screens.expectSafeCells(f)
        // The input line, with a cursor mark; the footer says how to send.
        v.chatInput = "gg wp"
        let typing = screens.rows(
            LobbyScreen(theme: Theme(color: false, unicode: true)).render(v, width: 80, height: 24)
        )
        #expect(typing[22].contains("say: gg wp_"))
        #expect(typing[23].contains("Enter: send · Esc: cancel"))
    }

    @Test func theEndScreenShowsTheTallyTheRematchAndTheChat() throws {
        let (scene, _) = try screens.match(names: ["alice", "bob"])
        var after = AfterMatchView(
            role: .member,
            match: 2,
            tally: [
                .init(name: "alice", key: "turf1a", wins: 1), .init(name: "b\u{1b}[31mob", key: "turf1b", wins: 1),
            ],
            ties: 0,
            rematch: .offeredToYou(match: 3),
            chat: chat(["gg", String(repeating: "\u{1b}[2J", count: 300)])
        )
        func render(_ a: AfterMatchView) -> Frame {
            NetEndScreen(theme: Theme(color: false, unicode: true)).render(
                world: scene.world,
                config: scene.config,
                history: TerritoryHistory(),
                focus: 0,
                summary: NetEndSummary(finalHash: "0123456789abcdef", replayPath: "/tmp/x.turfreplay"),
                footer: NetEndInput.footer(a, chatting: a.chatInput != nil),
                after: a,
                width: 100,
                height: 30
            )
        }
        let f = render(after)
        let text = f.text
        #expect(text.contains("series (2 matches) alice 1 · b\\x1b[31mob 1"), "\(text)")
        #expect(text.contains("the host offers a rematch (match 3): y plays again, q leaves"))
        #expect(text.contains(": gg"))
        #expect(screens.rows(f)[29].contains("y: play again · c: chat · q: quit"))
        #expect(text.contains("final hash 0123456789abcdef"))
        screens.expectSafeCells(f)
        after.role = .host
        after.rematch = .offered(match: 3, waitingFor: ["bob"])
        after.chatInput = "hello"
        let g = render(after)
        #expect(g.text.contains("rematch (match 3) offered: waiting for bob"))
        #expect(g.text.contains("say: hello_"))
        #expect(screens.rows(g)[29].contains("Enter: send · Esc: cancel"))
    }

    @Test func theChatInputTakesEveryKeyUntilEnterOrEscAndNeverAControlCharacter() {
        var input = NetLobbyInput()
        let v = screens.lobby()
        #expect(input.handle(.char("c"), view: v) == nil)
        #expect(input.chat.isOpen)
        for c in "quit k" { #expect(input.handle(.char(c), view: v) == nil) }
        #expect(input.handle(.char("\u{1b}"), view: v) == nil)
        #expect(input.handle(.char("\u{202e}"), view: v) == nil)
        #expect(input.handle(.backspace, view: v) == nil)
        #expect(input.chat.text == "quit ")
        #expect(input.handle(.enter, view: v) == .chat("quit "))
        #expect(!input.chat.isOpen)
        // Esc cancels; a blank line is not sent; q leaves again once it is closed.
        _ = input.handle(.char("c"), view: v)
        _ = input.handle(.char("x"), view: v)
        #expect(input.handle(.escape, view: v) == nil)
        _ = input.handle(.char("c"), view: v)
        _ = input.handle(.char(" "), view: v)
        #expect(input.handle(.enter, view: v) == nil)
        #expect(input.handle(.char("q"), view: v) == .leave)
        // At most 200 bytes.
        var long = ChatInput()
        long.open()
        for _ in 0..<150 { _ = long.handle(.char("é")) }
        #expect(long.text?.utf8.count == 200)
    }

    @Test func endScreenKeysOfferAcceptChatAndLeave() {
        var input = NetEndInput()
        let host = AfterMatchView(role: .host, match: 1, rematch: .canOffer(match: 2))
        #expect(input.handle(.char("r"), view: host) == .rematch)
        #expect(input.handle(.char("y"), view: host) == nil)
        let member = AfterMatchView(role: .member, match: 1, rematch: .offeredToYou(match: 2))
        #expect(input.handle(.char("r"), view: member) == nil)
        #expect(input.handle(.char("y"), view: member) == .accept)
        #expect(input.handle(.char("c"), view: member) == nil)
        for c in "gg" { _ = input.handle(.char(c), view: member) }
        #expect(input.handle(.enter, view: member) == .chat("gg"))
        #expect(input.handle(.char("q"), view: member) == .leave)
        #expect(input.handle(.enter, view: member) == .leave)
        // Once the lobby is gone there is nobody to chat with.
        let over = AfterMatchView(role: .member, match: 1, rematch: .over("the host closed the lobby"))
        #expect(input.handle(.char("c"), view: over) == nil)
        #expect(!input.chat.isOpen)
        #expect(NetEndInput.footer(over, chatting: false) == " q: quit")
        #expect(NetEndInput.footer(host, chatting: false) == " r: rematch · c: chat · q: quit")
    }
}
