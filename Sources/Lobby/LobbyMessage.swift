import Determinism
import Engine
import NetCore
import Sodium

/// The lobby protocol: what peers say to each other on a session's reliable channel before and
/// around a match (docs/lobby.md). Every message is
///
///     message = u8 protocolVersion (3) · u8 type · body
///
/// and is decoded from hostile bytes: each field is bounded, every problem is a `LobbyError` (the
/// caller drops the message and counts it), nothing is trusted for display until escaped.
public enum LobbyMessage: Equatable, Sendable {
    /// Joiner → host, first message on a new session. `key` must be the key the session
    /// authenticated (a peer claiming another's key is refused). `commit` is BLAKE2b-256 of the
    /// joiner's secret seed contribution (commit–reveal: `SeedMix`).
    case hello(Hello)
    /// Host → everyone: who is in the lobby, in player order (the host first).
    case roster(Roster)
    /// Host → everyone: the match settings.
    case settings(Settings)
    /// Host → members: the roster is final; reveal your seed contribution.
    case revealRequest
    /// Member → host: the contribution whose commit was in its hello.
    case reveal([UInt8])
    /// Host → everyone: the match (players owned by keys, the mixed seed), when tick 0 starts on
    /// the host's monotonic clock (ns), and every player's reveal so each member checks the seed.
    case start(Start)
    /// Either way: this peer is leaving (or the host refuses a joiner: `reason`).
    case leave(LeaveReason)
    /// Ops of the running match (an `OpCodec` batch; decoded by the match layer, which knows the
    /// config). The minimal replication: each member sends its own to the host, which merges them
    /// and forwards them to every other member.
    case ops([UInt8])
    /// Host → a rejoining member: every op the host holds (`ReplicaSnapshot` bytes).
    case snapshot([UInt8])
    /// A peer's match ended: how many ops each player it owns made (player id → count), so peers
    /// know when they hold every op.
    case done([UInt32: UInt32])
    /// Any peer → its linked peers: this peer's match is settled (every op and final statement
    /// held, ours acknowledged): wait for nothing more from it. The session stays, for the lobby
    /// after the match (chat, a rematch). Version 2 sent `leave` here.
    case settled
    /// Host → members and spectators, after a match: the host offers another match of the series,
    /// the `match`th (2 for the first rematch).
    case rematchOffer(match: UInt32)
    /// Member → host: the answer to a rematch offer; an accept commits to a new seed contribution
    /// (commit–reveal again: the host's commit is in the roster that follows).
    case rematchAnswer(RematchAnswer)
    /// A player → host: one line of chat (1…`maxChatBytes` bytes of UTF-8), to relay to everyone.
    case chat(String)
    /// Host → everyone: a line of chat the host accepted, and the key of who said it.
    case chatRelay(key: [UInt8], text: String)
    /// Member → host: whether this member relays for others now (docs/nat.md, "Players relay
    /// for each other"): the host registers its lobby there first and lists it in the lobby
    /// record's `r`. Sent when it changes. A version 3 host that predates it drops and counts it.
    case relayService(Bool)

    public static let protocolVersion: UInt8 = 3
    /// The most bytes any message may have: a snapshot of a long match (about 4 bytes an op).
    public static let maxSize = 1 << 20
    /// Bound for every other message.
    public static let maxSmallSize = 64 << 10
    public static let maxNameBytes = 48
    public static let maxMapNameBytes = 64
    public static let maxPlayers = MatchConfig.maxPlayers
    public static let contributionLength = 32
    public static let maxMemberAddresses = 4
    /// The longest line of chat, in bytes of UTF-8.
    public static let maxChatBytes = 200

    public enum RematchAnswer: Equatable, Sendable {
        /// Plays again, committing to a new contribution (BLAKE2b-256, as in hello).
        case accept(commit: [UInt8])
        /// Does not: the member leaves the lobby.
        case decline
    }

    public struct Hello: Equatable, Sendable {
        public var name: String
        public var key: [UInt8]
        public var commit: [UInt8]
        public var spectate: Bool
        public init(name: String, key: [UInt8], commit: [UInt8], spectate: Bool = false) {
            self.name = name
            self.key = key
            self.commit = commit
            self.spectate = spectate
        }
    }

    public struct Member: Equatable, Sendable {
        public enum Path: UInt8, Sendable { case local = 0, direct = 1, relayed = 2 }
        public var key: [UInt8]
        public var name: String
        public var commit: [UInt8]
        public var path: Path
        /// Where the host sees this member (for the mesh: members open sessions to each other).
        public var addresses: [PeerAddress]
        public init(key: [UInt8], name: String, commit: [UInt8], path: Path, addresses: [PeerAddress] = []) {
            self.key = key
            self.name = name
            self.commit = commit
            self.path = path
            self.addresses = addresses
        }
    }

    public struct Roster: Equatable, Sendable {
        public var members: [Member]
        public var maxPlayers: UInt8
        public init(members: [Member], maxPlayers: UInt8) {
            self.members = members
            self.maxPlayers = maxPlayers
        }
    }

    public struct Settings: Equatable, Sendable {
        public var map: String
        public var seconds: UInt32
        public init(map: String, seconds: UInt32) {
            self.map = map
            self.seconds = seconds
        }
    }

    public struct Start: Equatable, Sendable {
        public var config: MatchConfig
        public var startAt: UInt64
        /// (key, contribution) of every player, in player order.
        public var reveals: [[UInt8]]
        /// The match's number in the lobby's series: 1, then one more for each rematch.
        public var match: UInt32
        public init(config: MatchConfig, startAt: UInt64, reveals: [[UInt8]], match: UInt32 = 1) {
            self.config = config
            self.startAt = startAt
            self.reveals = reveals
            self.match = match
        }
    }

    public enum LeaveReason: UInt8, Sendable {
        case quit = 0, full = 1, started = 2, badVersion = 3, refused = 4
        /// The host kicked this member (docs/lobby.md, "Who may sit down"); its key is banned.
        case kicked = 5
        /// A hello from a key the host kicked earlier in this lobby's life.
        case banned = 6
        /// A friends-only lobby (`turf host --allow`) and the key is not on its list.
        case notAllowed = 7
        /// Too many hellos from the joiner's address in a short time.
        case tooManyJoins = 8
        /// A member that did not answer a rematch offer in time: its seat is gone.
        case noAnswer = 9
        public var text: String {
            switch self {
            case .quit: return "left"
            case .full: return "the lobby is full"
            case .started: return "the match has started"
            case .badVersion: return "the lobby speaks another protocol version"
            case .refused: return "refused by the host"
            case .kicked: return "the host kicked you from the lobby"
            case .banned: return "the host kicked your key from this lobby earlier"
            case .notAllowed:
                return
                    "this lobby is for friends only and your key is not on the host's list (send the host your key: turf id)"
            case .tooManyJoins: return "too many joins from your address; try again in a few seconds"
            case .noAnswer: return "you did not answer the rematch in time"
            }
        }

        /// The one line a joiner prints (stderr) when the host sends this, before it exits 1.
        public var joinerLine: String {
            switch self {
            case .quit: return "the host closed the lobby"
            case .kicked: return text
            default: return "the host refused: \(text)"
            }
        }
    }

    enum Kind: UInt8 {
        case hello = 1, roster, settings, revealRequest, reveal, start, leave, ops, snapshot, done
        case settled, rematchOffer, rematchAnswer, chat, chatRelay, relayService
    }

    public func encode() -> [UInt8] {
        var w = ByteWriter()
        w.u8(Self.protocolVersion)
        switch self {
        case .hello(let h):
            w.u8(Kind.hello.rawValue)
            w.string(h.name)
            w.bytes(h.key)
            w.bytes(h.commit)
            w.u8(h.spectate ? 1 : 0)
        case .roster(let r):
            w.u8(Kind.roster.rawValue)
            w.u8(r.maxPlayers)
            w.u8(UInt8(r.members.count))
            for m in r.members {
                w.bytes(m.key)
                w.string(m.name)
                w.bytes(m.commit)
                w.u8(m.path.rawValue)
                let addrs = m.addresses.prefix(Self.maxMemberAddresses)
                w.u8(UInt8(addrs.count))
                w.bytes(PeerAddress.tagged(Array(addrs)))
            }
        case .settings(let s):
            w.u8(Kind.settings.rawValue)
            w.string(s.map)
            w.u32(s.seconds)
        case .revealRequest:
            w.u8(Kind.revealRequest.rawValue)
        case .reveal(let c):
            w.u8(Kind.reveal.rawValue)
            w.bytes(c)
        case .start(let s):
            w.u8(Kind.start.rawValue)
            var c = ByteWriter()
            s.config.encode(into: &c)
            w.blob(c.bytes)
            w.u64(s.startAt)
            w.u8(UInt8(s.reveals.count))
            for r in s.reveals { w.bytes(r) }
            w.varint(UInt64(s.match))
        case .leave(let reason):
            w.u8(Kind.leave.rawValue)
            w.u8(reason.rawValue)
        case .ops(let b):
            w.u8(Kind.ops.rawValue)
            w.bytes(b)
        case .snapshot(let b):
            w.u8(Kind.snapshot.rawValue)
            w.bytes(b)
        case .done(let counts):
            w.u8(Kind.done.rawValue)
            w.u8(UInt8(counts.count))
            for (p, n) in counts.sorted(by: { $0.key < $1.key }) {
                w.u8(UInt8(p))
                w.u32(n)
            }
        case .settled:
            w.u8(Kind.settled.rawValue)
        case .rematchOffer(let n):
            w.u8(Kind.rematchOffer.rawValue)
            w.varint(UInt64(n))
        case .rematchAnswer(let a):
            w.u8(Kind.rematchAnswer.rawValue)
            switch a {
            case .accept(let commit):
                w.u8(1)
                w.bytes(commit)
            case .decline:
                w.u8(0)
            }
        case .chat(let text):
            w.u8(Kind.chat.rawValue)
            w.string(text)
        case .chatRelay(let key, let text):
            w.u8(Kind.chatRelay.rawValue)
            w.bytes(key)
            w.string(text)
        case .relayService(let on):
            w.u8(Kind.relayService.rawValue)
            w.u8(on ? 1 : 0)
        }
        return w.bytes
    }

    /// Decodes one message from a peer. Throws `LobbyError` for anything malformed, oversized or
    /// of another protocol version.
    public static func decode(_ bytes: [UInt8]) throws -> LobbyMessage {
        guard bytes.count <= maxSize else { throw LobbyError.tooLarge(bytes.count) }
        var r = ByteReader(bytes)
        do {
            let v = try r.u8("version")
            guard v == protocolVersion else { throw LobbyError.version(v) }
            let kindByte = try r.u8("type")
            guard let kind = Kind(rawValue: kindByte) else { throw LobbyError.unknownType(kindByte) }
            if kind != .snapshot && bytes.count > maxSmallSize { throw LobbyError.tooLarge(bytes.count) }
            let m: LobbyMessage
            switch kind {
            case .hello:
                let name = try r.string("name", limit: maxNameBytes)
                let key = Array(try r.take(32, "key"))
                let commit = Array(try r.take(32, "commit"))
                let flags = try r.u8("flags")
                guard flags <= 1 else { throw ByteReadError(offset: r.offset - 1, "unknown hello flags \(flags)") }
                m = .hello(Hello(name: name, key: key, commit: commit, spectate: flags == 1))
            case .roster:
                let maxAt = r.offset
                let maxPlayers = try r.u8("max players")
                guard (1...UInt8(Self.maxPlayers)).contains(maxPlayers) else {
                    throw ByteReadError(offset: maxAt, "max players \(maxPlayers) out of range")
                }
                let n = try r.count("member count", limit: Self.maxPlayers)
                var members: [Member] = []
                for _ in 0..<n {
                    let key = Array(try r.take(32, "member key"))
                    let name = try r.string("member name", limit: maxNameBytes)
                    let commit = Array(try r.take(32, "member commit"))
                    let pathAt = r.offset
                    let pb = try r.u8("path")
                    guard let path = Member.Path(rawValue: pb) else {
                        throw ByteReadError(offset: pathAt, "unknown path \(pb)")
                    }
                    let nAddrs = try r.count("address count", limit: Self.maxMemberAddresses)
                    var addrs: [PeerAddress] = []
                    for _ in 0..<nAddrs {
                        let at = r.offset
                        let size = try r.u8("address size")
                        guard size == 6 || size == 18, let a = PeerAddress(compact: try r.take(Int(size), "address"))
                        else { throw ByteReadError(offset: at, "address size \(size)") }
                        addrs.append(a)
                    }
                    members.append(Member(key: key, name: name, commit: commit, path: path, addresses: addrs))
                }
                m = .roster(Roster(members: members, maxPlayers: maxPlayers))
            case .settings:
                let map = try r.string("map", limit: maxMapNameBytes)
                let seconds = try r.u32("seconds")
                m = .settings(Settings(map: map, seconds: seconds))
            case .revealRequest:
                m = .revealRequest
            case .reveal:
                m = .reveal(Array(try r.take(contributionLength, "contribution")))
            case .start:
                let configBytes = try r.blob("config", limit: maxSmallSize)
                var cr = ByteReader(configBytes)
                let config = try MatchConfig.decode(from: &cr)
                guard cr.isAtEnd else { throw ByteReadError(offset: r.offset, "stray bytes after the config") }
                let startAt = try r.u64("start time")
                let n = try r.count("reveal count", limit: Self.maxPlayers)
                guard n == config.players.count else {
                    throw ByteReadError(offset: r.offset, "\(n) reveals for \(config.players.count) players")
                }
                var reveals: [[UInt8]] = []
                for _ in 0..<n { reveals.append(Array(try r.take(contributionLength, "reveal"))) }
                let at = r.offset
                let match = try r.count("match number", limit: Int(UInt32.max))
                guard match >= 1 else { throw ByteReadError(offset: at, "match number 0") }
                m = .start(Start(config: config, startAt: startAt, reveals: reveals, match: UInt32(match)))
            case .leave:
                let at = r.offset
                let b = try r.u8("reason")
                guard let reason = LeaveReason(rawValue: b) else {
                    throw ByteReadError(offset: at, "unknown leave reason \(b)")
                }
                m = .leave(reason)
            case .ops:
                m = .ops(Array(try r.take(r.remaining, "ops")))
            case .snapshot:
                m = .snapshot(Array(try r.take(r.remaining, "snapshot")))
            case .done:
                let n = try r.count("done count", limit: Self.maxPlayers)
                var counts: [UInt32: UInt32] = [:]
                for _ in 0..<n {
                    let at = r.offset
                    let p = UInt32(try r.u8("player"))
                    guard p < UInt32(Self.maxPlayers), counts[p] == nil else {
                        throw ByteReadError(offset: at, "bad player \(p) in done")
                    }
                    counts[p] = try r.u32("op count")
                }
                m = .done(counts)
            case .settled:
                m = .settled
            case .rematchOffer:
                let at = r.offset
                let n = try r.count("match number", limit: Int(UInt32.max))
                guard n >= 2 else { throw ByteReadError(offset: at, "a rematch offer for match \(n)") }
                m = .rematchOffer(match: UInt32(n))
            case .rematchAnswer:
                let at = r.offset
                switch try r.u8("answer") {
                case 0: m = .rematchAnswer(.decline)
                case 1: m = .rematchAnswer(.accept(commit: Array(try r.take(32, "commit"))))
                case let b: throw ByteReadError(offset: at, "unknown rematch answer \(b)")
                }
            case .chat:
                m = .chat(try Self.chatText(&r))
            case .chatRelay:
                let key = Array(try r.take(32, "key"))
                m = .chatRelay(key: key, text: try Self.chatText(&r))
            case .relayService:
                let at = r.offset
                switch try r.u8("relay service") {
                case 0: m = .relayService(false)
                case 1: m = .relayService(true)
                case let b: throw ByteReadError(offset: at, "unknown relay service flag \(b)")
                }
            }
            guard r.isAtEnd else { throw ByteReadError(offset: r.offset, "\(r.remaining) stray bytes") }
            return m
        } catch let e as ByteReadError {
            throw LobbyError.malformed(e.description)
        }
    }
}

extension LobbyMessage {
    /// A line of chat: 1…`maxChatBytes` bytes of valid UTF-8 (escaped only when shown).
    static func chatText(_ r: inout ByteReader) throws -> String {
        let at = r.offset
        let text = try r.string("chat text", limit: maxChatBytes)
        guard !text.isEmpty else { throw ByteReadError(offset: at, "an empty line of chat") }
        return text
    }
}

public enum LobbyError: Error, Equatable, CustomStringConvertible {
    case tooLarge(Int)
    case version(UInt8)
    case unknownType(UInt8)
    case malformed(String)

    public var description: String {
        switch self {
        case .tooLarge(let n): return "lobby message of \(n) bytes is too large"
        case .version(let v): return "lobby protocol version \(v) (this speaks \(LobbyMessage.protocolVersion))"
        case .unknownType(let t): return "unknown lobby message type \(t)"
        case .malformed(let m): return "malformed lobby message: \(m)"
        }
    }
}
