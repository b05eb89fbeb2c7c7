import TerminalUI
import Testing

/// The start screen's menu (keys in, an action out) and its drawing at 80×24, in ASCII.
@Suite struct StartMenuTests {
    func menu() -> StartMenu { StartMenu(settings: .init(name: "ann", topic: "friday", target: "bob")) }

    func type(_ text: String, into m: inout StartMenu) {
        for c in text { _ = m.handle(.char(c)) }
    }

    @Test func movesWithArrowsAndLettersAndWraps() {
        var m = menu()
        #expect(m.selected == 0)
        _ = m.handle(.up)
        #expect(m.selected == StartMenu.mainItems.count - 1)
        _ = m.handle(.char("j"))
        _ = m.handle(.down)
        #expect(m.selected == 1)
        _ = m.handle(.end)
        #expect(m.selected == 5)
        #expect(m.handle(.enter) == .quit)
        var fresh = menu()
        #expect(fresh.handle(.char("q")) == .quit)
        #expect(fresh.handle(.escape) == .quit)
    }

    @Test func everyChoiceEndsInItsAction() {
        var m = menu()
        #expect(m.handle(.char("1")) == .playBots)
        #expect(m.handle(.char("4")) == .replays)
        // Host: the remembered topic is offered, and can be replaced.
        #expect(m.handle(.char("2")) == .none)
        #expect(m.page == .editing(.hostTopic) && m.text == "friday")
        for _ in 0..<6 { _ = m.handle(.backspace) }
        type("lan party", into: &m)
        #expect(m.handle(.enter) == .host(topic: "lan party"))
        #expect(m.settings.topic == "lan party" && m.page == .main)
        // Join by topic, and by a friend's name / key / invite.
        _ = m.handle(.char("3"))
        #expect(m.page == .join)
        #expect(m.handle(.char("1")) == .none)
        #expect(m.handle(.enter) == .joinTopic("lan party"))
        _ = m.handle(.char("2"))
        #expect(m.page == .editing(.joinTarget) && m.text == "bob")
        #expect(m.handle(.enter) == .join("bob"))
        // Back from the join page with Esc; Esc in a field cancels it.
        #expect(m.handle(.escape) == .none)
        #expect(m.page == .main)
        _ = m.handle(.char("2"))
        type("x", into: &m)
        #expect(m.handle(.escape) == .none)
        #expect(m.page == .main && m.settings.topic == "lan party")
    }

    @Test func settingsChangeAndAskToBeSaved() {
        var m = menu()
        _ = m.handle(.char("5"))
        #expect(m.page == .settings)
        #expect(m.handle(.char("2")) == .saveSettings)
        #expect(m.settings.color == false)
        #expect(m.handle(.char("3")) == .saveSettings)
        #expect(m.settings.ascii == true)
        _ = m.handle(.down)
        #expect(m.selected == 3)
        #expect(m.handle(.right) == .saveSettings && m.settings.bots == 4)
        #expect(m.handle(.left) == .saveSettings && m.settings.bots == 3)
        for _ in 0..<10 { _ = m.handle(.left) }
        #expect(m.settings.bots == StartMenu.Settings.botRange.lowerBound)
        // The name: empty is refused with a notice, long is cut.
        _ = m.handle(.char("1"))
        for _ in 0..<3 { _ = m.handle(.backspace) }
        #expect(m.handle(.enter) == .none)
        #expect(!m.notice.isEmpty && m.page == .editing(.name))
        type("Bartholomew the Great", into: &m)
        #expect(m.handle(.enter) == .saveSettings)
        #expect(m.settings.name == "Bartholomew ")
        #expect(m.handle(.char("q")) == .none && m.page == .main)
    }

    /// Typed or pasted control characters never enter a field (nothing typed can move the
    /// cursor); a field takes at most its byte limit.
    @Test func fieldsRefuseControlCharactersAndStayBounded() {
        var m = menu()
        _ = m.handle(.char("2"))
        for _ in 0..<6 { _ = m.handle(.backspace) }
        for c: Character in ["\u{1B}", "\u{7}", "\u{7F}", "\u{9B}", "a"] { _ = m.handle(.char(c)) }
        #expect(m.text == "a")
        type(String(repeating: "é", count: 300), into: &m)
        #expect(m.text.utf8.count <= StartMenu.Field.hostTopic.maxBytes)
        #expect(m.text.utf8.count >= StartMenu.Field.hostTopic.maxBytes - 1)
    }

    @Test func drawsAt80x24InASCIIAndSaysWhenTooSmall() {
        var m = menu()
        m.notice = "turf join ended with status 1: \u{1B}[2Jboom"
        let screen = StartScreen(theme: Theme(color: false, unicode: false))
        let text = screen.render(m, width: 80, height: 24).text
        for item in StartMenu.mainItems { #expect(text.contains(item)) }
        #expect(text.contains("playing as ann"))
        #expect(text.contains("up/down move"))
        #expect(text.unicodeScalars.allSatisfy { $0.isASCII && ($0.value >= 0x20 || $0 == "\n") }, "\(text)")
        #expect(text.split(separator: "\n").allSatisfy { $0.count <= 80 })
        _ = m.handle(.char("2"))
        let editing = screen.render(m, width: 80, height: 24).text
        #expect(editing.contains("Topic to host") && editing.contains("[friday_"))
        let small = screen.render(m, width: 30, height: 10).text
        #expect(small.contains("Terminal too small"))
    }
}
