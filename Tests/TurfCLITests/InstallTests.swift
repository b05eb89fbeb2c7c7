import Foundation
import Testing

/// `make install` and `make uninstall` for real, into temporary prefixes. The debug `turf` this
/// suite tests and swift-argument-parser's generate-manual (both built by `make test`) are handed to
/// the Makefile as INSTALL_TURF and GENERATE_MANUAL, so nothing is compiled here (a `swift build`
/// would wait for the lock that this test run holds); the recipes, the paths and the generated
/// completions and manual page are the ones a user gets from the release build.
@Suite struct InstallTests {
    static var generateManual: String { repoRoot.appendingPathComponent(".build/debug/generate-manual").path }

    /// Where each file goes under the prefix, and its mode.
    static let layout: [(path: String, mode: Int)] = [
        ("bin/turf", 0o755),
        ("share/man/man1/turf.1", 0o644),
        ("share/bash-completion/completions/turf", 0o644),
        ("share/zsh/site-functions/_turf", 0o644),
        ("share/fish/vendor_completions.d/turf.fish", 0o644),
    ]

    static func tempDir(_ tag: String) throws -> URL {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent(
            "turf-\(tag)-\(UUID().uuidString.prefix(8))"
        )
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        return dir
    }

    /// Every file and symlink under `dir`, as paths relative to it, sorted.
    static func files(under dir: URL) -> [String] {
        guard let e = FileManager.default.enumerator(atPath: dir.path) else { return [] }
        var out: [String] = []
        while let rel = e.nextObject() as? String {
            var isDir: ObjCBool = false
            if FileManager.default.fileExists(atPath: dir.appendingPathComponent(rel).path, isDirectory: &isDir),
                isDir.boolValue
            {
                continue
            }
            out.append(rel)
        }
        return out.sorted()
    }

    static func mode(_ path: String) -> Int {
        ((try? FileManager.default.attributesOfItem(atPath: path)[.posixPermissions]) as? Int) ?? -1
    }

    /// `make -C <repo> TARGET …` with the already-built binaries, in an environment without a parent
    /// make's flags (when the suite runs under `make test`) or install variables of its own.
    static func make(_ args: [String], environment extra: [String: String] = [:]) throws -> CommandResult {
        var env = ProcessInfo.processInfo.environment
        for key in ["MAKEFLAGS", "MFLAGS", "MAKELEVEL", "MAKEOVERRIDES", "DESTDIR", "PREFIX", "SOURCE_DATE_EPOCH"] {
            env[key] = nil
        }
        for (k, v) in extra { env[k] = v }
        guard FileManager.default.isExecutableFile(atPath: generateManual) else {
            throw CLIFailure("\(generateManual) is missing: `swift build --product generate-manual` (make test does)")
        }
        let make = ["/usr/bin/make", "/bin/make"].first { FileManager.default.isExecutableFile(atPath: $0) }
        guard let make else { throw CLIFailure("make is not installed (scripts/install-deps.sh installs it)") }
        return try run(
            make,
            [
                "--no-print-directory", "-C", repoRoot.path, "INSTALL_TURF=\(turfBinary)",
                "GENERATE_MANUAL=\(generateManual)",
            ]
                + args,
            environment: env,
            timeout: 120
        )
    }

    @Test func installPutsEachFileInItsPlaceAndUninstallTakesThemAllAway() throws {
        let prefix = try Self.tempDir("prefix")
        defer { try? FileManager.default.removeItem(at: prefix) }
        let r = try Self.make(["install", "PREFIX=\(prefix.path)"])
        #expect(r.status == 0, "make install failed:\n\(r.stdout)\n\(r.stderr)")
        #expect(Self.files(under: prefix) == Self.layout.map(\.path).sorted())
        for (path, mode) in Self.layout {
            #expect(Self.mode(prefix.appendingPathComponent(path).path) == mode, "\(path)")
            #expect(r.stdout.contains("installed \(prefix.path)/\(path)"), "\(r.stdout)")
        }

        // The installed binary runs, and is the one that was built.
        let installed = prefix.appendingPathComponent("bin/turf").path
        let version = try run(installed, ["--version"])
        #expect(version.status == 0)
        #expect(version.stdout == (try run(turfBinary, ["--version"])).stdout)

        // The manual page: one page for every command, in section 1.
        let man = try String(contentsOf: prefix.appendingPathComponent("share/man/man1/turf.1"), encoding: .utf8)
        #expect(man.contains(".Dt TURF 1"))
        #expect(man.contains(".Nd \"A peer-to-peer territory game for the terminal.\""))
        for command in ["demo", "replay", "host", "join", "id", "dht", "bench"] {
            #expect(man.contains(".It Em \(command)\n"), "the manual has no \(command)")
        }
        if let manCommand = ["/usr/bin/man", "/bin/man"].first(where: {
            FileManager.default.isExecutableFile(atPath: $0)
        }),
            FileManager.default.isExecutableFile(atPath: "/usr/bin/groff")
        {
            let shown = try run(
                manCommand,
                ["-l", prefix.appendingPathComponent("share/man/man1/turf.1").path],
                environment: ["PATH": "/usr/bin:/bin", "MANPAGER": "cat", "MANWIDTH": "100", "LANG": "C.UTF-8"]
            )
            #expect(shown.status == 0, "\(shown.stderr)")
            #expect(shown.stdout.contains("turf — A peer-to-peer territory game for the terminal."), "\(shown.stdout)")
        }

        // The completions: bash registers one for turf that knows the subcommands; zsh's and fish's
        // are the parser's scripts for turf.
        let bashFile = prefix.appendingPathComponent("share/bash-completion/completions/turf").path
        let bash = try run(
            "/bin/bash",
            [
                "-c",
                "source '\(bashFile)' && complete -p turf && COMP_WORDS=(turf '') COMP_CWORD=1 _turf && echo \"${COMPREPLY[*]}\"",
            ]
        )
        #expect(bash.status == 0, "\(bash.stderr)")
        #expect(bash.stdout.contains(" -F _turf turf"), "\(bash.stdout)")
        #expect(bash.stdout.split(separator: "\n").last.map { $0.split(separator: " ").contains("demo") } == true)
        let zsh = try String(
            contentsOf: prefix.appendingPathComponent("share/zsh/site-functions/_turf"),
            encoding: .utf8
        )
        #expect(zsh.hasPrefix("#compdef turf"))
        let fish = try String(
            contentsOf: prefix.appendingPathComponent("share/fish/vendor_completions.d/turf.fish"),
            encoding: .utf8
        )
        #expect(fish.contains("complete -c 'turf'"))
        // Where zsh and fish are installed (make deps installs neither), they parse their scripts.
        for (shell, path) in [
            ("/usr/bin/zsh", "share/zsh/site-functions/_turf"),
            ("/usr/bin/fish", "share/fish/vendor_completions.d/turf.fish"),
        ] where FileManager.default.isExecutableFile(atPath: shell) {
            let parsed = try run(shell, ["-n", prefix.appendingPathComponent(path).path])
            #expect(parsed.status == 0, "\(shell) -n \(path): \(parsed.stderr)")
        }

        let u = try Self.make(["uninstall", "PREFIX=\(prefix.path)"])
        #expect(u.status == 0, "make uninstall failed:\n\(u.stdout)\n\(u.stderr)")
        let left = (try? FileManager.default.contentsOfDirectory(atPath: prefix.path)) ?? ["(cannot read)"]
        #expect(left.isEmpty, "uninstall left \(left) in \(prefix.path)")
    }

    /// A packager's staged install: everything under DESTDIR + PREFIX, and the same pair removes it.
    /// The manual's date follows SOURCE_DATE_EPOCH, so a rebuild makes the same page.
    @Test func destdirStagesUnderThePrefixAndTheManualDateIsReproducible() throws {
        let root = try Self.tempDir("destdir")
        defer { try? FileManager.default.removeItem(at: root) }
        let stage = root.appendingPathComponent("stage")
        let vars = ["DESTDIR=\(stage.path)", "PREFIX=/usr"]
        let r = try Self.make(["install"] + vars, environment: ["SOURCE_DATE_EPOCH": "1700000000"])
        #expect(r.status == 0, "make install failed:\n\(r.stdout)\n\(r.stderr)")
        #expect(Self.files(under: stage) == Self.layout.map { "usr/" + $0.path }.sorted())
        #expect(!r.stdout.contains("not on your PATH"), "a staged install is not run from there")
        let man = try String(contentsOf: stage.appendingPathComponent("usr/share/man/man1/turf.1"), encoding: .utf8)
        #expect(man.contains(".Dd November 14, 2023"), "\(man.prefix(200))")

        let u = try Self.make(["uninstall"] + vars)
        #expect(u.status == 0, "\(u.stderr)")
        #expect(Self.files(under: stage).isEmpty)
        // Down to the prefix, which stays.
        #expect((try? FileManager.default.contentsOfDirectory(atPath: stage.path)) == ["usr"])
        #expect((try? FileManager.default.contentsOfDirectory(atPath: stage.appendingPathComponent("usr").path)) == [])
    }

    /// Uninstall removes only what install put there: other programs' files, and the directories that
    /// hold them, stay.
    @Test func uninstallLeavesOtherFilesAlone() throws {
        let prefix = try Self.tempDir("shared-prefix")
        defer { try? FileManager.default.removeItem(at: prefix) }
        let others = ["bin/other", "share/man/man1/other.1", "share/bash-completion/completions/other"]
        for path in others {
            let url = prefix.appendingPathComponent(path)
            try FileManager.default.createDirectory(
                at: url.deletingLastPathComponent(),
                withIntermediateDirectories: true
            )
            try Data("not turf's\n".utf8).write(to: url)
        }
        #expect(try Self.make(["install", "PREFIX=\(prefix.path)"]).status == 0)
        #expect(Self.files(under: prefix) == (others + Self.layout.map(\.path)).sorted())
        #expect(try Self.make(["uninstall", "PREFIX=\(prefix.path)"]).status == 0)
        #expect(Self.files(under: prefix) == others.sorted())
        for path in others {
            let text = try String(contentsOf: prefix.appendingPathComponent(path), encoding: .utf8)
            #expect(text == "not turf's\n")
        }
        // Uninstalling again finds nothing to remove and does not fail.
        let again = try Self.make(["uninstall", "PREFIX=\(prefix.path)"])
        #expect(again.status == 0)
        #expect(!again.stdout.contains("removed"))
    }
}
