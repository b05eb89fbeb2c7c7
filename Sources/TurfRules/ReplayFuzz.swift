import Engine

/// The body of the replay-parser fuzz target (Fuzz/Sources/fuzz-replay) and of the in-suite
/// mutation tests: any bytes either fail to decode with a `ReplayFormatError`, or decode to a
/// replay that re-encodes to a file decoding to the same replay and that can be re-derived.
/// Inputs that start like a journal (`TURFJRNL`) go to journal recovery instead, whose replay must
/// survive the same round trip and verify.
@_spi(Fuzzing) public enum ReplayFuzz {
    /// Returns a description of a broken promise, or nil. Never crashes on any input.
    public static func check(_ data: [UInt8]) -> String? {
        // Once as given, once with every checksum made to match, so that changes inside a section
        // reach the section's parser instead of stopping at its checksum.
        if let problem = checkOnce(data) { return problem }
        let resealed = ReplayFile.resealed(data)
        return resealed == data ? nil : checkOnce(resealed)
    }

    static func checkOnce(_ data: [UInt8]) -> String? {
        if data.starts(with: ReplayJournal.magic) { return checkJournal(data) }
        guard let replay = try? ReplayFile.decode(data, as: TurfWorld.self) else { return nil }
        let again = ReplayFile.encode(replay)
        guard let back = try? ReplayFile.decode(again, as: TurfWorld.self) else {
            return "re-encoded replay does not decode"
        }
        if back.logs != replay.logs || back.checkpoints != replay.checkpoints || back.config != replay.config {
            return "replay round trip changed the replay"
        }
        // Whatever decodes must also replay without trapping (the verdict itself may be a mismatch).
        if let player = try? ReplayPlayer(replay) { _ = try? player.verify() }
        return nil
    }

    static func checkJournal(_ data: [UInt8]) -> String? {
        guard let rec = try? ReplayJournal.recover(data, as: TurfWorld.self) else { return nil }
        guard rec.discardedBytes <= data.count else { return "recovery discarded more bytes than it read" }
        guard let back = try? ReplayFile.decode(ReplayFile.encode(rec.replay), as: TurfWorld.self),
            back.logs == rec.replay.logs, back.finalHash == rec.replay.finalHash
        else {
            return "a recovered replay does not survive encoding"
        }
        guard let player = try? ReplayPlayer(back), let (v, _) = try? player.verify(), v.ok else {
            return "a recovered replay does not verify"
        }
        return nil
    }
}
