import Keys
import Logging
import NetCore
import Noise
import Sodium

// Initiating: dialling a peer (XX, IK or XXpsk3), sending initiations with jittered retries, and
// adopting a pre-established session (fuzzing, tests).
extension SessionManager {
    /// Adds a session that is established with the given transport keys, without a handshake:
    /// for fuzzing and tests that need exactly the same session state every time.
    @discardableResult
    package func adoptEstablishedSession(
        role: Session.Role,
        localIndex: UInt32,
        remoteIndex: UInt32,
        peer: PeerAddress,
        remoteKey: PeerKey,
        sendKey: [UInt8],
        receiveKey: [UInt8]
    ) -> Session {
        let s = Session(role: role, kind: .xx, localIndex: localIndex, peer: peer, now: host.now)
        attach(s)
        s.remoteIndex = remoteIndex
        s.remoteKey = remoteKey
        s.send = DirectionKey(key: SecretBytes(copying: sendKey), epoch: 0, since: host.now)
        s.receive = DirectionKey(key: SecretBytes(copying: receiveKey), epoch: 0, since: host.now)
        sessions[localIndex] = s
        establish(s)
        return s
    }

    /// Starts a handshake with `address`. The session reports `.established` or `.closed` through
    /// `onStateChange`.
    @discardableResult
    public func connect(to address: PeerAddress, mode: ConnectMode) -> Session {
        host.assertInLoop()
        let kind: HandshakeKind
        switch mode {
        case .discovered: kind = .xx
        case .knownKey: kind = .ik
        case .passphrase: kind = .xxpsk3
        }
        let s = Session(role: .initiator, kind: kind, localIndex: freshIndex(), peer: address, now: host.now)
        attach(s)
        let h = Handshake(started: host.now)
        if case .knownKey(let k) = mode { h.expectedRemoteKey = k }
        if case .passphrase(let p) = mode { h.psk = p }
        sessions[s.localIndex] = s
        handshakes[s.localIndex] = h
        sendInitiation(s, h)
        return s
    }

    /// Resends now the initiation of each outbound handshake to `address` still waiting for an
    /// answer, instead of at its retry timer: a hole-punch probe from `address` just showed that
    /// the path through its NAT is open (docs/nat.md). At most one resend per 200 ms per handshake;
    /// it does not count as an attempt (a flood of forged probes cannot use up the handshake's
    /// attempts) and it pushes the timed resend back by one retry interval.
    public func retryHandshakes(to address: PeerAddress) {
        host.assertInLoop()
        let now = host.now
        for s in sessionsInOrder where s.role == .initiator && s.peerAddress == address {
            // Rate-limited by the last early resend only: the first probe, however soon after the
            // initiation (a knock relayed by the DHT arrives within milliseconds), resends at once.
            guard case .connecting = s.state, let h = handshakes[s.localIndex], h.finalMessage == nil,
                h.lastEarly.map({ now &- $0 >= .milliseconds(200) }) ?? true
            else { continue }
            h.lastEarly = now
            stats.handshakesRetriedOnProbe += 1
            sendInitiation(s, h, early: true)
        }
    }

    /// The handshake's ephemeral key when the randomness is seeded (a simulation that must repeat);
    /// nil in production, where Noise draws it from the system CSPRNG only once a message needs it
    /// (so an initiation that fails to decrypt costs no key generation).
    func injectedEphemeral() -> X25519.KeyPair? { random.isSeeded ? random.x25519KeyPair() : nil }

    func retryDelay() -> Nanos {
        config.handshakeRetry
            + Nanos(random.uniform(UInt32(min(config.handshakeRetry / 10, Nanos(UInt32.max - 1)) + 1)))
    }

    /// Sends a fresh initiation. A resend prompted by a cookie reply is not a new attempt.
    func sendInitiation(_ s: Session, _ h: Handshake, cookieResend: Bool = false, early: Bool = false) {
        if !cookieResend && !early {
            s.counters.handshakeAttempts += 1
            h.cookieResendUsed = false
        }
        h.nextAction = host.now + retryDelay()
        do {
            var remoteStatic: [UInt8]?
            if let k = h.expectedRemoteKey { remoteStatic = try k.x25519() }
            var hs = try HandshakeState(
                protocol: noiseProtocol(s.kind),
                initiator: true,
                prologue: prologue,
                localStatic: identity.agreement,
                localEphemeral: injectedEphemeral(),
                remoteStatic: remoteStatic,
                psks: h.psk.map { [$0] } ?? []
            )
            // IK carries our identity in the first message; XX sends it in the third.
            let message = try hs.writeMessage(s.kind == .ik ? identity.signing.publicKey : [])
            h.noise = hs
            var packet = HandshakeInitiation(kind: s.kind, senderIndex: s.localIndex, noiseMessage: message).encode()
            let mac1 = CookieChecker.mac1(packet)
            packet.replaceSubrange(Wire.mac1Offset..<Wire.mac2Offset, with: mac1)
            if let c = h.cookie, host.now &- c.received < CookieChecker.cookieLifetime {
                packet.replaceSubrange(
                    Wire.mac2Offset..<Wire.initiationLength,
                    with: CookieChecker.mac2(packet, cookie: c.value)
                )
            }
            h.lastInitiationMac1 = mac1
            host.send(packet, to: s.peerAddress)
        } catch {
            logger.debug("cannot start handshake with \(s.peerAddress): \(error)")
            remove(s, reason: .handshakeFailed)
        }
    }
}
