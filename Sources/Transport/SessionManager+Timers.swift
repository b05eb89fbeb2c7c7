import Keys
import Logging
import NetCore
import Noise
import Sodium

// Timers: one tick drives handshake retries and timeouts, keepalives, rekeying and idle expiry.
extension SessionManager {
    func scheduleTick() {
        tickTimer = host.schedule(after: config.tickInterval) { [weak self] in
            guard let self, self.tickTimer != nil else { return }
            self.tick()
            self.scheduleTick()
        }
    }

    func tick() {
        host.assertInLoop()
        let now = host.now
        // In index order, not the dictionary's (Swift seeds that per process): what each session
        // sends, and the retry jitter it draws, then happen in the same order on every run.
        for s in sessionsInOrder {
            switch s.state {
            case .established:
                s.tick(now: now, config: config)
            case .connecting:
                guard let h = handshakes[s.localIndex] else {
                    remove(s, reason: .handshakeFailed)
                    continue
                }
                if s.role == .responder {
                    if now &- h.started >= config.pendingHandshakeTimeout { remove(s, reason: .handshakeFailed) }
                } else if now >= h.nextAction {
                    if s.counters.handshakeAttempts >= config.handshakeAttempts {
                        remove(s, reason: .handshakeTimeout)
                    } else if h.finalMessage != nil, h.finalResends >= config.finalResendsBeforeRestart {
                        // The responder has no record of the handshake: start over.
                        stats.handshakeRestarts += 1
                        h.finalMessage = nil
                        s.send = nil
                        s.receive = nil
                        s.remoteIndex = 0
                        s.remoteKey = nil
                        sendInitiation(s, h)
                    } else if let final = h.finalMessage {
                        s.counters.handshakeAttempts += 1
                        h.finalResends += 1
                        h.nextAction = now + retryDelay()
                        host.send(final, to: s.peerAddress)
                    } else {
                        sendInitiation(s, h)
                    }
                }
            case .closed:
                sessions[s.localIndex] = nil
            }
        }
    }
}
