import Engine
import TurfRules

/// Placeholder until the viewer lands.
public struct ReplayViewer {
    let player: ReplayPlayer<TurfWorld>
    let title: String
    public init(player: ReplayPlayer<TurfWorld>, title: String) { self.player = player; self.title = title }
    public func run() throws {}
}
