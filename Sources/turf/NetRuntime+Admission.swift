import Keys
import Lobby
import NetCore
import TextOutput
import Transport

/// Who may sit down in a host's lobby (docs/lobby.md, "Who may sit down"): what the `end` event
/// counts. The decisions are `LobbyAdmission`'s, carried out by NetPlay's `LobbyHost` and
/// `MatchSession`.
extension NetRuntime {
    /// The host's `end` event: hellos refused by the allow list, from kicked keys, and by the rate.
    func addAdmissionCounts(to j: inout JSONObject) {
        j.add("joins_not_allowed", admission.notAllowed)
        j.add("joins_banned", admission.refusedBanned)
        j.add("joins_rate_limited", admission.rateLimited)
        j.add("kicks", admission.kicks)
    }
}
