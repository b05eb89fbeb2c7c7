import Engine
import Sodium

/// The match seed, mixed from a secret contribution of every player (commit–reveal): each player
/// commits to BLAKE2b-256(contribution) in its hello (the host in its first roster) before seeing
/// anyone's contribution, and reveals it only when the roster is final. The seed is the first 8
/// bytes of BLAKE2b over every contribution in player order, so no one chooses it alone, and every
/// member checks every reveal against its commit (`verify`).
public enum SeedMix {
    public static func contribution() -> [UInt8] { Sodium.randomBytes(LobbyMessage.contributionLength) }

    public static func commit(_ contribution: [UInt8]) -> [UInt8] {
        BLAKE2b.hash(concatenating: [Array("turf:seed-commit:v1".utf8), contribution])
            .prefix(32).map { $0 }
    }

    /// Whether `reveal` opens `commit`.
    public static func opens(_ reveal: [UInt8], _ commit: [UInt8]) -> Bool {
        reveal.count == LobbyMessage.contributionLength && commit.count == 32 && Self.commit(reveal) == commit
    }

    public static func seed(_ reveals: [[UInt8]]) -> UInt64 {
        let h = BLAKE2b.hash(concatenating: [Array("turf:seed-mix:v1".utf8)] + reveals)
        var s: UInt64 = 0
        for i in 0..<8 { s |= UInt64(h[i]) << (8 * UInt64(i)) }
        return s
    }

    /// Whether the start carries `contribution` as the reveal of the seat `key` owns: the process
    /// that made `contribution` took that seat in this lobby (so it is no rejoiner).
    public static func revealed(_ contribution: [UInt8], in s: LobbyMessage.Start, by key: [UInt8]) -> Bool {
        guard let i = s.config.players.firstIndex(where: { $0.owner?.bytes == key }), i < s.reveals.count else {
            return false
        }
        return s.reveals[i] == contribution
    }

    /// A member's (or spectator's) check of the host's start against the roster it was shown: one
    /// reveal per player, the seed is their mix, every player is on the roster and its reveal opens
    /// the commit the roster showed for it. `myContribution` is what this process revealed for the
    /// seat of `myKey`: given, the start must carry exactly it (the host did not swap our
    /// contribution; and it proves this process took the seat, so it never made ops before and its
    /// op log starts at seq 0, however late the start arrived). nil for a rejoiner (its seat's
    /// reveal was made by its earlier process, which it cannot check) and for a spectator.
    public static func verify(
        _ s: LobbyMessage.Start,
        roster: LobbyMessage.Roster,
        myKey: [UInt8],
        myContribution: [UInt8]?
    ) -> Bool {
        guard s.reveals.count == s.config.players.count, seed(s.reveals) == s.config.seed else { return false }
        for (i, p) in s.config.players.enumerated() {
            guard let owner = p.owner, let m = roster.members.first(where: { $0.key == owner.bytes }),
                opens(s.reveals[i], m.commit)
            else { return false }
            if owner.bytes == myKey, let mine = myContribution, s.reveals[i] != mine { return false }
        }
        return true
    }
}
