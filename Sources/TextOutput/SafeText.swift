/// Text that came from outside (a file, a peer, an environment variable) shown to a person: its
/// control characters escaped so it can never move the cursor, re-title or recolour the terminal,
/// or reorder what surrounds it, and its length bounded. The one mechanism for every string from a
/// replay, map, journal, config or peer that turf prints, writes as JSON, or draws with curses.
public enum SafeText {
    /// The most Unicode scalars `display` shows of one string, before "…".
    public static let defaultLimit = 120

    /// Whether `u` must never reach a terminal as it is: the C0 controls, DEL and the C1 controls
    /// (ESC and CSI start terminal commands), the format characters (Cf: bidi embeddings,
    /// overrides and isolates, the zero-width space, the BOM, the soft hyphen; not the joiners)
    /// and the line and paragraph separators.
    public static func isUnsafe(_ u: Unicode.Scalar) -> Bool {
        switch u.value {
        case 0x00...0x1F, 0x7F...0x9F: return true
        case 0x2028, 0x2029: return true
        // The zero-width joiner and non-joiner shape emoji sequences and several scripts, and
        // move nothing: they pass.
        case 0x200C, 0x200D: return false
        default: return u.properties.generalCategory == .format
        }
    }

    /// `s` with every unsafe scalar written as a visible escape (`\x1b`, `\u{202e}`), cut to at most
    /// `limit` scalars of output (then ending in "…"). Safe text passes through unchanged.
    public static func display(_ s: String, limit: Int = defaultLimit) -> String {
        var out = String.UnicodeScalarView()
        var count = 0
        let ellipsis: Unicode.Scalar = "\u{2026}"
        for u in s.unicodeScalars {
            let piece: String.UnicodeScalarView
            if isUnsafe(u) {
                piece = escape(u).unicodeScalars
            } else {
                piece = String.UnicodeScalarView([u])
            }
            if count + piece.count > limit {
                out.append(ellipsis)
                return String(out)
            }
            out.append(contentsOf: piece)
            count += piece.count
        }
        return String(out)
    }

    /// `s` with every unsafe scalar escaped, at its full length (for text that is clipped later,
    /// as the curses frames do).
    public static func escaped(_ s: String) -> String {
        if isClean(s) { return s }
        var out = ""
        for u in s.unicodeScalars {
            if isUnsafe(u) { out += escape(u) } else { out.unicodeScalars.append(u) }
        }
        return out
    }

    /// Whether `display` would change `s` (beyond its length).
    public static func isClean(_ s: String) -> Bool { !s.unicodeScalars.contains(where: isUnsafe) }

    static func escape(_ u: Unicode.Scalar) -> String {
        let hex = String(u.value, radix: 16)
        if u.value <= 0xFF { return "\\x" + (hex.count < 2 ? "0" + hex : hex) }
        return "\\u{" + hex + "}"
    }
}
