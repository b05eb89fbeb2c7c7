import Determinism
import Engine
import Foundation
import Keys
import Testing
import TurfRules

/// Players owned by keys: every peer holds the same config, and a replay says who played.
@Suite struct PlayerOwnershipTests {
    static let alice = PeerKey(bytes: [UInt8](repeating: 0xA1, count: 32))!
    static let bob = PeerKey(bytes: Array(0..<32))!

    func networkedConfig() throws -> MatchConfig {
        var config = try smallReplay(seed: 6, players: 4, seconds: 4).config
        config.players[0].owner = Self.alice
        config.players[1].owner = Self.bob
        config.players[2].owner = Self.alice  // a bot Alice's peer runs
        return config
    }

    @Test func ownerKeysAreThirtyTwoBytes() {
        #expect(PeerKey(bytes: [1, 2, 3]) == nil)
        #expect(PeerKey(bytes: [UInt8](repeating: 0, count: 33)) == nil)
        #expect(Self.bob.hex == "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f")
    }

    @Test func eachPeerOwnsThePlayersOfItsKey() throws {
        let config = try networkedConfig()
        #expect(config.players(ownedBy: Self.alice) == [0, 2])
        #expect(config.players(ownedBy: Self.bob) == [1])
        #expect(config.players(ownedBy: nil) == [3])
        #expect(TurfMatch.controllers(config: config, ownedBy: Self.alice).keys.sorted() == [0, 2])
        let local = try smallReplay(seed: 6, players: 3, seconds: 4).config
        #expect(local.players(ownedBy: nil) == [0, 1, 2])
    }

    /// The config, owners included, round-trips through a replay file and a journal; the digest
    /// tells configs apart by their owners too.
    @Test func ownersAreRecordedInReplaysAndJournals() throws {
        let config = try networkedConfig()
        var match = try TurfLocalMatch(
            config: config,
            controllers: TurfMatch.controllers(config: config, ownedBy: Self.alice)
        )
        match.runToEnd()
        let replay = try match.recording()
        let bytes = ReplayFile.encode(replay)
        #expect(bytes[8] == 2 && bytes[9] == 0)  // format version 2
        let decoded = try ReplayFile.decode(bytes, as: TurfWorld.self)
        #expect(decoded.config == config)
        #expect(decoded.config.players.map(\.owner) == [Self.alice, Self.bob, Self.alice, nil])
        #expect(try ReplayPlayer(decoded).verify().0.ok)
        let rec = try ReplayJournal.recover(ReplayJournal.header(config), as: TurfWorld.self)
        #expect(rec.replay.config == config)
        var other = config
        other.players[1].owner = Self.alice
        #expect(other.digest != config.digest)
    }

    /// An owner field of any length but 0 or 32 is refused, with its offset.
    @Test func aBadOwnerLengthIsRefused() throws {
        var config = try networkedConfig()
        config.players = [PlayerInfo(name: "x", kind: .human, owner: Self.bob)]
        var w = ByteWriter()
        config.encode(into: &w)
        var bytes = w.bytes
        var blob = ByteWriter()
        blob.blob(config.settings)
        let at = bytes.count - blob.count - 33  // the owner's length byte, then the key, then the settings
        #expect(bytes[at] == 32 && Array(bytes[(at + 1)..<(at + 33)]) == Self.bob.bytes)
        bytes[at] = 5
        var r = ByteReader(bytes)
        #expect(throws: ByteReadError.self) { try MatchConfig.decode(from: &r) }
        do {
            var r = ByteReader(bytes)
            _ = try MatchConfig.decode(from: &r)
        } catch let e as ByteReadError {
            #expect(e.offset == at)
        }
    }

    /// Version 1 configs (no owners; kind 2 was "remote") are still read: as humans with no owner.
    @Test func versionOneConfigsAreRead() throws {
        let settings = try networkedConfig().settings
        func v1(kinds: [UInt8]) -> [UInt8] {
            var w = ByteWriter()
            w.string(TurfWorld.gameID)
            w.u64(9)
            w.u16(30)
            w.u32(120)
            w.u32(30)
            w.u8(UInt8(kinds.count))
            for (i, k) in kinds.enumerated() {
                w.string("p\(i)")
                w.u8(k)
                w.u8(k == 1 ? 1 : 0)
            }
            w.blob(settings)
            return w.bytes
        }
        var r = ByteReader(v1(kinds: [0, 2, 1]))
        let c = try MatchConfig.decode(from: &r, version: 1)
        #expect(r.isAtEnd)
        #expect(c.players.map(\.kind) == [.human, .human, .bot])
        #expect(c.players.allSatisfy { $0.owner == nil })
        #expect(c.players[2].level == 1)
        var bad = ByteReader(v1(kinds: [0, 3]))
        #expect(throws: ByteReadError.self) { try MatchConfig.decode(from: &bad, version: 1) }
        // Version 2 has no kind 2.
        var notV2 = ByteReader(v1(kinds: [2]))
        #expect(throws: ByteReadError.self) { try MatchConfig.decode(from: &notV2) }
    }

    /// A journal an older turf left behind (version 1, its config without owners) is still
    /// recovered, into a version 2 replay of the same match.
    @Test func aVersionOneJournalIsStillRecovered() throws {
        let source = try smallReplay(seed: 12, players: 3, seconds: 4)
        var body = ByteWriter()
        body.string(source.config.gameID)
        body.u64(source.config.seed)
        body.u16(source.config.tickRate)
        body.u32(source.config.lengthTicks)
        body.u32(source.config.checkpointInterval)
        body.u8(UInt8(source.config.players.count))
        for p in source.config.players {
            body.string(p.name)
            body.u8(p.kind.rawValue)
            body.u8(p.level)
        }
        body.blob(source.config.settings)
        var w = ByteWriter()
        w.bytes(ReplayJournal.magic)
        w.u16(1)
        w.u8(1)
        w.u32(UInt32(body.count))
        w.bytes(body.bytes)
        w.u64(0)  // config section, checksum resealed below
        var journal = ReplayFile.resealed(w.bytes)
        for log in source.logs { journal += ReplayJournal.chunk(log, as: TurfWorld.self) }
        let rec = try ReplayJournal.recover(journal, as: TurfWorld.self)
        #expect(rec.stoppedBy == nil)
        #expect(rec.replay.config == source.config)
        #expect(rec.replay.logs == source.logs)
        #expect(rec.replay.finalHash == source.finalHash)
        #expect(ReplayFile.encode(rec.replay)[8] == 2)
        var v3 = journal
        v3[8] = 3
        #expect(throws: ReplayFormatError.self) { try ReplayJournal.recover(v3, as: TurfWorld.self) }
    }

    /// The recorded match kept in format version 1 still reads and verifies, and re-encodes as
    /// version 2 with the same logs and hashes.
    @Test func theVersionOneReplayInReplaysStillVerifies() throws {
        let path = repoRoot.appendingPathComponent("Replays/dojo-human-vs-3-bots-quit-early.turfreplay")
        let bytes = [UInt8](try Data(contentsOf: path))
        #expect(bytes[8] == 1 && bytes[9] == 0)
        let replay = try ReplayFile.decode(bytes, as: TurfWorld.self)
        #expect(try ReplayPlayer(replay).verify().0.ok)
        #expect(replay.config.players.map(\.kind) == [.human, .bot, .bot, .bot])
        let v2 = ReplayFile.encode(replay)
        #expect(v2[8] == 2)
        let again = try ReplayFile.decode(v2, as: TurfWorld.self)
        #expect(again.config == replay.config && again.logs == replay.logs)
        #expect(again.checkpoints == replay.checkpoints && again.finalHash == replay.finalHash)
        // A version this turf does not know is refused with its offset.
        var v3 = bytes
        v3[8] = 3
        #expect(throws: ReplayFormatError.self) { try ReplayFile.decode(v3, as: TurfWorld.self) }
    }
}
