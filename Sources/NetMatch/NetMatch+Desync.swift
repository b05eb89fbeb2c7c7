import Determinism
import Engine
import Keys
import Sodium

// Desync detection: checkpoints of the trailing replica, compared with each link's.
extension NetMatch {
    mutating func advanceCheckpoints() {
        let through = finalTick
        while nextCheckpoint <= config.lengthTicks && Int64(nextCheckpoint) <= through {
            let cp = nextCheckpoint
            for p in trailSeq.indices {
                while trailSeq[p] < accepted[p], let e = log[p][trailSeq[p]], e.op.tick <= cp {
                    trail.receive(e.op)
                    trailSeq[p] += 1
                }
            }
            var h = trail.hash
            if testingCorruptCheckpoint == cp { h ^= 0x5A5A }
            let c = Checkpoint(
                tick: cp,
                hash: h,
                verdicts: verdictDigest,
                digests: trailSeq.indices.map { Self.digest(chain[$0][trailSeq[$0]]) }
            )
            checkpoints.append(c)
            if checkpoints.count > options.checkpointMemory { checkpoints.removeFirst() }
            lastCheckpoint = c
            nextCheckpoint += config.checkpointInterval
            for l in links.indices { compare(link: l) }
        }
    }

    mutating func compare(link l: Int) {
        guard let theirs = links[l].peerCheckpoint,
            let ours = checkpoints.last(where: { $0.tick == theirs.tick })
        else { return }
        links[l].peerCheckpoint = nil
        // Taken knowing other equivocators, the hashes differ by design (a voided log); over other
        // logs of a player, its owner is to blame, not this peer (the proof follows from the
        // statements both hold): no desync either way.
        guard ours.hash != theirs.hash, ours.verdicts == theirs.verdicts, ours.digests == theirs.digests else { return }
        if desyncReported.map({ theirs.tick < $0 }) ?? true {
            desyncReported = theirs.tick
            events.append(.desync(tick: theirs.tick, peer: linkKeys[l], ours: ours.hash, theirs: theirs.hash))
        }
    }
}
