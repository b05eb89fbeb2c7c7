import Keys
import Lobby
import NetCore
import TextOutput
import Transport

/// Who may sit down in a host's lobby (docs/lobby.md, "Who may sit down"): refusals, kicks, and
/// what the `end` event counts. The decisions are `LobbyAdmission`'s.
extension NetRuntime {
    /// A hello the admission refused: the joiner is told why (its one line), and the session
    /// closes a moment later. Rate-limited hellos are only counted (no event per flooded hello).
    func refuseJoin(link id: UInt32, key: PeerKey, name: String, why: LobbyMessage.LeaveReason) {
        send(id, .leave(why))
        closeSoon(id)
        guard why != .tooManyJoins else { return }
        event("peer") { j in
            j.add("key", key.text)
            j.add("name", Self.displayName(name))
            j.add("state", "refused")
            j.add("reason", why == .banned ? "banned" : "not_allowed")
        }
    }

    /// Closes a link after 2 s: the leave before it has time to arrive (the joiner exits on it).
    func closeSoon(_ id: UInt32) {
        let links = self.links
        live.execute { peer in _ = peer.host.schedule(after: .seconds(2)) { links.close(id) } }
    }

    /// Mid-match (a spectator arriving, a rejoiner): why `key` may not come in, if it may not.
    func refusal(of key: PeerKey) -> LobbyMessage.LeaveReason? {
        if admission.banned.contains(key.bytes) { return .banned }
        return admission.admits(key.bytes) ? nil : .notAllowed
    }

    /// The host's `end` event: hellos refused by the allow list, from kicked keys, and by the rate.
    func addAdmissionCounts(to j: inout JSONObject) {
        j.add("joins_not_allowed", admission.notAllowed)
        j.add("joins_banned", admission.refusedBanned)
        j.add("joins_rate_limited", admission.rateLimited)
        j.add("kicks", admission.kicks)
    }
}
