import Determinism
import Engine
import Keys
import Sodium

// Test-only: an equivocating owner (`testingEquivocate`), and what a packet must carry for it.
extension NetMatch {
    /// The other history a `testingEquivocate` owner tells some links: each op from the fork on
    /// one tick later (legal under turf's rules: the spacing between moves is kept).
    func altOp(_ op: GameOp) -> GameOp {
        var o = op
        o.tick = op.tick < config.lengthTicks ? op.tick + 1 : op.tick - 1
        return o
    }

    /// Our own statement re-signed over the other history (h_n of the altered ops from `k` on).
    mutating func altStatement(_ st: SignedStatement, from k: Int) -> SignedStatement {
        let p = Int(st.player)
        let n = Int(st.count)
        guard n > k else { return st }
        if let c = altSigned[p], c.count == st.count, c.asOfTick == st.asOfTick { return c }
        var h = chain[p][k]
        for s in k..<n { h = OpChain.next(h, opBytes: OpChain.encode(altOp(log[p][s]!.op), as: Game.self)) }
        let msg = SignedStatement.message(
            digest: digest,
            player: st.player,
            count: st.count,
            asOfTick: st.asOfTick,
            chain: h
        )
        let alt = SignedStatement(
            player: st.player,
            count: st.count,
            asOfTick: st.asOfTick,
            signature: identity.sign(msg),
            chain: h
        )
        altSigned[p] = alt
        return alt
    }

    func mineAcksChanged(_ link: Link) -> Bool {
        for p in 0..<log.count where ownerLink[p] != nil && link.ackSentAt[p] != accepted[p] { return true }
        return false
    }
}
