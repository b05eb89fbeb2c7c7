import Engine

// The view models of a networked match's screens: plain values the network side fills and the
// terminal side draws (`LobbyScreen`, `NetHUD`, `NetEndScreen`). They cross from the network loop
// to the UI thread by value (through `NetworkMailbox` or a closure returning the current one), so
// they hold no references and are `Sendable`.
//
// Every string here that a peer chose (names, and anything else a peer sent) is untrusted: the
// renderers escape it (`SafeText`) and fit it to its cell width (`CellText`). Fill them with the
// text as received; do not pre-format it.

/// How a link's packets travel: straight to the peer, straight over the local network (a private
/// address: a LAN party, docs/nat.md), or through another peer (issue #9, part 3).
public enum LinkPath: String, Sendable, Equatable, CaseIterable {
    case direct
    case lan
    case relayed
}

/// One player in a lobby's roster.
public struct RosterRow: Sendable, Equatable {
    /// The name the player gave (untrusted: escaped and width-bounded when drawn).
    public var name: String
    /// The player's public key as `turf id` prints it (`turf1…`); the screen shows a fingerprint of it.
    public var key: String
    /// Round-trip time to this player in milliseconds; nil until measured (and for yourself).
    public var pingMs: Int?
    /// nil for yourself, or while no session exists yet.
    public var path: LinkPath?
    public var connected: Bool
    public var isHost: Bool
    public var isYou: Bool
    /// The player's NAT as classified by the NAT work (#8), e.g. "full cone"; nil when unknown.
    public var natKind: String?
    /// The name you gave this player's key in your friends file (`turf friends`); nil for anyone
    /// else. Shown after the chosen name, `bob (friend: Bobby)`.
    public var friend: String?

    public init(
        name: String,
        key: String,
        pingMs: Int? = nil,
        path: LinkPath? = nil,
        connected: Bool = true,
        isHost: Bool = false,
        isYou: Bool = false,
        natKind: String? = nil,
        friend: String? = nil
    ) {
        self.name = name
        self.key = key
        self.pingMs = pingMs
        self.path = path
        self.connected = connected
        self.isHost = isHost
        self.isYou = isYou
        self.natKind = natKind
        self.friend = friend
    }

    /// A name a peer chose, as rosters and notices show it: every opening bracket of any kind
    /// (Unicode's open punctuation: `(`, `（`, `⁽`, `❨`, …) drawn as `[` and every closing one as
    /// `]`. So `(friend: …)`, `(host)` and `(you)` after a name are always turf's own labels: a
    /// stranger who calls himself `mallory (friend: Bobby)` reads `mallory [friend: Bobby]`.
    public static func chosen(_ name: String) -> String {
        var out = String.UnicodeScalarView()
        for u in name.unicodeScalars {
            switch u.properties.generalCategory {
            case .openPunctuation: out.append("[")
            case .closePunctuation: out.append("]")
            default: out.append(u)
            }
        }
        return String(out)
    }

    /// A chosen name and, for a friend, the name you gave them: `bob (friend: Bobby)`.
    public static func label(_ name: String, friend: String?) -> String {
        chosen(name) + (friend.map { " (friend: \($0))" } ?? "")
    }
}

/// One lobby found on a topic, offered to a joiner when several hosts share it.
public struct LobbyListing: Sendable, Equatable {
    /// The host's key (`turf1…`): what the joiner picks, and what `--lobby` names.
    public var hostKey: String
    /// The host's name (untrusted).
    public var hostName: String
    public var players: Int
    public var maxPlayers: Int
    public var passphrase: Bool
    public var pingMs: Int?
    /// Found on this LAN (BEP 14 local discovery): listed first, marked `LAN`.
    public var lan: Bool

    public init(
        hostKey: String,
        hostName: String,
        players: Int,
        maxPlayers: Int,
        passphrase: Bool,
        pingMs: Int? = nil,
        lan: Bool = false
    ) {
        self.hostKey = hostKey
        self.hostName = hostName
        self.players = players
        self.maxPlayers = maxPlayers
        self.passphrase = passphrase
        self.pingMs = pingMs
        self.lan = lan
    }
}

/// Everything the lobby screen shows at one moment.
public struct LobbyView: Sendable, Equatable {
    public enum Role: Sendable, Equatable {
        /// Hosts the lobby: Enter starts the match.
        case host
        /// Joined (or is joining) someone's lobby: waits for the host to start.
        case joiner
    }

    public enum Phase: Sendable, Equatable {
        /// A joiner looking for lobbies (DHT lookup, connecting). `detail` says what it is doing.
        case searching(detail: String)
        /// A joiner choosing one of several lobbies on its topic (↑/↓, Enter).
        case choosing([LobbyListing])
        /// In a lobby: the roster shows, the host may start.
        case waiting
        /// The host started: the match begins in `secondsLeft` (rounded up).
        case starting(secondsLeft: Int)
        /// The match begins: the interactive lobby loop returns `.started`.
        case started
        /// The lobby is gone or could not be reached; the screen shows why (untrusted if it quotes a peer).
        case failed(reason: String)
    }

    public var role: Role
    public var phase: Phase
    /// The DHT topic (nil when joining by key or invite).
    public var topic: String?
    /// Your own key, `turf1…` (`turf id`).
    public var ownKey: String
    /// The invite string a host gives to friends (nil for joiners).
    public var invite: String?
    /// The map's name (from the map file's header: untrusted) and the match length.
    public var mapName: String
    public var matchSeconds: Int
    public var passphrase: Bool
    public var maxPlayers: Int
    public var roster: [RosterRow]
    /// Wrong-passphrase attempts seen by a host (it shows the count, nothing else).
    public var rejectedJoins: Int
    /// One line of news ("carol joined", "bob left"); may quote names, so it is escaped when drawn.
    public var notice: String
    /// This machine's NAT as the DHT nodes' reports classify it (`open`, `consistent`, `random`,
    /// `unknown`; docs/nat.md), nil before any report.
    public var nat: String?
    /// Whether peers can reach this machine over IPv6 (`open`, `firewalled`, `none`), nil unknown.
    public var ipv6: String?
    /// Whether this machine relays for others now (docs/nat.md, "Players relay for each
    /// other"), shown after the NAT where there is room; nil: not shown.
    public var relaying: Bool?
    /// The lobby's last lines of chat, oldest first (untrusted: escaped and fitted when drawn).
    public var chat: [ChatLine] = []
    /// The line being typed (`c` opens it, Enter sends, Esc cancels); nil when closed. The screens
    /// fill it in, not the network side.
    public var chatInput: String?

    public init(
        role: Role,
        phase: Phase = .waiting,
        topic: String? = nil,
        ownKey: String,
        invite: String? = nil,
        mapName: String,
        matchSeconds: Int,
        passphrase: Bool = false,
        maxPlayers: Int = 8,
        roster: [RosterRow] = [],
        rejectedJoins: Int = 0,
        notice: String = "",
        nat: String? = nil,
        ipv6: String? = nil
    ) {
        self.role = role
        self.phase = phase
        self.topic = topic
        self.ownKey = ownKey
        self.invite = invite
        self.mapName = mapName
        self.matchSeconds = matchSeconds
        self.passphrase = passphrase
        self.maxPlayers = maxPlayers
        self.roster = roster
        self.rejectedJoins = rejectedJoins
        self.notice = notice
        self.nat = nat
        self.ipv6 = ipv6
    }
}

/// What the player did in the lobby, for the network side to act on.
public enum LobbyAction: Sendable, Equatable {
    /// The host pressed Enter: start the match.
    case start
    /// The joiner picked this lobby (its host's key) from the list.
    case pick(hostKey: String)
    /// q or Esc: leave the lobby.
    case leave
    /// The host kicked this member (its `turf1…` key) from the lobby, and bans the key for the
    /// lobby's life (↑/↓ to its seat, k twice).
    case kick(key: String)
    /// The player typed a line of chat (c, the line, Enter).
    case chat(String)
}

/// One line of the lobby's chat as the host relayed it: who said it (its name and `turf1…` key,
/// shown as a fingerprint) and what (every field untrusted: escaped and fitted when drawn).
public struct ChatLine: Sendable, Equatable {
    public var name: String
    public var key: String
    public var text: String
    public init(name: String, key: String, text: String) {
        self.name = name
        self.key = key
        self.text = text
    }
}

/// What the end screen of a networked match shows beside the match's summary, while the lobby
/// goes on after it: the series' tally, where a rematch stands, the chat.
public struct AfterMatchView: Sendable, Equatable {
    public enum Role: Sendable, Equatable { case host, member, spectator }

    /// Where the next match of the series stands, as this player sees it.
    public enum Rematch: Sendable, Equatable {
        /// Host: members are still in; `r` offers the `match`th.
        case canOffer(match: Int)
        /// Host: offered; the names of the members whose answer is still due.
        case offered(match: Int, waitingFor: [String])
        /// Member or spectator: the host offers the `match`th (`y` plays, `q` leaves).
        case offeredToYou(match: Int)
        /// Member or spectator: accepted; the next match starts when everyone answered.
        case accepted(match: Int)
        /// Member: nothing offered yet.
        case waiting
        /// No rematch: the host left, or nobody else is in (the line says which).
        case over(String)
    }

    /// One player's wins in the series (untrusted name).
    public struct TallyRow: Sendable, Equatable {
        public var name: String
        public var key: String
        public var wins: Int
        public init(name: String, key: String, wins: Int) {
            self.name = name
            self.key = key
            self.wins = wins
        }
    }

    public var role: Role
    /// The number of the match that just ended (1 for the first).
    public var match: Int
    public var tally: [TallyRow]
    public var ties: Int
    public var rematch: Rematch
    public var chat: [ChatLine]
    /// As `LobbyView.chatInput`: filled in by the screens.
    public var chatInput: String?
    public var notice: String

    public init(
        role: Role,
        match: Int,
        tally: [TallyRow] = [],
        ties: Int = 0,
        rematch: Rematch,
        chat: [ChatLine] = [],
        chatInput: String? = nil,
        notice: String = ""
    ) {
        self.role = role
        self.match = match
        self.tally = tally
        self.ties = ties
        self.rematch = rematch
        self.chat = chat
        self.chatInput = chatInput
        self.notice = notice
    }

    /// Whether the lobby is still there to chat in.
    public var canChat: Bool {
        if case .over = rematch { return false }
        return role != .spectator
    }
}

/// What the player did on the end screen.
public enum AfterMatchAction: Sendable, Equatable {
    /// q, Esc or Enter: leave (a member declines an offer so).
    case leave
    /// Host: offer the next match (r).
    case rematch
    /// Member or spectator: play (watch) the offered match (y).
    case accept
    /// A line of chat (c, the line, Enter).
    case chat(String)
}

/// One player's link as the in-match HUD shows it. The player is identified by its index in the
/// match's `MatchConfig.players`; the name and score come from there and from the world.
public struct PeerStatus: Sendable, Equatable {
    public var player: Int
    /// nil for yourself, or while not measured.
    public var pingMs: Int?
    /// nil for yourself.
    public var path: LinkPath?
    /// false once the peer said it left or was silent for 5 s (its avatar stays).
    public var connected: Bool

    public init(player: Int, pingMs: Int? = nil, path: LinkPath? = nil, connected: Bool = true) {
        self.player = player
        self.pingMs = pingMs
        self.path = path
        self.connected = connected
    }
}

/// A player the rules caught cheating (docs/threat-model.md): its moves count up to `tick`, and
/// nothing after. The HUD marks its entry, the warning line and the end screen name it.
public struct CheatMark: Sendable, Equatable {
    public var player: Int
    /// The rule it broke: teleport, speed, late, future or equivocation.
    public var rule: String
    public var tick: Tick
    public init(player: Int, rule: String, tick: Tick) {
        self.player = player
        self.rule = rule
        self.tick = tick
    }
}

/// The network half of the in-match HUD: every player's link, and a desync warning if one was seen.
public struct NetStatus: Sendable, Equatable {
    public var peers: [PeerStatus]
    /// Players caught cheating (their entries are marked, the warning line names them).
    public var cheats: [CheatMark] = []
    /// The first tick whose checkpoint hashes disagreed, if any (the HUD shows a warning line).
    public var desyncTick: Tick?
    /// Ops rejected (bad signature, unknown player); shown with the desync line when non-zero.
    public var rejectedOps: Int
    /// This machine's NAT (as `LobbyView.nat`): shown in your own entry.
    public var nat: String?

    public init(peers: [PeerStatus] = [], desyncTick: Tick? = nil, rejectedOps: Int = 0, nat: String? = nil) {
        self.peers = peers
        self.desyncTick = desyncTick
        self.rejectedOps = rejectedOps
        self.nat = nat
    }

    public func status(of player: Int) -> PeerStatus? { peers.first { $0.player == player } }
}

/// One link's totals at the end of a networked match (the `links` of the headless `end` event).
public struct LinkSummary: Sendable, Equatable {
    public var name: String
    public var key: String
    public var path: LinkPath
    public var rttMsP50: Double?
    public var bytesSent: UInt64
    public var bytesReceived: UInt64
    public var seconds: Double

    public init(
        name: String,
        key: String,
        path: LinkPath,
        rttMsP50: Double?,
        bytesSent: UInt64,
        bytesReceived: UInt64,
        seconds: Double
    ) {
        self.name = name
        self.key = key
        self.path = path
        self.rttMsP50 = rttMsP50
        self.bytesSent = bytesSent
        self.bytesReceived = bytesReceived
        self.seconds = seconds
    }
}

/// What the end screen of a networked match adds to the local one.
public struct NetEndSummary: Sendable, Equatable {
    /// The final state hash, as the headless `end` event prints it (hex).
    public var finalHash: String
    /// Where this peer saved the replay; nil if saving failed (the screen says so).
    public var replayPath: String?
    public var desyncs: Int
    public var rejectedOps: Int
    public var links: [LinkSummary]
    /// Players caught cheating: named on the end screen with the rule and the tick.
    public var cheats: [CheatMark] = []
    /// Whether every peer we heard from ended with our final hash (false: the end screen says so).
    public var converged = true

    public init(
        finalHash: String,
        replayPath: String?,
        desyncs: Int = 0,
        rejectedOps: Int = 0,
        links: [LinkSummary] = [],
        cheats: [CheatMark] = [],
        converged: Bool = true
    ) {
        self.cheats = cheats
        self.converged = converged
        self.finalHash = finalHash
        self.replayPath = replayPath
        self.desyncs = desyncs
        self.rejectedOps = rejectedOps
        self.links = links
    }
}
