import Engine
import TurfRules

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
