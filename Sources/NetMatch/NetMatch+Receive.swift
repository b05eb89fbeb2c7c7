import Determinism
import Engine
import Keys
import Sodium

// The caller's side: local ops in, datagrams received and polled out, events and accepted ops
// taken (the per-tick calls of `NetMatch`'s doc comment).
extension NetMatch {
    /// A spectator that arrives while the match runs (docs/netmatch.md, "Spectators and
    /// rejoining"): from now on a watcher link, fed like one linked at the start. `holding` is,
    /// per player, how many ops (from seq 0) it already holds from the match copy it was sent (turf:
    /// the host's snapshot), so only what came after is sent; the statements covering them follow
    /// as for any watcher. The same key again (a restarted spectator) starts its link afresh.
    /// A player's owner is never a watcher.
    public mutating func addWatcher(_ key: PeerKey, holding: [Int], now: UInt64) {
        guard key != me, !peers.contains(key) else { return }
        var link = Self.newLink(players: config.players.count, now: now, rtt: options.defaultRTTNanos)
        for p in link.peerAck.indices where p < holding.count {
            link.peerAck[p] = max(0, min(holding[p], log[p].count))
        }
        if let l = linkKeys.firstIndex(of: key) {
            links[l] = link
        } else {
            watchers.append(key)
            linkKeys.append(key)
            owned.append([])
            links.append(link)
        }
    }

    /// The players this peer owns.
    public var ownPlayers: [PlayerID] { mine }

    /// Ops made here during tick `ranTick` (the loop's `outbox` after it ran): applied already by
    /// the loop; here they are logged, hashed into the chain and queued for every link.
    public mutating func addLocal(_ ops: [GameOp], ranTick: Tick, now: UInt64) {
        for op in ops where ownerLink[Int(op.player)] == nil && Int(op.player) < log.count {
            let mine = testingRewriteOwn?(op) ?? op
            if let h = testingHold, Int(mine.seq) >= h.fromSeq {
                held.append((ranTick + h.ticks, mine))
            } else {
                insert(mine, verified: true, via: nil, now: now)
            }
        }
        while let first = held.first, first.release <= ranTick || ranTick >= config.lengthTicks {
            held.removeFirst()
            insert(first.op, verified: true, via: nil, now: now)
        }
        ticksRun = max(ticksRun, ranTick + 1)
        for p in mine { finalThrough[Int(p)] = max(finalThrough[Int(p)], Int64(ranTick)) }
        if ranTick % options.signEveryTicks == 0 || ranTick >= config.lengthTicks { signOwn(asOf: ranTick) }
        advanceCheckpoints()
    }

    /// Ops this peer's match already holds, taken as authenticated without a signature check: a
    /// rejoining peer's copy of the match (docs/netmatch.md, "Spectators and rejoining"), its own earlier ops
    /// included, so it resumes its log at the right seq and its chain runs through them. A forged op
    /// in it surfaces later as a bad signature (the owner's statements do not cover it).
    public mutating func restore(_ ops: [GameOp], now: UInt64) {
        for op in ops.sorted(by: { ($0.player, $0.seq) < ($1.player, $1.seq) }) where Int(op.player) < log.count {
            insert(op, verified: true, via: nil, now: now)
        }
        for op in ops where ownerLink[Int(op.player)] == nil { ticksRun = max(ticksRun, op.tick + 1) }
        acceptedOut.removeAll()
        advanceCheckpoints()
    }

    /// The peer said it left (its match settled): it waits for nothing more from us, nor we from it.
    public mutating func peerLeft(_ peer: PeerKey) {
        guard let l = linkKeys.firstIndex(of: peer) else { return }
        links[l].stats.connected = false
        links[l].left = true
    }

    /// The loop jumped over ticks after a stall (`MatchHook.didSkip`). A jump past the match's
    /// end (a peer that stalled, or started late, until the match was over) runs no last tick, so
    /// the final statement is signed here: without it no peer could ever settle.
    public mutating func didSkip(to tick: Tick) {
        ticksRun = max(ticksRun, tick)
        for p in mine { finalThrough[Int(p)] = max(finalThrough[Int(p)], Int64(tick) - 1) }
        if tick > config.lengthTicks { signOwn(asOf: config.lengthTicks) }
    }

    /// A datagram from the peer `from` (as authenticated by its session). Malformed or hostile
    /// content is dropped and counted.
    public mutating func receive(_ bytes: [UInt8], from: PeerKey, now: UInt64) {
        guard let l = linkKeys.firstIndex(of: from) else {
            drops.unknownPeer += 1
            return
        }
        links[l].stats.datagramsReceived += 1
        links[l].stats.bytesReceived += UInt64(bytes.count + options.datagramOverhead)
        guard let packet = try? Packet<Game>.decode(bytes, config: config, senderPlayers: owned[l], maxOps: 512) else {
            drops.malformed += 1
            links[l].stats.malformed += 1
            return
        }
        if !links[l].stats.connected && !links[l].left {
            links[l].stats.connected = true
            events.append(.linkUp(from))
        }
        links[l].lastHeard = now
        links[l].peerTick = max(links[l].peerTick, packet.tick)
        for (p, ack) in packet.acks where Int(p) < accepted.count {
            // A player whose ops the sender took back: its ack may go down (we relay again).
            let taken = packet.retracted & (1 << p) != 0
            let a = min(ack, log[Int(p)].count)
            links[l].peerAck[Int(p)] = taken ? a : max(links[l].peerAck[Int(p)], a)
        }
        for op in packet.ops {
            let p = Int(op.player)
            if l >= peers.count {
                drops.watcherOps += 1
                continue
            }
            if ownerLink[p] == nil {
                drops.ownOpsEchoed += 1
                continue
            }
            let direct = ownerLink[p] == l
            if direct && distrusted & (1 << UInt8(p)) != 0 {
                drops.distrustedOps += 1
                continue
            }
            insert(op, verified: direct, via: direct ? nil : l, now: now)
        }
        // The sender's frontier for its own players: every op it made through tick − 1.
        if packet.tick > 0 {
            for (i, p) in owned[l].enumerated() where i < packet.frontier.count {
                addFrontier(player: Int(p), count: packet.frontier[i], tick: packet.tick - 1)
            }
        }
        links[l].peerEquivocators |= packet.equivocators
        for (p, c) in packet.timeCuts where Int(p) < accepted.count {
            links[l].peerTimeCut[Int(p)] = min(links[l].peerTimeCut[Int(p)], c)
        }
        for st in packet.statements { consider(st, via: l, now: now) }
        links[l].peerFinals |= packet.finals
        if let settle = packet.settle {
            // Counts only grow at the sender; a late, reordered report must not lower them.
            links[l].peerSettleKnown = true
            links[l].peerGone = settle.gone
            for (p, n) in settle.best where Int(p) < accepted.count {
                links[l].peerBest[Int(p)] = max(links[l].peerBest[Int(p)], n)
            }
            if let f = settle.final {
                links[l].peerFinal = f.hash
                links[l].peerFinalDigests = f.digests
            }
        }
        if let cp = packet.checkpoint {
            links[l].peerCheckpoint = cp
            compare(link: l)
        }
        advanceCheckpoints()
        if packet.settle?.final != nil { compareFinal(link: l) }
    }

    /// The ticks a packet's sender had run when it sent it (nil for bytes that are no packet); see
    /// docs/lobby.md, "Clocks" (the tick skew between peers).
    public static func packetTick(_ bytes: [UInt8]) -> Tick? { Packet<Game>.tick(of: bytes) }

    /// Ops that became authenticated since the last call, to deliver into the match loop.
    public mutating func takeAccepted() -> [GameOp] {
        defer { acceptedOut.removeAll(keepingCapacity: true) }
        return acceptedOut
    }

    public mutating func takeEvents() -> [NetMatchEvent] {
        defer { events.removeAll() }
        return events
    }

    /// A round-trip sample for a link (from the transport's pings).
    public mutating func noteRTT(_ peer: PeerKey, nanos: UInt64) {
        guard let l = linkKeys.firstIndex(of: peer) else { return }
        links[l].rtt = nanos
        links[l].stats.lastRTTNanos = nanos
    }

    /// The datagrams due at `now`, each for one link's unreliable channel. Call once per tick (and
    /// on after the match ends, to finish delivery and keep links alive).
    public mutating func poll(now: UInt64) -> [(to: PeerKey, bytes: [UInt8])] {
        var out: [(to: PeerKey, bytes: [UInt8])] = []
        computeFinal()
        for l in links.indices { compareFinal(link: l) }
        for l in links.indices {
            checkLiveness(l, now: now)
            if let (bytes, fresh) = packet(for: l, now: now) {
                // A packet with ops never sent before goes out twice at once: one loss costs nothing.
                for _ in 0..<(fresh && options.duplicateFresh ? 2 : 1) {
                    links[l].stats.datagramsSent += 1
                    links[l].stats.bytesSent += UInt64(bytes.count + options.datagramOverhead)
                    out.append((linkKeys[l], bytes))
                }
            }
        }
        return out
    }
}
