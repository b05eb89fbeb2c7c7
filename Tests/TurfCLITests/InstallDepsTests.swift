import Foundation
import Testing

/// scripts/install-deps.sh on a fresh machine, with stand-ins for dpkg-query, id, apt-get, sudo and
/// swift on PATH (nothing is installed for real): apt-get directly as root, through sudo otherwise,
/// and a clear message when neither works.
@Suite struct InstallDepsTests {
    struct Fake {
        let dir: URL
        var log: String { (try? String(contentsOf: dir.appendingPathComponent("calls.log"), encoding: .utf8)) ?? "" }

        init(uid: Int, sudo: Bool) throws {
            dir = FileManager.default.temporaryDirectory.appendingPathComponent(
                "turf-deps-\(UUID().uuidString.prefix(8))"
            )
            try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
            let log = dir.appendingPathComponent("calls.log").path
            var tools = [
                "dpkg-query": "exit 1",  // nothing is installed
                "id": "echo \(uid)",
                "apt-get": "echo \"apt-get $*\" >> '\(log)'",
                "swift": "exit 0",
            ]
            if sudo { tools["sudo"] = "echo \"sudo $1\" >> '\(log)'; \"$@\"" }
            for (name, body) in tools {
                let path = dir.appendingPathComponent(name).path
                try writeScript("#!/bin/sh\n\(body)\n", to: path)
            }
            let grep = ["/usr/bin/grep", "/bin/grep"].first { FileManager.default.isExecutableFile(atPath: $0) }!
            try FileManager.default.createSymbolicLink(
                atPath: dir.appendingPathComponent("grep").path,
                withDestinationPath: grep
            )
        }

        /// Writes an executable script through a close-on-exec descriptor. A plain write would
        /// leave the file open for writing in any process another test spawns meanwhile, and
        /// running the script would then fail with ETXTBSY (exit 126).
        private func writeScript(_ text: String, to path: String) throws {
            let fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0o755)
            guard fd >= 0 else { throw POSIXError(POSIXErrorCode(rawValue: errno) ?? .EIO) }
            defer { close(fd) }
            let bytes = Array(text.utf8)
            let n = bytes.withUnsafeBytes { write(fd, $0.baseAddress, $0.count) }
            guard n == bytes.count else { throw POSIXError(.EIO) }
        }

        func run() throws -> CommandResult {
            try TurfCLITests.run(
                "/bin/bash",
                [repoRoot.appendingPathComponent("scripts/install-deps.sh").path],
                environment: ["PATH": dir.path, "HOME": dir.path]
            )
        }
    }

    @Test func asRootItCallsAptGetDirectly() throws {
        let f = try Fake(uid: 0, sudo: false)
        defer { try? FileManager.default.removeItem(at: f.dir) }
        let r = try f.run()
        #expect(r.status == 0, "\(r.stderr)")
        #expect(f.log.contains("apt-get install -y -qq make libsodium-dev"), "\(f.log)")
        #expect(!f.log.contains("sudo"))
    }

    @Test func asAUserItUsesSudo() throws {
        let f = try Fake(uid: 1000, sudo: true)
        defer { try? FileManager.default.removeItem(at: f.dir) }
        let r = try f.run()
        #expect(r.status == 0, "\(r.stderr)")
        #expect(f.log.contains("sudo apt-get"), "\(f.log)")
        #expect(f.log.contains("apt-get install -y -qq make"), "\(f.log)")
    }

    @Test func asAUserWithoutSudoItSaysWhatToRun() throws {
        let f = try Fake(uid: 1000, sudo: false)
        defer { try? FileManager.default.removeItem(at: f.dir) }
        let r = try f.run()
        #expect(r.status == 1)
        #expect(r.stderr.contains("sudo is not installed"), "\(r.stderr)")
        #expect(r.stderr.contains("apt-get install -y make"), "\(r.stderr)")
        #expect(f.log.isEmpty, "\(f.log)")
    }
}
