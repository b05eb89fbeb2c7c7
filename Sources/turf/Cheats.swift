import Engine
import TerminalUI
import TextOutput
import TurfRules

/// A cheat the rules found (`Replica.cheats`: where a player's log stops and why), as the `cheat`
/// event, the `end` event's `cheats` and `turf replay --headless` print it (docs/threat-model.md).
func cheatJSON(_ c: Replica<TurfWorld>.Cheat, config: MatchConfig) -> JSONObject {
    var j = JSONObject()
    addCheat(c, config: config, to: &j)
    return j
}

func addCheat(_ c: Replica<TurfWorld>.Cheat, config: MatchConfig, to j: inout JSONObject) {
    j.add("player", Int(c.player))
    let info = Int(c.player) < config.players.count ? config.players[Int(c.player)] : nil
    j.add("name", info?.name)
    j.add("key", ownerText(info?.owner))
    j.add("tick", Int(c.tick))
    j.add("seq", Int(c.seq))
    j.add("rule", c.rule)
}

/// Reports each cheat once as it is found during a match. A player's log can only be cut earlier
/// than before (an equivocation found after an illegal move), so each player yields at most a few
/// events; past `perPlayer` they are counted, not printed.
struct CheatReporter {
    private var reported: [PlayerID: (seq: UInt32, times: Int)] = [:]
    private(set) var marks: [CheatMark] = []
    private(set) var suppressed = 0
    let perPlayer = 3

    /// New cheats in `replica` since the last call, as events to print.
    mutating func update(_ replica: Replica<TurfWorld>) -> [Replica<TurfWorld>.Cheat] {
        var fresh: [Replica<TurfWorld>.Cheat] = []
        for c in replica.cheats {
            if let r = reported[c.player], r.seq == c.seq { continue }
            let times = (reported[c.player]?.times ?? 0) + 1
            reported[c.player] = (c.seq, times)
            marks.removeAll { $0.player == Int(c.player) }
            marks.append(CheatMark(player: Int(c.player), rule: c.rule, tick: c.tick))
            if times <= perPlayer { fresh.append(c) } else { suppressed += 1 }
        }
        return fresh
    }
}
