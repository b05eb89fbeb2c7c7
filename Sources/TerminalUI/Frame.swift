import TextOutput

/// What a screen shows, as plain data: the renderers draw into a `Frame`, the curses driver diffs
/// frames and sends only the cells that changed. Tests read frames as text.
public struct Style: Equatable, Hashable, Sendable {
    /// Palette slot (see `Palette`): 0 = terminal default.
    public var color: UInt8
    public var bold: Bool
    public var reverse: Bool
    public var dim: Bool

    public init(color: UInt8 = 0, bold: Bool = false, reverse: Bool = false, dim: Bool = false) {
        self.color = color
        self.bold = bold
        self.reverse = reverse
        self.dim = dim
    }

    public static let plain = Style()
}

/// Palette slots. The driver maps them to colour pairs (or to nothing without colour).
public enum Palette {
    /// Player p's text colour is slot 1 + p; its territory (a background) is slot 9 + p.
    public static func player(_ p: Int) -> UInt8 { UInt8(1 + p % 8) }
    public static func territory(_ p: Int) -> UInt8 { UInt8(9 + p % 8) }
    public static let wall: UInt8 = 17
    public static let floor: UInt8 = 18
    public static let pickup: UInt8 = 19
    public static let hud: UInt8 = 20
    public static let count = 21
}

public struct FrameCell: Equatable, Sendable {
    /// One grapheme of display width 1 (a space for blank).
    public var text: Character
    public var style: Style
    public static let blank = FrameCell(text: " ", style: .plain)
}

public struct Frame: Equatable, Sendable {
    public let width: Int
    public let height: Int
    public var cells: [FrameCell]

    public init(width: Int, height: Int) {
        self.width = max(0, width)
        self.height = max(0, height)
        cells = Array(repeating: .blank, count: self.width * self.height)
    }

    public subscript(x: Int, y: Int) -> FrameCell {
        get { cells[y * width + x] }
        set { cells[y * width + x] = newValue }
    }

    /// Writes `text` at (x, y), clipped to the frame. Returns the column after the text. Control
    /// and format characters are shown escaped (`SafeText`): names and map headers come from
    /// replays and, soon, from peers, and must never reach the terminal as commands.
    @discardableResult
    public mutating func put(_ text: String, x: Int, y: Int, style: Style = .plain) -> Int {
        let text = SafeText.escaped(text)
        guard y >= 0 && y < height else { return x + text.count }
        var cx = x
        for ch in text {
            if cx >= 0 && cx < width { cells[y * width + cx] = FrameCell(text: ch, style: style) }
            cx += 1
        }
        return cx
    }

    public mutating func fill(x: Int, y: Int, width w: Int, height h: Int, style: Style = .plain) {
        for yy in max(0, y)..<min(height, y + h) {
            for xx in max(0, x)..<min(width, x + w) { cells[yy * width + xx] = FrameCell(text: " ", style: style) }
        }
    }

    /// Text centred on row y.
    public mutating func center(_ text: String, y: Int, style: Style = .plain) {
        put(text, x: max(0, (width - text.count) / 2), y: y, style: style)
    }

    /// The frame's text, one line per row, trailing spaces kept (for tests and dumps).
    public var text: String {
        (0..<height).map { y in String((0..<width).map { cells[y * width + $0].text }) }.joined(separator: "\n")
    }

    /// A box with a border, cleared inside.
    public mutating func box(x: Int, y: Int, width w: Int, height h: Int, unicode: Bool, style: Style = .plain) {
        fill(x: x, y: y, width: w, height: h)
        let (hz, vt, tl, tr, bl, br): (String, String, String, String, String, String) =
            unicode ? ("─", "│", "┌", "┐", "└", "┘") : ("-", "|", "+", "+", "+", "+")
        put(tl + String(repeating: hz, count: max(0, w - 2)) + tr, x: x, y: y, style: style)
        put(bl + String(repeating: hz, count: max(0, w - 2)) + br, x: x, y: y + h - 1, style: style)
        for yy in (y + 1)..<(y + h - 1) {
            put(vt, x: x, y: yy, style: style)
            put(vt, x: x + w - 1, y: yy, style: style)
        }
    }
}
