/// Draws the start screen (`StartMenu`) into a frame. Pure: no curses, no clock. Works at 80×24
/// and smaller (down to `minWidth`×`minHeight`), without colour and in ASCII; every text a player
/// typed or a file held is fitted and escaped with `CellText`.
public struct StartScreen: Sendable {
    public var theme: Theme
    public static let minWidth = 40
    public static let minHeight = 14

    public init(theme: Theme) { self.theme = theme }

    var ascii: Bool { !theme.unicode }

    public func render(_ m: StartMenu, width: Int, height: Int) -> Frame {
        var f = Frame(width: width, height: height)
        guard width >= Self.minWidth && height >= Self.minHeight else {
            f.put("Terminal too small: \(width)x\(height)", x: 0, y: 0)
            f.put("The menu needs \(Self.minWidth)x\(Self.minHeight). q quits.", x: 0, y: 1)
            return f
        }
        let hud = Style(color: Palette.hud, bold: true, reverse: !theme.color)
        f.fill(x: 0, y: 0, width: width, height: 1, style: Style(color: Palette.hud, reverse: !theme.color))
        f.put(" turf", x: 0, y: 0, style: hud)
        let who = "playing as "
        let nameRoom = min(StartMenu.Settings.maxName, max(0, width - 8 - who.count))
        let x0 = width - who.count - nameRoom - 1
        f.put(who, x: x0, y: 0, style: hud)
        f.putField(m.settings.name, x: x0 + who.count, y: 0, width: nameRoom, ascii: ascii, style: hud)

        let title: String
        switch m.page {
        case .main: title = "A territory game for the terminal, peer to peer."
        case .join: title = "Join a lobby"
        case .settings: title = "Settings (remembered)"
        case .editing(let field): title = field.prompt
        }
        f.putField(title, x: 2, y: 2, width: width - 4, ascii: ascii, style: Style(bold: true))

        if case .editing(let field) = m.page {
            drawField(m.text, field: field, into: &f, y: 4)
        } else {
            let marker = ascii ? ">" : "▸"
            for (i, item) in m.items.enumerated() {
                let y = 4 + i
                let chosen = i == m.selected
                let style = chosen ? Style(color: Palette.hud, bold: true, reverse: true) : Style.plain
                if chosen { f.put(marker, x: 2, y: y, style: Style(color: Palette.hud, bold: true)) }
                let label = "\(i + 1)  " + item
                f.putField(label, x: 4, y: y, width: width - 6, ascii: ascii, style: style)
            }
        }
        if !m.notice.isEmpty {
            f.putField(m.notice, x: 2, y: height - 3, width: width - 4, ascii: ascii, style: Style(color: Palette.hud))
        }
        f.putField(
            footer(m),
            x: 0,
            y: height - 1,
            width: width - 1,
            ascii: ascii,
            style: Style(color: Palette.hud, bold: true)
        )
        return f
    }

    /// The text being typed, on one line: its end when it is longer than the line.
    func drawField(_ text: String, field: StartMenu.Field, into f: inout Frame, y: Int) {
        let room = f.width - 6
        // Every typed character is at most a few cells once escaped: wide enough to keep the end.
        let cells = CellText.cells(text, width: min(1 << 14, text.unicodeScalars.count * 12 + 1), ascii: ascii)
        let shown = cells.suffix(room - 1)
        f.put(ascii ? "[" : "▏", x: 2, y: y, style: Style(dim: true))
        var x = 3
        for c in shown {
            f.putField(String(c), x: x, y: y, width: 1, ascii: ascii)
            x += 1
        }
        f.put("_", x: x, y: y, style: Style(bold: true))
        let hint: String
        switch field {
        case .joinTarget: hint = "A name from 'turf friends list', a turf1… key, or a turf-invite1.… invite."
        case .hostTopic, .joinTopic: hint = "Players who type the same topic find the same lobby."
        case .name: hint = "Up to \(StartMenu.Settings.maxName) characters; others see it in the lobby."
        }
        f.putField(hint, x: 2, y: y + 2, width: f.width - 4, ascii: ascii, style: Style(dim: true))
    }

    func footer(_ m: StartMenu) -> String {
        let (ud, lr, dot) = theme.unicode ? ("↑/↓", "←/→", "·") : ("up/down", "left/right", "-")
        switch m.page {
        case .main: return " \(ud) move \(dot) Enter choose \(dot) 1-6 \(dot) q quit"
        case .join: return " \(ud) move \(dot) Enter choose \(dot) Esc back"
        case .settings: return " \(ud) move \(dot) Enter change \(dot) \(lr) bots \(dot) Esc back"
        case .editing: return " type \(dot) Enter done \(dot) Backspace \(dot) Esc cancel"
        }
    }
}

extension CursesTerminal {
    /// Runs the start menu until the player chooses something to do (returned; `.saveSettings`
    /// is returned too, so the caller saves at once and calls again) or a signal asks turf to
    /// quit (`.quit`).
    public func runStartMenu(_ menu: inout StartMenu) -> StartMenu.Action {
        var dirty = true
        while true {
            if quitSignal != nil { return .quit }
            for key in readKeys() {
                if key == .resize {
                    invalidate()
                    dirty = true
                    continue
                }
                let action = menu.handle(key)
                dirty = true
                if action != .none { return action }
            }
            if dirty {
                let (w, h) = size
                draw(StartScreen(theme: theme).render(menu, width: w, height: h))
                dirty = false
            }
            wait(nanos: 50_000_000)
        }
    }
}
