import Keys
import Logging
import NetCore
import Noise
import Sodium

// Cookies, the initiator's side: a cookie reply to our initiation is opened and the initiation
// resent with mac2 (the responder's side, and the rate limits, are `HandshakeGuard`).
extension SessionManager {
    func receiveCookie(_ packet: [UInt8], from source: PeerAddress) {
        guard let reply = try? CookieReply.decode(packet) else {
            stats.malformed += 1
            return
        }
        guard let s = sessions[reply.receiverIndex], s.role == .initiator, s.state == .connecting,
            let h = handshakes[s.localIndex], h.finalMessage == nil, source == s.peerAddress,
            let cookie = CookieChecker.openReply(reply, initiationMac1: h.lastInitiationMac1)
        else {
            stats.unknownIndex += 1
            return
        }
        stats.cookieRepliesReceived += 1
        h.cookie = (cookie, host.now)
        // Retry at once with the cookie, once per attempt.
        if !h.cookieResendUsed {
            h.cookieResendUsed = true
            sendInitiation(s, h, cookieResend: true)
        }
    }
}
