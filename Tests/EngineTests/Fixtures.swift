import Engine
import Foundation
import TurfRules

/// The repository root, found from this file's path (tests read Assets/ and Replays/).
let repoRoot = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
    .deletingLastPathComponent()

func loadMap(_ name: String) throws -> ArenaMap {
    let url = repoRoot.appendingPathComponent("Assets/maps/\(name).map")
    return try ArenaMap(parsing: String(contentsOf: url, encoding: .utf8), file: url.path)
}

/// A short bot match, generated deterministically.
func smallReplay(seed: UInt64, players: Int = 4, seconds: Int = 12, map: String = "dojo") throws -> TurfReplay {
    var settings = TurfSettings(map: try loadMap(map))
    settings.pickupInterval = 60  // plenty of pickups in a short match
    settings.pickupLifetime = 90
    return try TurfMatch.generate(settings: settings, players: players, seconds: seconds, seed: seed)
}
