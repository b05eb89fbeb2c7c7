import Determinism
import Engine
import Keys
import Sodium

// Logs and signed statements: inserting ops, the hash chains, signing our own statements, and
// considering (verifying, remembering, gossiping) everyone else's.
extension NetMatch {
    mutating func insert(_ op: GameOp, verified: Bool, via: Int?, now: UInt64) {
        let p = Int(op.player)
        let s = Int(op.seq)
        guard s < accepted[p] + options.maxAheadOps else {
            drops.farAhead += 1
            return
        }
        if s < log[p].count, let existing = log[p][s] {
            if existing.verified || !verified { return }  // duplicate (or an unverified copy of something held)
            if existing.op != op {
                // A direct op replaces a relayed one that claimed its seq: the relayed one was forged.
                drops.unverifiedDropped += 1
                truncateChain(p, at: s)
            }
        }
        while log[p].count <= s { log[p].append(nil) }
        log[p][s] = Entry(
            op: op,
            bytes: OpChain.encode(op, as: Game.self),
            verified: verified,
            acceptedAt: now,
            via: via
        )
        extendChain(p)
        if verified { advanceAccepted(p) }
        if let (st, via) = waitingStatement[p], Int(st.count) <= chain[p].count - 1 {
            waitingStatement[p] = nil
            consider(st, via: via)
        }
    }

    mutating func extendChain(_ p: Int) {
        while chain[p].count - 1 < log[p].count, let e = log[p][chain[p].count - 1] {
            chain[p].append(OpChain.next(chain[p].last!, opBytes: e.bytes))
        }
    }

    mutating func truncateChain(_ p: Int, at s: Int) {
        if chain[p].count > s + 1 { chain[p].removeSubrange((s + 1)...) }
    }

    mutating func advanceAccepted(_ p: Int) {
        while accepted[p] < log[p].count, let e = log[p][accepted[p]], e.verified {
            acceptedOut.append(e.op)
            if !lateWatch[p].isEmpty, let st = lateWatch[p].removeValue(forKey: accepted[p]), e.op.tick <= st.asOfTick {
                timeVerdict(p, seq: accepted[p], rule: "late", evidence: st)
            }
            accepted[p] += 1
        }
        settleFrontiers(p)
    }

    mutating func signOwn(asOf tick: Tick) {
        guard lastSignedTick != tick else { return }
        lastSignedTick = tick
        for p in mine {
            let n = accepted[Int(p)]
            drops.signings += 1
            let msg = SignedStatement.message(
                digest: digest,
                player: p,
                count: UInt32(n),
                asOfTick: tick,
                chain: chain[Int(p)][n]
            )
            bestStatement[Int(p)] = SignedStatement(
                player: p,
                count: UInt32(n),
                asOfTick: tick,
                signature: identity.sign(msg),
                chain: chain[Int(p)][n]
            )
        }
    }

    /// How many statements per player `signedAt` and `foreignAt` keep (a few minutes of them).
    static var statementMemory: Int { 512 }

    /// A statement from a link (or, `l` nil, one of ours): check its signature on its own, then
    /// against the chain held here, and accept the relayed ops it covers. A forged signature
    /// blames the link that sent it (an honest peer forwards only statements it verified); a
    /// genuine one over another history blames nobody until two of them contradict each other
    /// (`prove`).
    mutating func consider(_ st: SignedStatement, via l: Int?, now: UInt64 = 0) {
        let p = Int(st.player)
        guard ownerLink[p] != nil, let owner = config.players[p].owner else { return }
        let n = Int(st.count)
        let bit = UInt8(1) << UInt8(p)
        if signedAt[p][st.asOfTick] == st { return }
        // One already found genuine but over another history: its signature needs no new check,
        // but the history held here may have changed since (a forged relayed op replaced).
        let knownGenuine = foreignAt[p][st.asOfTick] == st
        if !knownGenuine, let best = bestStatement[p], best.count >= st.count, best.asOfTick >= st.asOfTick {
            // Nothing new to accept; worth a signature check only to find a contradiction, within
            // a budget per link (a flood of old statements costs little).
            guard equivocators & bit == 0, let l else { return }
            if now >= links[l].foreignBudgetAt + 1_000_000_000 {
                links[l].foreignBudgetAt = now
                links[l].foreignBudget = 0
            }
            guard links[l].foreignBudget < 32 else { return }
            links[l].foreignBudget += 1
        }
        if !knownGenuine { drops.verifications += 1 }
        guard knownGenuine || st.verifiesOnItsOwn(digest: digest, owner: owner) else {
            drops.badSignatures += 1
            events.append(.badSignature(player: PlayerID(p), from: l.map { linkKeys[$0] } ?? me))
            dropUnverified(p)
            return
        }
        if equivocators & bit == 0, let other = signedAt[p][st.asOfTick] ?? foreignAt[p][st.asOfTick],
            other.contradicts(st)
        {
            prove(p, other, st)
            return
        }
        if let best = bestStatement[p], best.count >= st.count, best.asOfTick >= st.asOfTick {
            // Nothing new to accept. Over the history held here it may still show an op stamped
            // against its owner's clock (a peer forwarding the evidence of a time cut).
            if n < chain[p].count && chain[p][n] == st.chain {
                remember(&signedAt[p], st)
                checkTime(p, st)
            } else {
                remember(&foreignAt[p], st)
            }
            return
        }
        guard n < chain[p].count else {
            // Not enough ops here yet to check it: keep one until they arrive, the nearest (a
            // relay's statement covers just the ops it relays; a newer one gossiped by another
            // peer must not push it out, or those ops wait and get relayed again).
            if n <= accepted[p] + options.maxAheadOps,
                waitingStatement[p].map({ Int($0.0.count) <= accepted[p] || st.count < $0.0.count }) ?? true
            {
                waitingStatement[p] = (st, l)
            }
            return
        }
        guard chain[p][n] == st.chain else {
            // The owner's signature over another history than the one held here: the ops relayed
            // to go with it are not what it signed. Kept, to be matched against statements of the
            // same tick (a proof of equivocation).
            drops.conflictingStatements += 1
            remember(&foreignAt[p], st)
            if let l, l == ownerLink[p], n <= accepted[p], distrusted & bit == 0 {
                // Its own statement, over its own session, against ops it sent us over that
                // session: the owner lied to us.
                distrust(p)
            } else {
                dropUnverified(p)
            }
            return
        }
        remember(&signedAt[p], st)
        if bestStatement[p].map({ $0.count < st.count || ($0.count == st.count && $0.asOfTick < st.asOfTick) }) ?? true
        {
            bestStatement[p] = st
        }
        if n > accepted[p] {
            // `!`: seqs below n are held: the chain that n was verified against runs through each of them.
            for s in accepted[p]..<n where !(log[p][s]!.verified) {
                log[p][s]!.verified = true
                log[p][s]!.via = nil
            }
        }
        advanceAccepted(p)
        addFrontier(player: p, count: n, tick: st.asOfTick)
        checkTime(p, st)
    }

    static func digest(_ h: [UInt8]) -> UInt32 {
        h.prefix(4).reduce(0) { $0 << 8 | UInt32($1) }
    }

    func remember(_ map: inout [Tick: SignedStatement], _ st: SignedStatement) {
        if map.count >= Self.statementMemory, let oldest = map.keys.min() { map[oldest] = nil }
        map[st.asOfTick] = st
    }
}
