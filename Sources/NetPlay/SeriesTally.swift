import Engine
import Keys

/// The running tally of a series of matches in one lobby (a match and its rematches): wins per
/// player, by key (a player keeps its wins whatever seat it takes), and ties. Each peer keeps its
/// own from the matches it recorded; peers that converged hold the same scores, so the same tally.
public struct SeriesTally: Sendable, Equatable {
    public struct Entry: Sendable, Equatable {
        public var key: PeerKey
        /// The name the player had in its latest match (escaped: as in the match config).
        public var name: String
        public var wins: Int
    }

    /// Every player of the series, in the order they first played.
    public private(set) var entries: [Entry] = []
    public private(set) var matches = 0
    /// Matches whose best score was shared (nobody wins those).
    public private(set) var ties = 0

    public init() {}

    /// One more match: `players` (owned by keys) and their final `scores`, in player order. The
    /// single best score wins; a shared best is a tie.
    public mutating func record(players: [PlayerInfo], scores: [Int]) {
        matches += 1
        for p in players {
            guard let k = p.owner else { continue }
            if let i = entries.firstIndex(where: { $0.key == k }) {
                entries[i].name = p.name
            } else {
                entries.append(Entry(key: k, name: p.name, wins: 0))
            }
        }
        let n = min(players.count, scores.count)
        guard n > 0, let best = scores.prefix(n).max() else { return }
        let leaders = (0..<n).filter { scores[$0] == best }
        guard leaders.count == 1, let k = players[leaders[0]].owner,
            let i = entries.firstIndex(where: { $0.key == k })
        else {
            ties += 1
            return
        }
        entries[i].wins += 1
    }
}
