import Determinism
import Engine
import Keys
import Sodium

// Sending: liveness, relaying, and the packet each link is sent (acks, ops, statements, gossip).
extension NetMatch {
    mutating func checkLiveness(_ l: Int, now: UInt64) {
        if links[l].stats.connected && now > links[l].lastHeard + options.disconnectNanos {
            links[l].stats.connected = false
            events.append(.linkDown(linkKeys[l]))
        }
    }

    /// Whether to relay player `p`'s ops to link `l`: never the link's own players nor ours (ours
    /// go direct); a third player's ops only when the peer has not acknowledged them within about
    /// two round trips, or when we cannot hear the owner either (so healthy links carry no relays).
    func relayFrom(_ link: Link, _ l: Int, player p: Int, now: UInt64) -> Int? {
        // A spectator (it owns no player) only listens: it relays nothing.
        guard !mine.isEmpty, let o = ownerLink[p], o != l else { return nil }
        let ack = link.peerAck[p]
        guard ack < accepted[p], let e = log[p][ack] else { return nil }
        if l >= peers.count { return ack }  // a spectator hears only from us
        let wait = 2 * max(link.rtt, links[o].rtt) + 2 * tickNanos
        return now >= e.acceptedAt + wait ? ack : nil
    }

    var tickNanos: UInt64 { 1_000_000_000 / UInt64(config.tickRate) }

    mutating func packet(for l: Int, now: UInt64) -> (bytes: [UInt8], fresh: Bool)? {
        var link = links[l]
        defer { links[l] = link }
        // What to send: own ops the peer lacks; relayed ops it has lacked for a while.
        var ranges: [(p: Int, from: Int, to: Int)] = []
        var fresh = false
        var secondCopy = false
        var retransmit = false
        let rto = link.rtt + 2 * tickNanos
        for p in mine.map(Int.init) {
            let to = log[p].count
            let ack = link.peerAck[p]
            guard ack < to else { continue }
            if link.sentOnce[p] < to { fresh = true }
            if !options.duplicateFresh && link.sentTwice[p] < link.sentOnce[p] { secondCopy = true }
            if now >= link.lastRetransmit + rto { retransmit = true }
            ranges.append((p, ack, to))
        }
        for p in 0..<log.count where !mine.contains(PlayerID(p)) {
            guard let from = relayFrom(link, l, player: p, now: now) else { continue }
            if now >= link.lastRetransmit + rto { retransmit = true }
            ranges.append((p, from, accepted[p]))
        }
        let ackChanged = mineAcksChanged(link)
        let ended = ticksRun > config.lengthTicks
        let checkpointDue = lastCheckpoint.map { $0.tick != link.checkpointSent || link.checkpointRepeats < 2 } ?? false
        var statementsDue: [SignedStatement] = []
        for p in 0..<log.count {
            guard let st = bestStatement[p] else { continue }
            let isMine = ownerLink[p] == nil
            let relaying = ranges.contains { $0.p == p && !isMine }
            // Settling: a peer whose best statement for a third player is weaker than ours (or that
            // settles it gone while we hold its final one) gets ours, and the relays the ops it covers.
            let behind =
                ended && !isMine && ownerLink[p] != l
                && (link.peerBest[p] < Int(st.count)
                    || (link.peerGone & (1 << UInt8(p)) != 0 && finalsHeld & (1 << UInt8(p)) != 0))
            guard isMine || relaying || behind else { continue }
            let changed = Int(st.count) != link.statementSent[p] || st.asOfTick != link.statementTickSent[p]
            let finalMissing = isMine && st.asOfTick >= config.lengthTicks && link.peerFinals & (1 << UInt8(p)) == 0
            if (isMine && changed)
                || ((relaying || finalMissing || behind) && now >= link.statementSentAt[p] + 300_000_000)
            {
                statementsDue.append(st)
            }
        }
        // Equivocation (docs/netmatch.md): third players' newest statements (during the match one
        // a second on each link, in turn: a few hundred bytes a second at most; after the end, each
        // once a second, so final statements meet at once), so peers holding other histories of a
        // player find two of one tick; a proof, to every peer that does not know it yet, until it
        // says it does.
        for p in 0..<log.count where ownerLink[p] != nil && ownerLink[p] != l {
            let bit = UInt8(1) << UInt8(p)
            if let c = timeCuts[p], link.peerTimeCut[p] > c.seq, now >= link.timeEvidenceSentAt[p] + 300_000_000 {
                statementsDue.append(c.evidence)
                link.timeEvidenceSentAt[p] = now
            }
            if equivocators & bit != 0 {
                if link.peerEquivocators & bit == 0, now >= link.proofSentAt[p] + 300_000_000, let (a, b) = proofs[p] {
                    statementsDue += [a, b]
                    link.proofSentAt[p] = now
                }
            }
        }
        // The gossip proper: the third players whose newest statement this link has not had.
        var gossip = (0..<log.count).filter { p in
            guard ownerLink[p] != nil, ownerLink[p] != l, equivocators & (1 << UInt8(p)) == 0,
                let st = bestStatement[p]
            else { return false }
            return st.asOfTick != link.gossipTickSent[p] && now >= link.gossipSentAt[p] + 1_000_000_000
        }
        if !ended {
            // During the match: one a second, the one this link has waited longest for.
            let oldest = gossip.min { link.gossipSentAt[$0] < link.gossipSentAt[$1] }
            gossip = now >= link.gossipAnySentAt + 1_000_000_000 ? oldest.map { [$0] } ?? [] : []
        }
        // During the match the gossip rides only on packets that go out anyway (a packet of its
        // own would change when relays are judged due, and relay more); after the end it sends.
        var gossipDue: [SignedStatement] = []
        for p in gossip {
            let st = bestStatement[p]!  // `!`: filtered on above
            if !statementsDue.contains(st) && !gossipDue.contains(st) { gossipDue.append(st) }
        }
        if ended {
            statementsDue += gossipDue
            gossipDue = []
        }
        let keepalive = now >= link.lastSend + options.keepaliveNanos
        let ackDue = ackChanged && now >= link.lastSend + 3 * tickNanos
        guard
            fresh || secondCopy || (retransmit && !ranges.isEmpty) || keepalive || ackDue || !statementsDue.isEmpty
                || (checkpointDue && now >= link.lastSend + 3 * tickNanos)
        else { return nil }

        var w = ByteWriter(capacity: 256)
        w.u8(Packet<Game>.magic)
        w.varint(UInt64(ticksRun))
        for p in mine { w.varint(UInt64(accepted[Int(p)])) }
        // Acks: those that changed since the last packet, and all of them every 4th packet.
        var mask: UInt8 = 0
        let all = link.packetsSent % 4 == 0
        for p in 0..<log.count
        where ownerLink[p] != nil && (all || link.ackSentAt[p] != accepted[p] || distrusted & (1 << UInt8(p)) != 0) {
            mask |= 1 << UInt8(p)
        }
        w.u8(mask)
        for p in 0..<log.count where mask & (1 << UInt8(p)) != 0 {
            w.varint(UInt64(accepted[p]))
            link.ackSentAt[p] = accepted[p]
        }
        // Statements (64-byte signatures: a few a second at most).
        var budget =
            options.maxDatagram - w.count - 18 - 9 * config.players.count
            - (ended ? 11 + 9 * config.players.count : 1)
        var sts: [SignedStatement] = []
        for st in (statementsDue + gossipDue).prefix(8) where budget > 112 {
            sts.append(st)
            budget -= 107
        }
        for st in sts where ownerLink[Int(st.player)] != nil && ownerLink[Int(st.player)] != l {
            let p = Int(st.player)
            if st == bestStatement[p] {
                link.gossipSentAt[p] = now
                link.gossipAnySentAt = now
                link.gossipTickSent[p] = st.asOfTick
            }
        }
        // Ops, oldest unacknowledged first, within the budget.
        var opsW = ByteWriter(capacity: 256)
        var nOps = 0
        var sentUpTo: [(Int, Int)] = []
        for r in ranges {
            var s = r.from
            while s < r.to {
                guard let e = log[r.p][s] else {
                    s += 1
                    continue
                }
                if opsW.count + e.bytes.count + 3 > budget { break }
                if testingForgeRelayed && ownerLink[r.p] != nil && !link.forged, s > 0,
                    let prev = log[r.p][s - 1], prev.op.payload != e.op.payload
                {
                    // Test-only: this relay lies once per link (another payload under the op's seq).
                    link.forged = true
                    let forged = GameOp(player: e.op.player, seq: e.op.seq, tick: e.op.tick, payload: prev.op.payload)
                    opsW.bytes(OpChain.encode(forged, as: Game.self))
                    nOps += 1
                    s += 1
                    continue
                }
                if let eq = testingEquivocate, eq.links.contains(l), ownerLink[r.p] == nil, s >= eq.fromSeq {
                    // Test-only: this owner tells this link another history from `fromSeq` on.
                    opsW.bytes(OpChain.encode(altOp(e.op), as: Game.self))
                } else {
                    opsW.bytes(e.bytes)
                }
                nOps += 1
                if ownerLink[r.p] != nil { link.stats.opsForwarded += 1 }
                s += 1
            }
            sentUpTo.append((r.p, s))
        }
        w.varint(UInt64(nOps))
        w.bytes(opsW.bytes)
        w.u8(UInt8(sts.count))
        for st in sts {
            if let eq = testingEquivocate, eq.links.contains(l), ownerLink[Int(st.player)] == nil,
                !testingEquivocateUnsigned
            {
                altStatement(st, from: eq.fromSeq).encode(into: &w)
            } else {
                st.encode(into: &w)
            }
            link.statementSent[Int(st.player)] = Int(st.count)
            link.statementTickSent[Int(st.player)] = st.asOfTick
            link.statementSentAt[Int(st.player)] = now
        }
        w.u8(finalsHeld)
        w.u8(equivocators)
        // Where we cut each player's log by its owner's clock.
        var cutMask: UInt8 = 0
        for p in 0..<log.count where timeCuts[p] != nil { cutMask |= 1 << UInt8(p) }
        w.u8(cutMask)
        for p in 0..<log.count { if let c = timeCuts[p] { w.varint(UInt64(c.seq)) } }
        w.u8(distrusted)
        if ended {
            // The settle report: players settled gone here, our best statement's count per player,
            // and (flag 2) our final hash once everything we settle on is held.
            let final = computeFinal()
            w.u8(final == nil ? 1 : 2)
            w.u8(goneMask)
            var mask: UInt8 = 0
            for p in 0..<log.count where bestStatement[p] != nil { mask |= 1 << UInt8(p) }
            w.u8(mask)
            for p in 0..<log.count where mask & (1 << UInt8(p)) != 0 { w.varint(UInt64(bestCount(p))) }
            if let final {
                w.u64(final)
                for d in finalDigests { w.u32(d) }
            }
        } else {
            w.u8(0)
        }
        if let cp = lastCheckpoint, checkpointDue {
            w.varint(UInt64(cp.tick))
            w.u64(cp.hash)
            w.u32(cp.verdicts)
            for d in cp.digests { w.u32(d) }
            if link.checkpointSent == cp.tick {
                link.checkpointRepeats += 1
            } else {
                link.checkpointSent = cp.tick
                link.checkpointRepeats = 1
            }
        }
        for (p, upTo) in sentUpTo where ownerLink[p] == nil {
            link.sentTwice[p] = max(link.sentTwice[p], min(link.sentOnce[p], upTo))
            link.sentOnce[p] = max(link.sentOnce[p], upTo)
        }
        if retransmit || !ranges.isEmpty { link.lastRetransmit = now }
        link.lastSend = now
        link.packetsSent += 1
        return (w.bytes, fresh)
    }
}
