/// Draws the lobby of a networked match (`LobbyView`) into a frame. Pure: no curses, no clock.
///
/// The host sees its topic, key and invite (wrapped, never cut: it is for copying), the map and
/// match length, and the roster; Enter starts. A joiner sees the same roster and "waiting for the
/// host", or, when several lobbies share its topic, a list to pick one from (`selected` is the
/// highlighted row). Every name and key is fitted with `CellText`.
public struct LobbyScreen: Sendable {
    public var theme: Theme
    public static let minWidth = 40
    public static let minHeight = 12

    public init(theme: Theme) { self.theme = theme }

    var ascii: Bool { !theme.unicode }

    public func render(_ v: LobbyView, selected: Int = 0, width: Int, height: Int) -> Frame {
        var f = Frame(width: width, height: height)
        guard width >= LobbyScreen.minWidth && height >= LobbyScreen.minHeight else {
            f.put("Terminal too small: \(width)x\(height)", x: 0, y: 0)
            f.put("The lobby needs \(LobbyScreen.minWidth)x\(LobbyScreen.minHeight).", x: 0, y: 1)
            f.put(v.role == .host ? "Enter starts, q leaves." : "q leaves.", x: 0, y: 2)
            return f
        }
        drawTitle(v, into: &f)
        var y = 2
        y = drawIdentity(v, into: &f, y: y)
        y += 1
        switch v.phase {
        case .searching(let detail):
            f.putField("Looking for lobbies: " + detail, x: 1, y: y, width: width - 2, ascii: ascii)
        case .choosing(let lobbies):
            drawChoices(lobbies, selected: selected, into: &f, y: y)
        case .failed(let reason):
            f.putField(reason, x: 1, y: y, width: width - 2, ascii: ascii, style: Style(bold: true))
        case .waiting, .starting, .started:
            // The host's highlighted seat (↑/↓), the one k kicks.
            drawRoster(
                v,
                seat: v.role == .host && v.phase == .waiting && v.roster.count > 1 ? selected : nil,
                into: &f,
                y: y
            )
        }
        drawChat(v, into: &f)
        if !v.notice.isEmpty {
            f.putField(v.notice, x: 1, y: height - 3, width: width - 2, ascii: ascii, style: Style(color: Palette.hud))
        }
        f.putField(
            footer(v),
            x: 0,
            y: height - 1,
            width: width - 1,
            ascii: ascii,
            style: Style(color: Palette.hud, bold: true)
        )
        return f
    }

    func drawTitle(_ v: LobbyView, into f: inout Frame) {
        f.fill(x: 0, y: 0, width: f.width, height: 1, style: Style(color: Palette.hud, reverse: !theme.color))
        let hud = Style(color: Palette.hud, bold: true, reverse: !theme.color)
        var x = f.put(" turf lobby", x: 0, y: 0, style: hud)
        if let topic = v.topic {
            x = f.put(" · topic ", x: x, y: 0, style: hud)
            x = f.putField(topic, x: x, y: 0, width: max(0, f.width - x - 12), ascii: ascii, style: hud)
        }
        let role = v.role == .host ? "you host " : v.inLobby ? "you joined " : "joining "
        if f.width - role.count > x + 1 { f.put(role, x: f.width - role.count, y: 0, style: hud) }
    }

    /// Key, invite (both wrapped so they can be copied whole), map and length. Returns the next row.
    func drawIdentity(_ v: LobbyView, into f: inout Frame, y start: Int) -> Int {
        var y = start
        let label = 12
        let room = max(1, f.width - label - 1)
        func wrapped(_ name: String, _ text: String, maxRows: Int) {
            f.put(name, x: 1, y: y, style: Style(bold: true))
            var cells = CellText.cells(text, width: room * maxRows, ascii: ascii)[...]
            repeat {
                let line = cells.prefix(room)
                f.putField(String(line), x: label, y: y, width: room, ascii: ascii)
                cells = cells.dropFirst(room)
                y += 1
            } while !cells.isEmpty
        }
        wrapped("Your key", v.ownKey, maxRows: 2)
        if let invite = v.invite { wrapped("Invite", invite, maxRows: 4) }
        // A joiner still looking for (or choosing) a lobby knows no match settings yet.
        guard v.inLobby else { return y }
        f.put("Match", x: 1, y: y, style: Style(bold: true))
        let length = ArenaRenderer.clock(v.matchSeconds, rate: 1)
        var x = f.putField(v.mapName, x: label, y: y, width: min(24, room), ascii: ascii)
        let rest = " · \(length) · up to \(v.maxPlayers) players · passphrase \(v.passphrase ? "yes" : "no")"
        x = f.putField(rest, x: x, y: y, width: max(0, f.width - x - 1), ascii: ascii)
        return y + 1
    }

    /// Roster columns: name, key fingerprint, ping, path, state (wide screens); name, ping, and path
    /// or "lost" (narrow ones, under 72 columns).
    struct Columns {
        var name = 3, key: Int?, ping: Int, path: Int, state: Int?
        init(width: Int) {
            if width >= 72 {
                (key, ping, path, state) = (22, 40, 49, 59)
            } else {
                (key, ping, path, state) = (nil, width - 18, width - 9, nil)
            }
        }
        var nameWidth: Int { (key ?? ping) - name - 1 }
    }

    func drawRoster(_ v: LobbyView, seat: Int? = nil, into f: inout Frame, y start: Int) {
        var y = start
        let c = Columns(width: f.width)
        let head = Style(bold: true, dim: true)
        f.put("Players \(v.roster.count)/\(v.maxPlayers)", x: 1, y: y, style: Style(bold: true))
        if v.rejectedJoins > 0 {
            f.put("  wrong passphrase: \(v.rejectedJoins)", x: 1 + 12 + 3, y: y, style: Style(dim: true))
        }
        if let nat = v.nat {
            // Your own NAT, right-aligned: what punching can do from here (docs/nat.md); and
            // IPv6 (open, firewalled, none) where there is room.
            let short = "your NAT: " + String(nat.prefix(12))
            let long = short + (v.ipv6.map { " · IPv6: " + String($0.prefix(10)) } ?? "")
            // And whether this machine relays for others (docs/nat.md), shorter where room is short.
            let state = v.relaying.map { $0 ? "on" : "off" }
            let longest = long + (state.map { " · relaying for others: " + $0 } ?? "")
            let relaying = short + (state.map { " · relaying: " + $0 } ?? "")
            for text in [longest, relaying, long, short] where f.width - text.count - 1 > 1 + 12 + 3 + 24 {
                f.put(text, x: f.width - text.count - 1, y: y, style: Style(dim: true))
                break
            }
        }
        y += 1
        f.put("name", x: c.name, y: y, style: head)
        if let k = c.key { f.put("key", x: k, y: y, style: head) }
        f.put("ping", x: c.ping, y: y, style: head)
        f.put("path", x: c.path, y: y, style: head)
        if let s = c.state { f.put("state", x: s, y: y, style: head) }
        y += 1
        let last = f.height - 4 - LobbyScreen.chatRows(v, height: f.height)
        for (i, row) in v.roster.enumerated() {
            if y > last {
                f.put("… \(v.roster.count - i) more", x: c.name, y: last, style: Style(dim: true))
                break
            }
            let style = Style(color: Palette.player(i), bold: row.isYou, reverse: i == seat, dim: !row.connected)
            if i == seat { f.fill(x: 1, y: y, width: f.width - 2, height: 1, style: Style(reverse: true)) }
            f.put(String(Theme.letter(i)), x: 1, y: y, style: style)
            var tags: [String] = []
            if row.isHost { tags.append("host") }
            if row.isYou { tags.append("you") }
            // A friend's label (the name you gave the key) names the key better than its
            // fingerprint: the row's name and label may run over the key column.
            if let friend = row.friend { tags.append("friend: " + CellText.fit(friend, width: 12, ascii: ascii)) }
            let tag = tags.isEmpty ? "" : " (" + tags.joined(separator: ", ") + ")"
            let room = row.friend != nil ? (c.key.map { c.ping - $0 } ?? 0) + c.nameWidth : c.nameWidth
            // The chosen name shows no brackets of its own (`RosterRow.chosen`): the label is turf's.
            let x = f.putField(
                RosterRow.chosen(row.name),
                x: c.name,
                y: y,
                width: max(min(6, room), room - tag.count),
                ascii: ascii,
                style: style
            )
            f.putField(
                tag,
                x: x,
                y: y,
                width: max(0, c.name + room - x),
                ascii: ascii,
                style: Style(bold: row.friend != nil, dim: row.friend == nil)
            )
            if let k = c.key, row.friend == nil {
                f.putField(LobbyScreen.fingerprint(row.key), x: k, y: y, width: c.ping - k - 1, ascii: ascii)
            }
            let ping = row.isYou ? "-" : row.pingMs.map { "\($0) ms" } ?? "…"
            f.putField(ping, x: c.ping, y: y, width: c.path - c.ping - 1, ascii: ascii)
            let path = row.isYou ? "-" : row.path?.rawValue ?? "…"
            if let s = c.state {
                f.put(path, x: c.path, y: y)
                var state = row.isYou ? "here" : row.connected ? "connected" : "disconnected"
                if let nat = row.natKind { state += " · " + nat }
                f.putField(state, x: s, y: y, width: f.width - s - 1, ascii: ascii, style: Style(bold: !row.connected))
            } else {
                f.put(row.connected ? path : "lost", x: c.path, y: y, style: Style(bold: !row.connected))
            }
            y += 1
        }
    }

    func drawChoices(_ lobbies: [LobbyListing], selected: Int, into f: inout Frame, y start: Int) {
        var y = start
        f.put("\(lobbies.count) lobbies share this topic: pick one", x: 1, y: y, style: Style(bold: true))
        y += 2
        let last = f.height - 4
        let rows = max(1, last - y + 1)
        let sel = lobbies.isEmpty ? 0 : min(max(0, selected), lobbies.count - 1)
        let first = max(0, min(sel - rows + 1, lobbies.count - rows))
        for i in first..<lobbies.count where y <= last {
            let l = lobbies[i]
            let mark = i == sel ? (theme.unicode ? "▶" : ">") : " "
            let style = Style(bold: i == sel, reverse: i == sel)
            f.fill(x: 1, y: y, width: f.width - 2, height: 1, style: style)
            f.put(mark, x: 1, y: y, style: style)
            var x = f.putField(l.hostName, x: 3, y: y, width: 16, ascii: ascii, style: style)
            x = max(x + 1, 20)
            if f.width >= 72 {
                x =
                    f.putField(LobbyScreen.fingerprint(l.hostKey), x: x, y: y, width: 17, ascii: ascii, style: style)
                    + 1
            }
            let info =
                (l.lan ? "LAN · " : "") + "\(l.players)/\(l.maxPlayers) players"
                + (l.pingMs.map { " · \($0) ms" } ?? "")
                + (l.passphrase ? " · passphrase" : "")
            f.putField(info, x: x, y: y, width: max(0, f.width - x - 2), ascii: ascii, style: style)
            y += 1
        }
    }

    /// Rows of chat shown above the notice line: the last few lines, while the screen has room.
    static func chatRows(_ v: LobbyView, height: Int) -> Int {
        guard v.phase == .waiting else { return 0 }
        return min(v.chat.count, 4, max(0, (height - LobbyScreen.minHeight) / 2))
    }

    /// The last lines of chat (each one row, escaped and fitted: a line never moves the cursor
    /// or scrolls), and the line being typed.
    func drawChat(_ v: LobbyView, into f: inout Frame) {
        let n = LobbyScreen.chatRows(v, height: f.height)
        for (i, line) in v.chat.suffix(n).enumerated() {
            f.putChat(line, x: 1, y: f.height - 3 - n + i, width: f.width - 2, ascii: ascii)
        }
        if let typed = v.chatInput, v.phase == .waiting {
            f.putInput(typed, y: f.height - 2, width: f.width, ascii: ascii)
        }
    }

    func footer(_ v: LobbyView) -> String {
        if v.chatInput != nil && v.phase == .waiting { return " Enter: send · Esc: cancel" }
        switch v.phase {
        case .searching: return " q: leave"
        case .choosing:
            return theme.unicode ? " ↑/↓: pick · Enter: join · q: leave" : " up/down: pick · Enter: join · q: leave"
        case .failed: return " q: quit"
        case .starting(let s): return " The match starts in \(max(0, s)) s…"
        case .started: return " The match starts now."
        case .waiting:
            return v.role == .host
                ? " Enter: start the match (\(v.roster.count) player\(v.roster.count == 1 ? "" : "s"))"
                    + (v.roster.count > 1 ? (theme.unicode ? " · ↑/↓ k: kick" : " · up/down k: kick") : "")
                    + " · c: chat · q: leave"
                : " Waiting for the host to start the match · c: chat · q: leave"
        }
    }

    /// A short, recognisable form of a `turf1…` key: its first and last characters.
    public static func fingerprint(_ key: String) -> String {
        let scalars = Array(key.unicodeScalars.prefix(256))
        guard scalars.count > 16 else { return key }
        return String(String.UnicodeScalarView(scalars.prefix(9))) + "…"
            + String(String.UnicodeScalarView(scalars.suffix(6)))
    }
}

/// The lobby's key handling, apart from curses so it can be tested: Enter starts (host) or joins
/// the highlighted lobby (joiner choosing), ↑/↓ (or k/j) move the highlight, q or Esc leaves. In
/// the host's lobby ↑/↓ (w/s, j) move over the roster's seats and k asks to kick the highlighted
/// member (`NetLobbyInput` makes it press k twice).
public struct LobbyController: Sendable {
    /// The highlighted lobby when choosing; the highlighted seat in the host's lobby.
    public private(set) var selected = 0

    public init() {}

    public mutating func handle(_ key: Key, view: LobbyView) -> LobbyAction? {
        var count = 0
        if case .choosing(let lobbies) = view.phase { count = lobbies.count }
        let seating = view.role == .host && view.phase == .waiting
        if seating { count = view.roster.count }
        selected = count == 0 ? 0 : min(selected, count - 1)
        switch key {
        case .char("q"), .char("Q"), .escape: return .leave
        case .char("k") where seating, .char("K") where seating:
            guard view.roster.indices.contains(selected), !view.roster[selected].isYou else { return nil }
            return .kick(key: view.roster[selected].key)
        case .up, .char("k"), .char("w"): selected = max(0, selected - 1)
        case .down, .char("j"), .char("s"): selected = count == 0 ? 0 : min(count - 1, selected + 1)
        case .enter:
            switch view.phase {
            case .choosing(let lobbies) where !lobbies.isEmpty: return .pick(hostKey: lobbies[selected].hostKey)
            case .waiting where view.role == .host: return .start
            default: break
            }
        default: break
        }
        return nil
    }
}

extension LobbyView {
    /// In a lobby (its roster and settings are known), not still looking for or choosing one.
    public var inLobby: Bool {
        switch phase {
        case .searching, .choosing: return role == .host
        case .waiting, .starting, .started, .failed: return true
        }
    }
}

extension Frame {
    /// One line of chat in one row: the sender's name, its key's fingerprint (where there is
    /// room), the text; every part escaped and fitted (`CellText`), so nothing a peer typed can
    /// move the cursor, scroll, or spill into the next row.
    public mutating func putChat(_ line: ChatLine, x: Int, y: Int, width: Int, ascii: Bool) {
        let end = x + width
        var cx = putField(
            line.name,
            x: x,
            y: y,
            width: min(16, max(1, width / 4)),
            ascii: ascii,
            style: Style(bold: true)
        )
        if width >= 60 {
            cx = put(" ", x: cx, y: y)
            cx = putField(
                LobbyScreen.fingerprint(line.key),
                x: cx,
                y: y,
                width: 16,
                ascii: ascii,
                style: Style(dim: true)
            )
        }
        cx = put(": ", x: cx, y: y)
        putField(line.text, x: cx, y: y, width: max(0, end - cx), ascii: ascii)
    }

    /// The chat input's row: a prompt and the end of what is typed, with a cursor mark.
    public mutating func putInput(_ typed: String, y: Int, width: Int, ascii: Bool) {
        let style = Style(bold: true)
        let cx = put(" say: ", x: 0, y: y, style: style)
        let room = max(1, width - cx - 2)
        // The end of a long line stays in view (what is typed last).
        let cells = CellText.cells(typed, width: 4 * room + 32, ascii: ascii)
        let tail = String(cells.suffix(room - 1))
        let after = putField(tail, x: cx, y: y, width: room, ascii: ascii, style: style)
        put("_", x: after, y: y, style: Style(bold: true, reverse: true))
    }
}
