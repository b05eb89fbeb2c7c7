import TurfRules

/// The keys of a networked lobby, apart from curses so they can be tested: `LobbyController`'s
/// keys, plus the rule that a host's Enter starts the match only once at least one friend is on
/// the roster (else a notice says so and nothing is sent).
public struct NetLobbyInput: Sendable {
    public private(set) var controller = LobbyController()
    /// What the screen's notice line shows instead of the network's, after a refused key.
    public private(set) var notice: String?

    public init() {}

    public var selected: Int { controller.selected }

    /// A kick asked for once (k): the second k on the same seat does it; any other key cancels.
    public private(set) var pendingKick: String?

    public mutating func handle(_ key: Key, view: LobbyView) -> LobbyAction? {
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
