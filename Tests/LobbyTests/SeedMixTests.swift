import Engine
import Keys
import Lobby
import Testing

/// Commit–reveal (`SeedMix`): the seed needs every reveal, and `verify` is the one check a joiner
/// (turf's `NetRuntime.join`) and the session chaos runs make of the host's start.
@Suite struct SeedMixTests {
    @Test func seedNeedsEveryRevealAndChecksCommits() {
        let a = SeedMix.contribution()
        let b = SeedMix.contribution()
        #expect(SeedMix.opens(a, SeedMix.commit(a)))
        #expect(!SeedMix.opens(b, SeedMix.commit(a)))
        let seed = SeedMix.seed([a, b])
        #expect(seed == SeedMix.seed([a, b]))
        var b2 = b
        b2[0] ^= 1
        #expect(seed != SeedMix.seed([a, b2]))
        #expect(seed != SeedMix.seed([b, a]))
    }

    /// Three players (keys 1, 2, 3) and what the host sends: the roster with their commits, and a
    /// start whose seed mixes their reveals.
    struct Lobby {
        let keys: [[UInt8]] = (1...3).map { [UInt8](repeating: $0, count: 32) }
        let contributions = (0..<3).map { _ in SeedMix.contribution() }
        var roster: LobbyMessage.Roster {
            .init(
                members: keys.indices.map { i in
                    .init(
                        key: keys[i],
                        name: "p\(i)",
                        commit: SeedMix.commit(contributions[i]),
                        path: i == 0 ? .local : .direct
                    )
                },
                maxPlayers: 8
            )
        }
        func start(reveals: [[UInt8]], seed: UInt64? = nil) -> LobbyMessage.Start {
            let config = MatchConfig(
                gameID: "turf",
                seed: seed ?? SeedMix.seed(reveals),
                tickRate: 30,
                lengthTicks: 90,
                checkpointInterval: 30,
                players: keys.indices.map { PlayerInfo(name: "p\($0)", kind: .human, owner: PeerKey(bytes: keys[$0])) },
                settings: []
            )
            return LobbyMessage.Start(config: config, startAt: 1, reveals: reveals)
        }
    }

    @Test func aHonestStartVerifiesForMembersRejoinersAndSpectators() {
        let l = Lobby()
        let s = l.start(reveals: l.contributions)
        // A first-time member: its own reveal is the contribution it made.
        #expect(SeedMix.verify(s, roster: l.roster, myKey: l.keys[1], myContribution: l.contributions[1]))
        // A rejoiner (its contribution was its earlier process's) and a spectator (no seat).
        #expect(SeedMix.verify(s, roster: l.roster, myKey: l.keys[1], myContribution: nil))
        let spectator = [UInt8](repeating: 9, count: 32)
        #expect(SeedMix.verify(s, roster: l.roster, myKey: spectator, myContribution: SeedMix.contribution()))
        // Who took its seat in this lobby: the process whose contribution the start carries.
        #expect(SeedMix.revealed(l.contributions[1], in: s, by: l.keys[1]))
        #expect(!SeedMix.revealed(SeedMix.contribution(), in: s, by: l.keys[1]))
        #expect(!SeedMix.revealed(l.contributions[1], in: s, by: l.keys[2]))
        #expect(!SeedMix.revealed(l.contributions[1], in: s, by: spectator))
    }

    @Test func aStartTheHostBentIsRefused() {
        let l = Lobby()
        let honest = l.start(reveals: l.contributions)
        let me = l.keys[1]
        let mine = l.contributions[1]
        // The seed is not the mix of the reveals.
        var s = l.start(reveals: l.contributions, seed: honest.config.seed ^ 1)
        #expect(!SeedMix.verify(s, roster: l.roster, myKey: me, myContribution: mine))
        // A reveal that does not open its player's commit (the host swapped in its own choice),
        // whether the seed matches it or not, and for a rejoiner too.
        var swapped = l.contributions
        swapped[2] = SeedMix.contribution()
        s = l.start(reveals: swapped)
        #expect(!SeedMix.verify(s, roster: l.roster, myKey: me, myContribution: mine))
        #expect(!SeedMix.verify(s, roster: l.roster, myKey: me, myContribution: nil))
        // A reveal missing.
        s = l.start(reveals: Array(l.contributions.prefix(2)))
        #expect(!SeedMix.verify(s, roster: l.roster, myKey: me, myContribution: mine))
        // A player who was never on the roster.
        var short = l.roster
        short.members.removeLast()
        #expect(!SeedMix.verify(honest, roster: short, myKey: me, myContribution: mine))
        // Our own seat carries someone else's contribution (its commit and the seed made to match
        // it): a first-time member refuses; only a rejoiner, which cannot know, takes it.
        var other = l.contributions
        other[1] = SeedMix.contribution()
        var bent = l.roster
        bent.members[1].commit = SeedMix.commit(other[1])
        s = l.start(reveals: other)
        #expect(!SeedMix.verify(s, roster: bent, myKey: me, myContribution: mine))
        #expect(SeedMix.verify(s, roster: bent, myKey: me, myContribution: nil))
    }
}
