import Foundation
import Testing

/// scripts/check-warnings.sh, the gate `make test` runs on its build log: a warning that points into
/// this repository's Sources/ or Tests/ fails it; the system libraries' pkg-config notes and
/// warnings inside dependencies do not.
@Suite struct WarningsGateTests {
    func gate(_ log: String) throws -> CommandResult {
        let path = FileManager.default.temporaryDirectory.appendingPathComponent("turf-gate-\(UUID().uuidString).log")
            .path
        defer { unlink(path) }
        try Data(log.utf8).write(to: URL(fileURLWithPath: path))
        return try run("/bin/bash", [repoRoot.appendingPathComponent("scripts/check-warnings.sh").path, path])
    }

    /// What a clean build prints that is not ours.
    let noise = """
        warning: prohibited flag(s): -D_DEFAULT_SOURCE, -D_XOPEN_SOURCE=600
        \(repoRoot.path)/.build/checkouts/swift-nio/Sources/NIOCore/Channel.swift:10:5: warning: theirs
        [12/40] Compiling Transport Wire.swift
        Build complete! (12.00s)

        """

    @Test func aCleanLogPasses() throws {
        let r = try gate(noise)
        #expect(r.status == 0, "\(r.stderr)")
    }

    @Test(arguments: ["Sources/Transport/Wire.swift:3:9", "Tests/NetCoreTests/UDPHostTests.swift:40:1"])
    func aWarningOfOursFails(location: String) throws {
        let line = "\(repoRoot.path)/\(location): warning: variable 'x' was never used"
        let r = try gate(noise + line + "\n" + line + "\n")
        #expect(r.status == 1)
        #expect(r.stderr.contains(location))
        #expect(r.stderr.contains("1 warning(s)"), "duplicates counted once: \(r.stderr)")
    }
}
