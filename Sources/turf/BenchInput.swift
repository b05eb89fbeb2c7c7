import ArgumentParser
import CursesShim
import Foundation
import NetCore
import TextOutput

/// `turf bench input`: key-to-screen latency of a networked match, end to end, with real
/// processes (docs/benchmarks.md). A local DHT node, a `turf host` and a `turf join` on loopback,
/// each with its own XDG directories and on a pseudo-terminal this command opens (`forkpty`,
/// 100x32, TERM=xterm-256color, NO_COLOR, `--ascii`). Their output is read as a terminal would
/// (`PtyScreen`); the host's key presses are written to its terminal, and the time until each
/// screen shows the host's avatar turning is measured.
struct BenchInput: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "input",
        abstract: "Key-to-screen latency of a networked match: two real peers on pseudo-terminals over loopback."
    )

    @Option(help: Limits.inputSamples.help("Key presses measured.", default: 100), transform: Limits.inputSamples.parse)
    var samples = 100
    @Option(help: "The turf binary to run as the peers (default: this one; to measure another build).")
    var turf: String?
    @Flag(help: "Print one JSON object.") var json = false

    static let columns = 100
    static let rows = 32
    /// The host's tick rate and its avatar's move interval (TurfSettings' defaults).
    static let tickNanos: UInt64 = 1_000_000_000 / 30
    static let moveEvery: UInt64 = 4

    func run() throws {
        let exe =
            turf ?? (try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/exe"))
            ?? CommandLine.arguments[0]
        guard FileManager.default.isExecutableFile(atPath: exe) else {
            throw CLIError("not an executable: \(SafeText.display(exe, limit: 200))")
        }
        let lab = try InputLab(turf: exe)
        defer { lab.close() }
        let r = try lab.measure(samples: samples)
        let own = r.own
        let peer = r.peer
        let fields: [(String, Any)] = [
            ("benchmark", "input"),
            ("samples", own.count),
            ("missed", r.missed),
            ("skipped", r.skipped),
            ("key_to_own_screen_ms_p50", BenchSupport.percentile(own, 0.5)),
            ("key_to_own_screen_ms_p99", BenchSupport.percentile(own, 0.99)),
            ("key_to_own_screen_ms_max", own.max() ?? 0),
            ("key_to_peer_screen_ms_p50", BenchSupport.percentile(peer, 0.5)),
            ("key_to_peer_screen_ms_p99", BenchSupport.percentile(peer, 0.99)),
            ("key_to_peer_screen_ms_max", peer.max() ?? 0),
            ("peer_samples", peer.count),
            // No added delay: loopback (netem is not available on every machine; docs/benchmarks.md).
            ("one_way_ms", 0.0),
            ("columns", Self.columns),
            ("rows", Self.rows),
            ("unhandled_escapes", r.unhandled),
            ("seconds", r.seconds),
        ]
        if json { BenchSupport.printJSON(fields) } else { BenchSupport.printText(fields) }
        if own.isEmpty { throw CLIError("no key press was measured (\(r.missed) missed)") }
    }
}

/// A process on a pseudo-terminal, and the screen it draws there.
final class PtyPeer {
    let pid: pid_t
    let master: Int32
    var screen: PtyScreen
    private var exited = false

    init(_ path: String, _ args: [String], environment: [String: String], columns: Int, rows: Int) throws {
        let argv = ([path] + args).map { strdup($0) } + [nil]
        let envp = environment.map { strdup("\($0.key)=\($0.value)") } + [nil]
        defer {
            for p in argv { free(p) }
            for p in envp { free(p) }
        }
        var m: Int32 = -1
        let pid = argv.withUnsafeBufferPointer { a in
            envp.withUnsafeBufferPointer { e in
                turf_spawn_on_pty(path, a.baseAddress, e.baseAddress, Int32(columns), Int32(rows), &m)
            }
        }
        guard pid > 0 else { throw CLIError("could not start \(path) on a pseudo-terminal (errno \(errno))") }
        self.pid = pid_t(pid)
        master = m
        screen = PtyScreen(columns: columns, rows: rows)
    }

    /// Reads what the process wrote (nonblocking) into the screen; false once it is gone.
    @discardableResult
    func readAvailable() -> Bool {
        var buf = [UInt8](repeating: 0, count: 65_536)
        while true {
            let n = buf.withUnsafeMutableBytes { read(master, $0.baseAddress, $0.count) }
            if n > 0 {
                screen.feed(buf[0..<n])
                continue
            }
            return n < 0 && errno == EAGAIN
        }
    }

    func type(_ s: String) {
        var bytes = Array(s.utf8)
        _ = write(master, &bytes, bytes.count)
    }

    /// Asks it to quit (SIGTERM; curses restores the terminal), then kills it if it lingers.
    func stop() {
        guard !exited else { return }
        exited = true
        kill(pid, SIGTERM)
        var status: Int32 = 0
        let until = monotonicNanos() + 3_000_000_000
        while waitpid(pid, &status, WNOHANG) == 0 {
            let now = monotonicNanos()
            guard now < until else {
                kill(pid, SIGKILL)
                waitpid(pid, &status, 0)
                break
            }
            // Woken by its last lines (drained, so it can write them) or by the hang-up its exit
            // makes: once the terminal is gone the process has closed it, exiting.
            let gone = FDWait.poll([master], timeoutNanos: until - now).gone[0]
            if !readAvailable() || gone {
                waitpid(pid, &status, 0)
                break
            }
        }
        close(master)
    }
}

/// The DHT node, the host and the joiner of one `turf bench input` run, in a temporary directory.
final class InputLab {
    let dir: URL
    let turf: String
    var dht: Process?
    var host: PtyPeer?
    var join: PtyPeer?

    init(turf: String) throws {
        self.turf = turf
        dir = FileManager.default.temporaryDirectory.appendingPathComponent(
            "turf-bench-input-\(UUID().uuidString.prefix(8))"
        )
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
    }

    func close() {
        host?.stop()
        join?.stop()
        if let dht, dht.isRunning {
            dht.terminate()
            dht.waitUntilExit()
        }
        try? FileManager.default.removeItem(at: dir)
    }

    /// A peer's environment: its own XDG directories, a fixed terminal, no colour, no passphrase,
    /// no outside DHT.
    func env(_ peer: String) -> [String: String] {
        var e: [String: String] = [:]
        for k in ["PATH", "HOME", "USER", "LANG", "LC_ALL"] { e[k] = ProcessInfo.processInfo.environment[k] }
        e["XDG_CONFIG_HOME"] = dir.appendingPathComponent("\(peer)/config").path
        e["XDG_STATE_HOME"] = dir.appendingPathComponent("\(peer)/state").path
        e["TERM"] = "xterm-256color"
        e["NO_COLOR"] = "1"
        return e
    }

    /// Starts a local DHT node on loopback; its address.
    func startDHT(seconds: Int) throws -> String {
        let out = Pipe()
        let p = Process()
        p.executableURL = URL(fileURLWithPath: turf)
        p.arguments = [
            "dht", "serve", "--bind", "127.0.0.1", "--bootstrap", "none", "--no-state", "--duration", String(seconds),
            "--status-every", "0",
        ]
        p.environment = env("dht")
        p.standardOutput = out
        p.standardError = FileHandle.nullDevice
        try p.run()
        dht = p
        // Its output, read as it comes (bounded: the first 64 KiB) until it says where it listens.
        let fd = out.fileHandleForReading.fileDescriptor
        var text = [UInt8]()
        var buf = [UInt8](repeating: 0, count: 4096)
        let until = monotonicNanos() + 30_000_000_000
        while text.count < 65_536 {
            let now = monotonicNanos()
            guard now < until, FDWait.poll([fd], timeoutNanos: until - now).ready[0] else { break }
            let n = buf.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
            guard n > 0 else { break }  // end of output: the node exited
            text += buf[0..<n]
            if let line = String(decoding: text, as: UTF8.self).split(separator: "\n").first(where: {
                $0.contains("listening on")
            }),
                let addr = line.split(separator: " ").first(where: { $0.hasPrefix("127.0.0.1:") })
            {
                // The rest of its output is read and dropped, so the node never blocks on a full pipe
                // (until its end: an empty read, after which nothing more is watched).
                out.fileHandleForReading.readabilityHandler = { h in
                    if h.availableData.isEmpty { h.readabilityHandler = nil }
                }
                return String(addr)
            }
        }
        throw CLIError("the local DHT node did not start")
    }

    /// Reads both terminals until `done` holds or `seconds` pass (then throws, saying `what`).
    func pump(_ seconds: Double, _ what: String, until done: () -> Bool) throws {
        let until = monotonicNanos() + UInt64(seconds * 1e9)
        while !done() {
            let now = monotonicNanos()
            guard now < until else {
                let screens = [host, join].compactMap { $0?.screen.text }.joined(separator: "\n----\n")
                throw CLIError("\(what) did not show in \(Int(seconds)) s; the screens:\n\(screens)")
            }
            poll(until: min(until, now + 100_000_000))
        }
    }

    /// Waits for output on either terminal until `deadline` (or the first output), and reads it.
    /// Returns when it read.
    @discardableResult
    func poll(until deadline: UInt64) -> UInt64? {
        let peers = [host, join].compactMap { $0 }
        let now = monotonicNanos()
        guard now < deadline else { return nil }
        let r = FDWait.poll(peers.map(\.master), timeoutNanos: deadline - now).ready
        guard r.contains(true) else { return nil }
        let at = monotonicNanos()
        for (p, ready) in zip(peers, r) where ready { p.readAvailable() }
        return at
    }

    struct Result {
        var own: [Double] = []
        var peer: [Double] = []
        var missed = 0
        /// Turns not measured: the avatar moved before the key was due, or the key's time had passed.
        var skipped = 0
        var unhandled = 0
        var seconds = 0.0
    }

    /// The arena's rows (below the HUD's two, above the status line).
    var arenaRows: Range<Int> { 2..<(BenchInput.rows - 1) }

    /// Where the host's avatar is on the host's screen ("A@": its letter and @) and on the
    /// joiner's ("AA"), if exactly one shows.
    func avatar(on p: PtyPeer?, own: Bool) -> (x: Int, y: Int)? {
        guard let p else { return nil }
        let hits = p.screen.find(own ? ["A", "@"] : ["A", "A"], inRows: arenaRows)
        return hits.count == 1 ? hits[0] : nil
    }

    enum Dir: CaseIterable {
        case up, down, left, right
        var key: String {
            switch self {
            case .up: "w"
            case .down: "s"
            case .left: "a"
            case .right: "d"
            }
        }
        /// Screen cells per map cell step (two columns per map cell).
        var delta: (x: Int, y: Int) {
            switch self {
            case .up: (0, -1)
            case .down: (0, 1)
            case .left: (-2, 0)
            case .right: (2, 0)
            }
        }
        static func of(dx: Int, dy: Int) -> Dir? { allCases.first { $0.delta == (dx, dy) } }
        var turns: [Dir] { self == .up || self == .down ? [.left, .right] : [.up, .down] }
    }

    func measure(samples: Int) throws -> Result {
        let began = monotonicNanos()
        let matchSeconds = min(3600, max(30, samples * 3 / 5 + 30))
        let boot = try startDHT(seconds: matchSeconds + 120)
        let topic = "bench-input-\(UUID().uuidString.prefix(8))"
        let net = ["--ascii", "--bind", "127.0.0.1", "--bootstrap", boot]
        let cols = BenchInput.columns
        let rows = BenchInput.rows
        host = try PtyPeer(
            turf,
            ["host", "--topic", topic, "--seconds", String(matchSeconds), "--max-players", "2", "--name", "alice"]
                + net,
            environment: env("host"),
            columns: cols,
            rows: rows
        )
        try pump(60, "the host's lobby") { host!.screen.text.contains("Enter: start") }
        join = try PtyPeer(
            turf,
            ["join", "--topic", topic, "--name", "bob"] + net,
            environment: env("join"),
            columns: cols,
            rows: rows
        )
        try pump(60, "the joiner on the host's roster") {
            let s = host!.screen.text
            return s.contains("Players 2/") && s.contains(" bob ")
        }
        host!.type("\r")
        let started = monotonicNanos()
        try pump(60, "the match on both screens") {
            avatar(on: host, own: true) != nil && avatar(on: join, own: false) != nil
                && join!.screen.text.contains("tick ")
        }

        var r = Result()
        var lastOwn = avatar(on: host, own: true)!
        var lastPeer = avatar(on: join, own: false)!
        var lastMove = monotonicNanos()
        var heading: Dir?
        var flip = false
        var rng = SystemRandomNumberGenerator()
        let tick = BenchInput.tickNanos
        let matchEnd = started + UInt64(matchSeconds) * 1_000_000_000

        /// Reads until the host's avatar moves on a screen (or `deadline`); the move and its time.
        func nextMove(own: Bool, deadline: UInt64) -> (Dir?, UInt64)? {
            while true {
                guard let at = poll(until: deadline) else {
                    if monotonicNanos() >= deadline { return nil }
                    continue
                }
                guard let now = avatar(on: own ? host : join, own: own) else { continue }
                let before = own ? lastOwn : lastPeer
                guard now != before else { continue }
                if own { lastOwn = now } else { lastPeer = now }
                return (Dir.of(dx: now.x - before.x, dy: now.y - before.y), at)
            }
        }
        /// An open cell on the host's screen one step `d` from its avatar: a map cell is two
        /// columns, "##" a wall, two blanks void (floor is " .", territory "a ", avatars letters).
        func open(_ d: Dir) -> Bool {
            let x = lastOwn.x + d.delta.x
            let y = lastOwn.y + d.delta.y
            let (a, b) = (host!.screen[x, y], host!.screen[x + 1, y])
            return arenaRows.contains(y) && a != "#" && !(a == " " && b == " ")
        }
        // The host's tick boundaries (its ticks run on its own clock at a fixed rate): its avatar's
        // moves show a little after the tick that made them, so the earliest of them, modulo the
        // tick, marks where ticks begin.
        var phaseBase: UInt64?
        var phaseOffset = Int64.max
        func noteTickPhase(_ t: UInt64) {
            guard let base = phaseBase else {
                phaseBase = t
                phaseOffset = 0
                return
            }
            let tk = Int64(tick)
            var d = Int64(t - base) % tk
            if d >= tk / 2 { d -= tk }
            phaseOffset = min(phaseOffset, d)
        }
        /// The start of the tick that was running at `t`.
        func tickStart(_ t: UInt64) -> UInt64 {
            guard let base = phaseBase else { return t }
            let origin = Int64(base) + phaseOffset
            let k = (Int64(t) - origin) / Int64(tick)
            return UInt64(origin + k * Int64(tick))
        }

        while r.own.count < samples && monotonicNanos() + 3_000_000_000 < matchEnd {
            // 1. A move of the host's avatar on its own screen: the next is due `moveEvery` ticks later.
            guard let (d, movedAt) = nextMove(own: true, deadline: monotonicNanos() + 600_000_000) else {
                // Stopped at a wall: turn it anywhere open, unmeasured.
                if let d = Dir.allCases.first(where: open) { host!.type(d.key) }
                continue
            }
            if let d { heading = d }
            noteTickPhase(movedAt)
            lastMove = tickStart(movedAt)
            // The joiner's screen follows (the move's op travels); read it before measuring.
            _ = nextMove(own: false, deadline: monotonicNanos() + 300_000_000)
            guard let h = heading else { continue }
            flip.toggle()
            let choices = (flip ? h.turns : h.turns.reversed()).filter(open)
            guard let turn = choices.first else { continue }
            // 2. The key, in the last tick before that next move (a turn can only show at a move),
            // at a random point of it (8 ms short of its end: the margin of our estimate of where
            // ticks begin): read at once, it steers that very tick.
            let pressAt =
                lastMove + (BenchInput.moveEvery - 1) * tick + UInt64.random(in: 0..<(tick - 8_000_000), using: &rng)
            guard monotonicNanos() < pressAt else {
                r.skipped += 1
                continue
            }
            while poll(until: pressAt) != nil {
                if let now = avatar(on: host, own: true), now != lastOwn { break }
                if let now = avatar(on: join, own: false) { lastPeer = now }
            }
            if avatar(on: host, own: true).map({ $0 != lastOwn }) ?? false {
                r.skipped += 1
                continue  // it moved before the key went: not a sample
            }
            let keyAt = monotonicNanos()
            host!.type(turn.key)
            // 3. Each screen's first move that way.
            var ownAt: UInt64?
            var peerAt: UInt64?
            let give = keyAt + 1_000_000_000
            while ownAt == nil || peerAt == nil, let at = poll(until: give) {
                if ownAt == nil, let now = avatar(on: host, own: true), now != lastOwn {
                    if Dir.of(dx: now.x - lastOwn.x, dy: now.y - lastOwn.y) == turn { ownAt = at }
                    lastOwn = now
                }
                if peerAt == nil, let now = avatar(on: join, own: false), now != lastPeer {
                    if Dir.of(dx: now.x - lastPeer.x, dy: now.y - lastPeer.y) == turn { peerAt = at }
                    lastPeer = now
                }
            }
            guard let ownAt else {
                r.missed += 1
                continue
            }
            heading = turn
            noteTickPhase(ownAt)
            r.own.append(Double(ownAt - keyAt) / 1e6)
            if let peerAt { r.peer.append(Double(peerAt - keyAt) / 1e6) }
        }
        if r.own.isEmpty { printErr("no sample; the screens:\n\(host!.screen.text)\n----\n\(join!.screen.text)") }
        r.unhandled = (host?.screen.unhandled ?? 0) + (join?.screen.unhandled ?? 0)
        r.seconds = Double(monotonicNanos() - began) / 1e9
        return r
    }
}
