import Determinism
import Keys

/// Who plays: a name, whether a human or a bot drives the player, and which peer owns it.
public struct PlayerInfo: Equatable, Sendable {
    /// What drives the player on its owner's peer. (Replay format version 1 also had `remote` = 2,
    /// one peer's point of view; it is read as `human`.)
    public enum Kind: UInt8, Sendable {
        case human = 0
        case bot = 1
    }
    /// The longest name, in UTF-8 bytes, that a replay or journal may hold (checked when one is
    /// read, and by `MatchConfig.validate` before a match is played, so none is recorded that
    /// could not be read back).
    public static let maxNameBytes = 64
    public var name: String
    public var kind: Kind
    /// Bot difficulty (0 = easy, 1 = hard, …); 0 for humans.
    public var level: UInt8
    /// The public key of the peer that owns this player; nil in a local match (this peer owns
    /// every player) and for players nobody else needs to tell apart.
    public var owner: PeerKey?

    public init(name: String, kind: Kind, level: UInt8 = 0, owner: PeerKey? = nil) {
        self.name = name
        self.kind = kind
        self.level = level
        self.owner = owner
    }
}

public enum ConfigError: Error, Equatable, CustomStringConvertible {
    case invalid(String)
    public var description: String {
        switch self {
        case .invalid(let m): return "invalid match config: \(m)"
        }
    }
}

/// Everything that determines a match besides the ops: recorded at the head of every replay.
public struct MatchConfig: Equatable, Sendable {
    public static let maxPlayers = 8
    /// Bounds on the work a config implies, whoever wrote it (docs/untrusted-input.md). A replay
    /// or journal is a config plus ops, and the config alone decides the per-tick tables a peer
    /// builds (`ReplayPlayer.tickStart`: two arrays of lengthTicks + 2 words), the checkpoints it
    /// takes and stores, and the simulation time of a live match (ticks × players). A real match
    /// is 90 s (2,700 ticks); the longest turf records is `turf replay generate --minutes 240`:
    /// 4 hours at 30 Hz, 432,000 ticks (7 MB of tick tables, 3.5 M player-ticks for 8 players),
    /// with a checkpoint a second, 14,400 checkpoints.
    public static let maxLengthTicks: Tick = 432_000
    public static let maxCheckpoints: Tick = 14_400

    public var gameID: String
    public var seed: UInt64
    public var tickRate: UInt16
    public var lengthTicks: Tick
    /// A state hash is recorded every this many ticks.
    public var checkpointInterval: Tick
    public var players: [PlayerInfo]
    /// The game's own settings (for turf: the map's name and text, and tunables), opaque here.
    public var settings: [UInt8]

    public init(
        gameID: String,
        seed: UInt64,
        tickRate: UInt16 = 30,
        lengthTicks: Tick,
        checkpointInterval: Tick = 30,
        players: [PlayerInfo],
        settings: [UInt8]
    ) {
        self.gameID = gameID
        self.seed = seed
        self.tickRate = tickRate
        self.lengthTicks = lengthTicks
        self.checkpointInterval = checkpointInterval
        self.players = players
        self.settings = settings
    }

    public func validate() throws {
        guard (1...MatchConfig.maxPlayers).contains(players.count) else {
            throw ConfigError.invalid("\(players.count) players (1...\(MatchConfig.maxPlayers) allowed)")
        }
        if let i = players.firstIndex(where: { $0.name.utf8.count > PlayerInfo.maxNameBytes }) {
            throw ConfigError.invalid(
                "player \(i)'s name is \(players[i].name.utf8.count) bytes (at most \(PlayerInfo.maxNameBytes))"
            )
        }
        guard (1...1000).contains(tickRate) else { throw ConfigError.invalid("tick rate \(tickRate) Hz") }
        guard lengthTicks > 0 && lengthTicks <= MatchConfig.maxLengthTicks else {
            throw ConfigError.invalid(
                "length \(lengthTicks) ticks (at most \(MatchConfig.maxLengthTicks), 4 hours at 30 Hz)"
            )
        }
        guard checkpointInterval > 0 else { throw ConfigError.invalid("checkpoint interval 0") }
        guard lengthTicks / checkpointInterval <= MatchConfig.maxCheckpoints else {
            throw ConfigError.invalid(
                "\(lengthTicks / checkpointInterval) checkpoints (at most \(MatchConfig.maxCheckpoints))"
            )
        }
    }

    /// The players a peer owns: those whose owner is `key` (with `key` nil, the players that have
    /// no owner: every player of a local match).
    public func players(ownedBy key: PeerKey?) -> [PlayerID] {
        players.indices.filter { players[$0].owner == key }.map { PlayerID($0) }
    }

    /// The layout of the encoded config: the replay format's version (docs/replay-format.md).
    /// Version 1 had no owners and a `remote` kind; version 2 records each player's owner key.
    public static let encodingVersion: UInt16 = 2

    /// A stable 64-bit digest of the encoded config: names the match (for a snapshot, a lobby).
    public var digest: UInt64 {
        var w = ByteWriter()
        encode(into: &w)
        return StableHash.bytes(w.bytes[...], seed: 0x7475_7266_6366_6721)
    }

    /// Encodes in the current layout (`encodingVersion`).
    public func encode(into w: inout ByteWriter) {
        w.string(gameID)
        w.u64(seed)
        w.u16(tickRate)
        w.u32(lengthTicks)
        w.u32(checkpointInterval)
        w.u8(UInt8(players.count))
        for p in players {
            w.string(p.name)
            w.u8(p.kind.rawValue)
            w.u8(p.level)
            if let owner = p.owner {
                w.u8(UInt8(PeerKey.length))
                w.bytes(owner.bytes)
            } else {
                w.u8(0)
            }
        }
        w.blob(settings)
    }

    /// Decodes a config encoded in layout `version` (1 or 2; see `encodingVersion`).
    public static func decode(from r: inout ByteReader, version: UInt16 = encodingVersion) throws -> MatchConfig {
        guard version == 1 || version == 2 else {
            throw ByteReadError(offset: r.offset, "unknown config layout \(version)")
        }
        let gameID = try r.string("game id", limit: 64)
        let seed = try r.u64("seed")
        let rate = try r.u16("tick rate")
        let length = try r.u32("length")
        let interval = try r.u32("checkpoint interval")
        let countAt = r.offset
        let n = Int(try r.u8("player count"))
        guard (1...maxPlayers).contains(n) else {
            throw ByteReadError(offset: countAt, "player count \(n) out of range")
        }
        var players: [PlayerInfo] = []
        for i in 0..<n {
            let name = try r.string("player \(i) name", limit: PlayerInfo.maxNameBytes)
            let kindAt = r.offset
            let kindByte = try r.u8("player kind")
            let kind: PlayerInfo.Kind
            if let k = PlayerInfo.Kind(rawValue: kindByte) {
                kind = k
            } else if version == 1 && kindByte == 2 {
                kind = .human  // version 1's `remote`: a human on another peer
            } else {
                throw ByteReadError(offset: kindAt, "unknown player kind \(kindByte)")
            }
            let level = try r.u8("bot level")
            var owner: PeerKey?
            if version >= 2 {
                let keyAt = r.offset
                let n = Int(try r.u8("owner key length"))
                guard n == 0 || n == PeerKey.length else {
                    throw ByteReadError(offset: keyAt, "owner key of \(n) bytes (0 or \(PeerKey.length) allowed)")
                }
                if n > 0 { owner = PeerKey(bytes: Array(try r.take(n, "owner key"))) }
            }
            players.append(PlayerInfo(name: name, kind: kind, level: level, owner: owner))
        }
        let settings = try r.blob("game settings", limit: 1 << 22)
        let c = MatchConfig(
            gameID: gameID,
            seed: seed,
            tickRate: rate,
            lengthTicks: length,
            checkpointInterval: interval,
            players: players,
            settings: settings
        )
        do { try c.validate() } catch { throw ByteReadError(offset: countAt, "\(error)") }
        return c
    }
}
