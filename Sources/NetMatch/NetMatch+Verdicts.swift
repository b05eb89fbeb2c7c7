import Determinism
import Engine
import Keys
import Sodium

// Equivocation and time cuts: distrust of an owner that lied, retractions, proofs, the verdicts
// recorded in the replay, and the frontiers that settle a player's log.
extension NetMatch {
    /// The owner of p lied to us directly: its ops past the last statement that verified here are
    /// taken back (here, and in the match through `takeRetractions`), its direct ops are dropped
    /// from now on, and every peer is told (the packet's `retracted` mask) that our acks of p may
    /// go down, so they relay p's signed ops again.
    mutating func distrust(_ p: Int) {
        distrusted |= 1 << UInt8(p)
        let keep =
            signedAt[p].values.filter { Int($0.count) < chain[p].count && chain[p][Int($0.count)] == $0.chain }
            .map { Int($0.count) }.max() ?? 0
        if log[p].count > keep { log[p].removeSubrange(keep...) }
        truncateChain(p, at: keep)
        accepted[p] = min(accepted[p], keep)
        acceptedOut.removeAll { Int($0.player) == p && Int($0.seq) >= keep }
        if trailSeq[p] > keep {
            trail.retract(PlayerID(p), from: UInt32(keep))
            trailSeq[p] = keep
        }
        finalThrough[p] = -1
        frontiers[p].removeAll()
        bestStatement[p] = signedAt[p].values.filter { Int($0.count) <= keep }.max {
            ($0.count, $0.asOfTick) < ($1.count, $1.asOfTick)
        }
        newRetractions.append((PlayerID(p), UInt32(keep)))
        events.append(.unsignedLie(player: PlayerID(p)))
    }

    /// Players whose ops from a seq on were taken back since the last call (`unsignedLie`):
    /// apply before the ops `takeAccepted` returns (`LocalMatch.retract`).
    public mutating func takeRetractions() -> [(player: PlayerID, from: UInt32)] {
        defer { newRetractions.removeAll() }
        return newRetractions
    }

    /// Drops every unverified (relayed) op of player p: a relay sent ops no statement covers.
    mutating func dropUnverified(_ p: Int) {
        var first: Int?
        for s in accepted[p]..<log[p].count where log[p][s].map({ !$0.verified }) ?? false {
            log[p][s] = nil
            drops.unverifiedDropped += 1
            if first == nil { first = s }
        }
        if let first { truncateChain(p, at: first) }
    }

    /// Two genuine statements of player p as of one tick over different histories: its owner
    /// equivocated. Its whole log is void from here on (the checkpoint replica's, the final
    /// hash's, and the match's through `takeVerdicts`), and the proof goes to every link.
    mutating func prove(_ p: Int, _ a: SignedStatement, _ b: SignedStatement) {
        let bit = UInt8(1) << UInt8(p)
        guard equivocators & bit == 0 else { return }
        equivocators |= bit
        proofs[p] = (a, b)
        trail.exclude(PlayerID(p), rule: "equivocation", tick: a.asOfTick)
        newVerdicts.append(.init(player: PlayerID(p), seq: 0, tick: a.asOfTick, rule: "equivocation", proof: []))
        events.append(.equivocation(player: PlayerID(p), tick: a.asOfTick))
    }

    /// Players proven to have equivocated since the last call: void their logs in the match
    /// (`LocalMatch.exclude`).
    public mutating func takeVerdicts() -> [Replay<Game>.Verdict] {
        defer { newVerdicts.removeAll() }
        return newVerdicts
    }

    /// Every proven equivocator with its proof (`SignedStatement.encodeProof`), in player order:
    /// what a replay records (`Replay.verdicts`), so the file alone voids the same logs.
    public var verdicts: [Replay<Game>.Verdict] {
        var out: [Replay<Game>.Verdict] = []
        for p in 0..<config.players.count {
            if let (a, b) = proofs[p] {
                out.append(
                    .init(
                        player: PlayerID(p),
                        tick: a.asOfTick,
                        rule: "equivocation",
                        proof: SignedStatement.encodeProof(a, b)
                    )
                )
            } else if let c = timeCuts[p] {
                out.append(
                    .init(
                        player: PlayerID(p),
                        seq: UInt32(c.seq),
                        tick: c.tick,
                        rule: c.rule,
                        proof: c.evidence.encoded()
                    )
                )
            }
        }
        return out
    }

    /// A digest of the verdicts: which players are void, and where each time cut falls. Peers
    /// compare checkpoint and final hashes only under the same verdicts.
    var verdictDigest: UInt32 { Self.verdictDigest(equivocators, timeCuts.map { $0?.seq ?? .max }) }

    static func verdictDigest(_ equivocators: UInt8, _ cuts: [Int]) -> UInt32 {
        var h = StableHash.mix(UInt64(equivocators) &+ 0x7E5D)
        for (p, c) in cuts.enumerated() where c != .max && equivocators & (1 << UInt8(p)) == 0 {
            h = StableHash.mix(h ^ (UInt64(p) << 40 | UInt64(c)))
        }
        return UInt32(truncatingIfNeeded: h)
    }

    /// Checks a statement verified against the chain held here for ops stamped against its
    /// owner's own clock (`SignedStatement.timeViolation`); one whose op `count` has not arrived is
    /// watched until it does.
    mutating func checkTime(_ p: Int, _ st: SignedStatement) {
        let held = accepted[p]
        let logP = log[p]
        let v = st.timeViolation { s in s < held ? logP[s]?.op.tick : nil }
        if let v {
            timeVerdict(p, seq: v.seq, rule: v.rule, evidence: st)
        } else if Int(st.count) >= held {
            let n = Int(st.count)
            if lateWatch[p][n].map({ $0.asOfTick < st.asOfTick }) ?? true {
                if lateWatch[p].count >= Self.statementMemory, let oldest = lateWatch[p].keys.min() {
                    lateWatch[p][oldest] = nil
                }
                lateWatch[p][n] = st
            }
        }
    }

    /// Player p's log stops at `seq` by its owner's signed clock: the checkpoint replica's, the
    /// final hash's and the match's (`takeVerdicts`); the statement goes to every peer whose cut
    /// of p is later, until it says it holds ours.
    mutating func timeVerdict(_ p: Int, seq: Int, rule: String, evidence: SignedStatement) {
        guard ownerLink[p] != nil, timeCuts[p].map({ seq < $0.seq }) ?? true else { return }
        let tick = seq < log[p].count ? log[p][seq]?.op.tick ?? evidence.asOfTick : evidence.asOfTick
        timeCuts[p] = (seq, rule, tick, evidence)
        trail.applyVerdict(PlayerID(p), fromSeq: UInt32(seq), rule: rule, tick: tick)
        newVerdicts.append(.init(player: PlayerID(p), seq: UInt32(seq), tick: tick, rule: rule, proof: []))
    }

    mutating func addFrontier(player p: Int, count: Int, tick: Tick) {
        guard Int64(tick) > finalThrough[p] else { return }
        if let last = frontiers[p].last, last.tick >= tick { return }
        if frontiers[p].count >= 64 { frontiers[p].removeFirst() }
        frontiers[p].append((count, tick))
        settleFrontiers(p)
    }

    mutating func settleFrontiers(_ p: Int) {
        while let f = frontiers[p].first, f.count <= accepted[p] {
            finalThrough[p] = max(finalThrough[p], Int64(f.tick))
            frontiers[p].removeFirst()
        }
    }
}
