import CNcursesw
import CursesShim
import TextOutput

#if canImport(Glibc)
    import Glibc
#endif

/// A key press, decoded.
public enum Key: Equatable, Sendable {
    case up, down, left, right, home, end, enter, backspace, escape, resize
    case char(Character)
}

public struct TerminalError: Error, CustomStringConvertible {
    public var description: String
}

/// The one place that talks to ncursesw. Draws frames by sending only the cells that changed since
/// the previous frame (and curses sends only what changed on the terminal); reads keys without
/// blocking. Restores the terminal on `stop()`, on SIGINT/SIGTERM/SIGHUP/SIGQUIT (via the run loop) and on
/// a crash (via the fatal-signal handler in CursesShim).
public final class CursesTerminal {
    public private(set) var theme: Theme
    private var previous: Frame?
    private var stopped = false
    private var onPseudoTerminal = false
    /// Bytes curses wrote to the pseudo-terminal (set by `stop()`; for `turf bench render`).
    public private(set) var pseudoTerminalBytes: Int64 = 0

    /// `stderrCapture`: a directory where an unnamed file receives stderr while curses runs (no
    /// file already there is ever opened); its content is copied to the real stderr when the
    /// terminal is restored, on `stop()` or in a crash.
    public init(wantColor: Bool, unicode: Bool, stderrCapture: String? = nil) throws {
        guard isatty(STDIN_FILENO) == 1 && isatty(STDOUT_FILENO) == 1 else {
            throw TerminalError(
                description:
                    "turf needs a terminal (stdin and stdout must be a TTY); for scripts use 'turf replay --headless'"
            )
        }
        if let problem = CursesTerminal.terminalProblem() { throw TerminalError(description: problem) }
        turf_install_signal_handlers()
        if let stderrCapture { _ = turf_capture_stderr(stderrCapture) }
        let started = turf_curses_start()
        guard started == 0 else {
            _ = turf_release_stderr()
            throw TerminalError(description: CursesTerminal.describe(problem: started))
        }
        theme = Theme(color: false, unicode: unicode)
        if wantColor && has_colors() {
            start_color()
            use_default_colors()
            theme.color = setUpColors()
        }
    }

    /// Curses on a new pseudo-terminal of `columns`×`rows` instead of the real one, for measuring
    /// (`turf bench render`): a thread reads what curses writes, as a terminal emulator would, and
    /// nothing shows anywhere. No signal handlers are installed. One at a time per process.
    public init(
        pseudoTerminalColumns columns: Int,
        rows: Int,
        termType: String = "xterm-256color",
        wantColor: Bool,
        unicode: Bool
    ) throws {
        guard turf_pty_curses_start(Int32(columns), Int32(rows), termType) == 0 else {
            _ = turf_pty_curses_stop()
            throw TerminalError(description: "could not start curses on a pseudo-terminal (TERM type '\(termType)')")
        }
        onPseudoTerminal = true
        theme = Theme(color: false, unicode: unicode)
        if wantColor && has_colors() {
            start_color()
            use_default_colors()
            theme.color = setUpColors()
        }
    }

    /// The first bytes (at most 1 MiB) curses wrote to the pseudo-terminal, after `stop()` (for tests).
    public var pseudoTerminalOutput: [UInt8] {
        guard onPseudoTerminal && stopped else { return [] }
        var out = [UInt8](repeating: 0, count: 1 << 20)
        let n = out.withUnsafeMutableBufferPointer { b -> Int in
            guard let base = b.baseAddress else { return 0 }
            return base.withMemoryRebound(to: CChar.self, capacity: b.count) { turf_pty_kept($0, b.count) }
        }
        return Array(out.prefix(n))
    }

    deinit { stop() }

    /// Why curses cannot run on this terminal (`TERM` unset, unknown or unable to move the
    /// cursor), as one line saying what to set; nil when it can. Prints nothing, so callers can
    /// check before a match starts and report on the real terminal.
    public static func terminalProblem() -> String? {
        let code = turf_check_terminal()
        return code == 0 ? nil : describe(problem: code)
    }

    static func describe(problem: Int32) -> String {
        let term = SafeText.display(getenv("TERM").map { String(cString: $0) } ?? "", limit: 40)
        let fix = "set TERM to your terminal's type (e.g. export TERM=xterm-256color)"
        switch problem {
        case 1: return "TERM is not set, so turf cannot draw on this terminal: \(fix)"
        case 2:
            return
                "unknown terminal type '\(term)' (no terminfo entry for TERM): \(fix), or install its terminfo (ncurses-term)"
        case 3:
            return "no terminfo database found for TERM='\(term)': install ncurses-base (or ncurses-term), or \(fix)"
        case 4: return "the terminal type '\(term)' cannot move the cursor, so turf cannot draw on it: \(fix)"
        default: return "could not start curses on TERM='\(term)': \(fix)"
        }
    }

    /// Leaves curses and gives the terminal back as it was. Safe to call twice.
    public func stop() {
        guard !stopped else { return }
        stopped = true
        if onPseudoTerminal {
            pseudoTerminalBytes = turf_pty_curses_stop()
            return
        }
        turf_curses_stop()
        _ = turf_release_stderr()
    }

    public var size: (width: Int, height: Int) { (Int(turf_cols()), Int(turf_lines())) }

    /// The signal (SIGINT, SIGTERM, SIGHUP, SIGQUIT) that asked us to quit, or nil.
    public var quitSignal: Int32? {
        let s = turf_quit_signal()
        return s == 0 ? nil : s
    }

    private func setUpColors() -> Bool {
        let n = Int(turf_colors())
        guard n >= 8 else { return false }
        let bright = n >= 16
        // Player colours: distinct hues first, brighter variants for players 7 and 8.
        let hues: [Int32] = [
            Int32(COLOR_RED), Int32(COLOR_GREEN), Int32(COLOR_BLUE), Int32(COLOR_YELLOW),
            Int32(COLOR_MAGENTA), Int32(COLOR_CYAN), bright ? 9 : Int32(COLOR_WHITE), bright ? 14 : Int32(COLOR_WHITE),
        ]
        for (p, hue) in hues.enumerated() {
            _ = turf_init_pair(Int32(Palette.player(p)), hue, -1)
            _ = turf_init_pair(Int32(Palette.territory(p)), Int32(COLOR_BLACK), hue)
        }
        _ = turf_init_pair(Int32(Palette.wall), Int32(COLOR_BLACK), bright ? 8 : Int32(COLOR_WHITE))
        _ = turf_init_pair(Int32(Palette.floor), -1, -1)
        _ = turf_init_pair(Int32(Palette.pickup), Int32(COLOR_YELLOW), -1)
        _ = turf_init_pair(Int32(Palette.hud), -1, -1)
        return true
    }

    private func attrs(_ s: Style) -> (Int32, Int32) {
        var a: Int32 = 0
        if s.bold { a |= turf_attr_bold() }
        if s.reverse { a |= turf_attr_reverse() }
        if s.dim { a |= turf_attr_dim() }
        return (a, theme.color ? Int32(s.color) : 0)
    }

    /// Forces the next `draw` to repaint everything (after a resize).
    public func invalidate() {
        previous = nil
        turf_clear()
    }

    /// Shows a frame, writing only runs of cells that differ from the last frame shown.
    public func draw(_ frame: Frame) {
        if let p = previous, p.width != frame.width || p.height != frame.height { invalidate() }
        let old = previous
        for y in 0..<frame.height {
            var x = 0
            while x < frame.width {
                let cell = frame[x, y]
                if let old, old[x, y] == cell {
                    x += 1
                    continue
                }
                // A run of changed cells with the same style.
                var run: [wchar_t] = []
                let style = cell.style
                let start = x
                while x < frame.width, frame[x, y].style == style, old.map({ $0[x, y] != frame[x, y] }) ?? true {
                    for u in frame[x, y].text.unicodeScalars.prefix(1) { run.append(wchar_t(bitPattern: u.value)) }
                    x += 1
                }
                run.append(0)
                let (a, pair) = attrs(style)
                // Writing the bottom-right cell makes some terminals scroll: curses handles it, but
                // skip it to be safe.
                if y == frame.height - 1 && x == frame.width {
                    run.removeLast(2)
                    run.append(0)
                }
                run.withUnsafeBufferPointer { turf_draw(Int32(y), Int32(start), $0.baseAddress, a, pair) }
            }
        }
        previous = frame
        turf_refresh()
    }

    /// Every key waiting, without blocking.
    public func readKeys() -> [Key] {
        var keys: [Key] = []
        var ch: UInt32 = 0
        while keys.count < 64 {
            let r = turf_read_key(&ch)
            if r == 0 { break }
            if r == 2 {
                switch Int32(ch) {
                case turf_key_up(): keys.append(.up)
                case turf_key_down(): keys.append(.down)
                case turf_key_left(): keys.append(.left)
                case turf_key_right(): keys.append(.right)
                case turf_key_home(): keys.append(.home)
                case turf_key_end(): keys.append(.end)
                case turf_key_enter(): keys.append(.enter)
                case turf_key_backspace(): keys.append(.backspace)
                case turf_key_resize(): keys.append(.resize)
                case turf_key_f(1): keys.append(.char("?"))
                default: break
                }
            } else {
                switch ch {
                case 27: keys.append(.escape)
                case 10, 13: keys.append(.enter)
                case 8, 127: keys.append(.backspace)
                case 3: keys.append(.char("q"))  // Ctrl-C in case ISIG is off
                default:
                    if let u = UnicodeScalar(ch) { keys.append(.char(Character(u))) }
                }
            }
        }
        return keys
    }

    /// Sleeps until input arrives or `nanos` pass, whichever is first.
    public func wait(nanos: UInt64) {
        let ms = Int32(min(1000, (nanos + 999_999) / 1_000_000))
        if ms > 0 { _ = turf_wait_input(ms) }
    }
}

/// Whether the terminal's locale is UTF-8 (else the ASCII look is used).
public func localeIsUTF8(environment: [String: String]) -> Bool {
    let v =
        environment["LC_ALL"].flatMap { $0.isEmpty ? nil : $0 } ?? environment["LC_CTYPE"].flatMap {
            $0.isEmpty ? nil : $0
        }
        ?? environment["LANG"] ?? ""
    let u = v.uppercased()
    return u.contains("UTF-8") || u.contains("UTF8")
}
