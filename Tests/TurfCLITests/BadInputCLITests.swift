import Engine
import Foundation
import Testing
import TurfRules

/// Issue 7, the command-line half: bad options, output paths, DHT state and settings, and text
/// from files, each refused with a one-line error and a status in 1...127, or shown escaped.
@Suite struct BadInputCLITests {
    static func tempDir() throws -> URL {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent(
            "turf-bad-\(UUID().uuidString.prefix(8))"
        )
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        return dir
    }

    /// An environment of its own: XDG dirs under `dir`, HOME too.
    static func env(_ dir: URL, _ extra: [String: String] = [:]) -> [String: String] {
        var e = ProcessInfo.processInfo.environment
        e["HOME"] = dir.path
        e["XDG_STATE_HOME"] = dir.appendingPathComponent("state").path
        e["XDG_CONFIG_HOME"] = dir.appendingPathComponent("config").path
        e["TURF_DHT_BOOTSTRAP"] = nil
        for (k, v) in extra { e[k] = v }
        return e
    }

    /// The error is one line, says `needle`, and the status is in 1...127.
    static func expectOneLineError(
        _ r: CommandResult,
        _ needle: String,
        status: Int32? = nil,
        sourceLocation: SourceLocation = #_sourceLocation
    ) {
        #expect((1...127).contains(r.status), "status \(r.status)", sourceLocation: sourceLocation)
        if let status { #expect(r.status == status, "status \(r.status): \(r.stderr)", sourceLocation: sourceLocation) }
        let first = r.stderr.split(separator: "\n").first.map(String.init) ?? ""
        #expect(
            first.hasPrefix("Error: ") && first.contains(needle),
            "stderr: \(r.stderr)",
            sourceLocation: sourceLocation
        )
    }

    // MARK: -o

    /// `-o` never replaces a symlink, device, FIFO or directory, and an existing file only with
    /// `--force`: checked before any work, so nothing is simulated for nothing.
    @Test func outputRefusesExistingAndNonRegularTargets() throws {
        let dir = try Self.tempDir()
        defer { try? FileManager.default.removeItem(at: dir) }
        let gen = ["replay", "generate", "--players", "2", "--minutes", "0.2", "--map", "dojo", "-o"]
        let existing = dir.appendingPathComponent("old.turfreplay").path
        try "keep me".write(toFile: existing, atomically: false, encoding: .utf8)
        Self.expectOneLineError(try run(turfBinary, gen + [existing]), "already exists (pass --force", status: 1)
        #expect(try String(contentsOfFile: existing, encoding: .utf8) == "keep me")
        let forced = try run(turfBinary, gen + [existing, "--force"])
        #expect(forced.status == 0, "\(forced.stderr)")

        let target = dir.appendingPathComponent("target").path
        try "target".write(toFile: target, atomically: false, encoding: .utf8)
        let link = dir.appendingPathComponent("link.turfreplay").path
        try FileManager.default.createSymbolicLink(atPath: link, withDestinationPath: target)
        Self.expectOneLineError(
            try run(turfBinary, gen + [link, "--force"]),
            "it is a symbolic link, not a regular file",
            status: 1
        )
        #expect(try FileManager.default.destinationOfSymbolicLink(atPath: link) == target)
        #expect(try String(contentsOfFile: target, encoding: .utf8) == "target")

        let fifo = dir.appendingPathComponent("fifo").path
        #expect(mkfifo(fifo, 0o600) == 0)
        Self.expectOneLineError(try run(turfBinary, gen + [fifo, "--force"], timeout: 30), "it is a FIFO", status: 1)
        Self.expectOneLineError(try run(turfBinary, gen + [dir.path, "--force"]), "it is a directory", status: 1)
        // A long match into an existing file: refused at once, not after the simulation.
        let start = Date()
        Self.expectOneLineError(
            try run(turfBinary, ["replay", "generate", "--minutes", "240", "-o", existing], timeout: 60),
            "already exists",
            status: 1
        )
        #expect(Date().timeIntervalSince(start) < 30)
    }

    // MARK: options

    /// Every numeric option has a range the parser enforces (status 64, before any work): the
    /// values that trapped, hung or took gigabytes before.
    @Test(arguments: [
        (["bench", "replay", "--minutes", "nan"], "--minutes"),
        (["bench", "replay", "--minutes", "inf"], "--minutes"),
        (["bench", "late-op", "--minutes=-inf"], "--minutes"),
        (["bench", "crypto", "--packets", "0"], "--packets"),
        (["bench", "crypto", "--size", "65536"], "--size"),
        (["bench", "flood", "--initiations", "0"], "--initiations"),
        (["bench", "session", "--samples", "0"], "--samples"),
        (["bench", "session", "--size", "65536"], "--size"),
        (["bench", "dht", "--nodes", "100000000"], "--nodes"),
        (["bench", "dht", "--loss", "nan"], "--loss"),
        (["demo", "--bots", "0"], "--bots"),
        (["demo", "--seconds", "99999999999999999999"], "--seconds"),
        (["replay", "generate", "--tick-rate", "0", "-o", "/nonexistent/x"], "--tick-rate"),
        (["replay", "generate", "--minutes", "1e300", "-o", "/nonexistent/x"], "--minutes"),
        (["dht", "serve", "--duration", "nan"], "--duration"),
        (["dht", "lookup", "--topic", "x", "--timeout=-1"], "--timeout"),
    ])
    func numericOptionsAreRangeChecked(args: [String], option: String) throws {
        let r = try run(turfBinary, args, timeout: 30)
        Self.expectOneLineError(r, "is invalid for '\(option) ", status: 64)
        #expect(r.stderr.contains(": must be "), "\(r.stderr)")
    }

    /// `--help` shows each numeric option's range, and the choices of fixed-value options.
    @Test func helpShowsRangesAndChoices() throws {
        func help(_ args: [String]) throws -> String {
            try run(turfBinary, args + ["--help"]).stdout.split(whereSeparator: \.isWhitespace).joined(separator: " ")
        }
        let crypto = try help(["bench", "crypto"])
        #expect(
            crypto.contains("(1-1170 bytes; default 100)") && crypto.contains("(1-100000000; default 100000)"),
            "\(crypto)"
        )
        let demo = try help(["demo"])
        #expect(demo.contains("(1-7; default 3)") && demo.contains("easy, hard, mixed"), "\(demo)")
        let dht = try help(["bench", "dht"])
        #expect(dht.contains("(20-100000; default 10000)") && dht.contains("protocol, oracle"), "\(dht)")
        let lookup = try help(["dht", "lookup"])
        #expect(lookup.contains("<host:port|none>") && lookup.contains("(0-1000000000 s; default 30)"), "\(lookup)")
    }

    /// Options with fixed values get the parser's error, which lists what is allowed.
    @Test func fixedValueOptionsGetTheParsersError() throws {
        let level = try run(turfBinary, ["demo", "--level", "hardest"])
        Self.expectOneLineError(level, "'hardest' is invalid for '--level <level>'", status: 64)
        #expect(level.stderr.contains("'easy', 'hard' or 'mixed'"))
        let mode = try run(turfBinary, ["bench", "dht", "--bootstrap", "router"])
        Self.expectOneLineError(mode, "'router' is invalid for '--bootstrap <bootstrap>'", status: 64)
        #expect(mode.stderr.contains("'protocol' and 'oracle'"))
        Self.expectOneLineError(
            try run(turfBinary, ["replay", "--headless", "x", "--delivery", "shuffle:x"]),
            "'shuffle:x' is invalid for '--delivery",
            status: 64
        )
        for bad in ["no-port-here", "host:0", "host:65536", " , ", "none,host:1"] {
            Self.expectOneLineError(
                try run(turfBinary, ["dht", "lookup", "--topic", "x", "--no-state", "--bootstrap", bad]),
                "is invalid for '--bootstrap <host:port|none>'",
                status: 64
            )
        }
    }

    // MARK: DHT state

    /// `--state` in a place that cannot exist gets the real reason, not "in use by another run";
    /// a state file that is huge, a FIFO or damaged is an error at once, within bounded memory.
    @Test func badStateFilesGetTheRealReason() throws {
        let dir = try Self.tempDir()
        defer { try? FileManager.default.removeItem(at: dir) }
        let serve = [
            "dht", "serve", "--bind", "127.0.0.1", "--bootstrap", "none", "--duration", "0.2", "--status-every", "0",
        ]
        let nope = try run(turfBinary, serve + ["--state", "/proc/nope/x"], environment: Self.env(dir), timeout: 30)
        Self.expectOneLineError(nope, "/proc/nope", status: 1)
        #expect(!nope.stderr.contains("in use"), "\(nope.stderr)")

        let huge = dir.appendingPathComponent("huge.state").path
        #expect(FileManager.default.createFile(atPath: huge, contents: nil))
        let h = try FileHandle(forWritingTo: URL(fileURLWithPath: huge))
        try h.truncate(atOffset: 3 << 30)  // sparse: 3 GB that take no disk
        try h.close()
        let start = Date()
        Self.expectOneLineError(
            try run(turfBinary, serve + ["--state", huge], environment: Self.env(dir), timeout: 30),
            "is too large",
            status: 1
        )
        #expect(Date().timeIntervalSince(start) < 20)

        let fifo = dir.appendingPathComponent("fifo.state").path
        #expect(mkfifo(fifo, 0o600) == 0)
        Self.expectOneLineError(
            try run(turfBinary, serve + ["--state", fifo], environment: Self.env(dir), timeout: 30),
            "a FIFO",
            status: 1
        )

        let damaged = dir.appendingPathComponent("damaged.state").path
        try "d2:id3:abce".write(toFile: damaged, atomically: false, encoding: .utf8)
        Self.expectOneLineError(
            try run(turfBinary, serve + ["--state", damaged], environment: Self.env(dir), timeout: 30),
            "is damaged",
            status: 1
        )
    }

    /// `dht serve` stopped by SIGINT, SIGTERM or SIGHUP saves its table (at the XDG default path)
    /// and exits 128 + the signal.
    @Test(arguments: [SIGINT, SIGTERM, SIGHUP])
    func serveSavesItsTableOnStopSignals(signal: Int32) throws {
        let dir = try Self.tempDir()
        defer { try? FileManager.default.removeItem(at: dir) }
        let out = dir.appendingPathComponent("serve.out").path
        let pid = try spawnBackground(
            turfBinary,
            ["dht", "serve", "--bind", "127.0.0.1", "--bootstrap", "none", "--status-every", "0"],
            environment: Self.env(dir),
            stdout: out
        )
        var status: Int32 = 0
        var reaped = false
        defer {
            if !reaped {
                kill(pid, SIGKILL)
                waitpid(pid, &status, 0)
            }
        }
        _ = try #require(waitForLine(out, containing: "listening on", timeout: 60))
        kill(pid, signal)
        let deadline = Date().addingTimeInterval(30)
        while waitpid(pid, &status, WNOHANG) == 0 && Date() < deadline { usleep(20_000) }
        reaped = Date() < deadline
        #expect(reaped, "serve did not stop on signal \(signal)")
        let exit = (status & 0x7f) == 0 ? (status >> 8) & 0xff : 128 + (status & 0x7f)
        #expect(exit == 128 + signal)
        let state = dir.appendingPathComponent("state/turf/dht.state").path
        let saved = try #require(FileManager.default.contents(atPath: state), "no state file at \(state)")
        #expect(saved.starts(with: Data("d2:id20:".utf8)))
    }

    /// The DHT commands log to the log file, never between their output lines (a log line once
    /// followed `announce`'s result line on the same line), and each output line is whole.
    @Test func dhtCommandsLogToTheLogFile() throws {
        let dir = try Self.tempDir()
        defer { try? FileManager.default.removeItem(at: dir) }
        let r = try run(
            turfBinary,
            [
                "dht", "announce", "--bind", "127.0.0.1", "--topic", "x", "--bootstrap", "none", "--no-state",
                "--duration", "0.5", "--json",
            ],
            environment: Self.env(dir),
            timeout: 30
        )
        #expect(r.status == 0, "\(r.stderr)")
        #expect(FileManager.default.fileExists(atPath: dir.appendingPathComponent("state/turf/turf.log").path))
        for line in r.stdout.split(separator: "\n") {
            #expect((try? JSONSerialization.jsonObject(with: Data(line.utf8))) != nil, "not one JSON object: \(line)")
        }
        #expect(r.stdout.isEmpty || r.stdout.hasSuffix("\n"))
    }

    /// The log file is never waited on or written through: a FIFO named turf.log used to hang
    /// every command that logs (open blocked), a symlink had log lines appended to its target.
    /// Logging is then off, said in one line, and the command does its work. Log lines quote file
    /// names and text from files: they are escaped, so `cat turf.log` cannot drive the terminal.
    @Test(arguments: ["fifo", "symlink"])
    func aLogFileThatIsNotARegularFileIsRefused(kind: String) throws {
        let dir = try Self.tempDir()
        defer { try? FileManager.default.removeItem(at: dir) }
        let turfState = dir.appendingPathComponent("state/turf")
        let replays = turfState.appendingPathComponent("replays")
        try FileManager.default.createDirectory(at: replays, withIntermediateDirectories: true)
        let victim = dir.appendingPathComponent("victim")
        _ = FileManager.default.createFile(atPath: victim.path, contents: Data("precious\n".utf8))
        let log = turfState.appendingPathComponent("turf.log").path
        if kind == "fifo" { #expect(mkfifo(log, 0o600) == 0) } else { #expect(symlink(victim.path, log) == 0) }
        // A journal that is no journal: recovery logs an error about it.
        _ = FileManager.default.createFile(
            atPath: replays.appendingPathComponent("x.turfjournal").path,
            contents: Data("junk".utf8)
        )
        let r = try run(turfBinary, ["replay", "recover"], environment: Self.env(dir), timeout: 60)
        #expect(r.status == 1, "\(r.stderr)")
        #expect(r.stderr.contains("turf: not logging: refusing to write \(log)"), "\(r.stderr)")
        #expect(r.stdout.contains("x.turfjournal"), "\(r.stdout)")
        #expect(try String(contentsOf: victim, encoding: .utf8) == "precious\n")
    }

    @Test func logLinesAreEscaped() throws {
        let dir = try Self.tempDir()
        defer { try? FileManager.default.removeItem(at: dir) }
        let replays = dir.appendingPathComponent("state/turf/replays")
        try FileManager.default.createDirectory(at: replays, withIntermediateDirectories: true)
        let name = "x\u{1B}]0;owned\u{07}\u{1B}[31m.turfjournal"
        _ = FileManager.default.createFile(
            atPath: replays.appendingPathComponent(name).path,
            contents: Data("junk".utf8)
        )
        let r = try run(turfBinary, ["replay", "recover"], environment: Self.env(dir), timeout: 60)
        #expect(r.status == 1, "\(r.stderr)")
        let log = try String(contentsOf: dir.appendingPathComponent("state/turf/turf.log"), encoding: .utf8)
        #expect(log.contains("x\\x1b]0;owned\\x07\\x1b[31m.turfjournal"), "\(log)")
        #expect(!Self.containsTerminalControls(log.replacingOccurrences(of: "\n", with: "")), "\(log)")
    }

    /// `turf id`'s errors name the key file, whose path comes from the environment: escaped like
    /// every other error line (they were written raw).
    @Test func identityErrorsAreEscaped() throws {
        let dir = try Self.tempDir()
        defer { try? FileManager.default.removeItem(at: dir) }
        let config = dir.appendingPathComponent("e\u{1B}[31m")
        try FileManager.default.createDirectory(
            at: config.appendingPathComponent("turf"),
            withIntermediateDirectories: true
        )
        #expect(mkfifo(config.appendingPathComponent("turf/identity.key").path, 0o600) == 0)
        let r = try run(turfBinary, ["id"], environment: Self.env(dir, ["XDG_CONFIG_HOME": config.path]), timeout: 30)
        #expect(r.status == 1)
        #expect(r.stderr.contains("e\\x1b[31m/turf/identity.key is not a regular file (a FIFO)"), "\(r.stderr)")
        #expect(!Self.containsTerminalControls(r.stderr.replacingOccurrences(of: "\n", with: "")), "\(r.stderr)")
    }

    // MARK: bootstrap settings

    /// A dht.conf that cannot be read or parsed is an error, never the public routers; CRLF
    /// line ends parse; a TURF_DHT_BOOTSTRAP of spaces is an error, not `none`.
    @Test func bootstrapSettingsThatCannotBeReadAreErrors() throws {
        let dir = try Self.tempDir()
        defer { try? FileManager.default.removeItem(at: dir) }
        let conf = dir.appendingPathComponent("config/turf/dht.conf")
        try FileManager.default.createDirectory(at: conf.deletingLastPathComponent(), withIntermediateDirectories: true)
        let serve = ["dht", "serve", "--bind", "127.0.0.1", "--no-state", "--duration", "0.2", "--status-every", "0"]

        try Data("# LAN party\r\nbootstrap = 127.0.0.1:9\r\n".utf8).write(to: conf)
        let crlf = try run(turfBinary, serve, environment: Self.env(dir), timeout: 30)
        #expect(crlf.status == 0, "\(crlf.stderr)")
        #expect(crlf.stderr.contains("; bootstrap 127.0.0.1:9\n"), "\(crlf.stderr)")

        try Data([0x62, 0x6f, 0xff, 0x0a]).write(to: conf)
        let latin = try run(turfBinary, serve, environment: Self.env(dir), timeout: 30)
        Self.expectOneLineError(latin, "is not UTF-8 text", status: 1)
        #expect(!latin.stderr.contains("bound"), "it must not start")

        try Data("bootstap = 127.0.0.1:9\n".utf8).write(to: conf)
        Self.expectOneLineError(
            try run(turfBinary, serve, environment: Self.env(dir), timeout: 30),
            "dht.conf:1: unknown setting 'bootstap'",
            status: 1
        )

        try FileManager.default.removeItem(at: conf)
        #expect(mkfifo(conf.path, 0o600) == 0)
        Self.expectOneLineError(
            try run(turfBinary, serve, environment: Self.env(dir), timeout: 30),
            "a FIFO",
            status: 1
        )
        try FileManager.default.removeItem(at: conf)
        try FileManager.default.createDirectory(at: conf, withIntermediateDirectories: true)
        Self.expectOneLineError(
            try run(turfBinary, serve, environment: Self.env(dir), timeout: 30),
            "a directory",
            status: 1
        )

        Self.expectOneLineError(
            try run(turfBinary, serve, environment: Self.env(dir, ["TURF_DHT_BOOTSTRAP": " "]), timeout: 30),
            "TURF_DHT_BOOTSTRAP names no bootstrap node",
            status: 1
        )
    }

    // MARK: escapes

    static let hostile = "\u{1B}]0;pwned\u{07}\u{1B}[31m\u{9B}1m\u{202E}"

    static func containsTerminalControls(_ s: String) -> Bool {
        s.unicodeScalars.contains {
            ($0.value < 0x20 && $0 != "\n") || (0x7F...0x9F).contains($0.value) || $0 == "\u{202E}"
        }
    }

    static func recorded() throws -> TurfReplay {
        let dir = repoRoot.appendingPathComponent("Replays").path
        let name = try #require(
            try FileManager.default.contentsOfDirectory(atPath: dir).filter { $0.hasSuffix(".turfreplay") }.sorted()
                .first
        )
        return try ReplayFile.decode(
            [UInt8](try Data(contentsOf: URL(fileURLWithPath: "\(dir)/\(name)"))),
            as: TurfWorld.self
        )
    }

    /// A crafted game id is quoted in the error escaped: it cannot re-title or recolour the terminal.
    @Test func aCraftedGameIDIsShownEscaped() throws {
        var replay = try Self.recorded()
        replay.config.gameID = Self.hostile
        let path = FileManager.default.temporaryDirectory.appendingPathComponent(
            "turf-esc-\(UUID().uuidString.prefix(8)).turfreplay"
        ).path
        defer { unlink(path) }
        try Data(ReplayFile.encode(replay)).write(to: URL(fileURLWithPath: path))
        let r = try run(turfBinary, ["replay", "--headless", path])
        Self.expectOneLineError(r, "\\x1b]0;pwned\\x07\\x1b[31m\\x9b1m\\u{202e}", status: 1)
        #expect(!Self.containsTerminalControls(r.stderr + r.stdout), "\(r.stderr.debugDescription)")
    }

    /// Player names from a replay reach the JSON escaped, and parse back exactly.
    @Test func namesInJSONAreEscapedAndExact() throws {
        var replay = try Self.recorded()
        replay.config.players[0].name = Self.hostile
        let path = FileManager.default.temporaryDirectory.appendingPathComponent(
            "turf-esc-\(UUID().uuidString.prefix(8)).turfreplay"
        ).path
        defer { unlink(path) }
        try Data(ReplayFile.encode(replay)).write(to: URL(fileURLWithPath: path))
        let r = try run(turfBinary, ["replay", "--headless", path])
        #expect(r.status == 0, "\(r.stderr)")
        #expect(!Self.containsTerminalControls(r.stdout), "\(r.stdout.debugDescription)")
        let o = try #require(try JSONSerialization.jsonObject(with: Data(r.stdout.utf8)) as? [String: Any])
        let scores = try #require(o["scores"] as? [[String: Any]])
        #expect(scores.first?["name"] as? String == Self.hostile)
    }

    /// A map whose header quotes escapes: the error names the key escaped.
    @Test func aCraftedMapHeaderIsShownEscaped() throws {
        let path = FileManager.default.temporaryDirectory.appendingPathComponent(
            "turf-esc-\(UUID().uuidString.prefix(8)).map"
        ).path
        defer { unlink(path) }
        try "name: X\n\(Self.hostile): 1\n---\n#####\n#1.2#\n#####\n".write(
            toFile: path,
            atomically: true,
            encoding: .utf8
        )
        let r = try run(turfBinary, ["replay", "generate", "--players", "2", "--map", path, "-o", path + ".out"])
        #expect(r.status != 0)
        #expect(!Self.containsTerminalControls(r.stderr), "\(r.stderr.debugDescription)")
    }

    // MARK: JSON

    /// Every --json output goes through the one writer: the DHT benchmark (once a JSONEncoder) too.
    @Test func benchDHTJSONComesFromTheOneWriter() throws {
        let r = try run(
            turfBinary,
            [
                "bench", "dht", "--json", "--nodes", "40", "--topics", "4", "--lookups", "10",
                "--window", "60", "--join-seconds", "30",
            ],
            timeout: 120
        )
        #expect(r.status == 0, "\(r.stderr)")
        #expect(r.stdout.hasPrefix("{\"benchmark\":\"dht\",\"mode\":\"protocol\",\"nodes\":40,"), "\(r.stdout)")
        let o = try #require(try JSONSerialization.jsonObject(with: Data(r.stdout.utf8)) as? [String: Any])
        #expect(o["success_rate"] is Double || o["success_rate"] is Int)
        #expect(o["wall_seconds"] != nil)
    }
}
