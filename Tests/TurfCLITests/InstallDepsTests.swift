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
                try "#!/bin/sh\n\(body)\n".write(toFile: path, atomically: true, encoding: .utf8)
                chmod(path, 0o755)
            }
            let grep = ["/usr/bin/grep", "/bin/grep"].first { FileManager.default.isExecutableFile(atPath: $0) }!
            try FileManager.default.createSymbolicLink(
                atPath: dir.appendingPathComponent("grep").path,
                withDestinationPath: grep
            )
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
