/// The screen a pseudo-terminal's output draws, as a terminal emulator keeps it: for
/// `turf bench input`, which reads what real `turf` processes write to their terminals and looks
/// for what changed. It keeps characters only (attributes and colours are parsed and dropped) and
/// understands what ncurses sends for `xterm-256color`: cursor motion (CUP, HPA/VPA, relative
/// moves, CR/LF/BS/HT, index and reverse index, save/restore), erasing (ED, EL, ECH), REP,
/// inserting and deleting characters and lines, scroll regions and scrolling, the alternate
/// screen, and UTF-8 (one cell per character). Anything else is skipped and counted in
/// `unhandled`, so a caller can tell whether the screen it reads can be trusted.
struct PtyScreen {
    let columns: Int
    let rows: Int
    private(set) var cells: [Unicode.Scalar]
    private(set) var row = 0
    private(set) var column = 0
    /// Escape sequences not understood (skipped).
    private(set) var unhandled = 0
    private var wrapPending = false
    private var top = 0
    private var bottom: Int
    private var saved = (0, 0)
    private var last: Unicode.Scalar = " "
    private var state = State.ground
    private var params: [UInt8] = []
    private var utf8: [UInt8] = []
    private var utf8Left = 0

    private enum State { case ground, escape, charset, csi, osc, oscEscape }

    init(columns: Int, rows: Int) {
        self.columns = columns
        self.rows = rows
        cells = Array(repeating: " ", count: columns * rows)
        bottom = rows - 1
    }

    /// The text of row `y` (one character per cell).
    func line(_ y: Int) -> String {
        var s = String.UnicodeScalarView()
        s.append(contentsOf: cells[y * columns..<(y + 1) * columns])
        return String(s)
    }

    /// The whole screen, rows separated by newlines.
    var text: String { (0..<rows).map(line).joined(separator: "\n") }

    subscript(x: Int, y: Int) -> Unicode.Scalar {
        guard x >= 0 && x < columns && y >= 0 && y < rows else { return " " }
        return cells[y * columns + x]
    }

    /// Every (x, y) where `pattern` starts on rows `inRows`.
    func find(_ pattern: [Unicode.Scalar], inRows: Range<Int>) -> [(x: Int, y: Int)] {
        var out: [(x: Int, y: Int)] = []
        guard !pattern.isEmpty else { return out }
        for y in inRows.clamped(to: 0..<rows) {
            let base = y * columns
            var x = 0
            while x + pattern.count <= columns {
                if cells[base + x] == pattern[0]
                    && (1..<pattern.count).allSatisfy({ cells[base + x + $0] == pattern[$0] })
                {
                    out.append((x, y))
                }
                x += 1
            }
        }
        return out
    }

    mutating func feed<S: Sequence>(_ bytes: S) where S.Element == UInt8 {
        for b in bytes { feed(byte: b) }
    }

    private mutating func feed(byte b: UInt8) {
        switch state {
        case .ground: ground(b)
        case .escape: escape(b)
        case .charset: state = .ground  // ESC ( B and friends: the character set, ignored
        case .csi:
            if b >= 0x40 && b <= 0x7e {
                csi(final: b)
                state = .ground
            } else if params.count < 64 {
                params.append(b)
            }
        case .osc:
            if b == 7 { state = .ground } else if b == 27 { state = .oscEscape }
        case .oscEscape: state = b == UInt8(ascii: "\\") ? .ground : .osc
        }
    }

    private mutating func ground(_ b: UInt8) {
        if utf8Left > 0 {
            if b & 0xC0 == 0x80 {
                utf8.append(b)
                utf8Left -= 1
                if utf8Left == 0 {
                    put(String(decoding: utf8, as: UTF8.self).unicodeScalars.first ?? "?")
                }
                return
            }
            utf8Left = 0
            put("?")
        }
        switch b {
        case 0x1b: state = .escape
        case 0x08:
            wrapPending = false
            column = max(0, column - 1)
        case 0x09:
            wrapPending = false
            column = min(columns - 1, (column / 8 + 1) * 8)
        case 0x0a, 0x0b, 0x0c: lineFeed()
        case 0x0d:
            wrapPending = false
            column = 0
        case 0x00..<0x20, 0x7f: break
        case 0x20..<0x7f: put(Unicode.Scalar(b))
        default:
            utf8 = [b]
            utf8Left = b >= 0xF0 ? 3 : b >= 0xE0 ? 2 : b >= 0xC0 ? 1 : 0
            if utf8Left == 0 { put("?") }
        }
    }

    private mutating func escape(_ b: UInt8) {
        state = .ground
        switch b {
        case UInt8(ascii: "["):
            params = []
            state = .csi
        case UInt8(ascii: "]"): state = .osc
        case UInt8(ascii: "("), UInt8(ascii: ")"), UInt8(ascii: "*"), UInt8(ascii: "+"): state = .charset
        case UInt8(ascii: "7"): saved = (row, column)
        case UInt8(ascii: "8"): move(row: saved.0, column: saved.1)
        case UInt8(ascii: "D"): lineFeed()
        case UInt8(ascii: "E"):
            lineFeed()
            column = 0
        case UInt8(ascii: "M"): reverseIndex()
        case UInt8(ascii: "c"): reset()
        case UInt8(ascii: "="), UInt8(ascii: ">"): break
        default: unhandled += 1
        }
    }

    private mutating func reset() {
        cells = Array(repeating: " ", count: columns * rows)
        top = 0
        bottom = rows - 1
        move(row: 0, column: 0)
    }

    private mutating func move(row r: Int, column c: Int) {
        wrapPending = false
        row = min(max(0, r), rows - 1)
        column = min(max(0, c), columns - 1)
    }

    private mutating func put(_ s: Unicode.Scalar) {
        if wrapPending {
            wrapPending = false
            column = 0
            lineFeed()
        }
        cells[row * columns + column] = s
        last = s
        if column == columns - 1 { wrapPending = true } else { column += 1 }
    }

    private mutating func lineFeed() {
        wrapPending = false
        if row == bottom {
            scrollUp(1)
        } else if row < rows - 1 {
            row += 1
        }
    }

    private mutating func reverseIndex() {
        wrapPending = false
        if row == top {
            scrollDown(1)
        } else if row > 0 {
            row -= 1
        }
    }

    /// Lines top...bottom move up by n (new blank lines at the bottom).
    private mutating func scrollUp(_ n: Int, from first: Int? = nil) {
        let a = first ?? top
        guard a <= bottom else { return }
        let n = min(n, bottom - a + 1)
        for y in a...bottom {
            let src = y + n
            for x in 0..<columns { cells[y * columns + x] = src <= bottom ? cells[src * columns + x] : " " }
        }
    }

    /// Lines top...bottom move down by n (new blank lines at the top).
    private mutating func scrollDown(_ n: Int, from first: Int? = nil) {
        let a = first ?? top
        guard a <= bottom else { return }
        let n = min(n, bottom - a + 1)
        for y in stride(from: bottom, through: a, by: -1) {
            let src = y - n
            for x in 0..<columns { cells[y * columns + x] = src >= a ? cells[src * columns + x] : " " }
        }
    }

    private mutating func erase(_ range: Range<Int>) {
        for i in range.clamped(to: 0..<cells.count) { cells[i] = " " }
    }

    private mutating func csi(final f: UInt8) {
        let isPrivate = params.first.map { $0 == UInt8(ascii: "?") || $0 == UInt8(ascii: ">") } ?? false
        let numbers = String(
            decoding: params.filter { $0 == UInt8(ascii: ";") || ($0 >= 0x30 && $0 <= 0x39) },
            as: UTF8.self
        )
        .split(separator: ";", omittingEmptySubsequences: false).map { Int($0) ?? 0 }
        func p(_ i: Int, _ d: Int) -> Int { i < numbers.count && numbers[i] != 0 ? min(numbers[i], 10_000) : d }
        func raw(_ i: Int) -> Int { i < numbers.count ? numbers[i] : 0 }
        if isPrivate {
            // Modes (cursor keys, the alternate screen, …): entering the alternate screen clears it.
            if f == UInt8(ascii: "h") && numbers.contains(1049) { reset() }
            return
        }
        let here = row * columns + column
        switch f {
        case UInt8(ascii: "A"): move(row: row - p(0, 1), column: column)
        case UInt8(ascii: "B"), UInt8(ascii: "e"): move(row: row + p(0, 1), column: column)
        case UInt8(ascii: "C"), UInt8(ascii: "a"): move(row: row, column: column + p(0, 1))
        case UInt8(ascii: "D"): move(row: row, column: column - p(0, 1))
        case UInt8(ascii: "E"): move(row: row + p(0, 1), column: 0)
        case UInt8(ascii: "F"): move(row: row - p(0, 1), column: 0)
        case UInt8(ascii: "G"), UInt8(ascii: "`"): move(row: row, column: p(0, 1) - 1)
        case UInt8(ascii: "d"): move(row: p(0, 1) - 1, column: column)
        case UInt8(ascii: "H"), UInt8(ascii: "f"): move(row: p(0, 1) - 1, column: p(1, 1) - 1)
        case UInt8(ascii: "J"):
            switch raw(0) {
            case 0: erase(here..<cells.count)
            case 1: erase(0..<here + 1)
            default: erase(0..<cells.count)
            }
        case UInt8(ascii: "K"):
            let start = row * columns
            switch raw(0) {
            case 0: erase(here..<start + columns)
            case 1: erase(start..<here + 1)
            default: erase(start..<start + columns)
            }
        case UInt8(ascii: "X"): erase(here..<min(here + p(0, 1), row * columns + columns))
        case UInt8(ascii: "b"): for _ in 0..<p(0, 1) { put(last) }
        case UInt8(ascii: "@"):
            let end = row * columns + columns
            let n = min(p(0, 1), end - here)
            for i in stride(from: end - 1, through: here + n, by: -1) { cells[i] = cells[i - n] }
            erase(here..<here + n)
        case UInt8(ascii: "P"):
            let end = row * columns + columns
            let n = min(p(0, 1), end - here)
            for i in here..<end - n { cells[i] = cells[i + n] }
            erase(end - n..<end)
        case UInt8(ascii: "L"):
            if row >= top && row <= bottom { scrollDown(p(0, 1), from: row) }
            column = 0
        case UInt8(ascii: "M"):
            if row >= top && row <= bottom { scrollUp(p(0, 1), from: row) }
            column = 0
        case UInt8(ascii: "S"): scrollUp(p(0, 1))
        case UInt8(ascii: "T"): scrollDown(p(0, 1))
        case UInt8(ascii: "r"):
            let t = p(0, 1) - 1
            let b = p(1, rows) - 1
            if t < b && b < rows {
                top = t
                bottom = b
            }
            move(row: 0, column: 0)
        case UInt8(ascii: "s"): saved = (row, column)
        case UInt8(ascii: "u"): move(row: saved.0, column: saved.1)
        // Attributes, modes, reports, the cursor's look: nothing on the screen's characters.
        case UInt8(ascii: "m"), UInt8(ascii: "h"), UInt8(ascii: "l"), UInt8(ascii: "n"), UInt8(ascii: "c"),
            UInt8(ascii: "t"), UInt8(ascii: "q"), UInt8(ascii: "g"):
            break
        default: unhandled += 1
        }
    }
}
