import Engine

public typealias TurfReplay = Replay<TurfWorld>
public typealias TurfLocalMatch = LocalMatch<TurfController>

/// Setting up turf matches.
public enum TurfMatch {
    public static let botNames = ["Ada", "Bix", "Cleo", "Dax", "Eve", "Fen", "Gus", "Hal"]

    /// Players for a match against bots: `humans` named humans first, then bots of alternating
    /// levels (hard, easy, …) up to `total`.
    public static func players(humans: [String], total: Int, botLevel: Bot.Level? = nil) -> [PlayerInfo] {
        var list = humans.map { PlayerInfo(name: $0, kind: .human) }
        var i = 0
        while list.count < total {
            let level = botLevel ?? (i % 2 == 0 ? .hard : .easy)
            list.append(PlayerInfo(name: botNames[list.count % botNames.count], kind: .bot, level: level.rawValue))
            i += 1
        }
        return list
    }

    /// A local match in which this peer owns every player: humans get input-driven controllers,
    /// bots get bots seeded from the match seed and their player id.
    public static func local(config: MatchConfig) throws -> TurfLocalMatch {
        var controllers: [PlayerID: TurfController] = [:]
        for (i, p) in config.players.enumerated() {
            let id = PlayerID(i)
            switch p.kind {
            case .human: controllers[id] = .human()
            case .bot: controllers[id] = TurfController(bot: Bot(level: Bot.Level(rawValue: p.level) ?? .easy, seed: config.seed, player: id))
            case .remote: break
            }
        }
        return try TurfLocalMatch(config: config, controllers: controllers)
    }

    /// A whole bot match, simulated headlessly as fast as the CPU allows, and its recording.
    public static func generate(settings: TurfSettings, players: Int, seconds: Int, seed: UInt64,
                                tickRate: UInt16 = 30) throws -> TurfReplay {
        let config = settings.matchConfig(seed: seed, players: self.players(humans: [], total: players),
                                          seconds: seconds, tickRate: tickRate)
        var match = try local(config: config)
        match.runToEnd()
        return try match.recording()
    }
}
