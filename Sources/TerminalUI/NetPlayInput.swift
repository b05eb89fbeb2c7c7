import TextOutput
import TurfRules

/// The one-line chat input of the lobby and end screens: `c` opens it, typed characters go in
/// (control and format characters never do; at most `maxBytes` bytes of UTF-8), Backspace
/// deletes, Enter sends the line (a blank one is not sent), Esc cancels. While it is open every
/// key is the input's (q types a q).
public struct ChatInput: Sendable, Equatable {
    public static let maxBytes = 200
    /// The line so far; nil while the input is closed.
    public private(set) var text: String?

    public init() {}

    public var isOpen: Bool { text != nil }
    public mutating func open() { text = "" }

    /// A key while the input is open: the line to send on Enter, else nil.
    public mutating func handle(_ key: Key) -> String? {
        guard var t = text else { return nil }
        switch key {
        case .escape:
            text = nil
        case .enter:
            text = nil
            return t.contains(where: { !$0.isWhitespace }) ? t : nil
        case .backspace:
            if !t.isEmpty { t.removeLast() }
            text = t
        case .char(let c):
            guard !c.unicodeScalars.contains(where: SafeText.isUnsafe),
                t.utf8.count + String(c).utf8.count <= Self.maxBytes
            else { return nil }
            t.append(c)
            text = t
        default: break
        }
        return nil
    }
}

/// The keys of a networked lobby, apart from curses so they can be tested: `LobbyController`'s
/// keys, plus the rule that a host's Enter starts the match only once at least one friend is on
/// the roster (else a notice says so and nothing is sent), and the chat input (`c`).
public struct NetLobbyInput: Sendable {
    public private(set) var controller = LobbyController()
    /// The line of chat being typed.
    public private(set) var chat = ChatInput()
    /// What the screen's notice line shows instead of the network's, after a refused key.
    public private(set) var notice: String?

    public init() {}

    public var selected: Int { controller.selected }

    /// A kick asked for once (k): the second k on the same seat does it; any other key cancels.
    public private(set) var pendingKick: String?

    public mutating func handle(_ key: Key, view: LobbyView) -> LobbyAction? {
        if chat.isOpen {
            return chat.handle(key).map { .chat($0) }
        }
        if key == .char("c") && view.phase == .waiting {
            chat.open()
            pendingKick = nil
            notice = nil
            return nil
        }
        let wanted = controller.handle(key, view: view)
        if case .kick(let k)? = wanted {
            if pendingKick == k {
                pendingKick = nil
                notice = nil
                return wanted
            }
            pendingKick = k
            let name = view.roster.first { $0.key == k }?.name ?? "?"
            notice = "k again kicks \(name) (banned from this lobby); any other key cancels"
            return nil
        }
        if pendingKick != nil {
            pendingKick = nil
            notice = nil
        }
        guard let action = wanted else { return nil }
        if action == .start && view.roster.count < 2 {
            notice = "Enter starts the match once a friend has joined (share the invite or the topic)"
            return nil
        }
        notice = nil
        return action
    }
}

/// The keys of a networked match's end screen while the lobby goes on after it: q, Esc or Enter
/// leave (a member with an offer declines so), `r` offers the host's rematch, `y` accepts an
/// offer, `c` opens the chat input.
public struct NetEndInput: Sendable {
    public private(set) var chat = ChatInput()

    public init() {}

    public mutating func handle(_ key: Key, view: AfterMatchView) -> AfterMatchAction? {
        if chat.isOpen {
            return chat.handle(key).map { .chat($0) }
        }
        switch key {
        case .char("q"), .char("Q"), .escape, .enter: return .leave
        case .char("c") where view.canChat:
            chat.open()
        case .char("r"), .char("R"):
            if view.role == .host, case .canOffer = view.rematch { return .rematch }
        case .char("y"), .char("Y"):
            if case .offeredToYou = view.rematch { return .accept }
        default: break
        }
        return nil
    }

    /// The end screen's last line for `view`.
    public static func footer(_ view: AfterMatchView, chatting: Bool) -> String {
        if chatting { return " Enter: send · Esc: cancel" }
        var parts: [String] = []
        switch view.rematch {
        case .canOffer where view.role == .host: parts.append("r: rematch")
        case .offeredToYou: parts.append(view.role == .spectator ? "y: watch the rematch" : "y: play again")
        default: break
        }
        if view.canChat { parts.append("c: chat") }
        parts.append("q: quit")
        return " " + parts.joined(separator: " · ")
    }
}

/// What a key does during a networked match: steer your player (applied at the next tick, with no
/// input delay), or leave (q, Esc). Everything else is ignored (there is no pause: the clock is shared).
public enum NetMatchKey: Equatable, Sendable {
    case steer(Direction)
    case leave
    case redraw

    public init?(_ key: Key) {
        if let d = steering(key) {
            self = .steer(d)
            return
        }
        switch key {
        case .char("q"), .char("Q"), .escape: self = .leave
        case .resize: self = .redraw
        default: return nil
        }
    }
}

extension LobbyView {
    /// The headless host's rule (`--start-when N`): start once `n` players, the host included, are
    /// on the roster. Nil: no rule (a joiner, or a host waiting for Enter).
    public func startAction(startWhen n: Int?) -> LobbyAction? {
        guard role == .host, phase == .waiting, let n else { return nil }
        return roster.count >= n ? .start : nil
    }
}

/// The lobbies a joiner found on its topic, in the order their hosts answered: at most
/// `maxLobbies`, one per host key (a host reached at two addresses is one lobby). Hosts announce
/// only addresses; each one's key comes from the handshake, its player count and passphrase flag
/// from its lobby record in the DHT (both untrusted: the screen escapes them).
public struct LobbyChoices: Sendable, Equatable {
    public static let maxLobbies = 8
    public private(set) var listings: [LobbyListing] = []

    public init() {}

    public var isFull: Bool { listings.count >= Self.maxLobbies }

    /// A host answered (`lan`: at an address LAN discovery found). False when it was already
    /// listed, or the list is full. LAN lobbies come first, each group in answer order; the rows
    /// are numbered in list order. A host listed from the DHT that answers on the LAN too moves up.
    @discardableResult
    public mutating func answered(hostKey: String, pingMs: Int? = nil, lan: Bool = false) -> Bool {
        if let i = listings.firstIndex(where: { $0.hostKey == hostKey }) {
            if lan && !listings[i].lan {
                var l = listings.remove(at: i)
                l.lan = true
                insert(l)
            }
            return false
        }
        guard !isFull else { return false }
        insert(
            LobbyListing(
                hostKey: hostKey,
                hostName: "",
                players: 1,
                maxPlayers: 8,
                passphrase: false,
                pingMs: pingMs,
                lan: lan
            )
        )
        return true
    }

    private mutating func insert(_ l: LobbyListing) {
        let at = l.lan ? (listings.firstIndex { !$0.lan } ?? listings.count) : listings.count
        listings.insert(l, at: at)
        for i in listings.indices { listings[i].hostName = "lobby \(i + 1)" }
    }

    /// What the host's lobby record says (players, clamped to 1…8; whether a passphrase is needed).
    public mutating func describe(hostKey: String, players: Int, passphrase: Bool) {
        guard let i = listings.firstIndex(where: { $0.hostKey == hostKey }) else { return }
        listings[i].players = min(max(players, 1), 8)
        listings[i].passphrase = passphrase
    }
}
