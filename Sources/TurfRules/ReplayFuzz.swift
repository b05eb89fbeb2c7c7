import Engine

/// The body of the replay-parser fuzz target (Fuzz/Sources/fuzz-replay) and of the in-suite
/// mutation tests: any bytes either fail to decode with a `ReplayFormatError`, or decode to a
/// replay that re-encodes to a file decoding to the same replay and that can be re-derived.
public enum ReplayFuzz {
    /// Returns a description of a broken promise, or nil. Never crashes on any input.
    public static func check(_ data: [UInt8]) -> String? {
        guard let replay = try? ReplayFile.decode(data, as: TurfWorld.self) else { return nil }
        let again = ReplayFile.encode(replay)
        guard let back = try? ReplayFile.decode(again, as: TurfWorld.self) else { return "re-encoded replay does not decode" }
        if back.logs != replay.logs || back.checkpoints != replay.checkpoints || back.config != replay.config {
            return "replay round trip changed the replay"
        }
        // Whatever decodes must also replay without trapping (the verdict itself may be a mismatch).
        if let player = try? ReplayPlayer(replay) { _ = try? player.verify() }
        return nil
    }
}
