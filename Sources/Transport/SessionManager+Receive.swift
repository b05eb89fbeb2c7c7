import Keys
import Logging
import NetCore
import Noise
import Sodium

// Receiving: the entry point for turf's packet types, transport data, and the responder's and
// initiator's halves of the Noise handshake (initiation, response, final message).
extension SessionManager {
    /// Entry point for datagrams whose first byte is one of turf's packet types.
    public func receive(_ packet: [UInt8], from source: PeerAddress) {
        host.assertInLoop()
        guard let type = packet.first.flatMap(PacketType.init(rawValue:)) else {
            stats.malformed += 1
            return
        }
        if type != .transportData { stats.bytesReceivedUnauthenticated += UInt64(packet.count) }
        switch type {
        case .transportData: receiveTransport(packet, from: source)
        case .handshakeInitiation: receiveInitiation(packet, from: source)
        case .handshakeResponse: receiveResponse(packet, from: source)
        case .handshakeFinal: receiveFinal(packet, from: source)
        case .cookieReply: receiveCookie(packet, from: source)
        }
    }

    /// Sends a reply to an unauthenticated packet; never more bytes than the packet had.
    func reply(_ bytes: [UInt8], to packetLength: Int, at address: PeerAddress) {
        guard bytes.count <= packetLength else {
            stats.malformed += 1
            return
        }
        stats.bytesSentUnauthenticated += UInt64(bytes.count)
        host.send(bytes, to: address)
    }

    func receiveTransport(_ packet: [UInt8], from source: PeerAddress) {
        guard let header = try? TransportHeader.decode(packet) else {
            stats.malformed += 1
            return
        }
        guard let s = sessions[header.receiverIndex] else {
            stats.unknownIndex += 1
            return
        }
        let now = host.now
        guard s.open(packet, header: header, now: now, into: &s.receiveBuffer) else {
            stats.transportRejected += 1
            return
        }
        if source != s.peerAddress, header.counter >= (s.receive?.window.highest ?? 0) {
            // Possibly the peer roamed (NAT rebinding), possibly a copied packet sent from a
            // forged address: the new address must answer a challenge before anything else goes
            // there, and until then it gets no more bytes than it sent.
            s.observePath(source, bytes: packet.count, now: now)
        }
        if s.state == .connecting {
            guard establish(s) else { return }
        }
        if !s.receiveBuffer.isEmpty { s.handle(frames: s.receiveBuffer, from: source, now: now) }
    }

    func receiveInitiation(_ packet: [UInt8], from source: PeerAddress) {
        stats.initiationsReceived += 1
        guard packet.count == Wire.initiationLength else {
            stats.malformed += 1
            return
        }
        switch handshakeGuard.check(packet, from: source, now: host.now) {
        case .drop(.badMac1):
            stats.badMac1 += 1
            return
        case .drop:
            stats.rateLimited += 1
            return
        case .sendCookie:
            let index = readU32(packet, 2)
            stats.cookieRepliesSent += 1
            reply(
                handshakeGuard.cookies.reply(to: packet, senderIndex: index, from: source, now: host.now),
                to: packet.count,
                at: source
            )
            return
        case .process: break
        }
        guard let initiation = try? HandshakeInitiation.decode(packet) else {
            stats.malformed += 1
            return
        }
        let key = PendingKey(source: source, index: initiation.senderIndex)
        if let existing = pendingByInitiator[key].flatMap({ handshakes[$0] }) {
            if existing.initiationNoise == initiation.noiseMessage, let cached = existing.cachedResponse {
                stats.duplicateInitiations += 1
                reply(cached, to: packet.count, at: source)
                return
            }
            // A different initiation under the same (source, index): the initiator's retry with
            // a new ephemeral key, or a forgery by someone who knows the index (the source address
            // can be spoofed). It is answered as its own handshake; the pending one is kept until
            // it completes or expires, so a forgery cannot cancel a genuine handshake.
        }
        switch (initiation.kind, lobbyPSK) {
        case (.xxpsk3, nil), (.xx, .some), (.ik, .some):
            stats.patternRefused += 1
            return
        default: break
        }
        guard inboundAllowed(from: source.sourceKey) else {
            stats.inboundRefused += 1
            return
        }
        stats.handshakesProcessed += 1
        let s = Session(role: .responder, kind: initiation.kind, localIndex: freshIndex(), peer: source, now: host.now)
        attach(s)
        let h = Handshake(started: host.now)
        s.remoteIndex = initiation.senderIndex
        do {
            // The pattern check above refused .xxpsk3 without a lobby key, so `psks` is never short.
            var hs = try HandshakeState(
                protocol: noiseProtocol(initiation.kind),
                initiator: false,
                prologue: prologue,
                localStatic: identity.agreement,
                localEphemeral: injectedEphemeral(),
                psks: initiation.kind == .xxpsk3 ? lobbyPSK.map { [$0] } ?? [] : []
            )
            let payload = try hs.readMessage(initiation.noiseMessage)
            var responsePayload: [UInt8] = []
            if initiation.kind == .ik {
                s.remoteKey = try verifiedIdentity(payload, remoteStatic: hs.remoteStatic)
            } else {
                guard payload.isEmpty else { throw NoiseError.decryptionFailed }
                responsePayload = identity.signing.publicKey
            }
            let message = try hs.writeMessage(responsePayload)
            let response = HandshakeResponse(
                senderIndex: s.localIndex,
                receiverIndex: initiation.senderIndex,
                noiseMessage: message
            ).encode()
            if initiation.kind == .ik {
                // Complete on our side; established once the initiator's first packet proves it.
                installKeys(s, try hs.split())
            } else {
                h.noise = hs
            }
            h.cachedResponse = response
            h.initiationNoise = initiation.noiseMessage
            addPending(s, h, key: key)
            reply(response, to: packet.count, at: source)
        } catch {
            stats.handshakeFailures += 1
            logger.debug("initiation from \(source) rejected: \(error)")
        }
    }

    func verifiedIdentity(_ payload: [UInt8], remoteStatic: [UInt8]?) throws -> PeerKey {
        guard let key = PeerKey(bytes: payload), let rs = remoteStatic,
            (try? key.x25519()) == rs
        else { throw NoiseError.decryptionFailed }
        return key
    }

    func receiveResponse(_ packet: [UInt8], from source: PeerAddress) {
        guard let response = try? HandshakeResponse.decode(packet) else {
            stats.malformed += 1
            return
        }
        guard let s = sessions[response.receiverIndex], s.role == .initiator, s.state == .connecting,
            let h = handshakes[s.localIndex], var hs = h.noise, !hs.isMyTurn, hs.nextMessageIndex == 1,
            source == s.peerAddress
        else {
            stats.unknownIndex += 1
            return
        }
        do {
            let payload = try hs.readMessage(response.noiseMessage)
            s.remoteIndex = response.senderIndex
            if s.kind == .ik {
                guard payload.isEmpty else { throw NoiseError.decryptionFailed }
                s.remoteKey = h.expectedRemoteKey
                installKeys(s, try hs.split())
                h.noise = nil
                establish(s)
                s.sendPayload([])  // key confirmation for the responder
            } else {
                s.remoteKey = try verifiedIdentity(payload, remoteStatic: hs.remoteStatic)
                let message = try hs.writeMessage(identity.signing.publicKey)
                installKeys(s, try hs.split())
                h.noise = nil
                let final = HandshakeFinal(receiverIndex: s.remoteIndex, noiseMessage: message).encode()
                h.finalMessage = final
                h.finalResends = 0
                h.nextAction = host.now + retryDelay()
                host.send(final, to: s.peerAddress)
            }
        } catch {
            // A stale response (to an earlier attempt) or a forged one. The failed read ran on a
            // copy, so the stored state is untouched and the genuine response can still be read.
            stats.handshakeFailures += 1
        }
    }

    func receiveFinal(_ packet: [UInt8], from source: PeerAddress) {
        guard let final = try? HandshakeFinal.decode(packet) else {
            stats.malformed += 1
            return
        }
        guard let s = sessions[final.receiverIndex], s.role == .responder, source == s.peerAddress else {
            stats.unknownIndex += 1
            return
        }
        if s.isEstablished {
            // Our confirmation was lost and the initiator repeats its final message.
            s.sendPayload([])
            return
        }
        guard let h = handshakes[s.localIndex], var hs = h.noise, s.state == .connecting else {
            stats.unknownIndex += 1
            return
        }
        do {
            let payload = try hs.readMessage(final.noiseMessage)
            s.remoteKey = try verifiedIdentity(payload, remoteStatic: hs.remoteStatic)
            installKeys(s, try hs.split())
            h.noise = nil
            guard establish(s) else { return }
            s.sendPayload([])  // confirmation: the initiator is established when this arrives
        } catch {
            // Wrong passphrase, wrong key, or a forged final message from someone who saw our
            // index: counted; the pending handshake is left as it was (it expires on its own), so
            // a forgery cannot cancel a genuine handshake.
            if s.kind == .xxpsk3 { stats.passphraseRejected += 1 } else { stats.handshakeFailures += 1 }
            logger.debug("handshake from \(source) rejected in its final message: \(error)")
        }
    }
}
