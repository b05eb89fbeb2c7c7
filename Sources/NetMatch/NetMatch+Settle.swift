import Determinism
import Engine
import Keys
import Sodium

// Per-link stats and the end of a match: when it is settled, the final hash and its basis, the
// players gone or cut, and the comparison of final hashes across links.
extension NetMatch {
    public func stats(for peer: PeerKey) -> LinkStats? {
        linkKeys.firstIndex(of: peer).map { links[$0].stats }
    }

    public func isConnected(_ peer: PeerKey) -> Bool {
        linkKeys.firstIndex(of: peer).map { links[$0].stats.connected } ?? false
    }

    /// Per player, the verified statement with the highest count: what a replay records.
    public var statements: [SignedStatement] { bestStatement.compactMap { $0 } }

    /// The statements in the form a replay records (`Replay.signatures`).
    public var recordedSignatures: [Replay<Game>.Signature] {
        statements.map { .init(player: $0.player, count: $0.count, asOfTick: $0.asOfTick, signature: $0.signature) }
    }

    /// Per player, how many ops (from seq 0, no gaps) are authenticated here.
    public func acceptedCount(_ player: PlayerID) -> Int { accepted[Int(player)] }

    /// The tick through which every player's ops are all held (−1 before any).
    public var finalTick: Int64 { finalThrough.min() ?? -1 }

    /// Whether every link has acknowledged every op we hold of its interest and we hold every op
    /// the owners stated as of the match end: nothing left to send. A player whose owner went
    /// silent (crashed) without its final statement reaching here is settled *gone* (docs/netmatch.md,
    /// "A peer that never comes back"): every connected peer must report it gone too, holding a
    /// best statement of the same count as ours, so the survivors keep the same verified prefix.
    ///
    /// A peer cut off from everyone cannot tell that from everyone else crashing: players whose
    /// owners went silent (not those that said they left) are settled gone only while they are a
    /// minority of the match's players. A peer partitioned from the rest waits (and settles once
    /// the partition heals); a lone survivor of a two-player match whose opponent vanished without
    /// a word ends unsettled, its recording holding what it verified.
    public var isSettled: Bool {
        guard ticksRun > config.lengthTicks else { return false }
        let gone = goneMask
        var silent = 0
        for p in 0..<config.players.count where gone & (1 << UInt8(p)) != 0 {
            if let o = ownerLink[p], !links[o].left { silent += 1 }
        }
        guard silent * 2 < config.players.count else { return false }
        // Nor alone: with an owner silent, another owner must say the same: one we still hear (its
        // report is checked below), or one that left settled on the same players gone. Cut off
        // from everyone, a peer holding most finals (that reached it before the cut) would
        // otherwise settle the rest gone with nobody to disagree.
        if silent > 0
            && !(0..<peers.count).contains(where: { l in
                !ownsJudged(l) && (links[l].stats.connected || (links[l].left && reportsGone(links[l], gone)))
            })
        {
            return false
        }
        let finals = finalsHeld
        for p in 0..<config.players.count where (gone | judged) & (1 << UInt8(p)) == 0 {
            guard finals & (1 << UInt8(p)) != 0, finalThrough[p] >= Int64(config.lengthTicks) else { return false }
        }
        guard let ours = finalHash else { return false }
        // A proven equivocator's peer is waited for in nothing: it never voids its own log.
        for l in links.indices where links[l].stats.connected && !ownsJudged(l) {
            let wanted = ~(gone | judged) & allPlayersMask
            if links[l].peerFinals & wanted != wanted { return false }
            // Everyone we hear from must end on our final hash (a spectator too: it records it).
            if links[l].peerFinal != ours { return false }
            for p in mine where links[l].peerAck[Int(p)] < log[Int(p)].count { return false }
            if gone != 0 && !reportsGone(links[l], gone) { return false }
        }
        return true
    }

    /// Whether a link's settle report has every player of `gone` gone, each with the best count
    /// held here.
    func reportsGone(_ link: Link, _ gone: UInt8) -> Bool {
        guard link.peerSettleKnown, link.peerGone & gone == gone else { return false }
        for p in 0..<config.players.count where gone & (1 << UInt8(p)) != 0 {
            if link.peerBest[p] != bestCount(p) { return false }
        }
        return true
    }

    /// Whether every peer that reported a final hash on the same basis as ours reported ours: false
    /// once one disagreed (a `finalMismatch` event said so). `converged` is `isSettled && agreed`.
    public var agreed: Bool { finalMismatches.isEmpty }

    /// The final hash once every op this peer will settle on is held: after the end, every player's
    /// final statement held and its ops accepted, or the player settled gone (its ops cut to the
    /// best statement held). The hash of the replica of exactly those ops (`Replica.hash`, rules
    /// applied): what the recording's final hash must be. nil before.
    public var finalHash: UInt64? {
        guard let b = finalBasis, let c = finalCache, c.basis == b else { return nil }
        return c.hash
    }

    /// What the final hash covers: the gone mask, then per player the ops settled on (nil while
    /// something is still missing).
    var finalBasis: [Int]? {
        guard ticksRun > config.lengthTicks else { return nil }
        let gone = goneMask
        let finals = finalsHeld
        var basis: [Int] = [Int(gone) | Int(verdictDigest) << 8]
        for p in 0..<config.players.count {
            if equivocators & (1 << UInt8(p)) != 0 {
                basis.append(0)  // void: nothing of it counts
            } else if let c = timeCuts[p] {
                guard accepted[p] >= c.seq else { return nil }  // what counts: the ops before the cut
                basis.append(c.seq)
            } else if gone & (1 << UInt8(p)) != 0 {
                basis.append(max(0, bestCount(p)))
            } else {
                guard finals & (1 << UInt8(p)) != 0, finalThrough[p] >= Int64(config.lengthTicks) else { return nil }
                basis.append(accepted[p])
            }
        }
        return basis
    }

    /// Computes the final hash when what it covers changed (O(ops), once or a few times a match).
    @discardableResult
    mutating func computeFinal() -> UInt64? {
        guard let basis = finalBasis else { return nil }
        if let c = finalCache, c.basis == basis { return c.hash }
        // `try!`: the config was validated when this NetMatch was made (the trail replica is one).
        var r = try! Replica<Game>(config: config)
        for v in verdicts { r.applyVerdict(v.player, fromSeq: v.seq, rule: v.rule, tick: v.tick) }
        for p in 0..<config.players.count {
            for s in 0..<basis[p + 1] { if let e = log[p][s] { r.receive(e.op) } }
        }
        finalCache = (basis, r.hash)
        return r.hash
    }

    /// Per player, the digest of the log the final hash covers (a peer's final hash is compared
    /// with ours only where every player's log is the same, as for checkpoints).
    var finalDigests: [UInt32] {
        guard let b = finalBasis else { return [] }
        return (0..<config.players.count).map { p in Self.digest(chain[p][min(b[p + 1], chain[p].count - 1)]) }
    }

    /// What our final hash was computed over, as the settle report carries it (gone mask, and the
    /// best counts of the gone players): a peer's hash is compared with ours only on the same basis.
    func sameBasis(_ link: Link) -> Bool {
        let gone = goneMask
        guard link.peerSettleKnown, link.peerGone == gone,
            Self.verdictDigest(link.peerEquivocators, link.peerTimeCut) == verdictDigest
        else { return false }
        for p in 0..<config.players.count where gone & (1 << UInt8(p)) != 0 {
            if link.peerBest[p] != bestCount(p) { return false }
        }
        return true
    }

    /// Whether link l's peer owns a player with a verdict against it (void, or cut by its own
    /// clock): it never applies that verdict to itself, so nothing of it is waited for.
    func ownsJudged(_ l: Int) -> Bool {
        owned[l].contains { equivocators & (1 << $0) != 0 || timeCuts[Int($0)] != nil }
    }

    /// Players with a verdict against them (void or cut by their own clock).
    var judged: UInt8 {
        var m = equivocators
        for p in timeCuts.indices where timeCuts[p] != nil { m |= 1 << UInt8(p) }
        return m
    }

    mutating func compareFinal(link l: Int) {
        guard !ownsJudged(l), let theirs = links[l].peerFinal, let ours = computeFinal(), theirs != ours,
            links[l].peerFinalDigests == finalDigests,
            links[l].peerFinalMismatch != theirs, sameBasis(links[l])
        else { return }
        links[l].peerFinalMismatch = theirs
        if !finalMismatches.contains(linkKeys[l]) { finalMismatches.append(linkKeys[l]) }
        events.append(.finalMismatch(peer: linkKeys[l], ours: ours, theirs: theirs))
    }

    /// Players this peer settles without their final statement: the match ended here, their
    /// owner's link is silent (`disconnected`, or it left without a session) and no final
    /// statement of theirs is held. Their ops count up to the best statement the survivors hold.
    public var gonePlayers: [PlayerID] {
        let m = goneMask
        return (0..<config.players.count).filter { m & (1 << UInt8($0)) != 0 }.map { PlayerID($0) }
    }

    /// The ops of `player` a recording keeps: every op for a player that is not gone; for a gone
    /// one, those covered by its best verified statement (nothing past it can be verified).
    public func settledCount(_ player: PlayerID) -> Int? {
        // A proven equivocator's log is void; what is kept of it (evidence) is what a verified
        // statement of it covers, so the recording's signatures still check.
        guard (goneMask | equivocators) & (1 << UInt8(player)) != 0 else { return nil }
        return max(0, bestCount(Int(player)))
    }

    /// `logs` (a replica's `allLogs`) cut to what the survivors agreed: each gone player's log
    /// (and each proven equivocator's) to its `settledCount`.
    public func settledLogs(_ logs: [[GameOp]]) -> [[GameOp]] {
        logs.enumerated().map { p, ops in
            guard p < config.players.count, let n = settledCount(PlayerID(p)) else { return ops }
            return ops.filter { Int($0.seq) < n }
        }
    }

    /// Whether `settledLogs` cuts anything (a gone player or a proven equivocator).
    public var cutsLogs: Bool { (goneMask | equivocators) != 0 }

    var goneMask: UInt8 {
        guard ticksRun > config.lengthTicks else { return 0 }
        let finals = finalsHeld
        var m: UInt8 = 0
        for p in 0..<config.players.count {
            guard let o = ownerLink[p], !links[o].stats.connected, finals & (1 << UInt8(p)) == 0 else { continue }
            m |= 1 << UInt8(p)
        }
        return m
    }

    func bestCount(_ p: Int) -> Int { bestStatement[p].map { Int($0.count) } ?? -1 }

    var allPlayersMask: UInt8 { UInt8(truncatingIfNeeded: (1 << config.players.count) - 1) }

    /// Players whose statement as of the match end, covering every op they made, is held here.
    var finalsHeld: UInt8 {
        var m: UInt8 = 0
        for p in 0..<config.players.count {
            if let st = bestStatement[p], st.asOfTick >= config.lengthTicks, Int(st.count) <= accepted[p] {
                m |= 1 << UInt8(p)
            }
        }
        return m
    }
}
