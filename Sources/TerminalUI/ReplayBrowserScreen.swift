/// The saved-match browser (`turf replay` with no file): a list of replays, newest first, and the
/// highlighted one's details. Pure: the shell fills `ReplayBrowserView` (reading and verifying the
/// files as it goes) and this draws it. Every string from a file (names, maps, problems quoting a
/// file) is fitted with `CellText`. Works by keys alone at 80×24, without colour, in ASCII.

/// One saved match as the browser lists it.
public struct ReplayRow: Sendable, Equatable {
    /// What reading the file found so far.
    public enum Content: Sendable, Equatable {
        /// Not read yet (the shell reads the files in the background, newest first).
        case pending
        /// Read and decoded.
        case match(ReplayRowInfo)
        /// The file cannot be read or is not a well-formed replay: why (may quote the file).
        case unreadable(String)
    }

    /// Whether the match was re-derived and checked (every checkpoint hash and signature).
    public enum Check: Sendable, Equatable {
        case notYet
        case ok
        case failed(String)
    }

    /// The file's name (untrusted).
    public var file: String
    /// When it was saved, as shown (`2025-12-04 21:30`).
    public var date: String
    /// Its size, as shown (`13 KB`).
    public var size: String
    public var content: Content
    public var check: Check

    public init(file: String, date: String, size: String, content: Content = .pending, check: Check = .notYet) {
        self.file = file
        self.date = date
        self.size = size
        self.content = content
        self.check = check
    }
}

/// What a decoded replay says (all text untrusted: it comes from the file).
public struct ReplayRowInfo: Sendable, Equatable {
    public var map: String
    /// Each player's name and final cells, in player order.
    public var players: [(name: String, cells: Int)]
    /// The winner's name, `A = B` on a tie, `-` when nobody holds a cell.
    public var winner: String
    /// The match's length, `1:30`.
    public var length: String
    /// Played with `turf host`/`join` (players owned by keys), or a local match.
    public var networked: Bool

    public init(map: String, players: [(name: String, cells: Int)], winner: String, length: String, networked: Bool) {
        self.map = map
        self.players = players
        self.winner = winner
        self.length = length
        self.networked = networked
    }

    public static func == (a: ReplayRowInfo, b: ReplayRowInfo) -> Bool {
        a.map == b.map && a.winner == b.winner && a.length == b.length && a.networked == b.networked
            && a.players.elementsEqual(b.players) { $0.name == $1.name && $0.cells == $1.cells }
    }
}

/// Everything the browser shows at one moment.
public struct ReplayBrowserView: Sendable, Equatable {
    /// Where the replays are (from the environment: escaped when drawn).
    public var directory: String
    public var rows: [ReplayRow]
    /// Replay files in the directory (more than `rows` when only the newest are listed).
    public var found: Int
    /// The highlighted row.
    public var selected: Int
    /// `d` was pressed: the footer asks y/n before the highlighted file is deleted.
    public var confirmingDelete: Bool
    /// One line of news (deleted, could not open, …); may quote a file, so it is escaped when drawn.
    public var notice: String

    public init(
        directory: String,
        rows: [ReplayRow],
        found: Int,
        selected: Int = 0,
        confirmingDelete: Bool = false,
        notice: String = ""
    ) {
        self.directory = directory
        self.rows = rows
        self.found = found
        self.selected = selected
        self.confirmingDelete = confirmingDelete
        self.notice = notice
    }

    /// How far the background work has got: rows read, rows checked, of how many.
    public var progress: (read: Int, checked: Int, readable: Int) {
        var read = 0
        var checked = 0
        var readable = 0
        for r in rows {
            if r.content != .pending { read += 1 }
            if case .match = r.content { readable += 1 }
            if r.check != .notYet { checked += 1 }
        }
        return (read, checked, readable)
    }
}

public struct ReplayBrowserScreen: Sendable {
    public var theme: Theme
    public static let minWidth = 40
    public static let minHeight = 12

    public init(theme: Theme) { self.theme = theme }

    var ascii: Bool { !theme.unicode }
    var dot: String { theme.unicode ? " · " : " - " }

    public func render(_ v: ReplayBrowserView, width: Int, height: Int) -> Frame {
        var f = Frame(width: width, height: height)
        guard width >= Self.minWidth && height >= Self.minHeight else {
            f.put("Terminal too small: \(width)x\(height)", x: 0, y: 0)
            f.put("The replay list needs \(Self.minWidth)x\(Self.minHeight).", x: 0, y: 1)
            f.put("q quits.", x: 0, y: 2)
            return f
        }
        let hud = Style(color: Palette.hud, bold: true, reverse: !theme.color)
        f.fill(x: 0, y: 0, width: width, height: 1, style: Style(color: Palette.hud, reverse: !theme.color))
        let count = v.rows.count
        var title = " turf replays\(dot)\(count) saved match\(count == 1 ? "" : "es")"
        if v.found > count { title += " (the newest \(count) of \(v.found))" }
        title += count > 1 ? ", newest first" : ""
        f.putField(title, x: 0, y: 0, width: width, ascii: ascii, style: hud)
        f.putField("in " + v.directory, x: 1, y: 1, width: width - 2, ascii: ascii, style: Style(dim: true))
        if v.rows.isEmpty {
            f.putField(
                "No saved matches yet. Play one (turf demo, or turf host / turf join): each is saved here.",
                x: 1,
                y: 3,
                width: width - 2,
                ascii: ascii
            )
        } else {
            drawList(v, into: &f)
            drawDetails(v, into: &f)
        }
        drawNotice(v, into: &f)
        f.putField(footer(v), x: 0, y: height - 1, width: width - 1, ascii: ascii, style: hud)
        return f
    }

    /// Column starts for a width: date, map, length, kind, check, winner, players (nil: no room).
    struct Columns {
        var date = 2, map = 19, length = 29, kind = 36, check: Int?, winner: Int?, players: Int?
        init(width: Int) {
            check = width >= 60 ? 42 : nil
            winner = width >= 60 ? 48 : nil
            players = width >= 80 ? 60 : nil
        }
    }

    func drawList(_ v: ReplayBrowserView, into f: inout Frame) {
        let c = Columns(width: f.width)
        let head = Style(bold: true, dim: true)
        let y0 = 2
        f.put("saved", x: c.date, y: y0, style: head)
        f.put("map", x: c.map, y: y0, style: head)
        f.put("length", x: c.length, y: y0, style: head)
        f.put("kind", x: c.kind, y: y0, style: head)
        if let x = c.check { f.put("check", x: x, y: y0, style: head) }
        if let x = c.winner { f.put("winner", x: x, y: y0, style: head) }
        if let x = c.players { f.put("players", x: x, y: y0, style: head) }
        let last = f.height - 7
        let rows = max(1, last - y0)
        let sel = min(max(0, v.selected), v.rows.count - 1)
        let first = max(0, min(sel - rows + 1, v.rows.count - rows))
        var y = y0 + 1
        for i in first..<v.rows.count where y <= last {
            let r = v.rows[i]
            let style = i == sel ? Style(bold: true, reverse: true) : Style.plain
            if i == sel { f.fill(x: 0, y: y, width: f.width, height: 1, style: style) }
            f.put(i == sel ? (theme.unicode ? "▶" : ">") : " ", x: 0, y: y, style: style)
            f.putField(r.date, x: c.date, y: y, width: 16, ascii: ascii, style: style)
            switch r.content {
            case .pending:
                f.putField(theme.unicode ? "…" : "...", x: c.map, y: y, width: 9, ascii: ascii, style: style)
            case .unreadable(let why):
                f.putField(
                    "unreadable: " + why,
                    x: c.map,
                    y: y,
                    width: f.width - c.map - 1,
                    ascii: ascii,
                    style: style
                )
            case .match(let m):
                f.putField(m.map, x: c.map, y: y, width: 9, ascii: ascii, style: style)
                f.putField(m.length, x: c.length, y: y, width: 6, ascii: ascii, style: style)
                f.put(m.networked ? "net" : "local", x: c.kind, y: y, style: style)
                if let x = c.check { f.put(checkMark(r.check), x: x, y: y, style: style) }
                if let x = c.winner {
                    f.putField(m.winner, x: x, y: y, width: (c.players ?? f.width) - x - 1, ascii: ascii, style: style)
                }
                if let x = c.players {
                    f.putField(
                        m.players.map(\.name).joined(separator: ", "),
                        x: x,
                        y: y,
                        width: f.width - x - 1,
                        ascii: ascii,
                        style: style
                    )
                }
            }
            y += 1
        }
        if first + rows < v.rows.count {
            f.put("\(v.rows.count - first - rows) more below", x: f.width - 20, y: last + 1, style: Style(dim: true))
        }
    }

    func checkMark(_ c: ReplayRow.Check) -> String {
        switch c {
        case .notYet: return theme.unicode ? "…" : "..."
        case .ok: return "ok"
        case .failed: return "BAD"
        }
    }

    /// The highlighted match: its file, every player's cells, and what checking it found.
    func drawDetails(_ v: ReplayBrowserView, into f: inout Frame) {
        guard v.rows.indices.contains(v.selected) else { return }
        let r = v.rows[v.selected]
        let y = f.height - 5
        let label = 9
        let w = f.width - label - 1
        func line(_ name: String, _ text: String, _ row: Int, style: Style = .plain) {
            f.put(name, x: 1, y: row, style: Style(bold: true))
            f.putField(text, x: label, y: row, width: w, ascii: ascii, style: style)
        }
        line("file", r.file + dot + r.size, y)
        switch r.content {
        case .pending:
            line("match", "reading the file…", y + 1)
        case .unreadable(let why):
            line("problem", why, y + 1, style: Style(bold: true))
        case .match(let m):
            line(
                "score",
                m.players.map { "\($0.name) \($0.cells)" }.joined(separator: theme.unicode ? " · " : ", "),
                y + 1
            )
        }
        let check: String
        switch (r.content, r.check) {
        case (.unreadable, _): check = "not a replay turf can read: it cannot be watched"
        case (_, .notYet): check = "not verified yet: checked in the background, as turf replay --headless does"
        case (_, .ok): check = "verified: every state hash (and signature) re-derived as recorded"
        case (_, .failed(let why)): check = "VERIFICATION FAILED: " + why
        }
        line("check", check, y + 2, style: Style(bold: r.check != .notYet && r.check != .ok))
    }

    func drawNotice(_ v: ReplayBrowserView, into f: inout Frame) {
        let y = f.height - 2
        if v.confirmingDelete, v.rows.indices.contains(v.selected) {
            f.putField(
                "Delete " + v.rows[v.selected].file + "? (y/n)",
                x: 1,
                y: y,
                width: f.width - 2,
                ascii: ascii,
                style: Style(bold: true, reverse: true)
            )
            return
        }
        var text = v.notice
        if text.isEmpty, !v.rows.isEmpty {
            let p = v.progress
            if p.read < v.rows.count {
                text = "reading the replays: \(p.read) of \(v.rows.count)"
            } else if p.checked < p.readable {
                text = "verifying in the background: \(p.checked) of \(p.readable)"
            } else if p.readable == 0 {
                text = "none of these files is a replay turf can read"
            } else {
                text = "all \(p.readable) readable replays checked"
            }
        }
        f.putField(text, x: 1, y: y, width: f.width - 2, ascii: ascii, style: Style(color: Palette.hud))
    }

    func footer(_ v: ReplayBrowserView) -> String {
        if v.confirmingDelete { return " y: delete the file\(dot)n (or any other key): keep it" }
        if v.rows.isEmpty { return " q: quit" }
        let move = theme.unicode ? "↑/↓ j/k" : "up/down j/k"
        return " \(move): move\(dot)Enter: watch\(dot)d: delete\(dot)q: quit"
    }
}

/// What the player did in the browser, for the shell to carry out.
public enum ReplayBrowserAction: Sendable, Equatable {
    /// Enter: watch the highlighted replay.
    case open(Int)
    /// `d`, then `y`: delete the highlighted replay's file.
    case delete(Int)
    /// `d`, then anything but `y`: the file stays.
    case keep
    /// `q` or Esc.
    case quit
}

/// The browser's keys, apart from curses so they can be tested: ↑/↓ (or k/j) move, Home/End jump,
/// Enter opens, `d` asks to delete and `y` confirms (any other key keeps the file), q or Esc quits.
public struct ReplayBrowserController: Sendable {
    public private(set) var selected = 0
    public private(set) var confirmingDelete = false

    public init() {}

    /// Keeps the highlight on a row after rows were removed.
    public mutating func clamp(count: Int) {
        selected = count == 0 ? 0 : min(selected, count - 1)
        if count == 0 { confirmingDelete = false }
    }

    public mutating func handle(_ key: Key, count: Int) -> ReplayBrowserAction? {
        clamp(count: count)
        if confirmingDelete {
            confirmingDelete = false
            switch key {
            case .char("y"), .char("Y"): return .delete(selected)
            case .resize: confirmingDelete = true
            default: return .keep
            }
            return nil
        }
        switch key {
        case .char("q"), .char("Q"), .escape: return .quit
        case .up, .char("k"), .char("K"): selected = max(0, selected - 1)
        case .down, .char("j"), .char("J"): selected = count == 0 ? 0 : min(count - 1, selected + 1)
        case .home: selected = 0
        case .end: selected = max(0, count - 1)
        case .enter where count > 0: return .open(selected)
        case .char("d") where count > 0, .char("D") where count > 0: confirmingDelete = true
        default: break
        }
        return nil
    }
}
