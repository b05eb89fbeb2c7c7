import LocalFiles
import TurfRules

/// The size limits of the files turf reads (docs/untrusted-input.md), checked before reading,
/// chosen so that decoding and verifying a crafted file at the limit stays under 256 MB RSS.
enum FileLimits {
    /// A replay. A 60-minute 8-player match is 0.9 MB (216k ops); a crafted 3 MiB replay of
    /// the densest ops (3 bytes each, or 4-byte equivocations) with the largest config peaks at
    /// 204 MB verifying with `--delivery shuffle:` (two replicas), 125 MB in order.
    static let replay = 3 << 20
    /// A journal: ops are stored whole, ~9 bytes each, so a 60-minute 8-player demo journals
    /// ~2.1 MB. A crafted 4 MiB journal of equivocations peaks at 180 MB recovering.
    static let journal = 4 << 20
    /// A map file: the same bound as a map recorded in a match config.
    static let map = ArenaMap.maxSourceBytes
}

/// Where turf keeps its state: $XDG_STATE_HOME/turf (default ~/.local/state/turf).
enum StatePaths {
    static var root: String { XDGPaths().state }
    static var replays: String { XDGPaths().replays }

    static func ensure(_ dir: String) throws { try DurableFile.ensureDirectory(dir) }
}
