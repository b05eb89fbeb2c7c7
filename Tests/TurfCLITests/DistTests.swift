import Foundation
import Testing

#if canImport(Glibc)
    import Glibc
#endif

/// The binary `make dist` made for this version and this machine's architecture.
enum DistArtefact {
    static let required = ProcessInfo.processInfo.environment["TURF_TEST_DIST"] == "1"

    static let machine: String = {
        var u = utsname()
        uname(&u)
        return withUnsafeBytes(of: &u.machine) { String(decoding: $0.prefix { $0 != 0 }, as: UTF8.self) }
    }()

    static let version: String =
        ((try? run(turfBinary, ["--version"]))?.stdout ?? "").trimmingCharacters(in: .whitespacesAndNewlines)

    static var path: URL { repoRoot.appendingPathComponent("dist/turf-\(version)-linux-\(machine)") }
    static var exists: Bool { FileManager.default.isExecutableFile(atPath: path.path) }

    /// Built after the last change under Sources/: an older binary may play an older game (the
    /// final-hash check would fail for that, not for the way it is built).
    static var isCurrent: Bool {
        let fm = FileManager.default
        guard exists, let built = (try? fm.attributesOfItem(atPath: path.path))?[.modificationDate] as? Date,
            let sources = fm.enumerator(atPath: repoRoot.appendingPathComponent("Sources").path)
        else { return false }
        while let rel = sources.nextObject() as? String {
            let file = repoRoot.appendingPathComponent("Sources").appendingPathComponent(rel).path
            if let changed = (try? fm.attributesOfItem(atPath: file))?[.modificationDate] as? Date, changed > built {
                return false
            }
        }
        return true
    }
}

/// `make dist`'s binary on a machine without Swift: copied out of the tree into a temporary
/// directory and run with an empty environment and the toolchain's runtime libraries hidden (a
/// private mount namespace puts an empty tmpfs over them), it answers --version and --help, makes
/// its identity (libsodium), simulates and verifies a match with the same final hash as the build
/// under test, and draws the demo in a real terminal (ncursesw and the system's terminfo). Its
/// shared libraries are glibc's, libstdc++ and libgcc_s only.
///
/// The release build takes minutes, so these tests run when dist/ holds the binary for this
/// version and architecture, built since the last change to Sources/ (`make dist`), and must run (fail when it is missing) with
/// TURF_TEST_DIST=1, which makes `make test` build it first.
@Suite(
    .serialized,
    .enabled(
        if: DistArtefact.isCurrent || DistArtefact.required,
        "no dist binary built from these sources: `make dist` builds it (`make test TURF_TEST_DIST=1` too)"
    )
)
struct DistTests {
    static var version: String { DistArtefact.version }
    static var artefact: URL { DistArtefact.path }
    static var artefactExists: Bool { DistArtefact.exists }

    /// The shared libraries a friend's machine is sure to have.
    static func isSystemLibrary(_ name: String) -> Bool {
        ["libc.so.6", "libm.so.6", "libstdc++.so.6", "libgcc_s.so.1"].contains(name)
            || (name.hasPrefix("ld-linux-") && name.contains(".so."))
    }

    /// The directory of the Swift runtime this test process loaded (…/usr/lib/swift), from its
    /// memory map: what the dist binary must run without.
    static func swiftRuntimeDirectory() -> String? {
        // Read to the end: String(contentsOfFile:) stops after the first 4 KiB of a /proc file.
        let data = try? FileHandle(forReadingFrom: URL(fileURLWithPath: "/proc/self/maps")).readToEnd()
        let maps = String(decoding: data ?? Data(), as: UTF8.self)
        guard let line = maps.split(separator: "\n").first(where: { $0.hasSuffix("/libswiftCore.so") }),
            let start = line.firstIndex(of: "/")
        else { return nil }
        return URL(fileURLWithPath: String(line[start...])).deletingLastPathComponent().deletingLastPathComponent()
            .path
    }

    static func shellQuote(_ s: String) -> String { "'" + s.replacingOccurrences(of: "'", with: "'\\''") + "'" }

    /// A friend's machine, as far as one process can tell: a temporary home, the dist binary copied
    /// into it, PATH=/usr/bin:/bin and nothing else in the environment, and the Swift runtime
    /// hidden when this process may make a mount namespace (root, as CI runs); otherwise only the
    /// environment is bare, and the test says so.
    struct Friend {
        let home: URL
        let turf: String
        let hidden: String?

        init() throws {
            home = FileManager.default.temporaryDirectory.appendingPathComponent(
                "turf-friend-\(UUID().uuidString.prefix(8))"
            )
            try FileManager.default.createDirectory(at: home, withIntermediateDirectories: true)
            turf = home.appendingPathComponent("turf").path
            try FileManager.default.copyItem(atPath: artefact.path, toPath: turf)
            guard let runtime = swiftRuntimeDirectory() else {
                throw CLIFailure("no libswiftCore.so in /proc/self/maps")
            }
            // The probe: inside the namespace, the runtime this process uses is gone.
            let probe = try TurfCLITests.run(
                "/usr/bin/unshare",
                Self.hide(runtime) + ["/bin/sh", "-c", "test ! -e \(shellQuote(runtime))/linux/libswiftCore.so"],
                timeout: 30
            )
            if probe.status == 0 {
                hidden = runtime
            } else {
                hidden = nil
                print("dist: no mount namespace here (\(probe.stderr.prefix(200))); the toolchain is not hidden")
            }
        }

        /// unshare's arguments that run the rest with an empty tmpfs over `dir`.
        static func hide(_ dir: String) -> [String] {
            ["--mount", "--", "/bin/sh", "-c", "mount -t tmpfs turf-no-swift \"$0\" && exec \"$@\"", dir]
        }

        var environment: [String] {
            [
                "/usr/bin/env", "-i", "PATH=/usr/bin:/bin", "HOME=\(home.path)", "LANG=C.UTF-8",
                "XDG_CONFIG_HOME=\(home.path)/config", "XDG_STATE_HOME=\(home.path)/state",
            ]
        }

        /// The full command line that runs the copied turf with `args` on the friend's machine.
        func command(_ args: [String], extraEnvironment: [String] = []) -> [String] {
            let inner = environment + extraEnvironment + [turf] + args
            if let hidden { return ["/usr/bin/unshare"] + Self.hide(hidden) + inner }
            return inner
        }

        func run(_ args: [String]) throws -> CommandResult {
            let c = command(args)
            return try TurfCLITests.run(c[0], Array(c.dropFirst()), timeout: 120)
        }

        func close() { try? FileManager.default.removeItem(at: home) }
    }

    @Test func theBinaryNeedsNoSwiftLibraryAndMatchesItsChecksum() throws {
        try #require(Self.artefactExists, "\(Self.artefact.path) is missing: run make dist")
        let dist = Self.artefact.deletingLastPathComponent()
        let name = Self.artefact.lastPathComponent
        let sum = try run(
            "/bin/sh",
            ["-c", "cd \(Self.shellQuote(dist.path)) && sha256sum -c \(Self.shellQuote(name + ".sha256"))"]
        )
        #expect(sum.status == 0, "\(sum.stdout)\(sum.stderr)")

        let dynamic = try run("/usr/bin/readelf", ["-d", Self.artefact.path])
        #expect(dynamic.status == 0, "\(dynamic.stderr)")
        let needed = dynamic.stdout.split(separator: "\n").filter { $0.contains("(NEEDED)") }.compactMap { line in
            line.split(separator: "[").last?.split(separator: "]").first.map(String.init)
        }
        print("dist: \(name) needs \(needed.joined(separator: " "))")
        #expect(!needed.isEmpty)
        #expect(needed.allSatisfy(Self.isSystemLibrary), "needs \(needed)")
        for line in dynamic.stdout.split(separator: "\n") where line.contains("PATH)") {
            #expect(!line.contains("swift"), "searches the toolchain: \(line)")
        }

        let ldd = try run("/usr/bin/ldd", [Self.artefact.path])
        #expect(ldd.status == 0, "\(ldd.stderr)")
        for swiftLibrary in [
            "libswift", "libFoundation", "lib_Foundation", "libdispatch", "libBlocksRuntime", "not found",
        ] {
            #expect(!ldd.stdout.contains(swiftLibrary), "ldd lists \(swiftLibrary):\n\(ldd.stdout)")
        }
    }

    @Test func itRunsAndPlaysWithoutTheToolchain() throws {
        try #require(Self.artefactExists, "\(Self.artefact.path) is missing: run make dist")
        let friend = try Friend()
        defer { friend.close() }

        // The control: there, the build under test (which loads the Swift runtime) cannot start.
        if friend.hidden != nil {
            let c = friend.command(["--version"])
            let control = try run(c[0], Array(c.dropFirst()).map { $0 == friend.turf ? turfBinary : $0 })
            #expect(control.status == 127, "the Swift runtime is still there: \(control.stdout)\(control.stderr)")
        }

        let version = try friend.run(["--version"])
        #expect(version.status == 0, "\(version.stderr)")
        #expect(version.stdout == Self.version + "\n")

        let help = try friend.run(["--help"])
        #expect(help.status == 0, "\(help.stderr)")
        #expect(help.stdout.contains("USAGE: turf <subcommand>"), "\(help.stdout)")
        #expect(help.stdout.contains("demo"))

        // libsodium, linked in: a new Ed25519 identity.
        let id = try friend.run(["id"])
        #expect(id.status == 0, "\(id.stderr)")
        #expect(id.stdout.hasPrefix("turf1"), "\(id.stdout)")

        // A headless bot match, then its verification: the same game, hash for hash, as the build
        // under test plays from the same seed.
        let replay = friend.home.appendingPathComponent("match.turfreplay").path
        let args = ["replay", "generate", "--players", "4", "--minutes", "0.2", "--seed", "3"]
        let generated = try friend.run(args + ["-o", replay])
        #expect(generated.status == 0, "\(generated.stderr)")
        let verified = try friend.run(["replay", "--headless", replay])
        #expect(verified.status == 0, "\(verified.stderr)")
        #expect(verified.stdout.contains("\"ok\":true"), "\(verified.stdout)")

        let here = FileManager.default.temporaryDirectory.appendingPathComponent(
            "turf-dist-reference-\(UUID().uuidString.prefix(8)).turfreplay"
        )
        defer { try? FileManager.default.removeItem(at: here) }
        let reference = try run(turfBinary, args + ["-o", here.path])
        #expect(reference.status == 0, "\(reference.stderr)")
        let hash = { (json: String) in json.firstRange(of: /"final_hash":"[0-9a-f]+"/).map { String(json[$0]) } }
        #expect(hash(generated.stdout) != nil)
        #expect(hash(generated.stdout) == hash(reference.stdout), "\(generated.stdout)\n\(reference.stdout)")
    }

    @Test func theDemoDrawsInARealTerminalWithoutTheToolchain() throws {
        try #require(Self.artefactExists, "\(Self.artefact.path) is missing: run make dist")
        let friend = try Friend()
        defer { friend.close() }
        let command = friend.command(
            ["demo", "--seconds", "60", "--seed", "5", "--ascii", "--no-record", "--map", "dojo"],
            extraEnvironment: ["TERM=xterm-256color", "NO_COLOR=1"]
        )
        let t = try TmuxSession(width: 80, height: 24, command: command.map(Self.shellQuote).joined(separator: " "))
        defer { t.close() }
        let (screen, shown) = t.waitFor(timeout: DemoUnderTmuxTests.wait) {
            DemoUnderTmuxTests.showsArenaAndScores($0, map: "Dojo")
        }
        #expect(shown != nil, "the arena never appeared; screen:\n\(screen)")
        t.send("q")
        let (end, ended) = t.waitFor(timeout: DemoUnderTmuxTests.wait) { $0.contains("EXIT:") && $0.contains("icanon") }
        #expect(ended != nil, "the demo did not exit on q:\n\(end)")
        let report = DemoUnderTmuxTests.exitReport(end)
        #expect(report.status == 0, "\(end)")
        #expect(report.restored, "terminal not restored:\n\(end)")
    }
}
