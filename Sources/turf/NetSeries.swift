import Keys
import NetPlay
import TerminalUI
import TextOutput

/// The lobby after a match, shared by `turf host` and `turf join` (docs/lobby.md, "Rematch" and
/// "Chat"): the chat lines heard, and the end screen's view of the series.
extension NetRuntime {
    /// How many lines of chat the screens keep.
    static let chatKept = 16

    /// A line of chat the host relayed (or said), already escaped by the lobby machine: kept for
    /// the screens and printed as a `chat` event.
    func heardChat(_ key: PeerKey, name: String, text: String) {
        chatLines.append(ChatLine(name: name, key: key.text, text: text))
        if chatLines.count > Self.chatKept { chatLines.removeFirst(chatLines.count - Self.chatKept) }
        event("chat") { j in
            j.add("from", name)
            j.add("key", key.text)
            j.add("text", text)
        }
    }

    /// A `rematch` event: `state` is offered, accepted, declined or cancelled.
    func rematchEvent(_ state: String, match: UInt32? = nil, key: PeerKey? = nil, name: String? = nil) {
        event("rematch") { j in
            j.add("state", state)
            if let match { j.add("match", Int(match)) }
            if let key { j.add("key", key.text) }
            if let name { j.add("name", name) }
        }
    }

    /// What the end screen shows beside the match just played.
    func afterMatchView(
        role: AfterMatchView.Role,
        match: UInt32,
        rematch: AfterMatchView.Rematch,
        notice: String
    ) -> AfterMatchView {
        AfterMatchView(
            role: role,
            match: Int(match),
            tally: tally.entries.map { .init(name: $0.name, key: $0.key.text, wins: $0.wins) },
            ties: tally.ties,
            rematch: rematch,
            chat: chatLines,
            notice: notice
        )
    }
}
