/// How cells look: glyphs (Unicode or ASCII) and whether colour is used. Colour choices for the
/// palette slots live in the curses driver; the no-colour look must be readable on its own, so
/// every piece of information is also carried by a letter or a glyph.
public struct Theme: Sendable, Equatable {
    public var color: Bool
    public var unicode: Bool

    public init(color: Bool, unicode: Bool) {
        self.color = color
        self.unicode = unicode
    }

    public var floorDot: Character { unicode ? "·" : "." }
    public var wallGlyph: Character { unicode ? "▒" : "#" }
    public var pickupGlyph: Character { unicode ? "✱" : "*" }

    public static func letter(_ p: Int) -> Character { Character(UnicodeScalar(UInt8(ascii: "A") + UInt8(p % 26))) }
    public static func lower(_ p: Int) -> Character { Character(UnicodeScalar(UInt8(ascii: "a") + UInt8(p % 26))) }

    /// Decides colour from the environment: off when NO_COLOR is set and non-empty, or TERM is
    /// dumb; the driver also turns it off when the terminal has no colours.
    public static func colorWanted(environment: [String: String]) -> Bool {
        if let nc = environment["NO_COLOR"], !nc.isEmpty { return false }
        if environment["TERM"] == "dumb" { return false }
        return true
    }
}
