import TextOutput

/// Text from a peer fitted to a field of terminal cells: escaped (`SafeText`), then cut into
/// characters that each take exactly one column, at most `width` of them.
///
/// A `Frame` cell holds one character of width 1, and the curses driver sends one scalar per
/// cell. A peer's name can break that in ways escaping alone does not catch: combining marks
/// (a name of 10,000 of them is one grapheme, zero columns wide), wide characters (CJK, emoji:
/// two columns each, so everything after them shifts), joiners and variation selectors. Here:
/// - unsafe scalars (controls, bidi and other format characters) become their visible escape;
/// - zero-width scalars (combining marks, joiners, Hangul vowel and final jamo, anything else that
///   extends the character before it) are dropped;
/// - wide scalars, and scalars that glue to their neighbours (emoji modifiers, regional
///   indicators, prepended characters), unassigned and private-use scalars become `?`;
/// - in the ASCII look every non-ASCII scalar becomes `?`;
/// - text longer than `width` ends in `…` (`~` in ASCII).
/// Work is bounded too: at most `scanLimit(width)` scalars of the input are looked at (four per
/// cell and 32 more: far more than any real name needs, so a cut name says so with its ellipsis).
public enum CellText {
    /// Scalars of one string looked at for a field of `width` cells, whatever the string's length.
    public static func scanLimit(width: Int) -> Int { 4 * width + 32 }

    /// The cells of `text` in a field `width` columns wide: each element takes one column.
    public static func cells(_ text: String, width: Int, ascii: Bool = false) -> [Character] {
        guard width > 0 else { return [] }
        var out: [Character] = []
        out.reserveCapacity(min(width + 1, 64))
        var scanned = 0
        let limit = scanLimit(width: width)
        var truncated = false
        scan: for u in text.unicodeScalars {
            scanned += 1
            if scanned > limit {
                truncated = true
                break
            }
            let piece: [Character]
            if SafeText.isUnsafe(u) {
                piece = SafeText.escaped(String(u)).map { $0 }
            } else {
                switch columns(u) {
                case 0: continue scan
                case 1: piece = [ascii && !u.isASCII ? "?" : Character(u)]
                default: piece = ["?"]
                }
            }
            for c in piece {
                if out.count == width + 1 {
                    truncated = true
                    break scan
                }
                out.append(c)
            }
        }
        if out.count > width { truncated = true }
        if truncated {
            if out.count >= width { out.removeLast(out.count - width + 1) }
            out.append(ascii ? "~" : "…")
        }
        return out
    }

    /// `cells` as a string (for layout code that measures with `count`; each character is one column).
    public static func fit(_ text: String, width: Int, ascii: Bool = false) -> String {
        String(cells(text, width: width, ascii: ascii))
    }

    /// Columns `u` takes alone on a terminal: 0 (it joins the previous character), 1, or 2 (wide,
    /// or unsafe to place next to others). Unsafe scalars are escaped before this is asked.
    static func columns(_ u: Unicode.Scalar) -> Int {
        let v = u.value
        if v < 0x300 { return 1 }
        switch u.properties.generalCategory {
        case .nonspacingMark, .enclosingMark, .spacingMark: return 0
        case .unassigned, .privateUse, .surrogate: return 2
        default: break
        }
        switch v {
        case 0x200B...0x200F, 0x2060...0x206F, 0xFE00...0xFE0F, 0xE0000...0xE0FFF: return 0
        case 0x1160...0x11FF, 0xD7B0...0xD7FF: return 0  // Hangul vowel and final jamo join the syllable
        case 0x1F1E6...0x1F1FF, 0x1F3FB...0x1F3FF: return 2  // regional indicators, skin-tone modifiers
        case 0x1100...0x115F, 0x2E80...0x303E, 0x3041...0x33FF, 0x3400...0x4DBF, 0x4E00...0x9FFF,
            0xA000...0xA4CF, 0xA960...0xA97F, 0xAC00...0xD7A3, 0xF900...0xFAFF, 0xFE10...0xFE19,
            0xFE30...0xFE6F, 0xFF00...0xFF60, 0xFFE0...0xFFE6, 0x16FE0...0x18CFF, 0x1B000...0x1B2FF,
            0x1F000...0x1FAFF, 0x20000...0x3FFFD:
            return 2
        default:
            if u.properties.isEmojiPresentation { return 2 }
            // Whatever else glues to its neighbours in a grapheme (spacing marks such as Thai SARA
            // AM, prepended characters) is not placed in a cell of its own.
            let alone = String(u)
            if ("a" + alone).count == 1 { return 0 }
            if (alone + "a").count == 1 { return 2 }
            return 1
        }
    }
}

extension Frame {
    /// Writes peer text into a field of `width` cells at (x, y), fitted by `CellText` (escaped, one
    /// column per cell, cut with an ellipsis). Returns the column after what was written.
    @discardableResult
    public mutating func putField(_ text: String, x: Int, y: Int, width: Int, ascii: Bool, style: Style = .plain) -> Int
    {
        var cx = x
        for c in CellText.cells(text, width: width, ascii: ascii) {
            if y >= 0 && y < height && cx >= 0 && cx < self.width { self[cx, y] = FrameCell(text: c, style: style) }
            cx += 1
        }
        return cx
    }
}
