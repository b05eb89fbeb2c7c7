import Engine
import Foundation
import Testing
import TurfRules

/// Hard bots must beat easy ones in crowded matches too, not only 1v1: with two of each, hard bots
/// that chase the same targets (or each other) lose to easy bots that wander apart.
@Suite struct BotStrengthTests {
    static let maps = ["dojo", "courtyard", "warren"]
    static let seeds: [UInt64] = [1, 2, 3, 4, 5, 6]

    /// Totals of the two hard bots and the two easy ones, over `seeds`, on one map.
    static func totals(map name: String, seconds: Int) throws -> (hard: Int, easy: Int) {
        let map = try ArenaMap(
            parsing: String(contentsOf: mapsDir.appendingPathComponent("\(name).map"), encoding: .utf8)
        )
        let settings = TurfSettings(map: map)
        var hard = 0
        var easy = 0
        for seed in seeds {
            // players(humans: [], total: 4) alternates hard, easy, hard, easy: ids 0 and 2 are hard.
            let replay = try TurfMatch.generate(settings: settings, players: 4, seconds: seconds, seed: seed)
            let scores = try ReplayPlayer(replay).run().state.scores
            hard += scores[0] + scores[2]
            easy += scores[1] + scores[3]
        }
        return (hard, easy)
    }

    @Test(arguments: maps)
    func twoHardBotsOutscoreTwoEasyOnes(map: String) throws {
        let t = try Self.totals(map: map, seconds: 30)
        print("bot strength on \(map), 4 players, \(Self.seeds.count) seeds x 30 s: hard \(t.hard) easy \(t.easy)")
        #expect(t.hard > t.easy, "on \(map): hard \(t.hard) vs easy \(t.easy)")
    }
}
