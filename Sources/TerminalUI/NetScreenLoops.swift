import Engine
import TurfRules

/// How an interactive lobby ended.
public enum LobbyOutcome: Equatable, Sendable {
    /// The view reached `.started`: the caller runs the match on the same terminal.
    case started
    /// The player pressed q or Esc (`act(.leave)` was called first).
    case left
    /// SIGINT, SIGTERM, SIGHUP or SIGQUIT asked turf to quit.
    case signal(Int32)
}

extension CursesTerminal {
    /// Runs the lobby screen until the match starts, the player leaves, or a signal arrives.
    ///
    /// `poll` returns the lobby as it is now: the network side keeps it (the caller drains its
    /// `NetworkMailbox` in `poll` and applies the events). `act` receives what the player did
    /// (Enter: `.start` for the host, `.pick` for a joiner choosing a lobby; q: `.leave`); it
    /// should hand the action to the network loop (`NetworkMailbox.onLoop`) and return at once.
    /// Both run on the calling (UI) thread, once per key and once per `frameNanos`.
    public func runLobby(poll: () -> LobbyView, act: (LobbyAction) -> Void, frameNanos: UInt64 = 50_000_000)
        -> LobbyOutcome
    {
        let screen = LobbyScreen(theme: theme)
        var controller = LobbyController()
        var shown: (LobbyView, Int, Int, Int)?
        while true {
            if let sig = quitSignal { return .signal(sig) }
            var view = poll()
            if view.phase == .started { return .started }
            for key in readKeys() {
                if key == .resize {
                    invalidate()
                    shown = nil
                    continue
                }
                if let action = controller.handle(key, view: view) {
                    act(action)
                    if action == .leave { return .left }
                    view = poll()
                    if view.phase == .started { return .started }
                }
            }
            let (w, h) = size
            if shown.map({ $0.0 != view || $0.1 != controller.selected || $0.2 != w || $0.3 != h }) ?? true {
                draw(screen.render(view, selected: controller.selected, width: w, height: h))
                shown = (view, controller.selected, w, h)
            }
            wait(nanos: frameNanos)
        }
    }
}

extension CursesTerminal {
    /// Shows a networked match's end screen until the player presses q, Esc or Enter (returns nil)
    /// or a signal asks turf to quit (returns it). `footer` is the screen's last line.
    public func runNetEnd(
        world: TurfWorld,
        config: MatchConfig,
        history: TerritoryHistory,
        focus: PlayerID?,
        summary: NetEndSummary,
        footer: String = " q: quit"
    ) -> Int32? {
        let screen = NetEndScreen(theme: theme)
        var dirty = true
        while true {
            if let sig = quitSignal { return sig }
            for key in readKeys() {
                switch key {
                case .char("q"), .char("Q"), .escape, .enter: return nil
                case .resize:
                    invalidate()
                    dirty = true
                default: break
                }
            }
            if dirty {
                let (w, h) = size
                draw(
                    screen.render(
                        world: world,
                        config: config,
                        history: history,
                        focus: focus,
                        summary: summary,
                        footer: footer,
                        width: w,
                        height: h
                    )
                )
                dirty = false
            }
            wait(nanos: 200_000_000)
        }
    }
}
