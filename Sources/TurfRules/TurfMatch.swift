import Engine
import Keys

public typealias TurfReplay = Replay<TurfWorld>
public typealias TurfLocalMatch = LocalMatch<TurfController>
public typealias TurfMatchLoop = MatchLoop<TurfController>

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

    /// The controllers of the players a peer owns (`MatchConfig.players(ownedBy:)`; with `owner`
    /// nil, every player of a local match): humans get input-driven controllers, bots get bots
    /// seeded from the match seed and their player id. Other peers' players get none: their ops
    /// arrive over the network.
    public static func controllers(config: MatchConfig, ownedBy owner: PeerKey? = nil) -> [PlayerID: TurfController] {
        var controllers: [PlayerID: TurfController] = [:]
        for id in config.players(ownedBy: owner) {
            let p = config.players[Int(id)]
            switch p.kind {
            case .human: controllers[id] = .human()
            case .bot:
                controllers[id] = TurfController(
                    bot: Bot(level: Bot.Level(rawValue: p.level) ?? .easy, seed: config.seed, player: id)
                )
            }
        }
        return controllers
    }

    /// A local match in which this peer owns every player (a config with no owner keys).
    public static func local(config: MatchConfig) throws -> TurfLocalMatch {
        try TurfLocalMatch(config: config, controllers: controllers(config: config))
    }

    /// A whole bot match, simulated headlessly as fast as the CPU allows, and its recording.
    public static func generate(
        settings: TurfSettings,
        players: Int,
        seconds: Int,
        seed: UInt64,
        tickRate: UInt16 = 30
    ) throws -> TurfReplay {
        let config = settings.matchConfig(
            seed: seed,
            players: self.players(humans: [], total: players),
            seconds: seconds,
            tickRate: tickRate
        )
        var loop = TurfMatchLoop(
            match: try local(config: config),
            clock: TickClock(tickRate: UInt32(tickRate), origin: 0)
        )
        loop.runToEnd()
        return try loop.recording()
    }
}
