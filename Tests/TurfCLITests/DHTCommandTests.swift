import Foundation
import Testing

/// `turf dht` end to end on loopback: a serving node, an announcer and a lookup, as three processes.
@Suite struct DHTCommandTests {
    @Test func infohashIsTheDocumentedDerivation() throws {
        let r = try run(turfBinary, ["dht", "infohash", "--topic", "hello"])
        #expect(r.status == 0)
        #expect(r.stdout.trimmingCharacters(in: .whitespacesAndNewlines) == "c35ee8023b5cbc8578f04713d05f98c44a837c1f")
        let bad = try run(
            turfBinary,
            ["dht", "lookup", "--infohash", "xyz", "--bootstrap", "127.0.0.1:1", "--no-state"]
        )
        #expect(bad.status != 0)
        #expect(bad.stderr.contains("40 hex digits"))
    }

    /// Bad numbers are refused with a message instead of trapping.
    @Test func durationsAreValidated() throws {
        for (cmd, value) in [("announce", "-1"), ("announce", "1e300"), ("serve", "-5"), ("serve", "nan")] {
            var args = [
                "dht", cmd, "--bind", "127.0.0.1", "--bootstrap", "127.0.0.1:1", "--no-state", "--duration=\(value)",
            ]
            if cmd == "announce" { args += ["--topic", "x"] }
            let r = try run(turfBinary, args, timeout: 30)
            #expect(r.status == 64, "\(cmd) --duration \(value): status \(r.status)")
            #expect(r.stderr.contains("is invalid for '--duration <duration>': must be 0-1000000000 s"), "\(r.stderr)")
        }
    }

    /// Bootstrap nodes that do not resolve are an error, not a silent lonely node; `none` is the
    /// way to start a new network on purpose.
    @Test func unresolvableBootstrapIsAnError() throws {
        let r = try run(
            turfBinary,
            [
                "dht", "lookup", "--bind", "127.0.0.1", "--topic", "x", "--bootstrap", "no-such-host.invalid:6881",
                "--no-state", "--timeout", "5",
            ],
            timeout: 30
        )
        #expect(r.status != 0 && r.status != 2, "status \(r.status)")
        #expect(r.stderr.contains("no bootstrap node could be resolved"), "\(r.stderr)")
        let alone = try run(
            turfBinary,
            [
                "dht", "serve", "--bind", "127.0.0.1", "--bootstrap", "none", "--no-state",
                "--duration", "0.2", "--status-every", "0",
            ],
            timeout: 30
        )
        #expect(alone.status == 0, "\(alone.stderr)")
        #expect(alone.stdout.contains("dht serve: listening on 127.0.0.1:"))
    }

    /// Runs sharing one state file: the first owns its saved id; a concurrent one takes a fresh id.
    @Test func concurrentRunsDoNotShareTheSavedID() throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent(
            "turf-dht-\(UUID().uuidString.prefix(8))"
        )
        try FileManager.default.createDirectory(
            at: dir.appendingPathComponent("turf"),
            withIntermediateDirectories: true
        )
        defer { try? FileManager.default.removeItem(at: dir) }
        var env = ProcessInfo.processInfo.environment
        env["XDG_STATE_HOME"] = dir.path
        env["XDG_CONFIG_HOME"] = dir.path
        let savedID = "turfturfturfturfturf"
        let state = Data("d2:id20:\(savedID)5:nodes0:1:vi1ee".utf8)
        try state.write(to: dir.appendingPathComponent("turf/dht.state"))
        let hexID = savedID.utf8.map { String(format: "%02x", $0) }.joined()
        let args = [
            "dht", "serve", "--bind", "127.0.0.1", "--bootstrap", "none", "--duration", "3600", "--status-every", "0",
        ]
        let outA = dir.appendingPathComponent("a.out").path
        let outB = dir.appendingPathComponent("b.out").path
        let a = try spawnBackground(turfBinary, args, environment: env, stdout: outA)
        defer {
            kill(a, SIGKILL)
            var st: Int32 = 0
            waitpid(a, &st, 0)
        }
        let lineA = try #require(waitForLine(outA, containing: "listening on", timeout: 60))
        let b = try spawnBackground(turfBinary, args, environment: env, stdout: outB)
        defer {
            kill(b, SIGKILL)
            var st: Int32 = 0
            waitpid(b, &st, 0)
        }
        let lineB = try #require(waitForLine(outB, containing: "listening on", timeout: 60))
        #expect(lineA.hasSuffix("node id \(hexID)"), "the first run uses the saved id: \(lineA)")
        #expect(lineB.contains("node id ") && !lineB.hasSuffix(hexID), "the second does not share it: \(lineB)")
    }

    @Test func anAnnouncerStartedBeforeItsBootstrapIsStillFound() throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent(
            "turf-dht-\(UUID().uuidString.prefix(8))"
        )
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: dir) }
        var env = ProcessInfo.processInfo.environment
        env["XDG_STATE_HOME"] = dir.path
        env["XDG_CONFIG_HOME"] = dir.path
        // The bootstrap port comes from the kernel (port 0), held by a silent socket of ours
        // until the serving node takes it over: no guess in the ephemeral range.
        let holder = try UDPPortHolder()
        let port = holder.port
        let boot = "127.0.0.1:\(port)"
        let topic = "turf-cli-test-\(UUID().uuidString.prefix(6))"
        // The announcer starts first, while its bootstrap node is not up yet: it must recover on
        // its own (join retried while the table is empty, a failed announce retried after 5 s).
        // Long durations: the processes are killed at the end, whatever the machine's load.
        let announcer = try spawnBackground(
            turfBinary,
            [
                "dht", "announce", "--bind", "127.0.0.1", "--topic", topic, "--bootstrap", boot,
                "--no-state", "--duration", "3600", "--json",
            ],
            environment: env
        )
        defer {
            kill(announcer, SIGKILL)
            var st: Int32 = 0
            waitpid(announcer, &st, 0)
        }
        // The announcer has tried its bootstrap while nothing answers there: a query reached the
        // silent socket.
        #expect(holder.waitForDatagram(timeout: 60), "the announcer never queried its bootstrap")
        holder.close()
        let serverOut = dir.appendingPathComponent("serve.out").path
        let server = try spawnBackground(
            turfBinary,
            [
                "dht", "serve", "--bind", "127.0.0.1", "--port", "\(port)", "--bootstrap", "none",
                "--no-state", "--duration", "3600", "--status-every", "0",
            ],
            environment: env,
            stdout: serverOut
        )
        defer {
            kill(server, SIGKILL)
            var st: Int32 = 0
            waitpid(server, &st, 0)
        }
        let listening = try #require(
            waitForLine(serverOut, containing: "listening on", timeout: 60),
            "the serving node did not start"
        )
        #expect(listening.contains("listening on \(boot) "), "\(listening)")
        // Wait until the serving node answers (a probe lookup hears from it).
        var up = false
        for _ in 0..<20 where !up {
            let probe = try run(
                turfBinary,
                [
                    "dht", "lookup", "--bind", "127.0.0.1", "--topic", "probe", "--bootstrap", boot,
                    "--no-state", "--timeout", "2", "--json",
                ],
                environment: env,
                timeout: 30
            )
            up = probe.stdout.contains("\"nodes_answered\":") && !probe.stdout.contains("\"nodes_answered\":0")
            if !up { usleep(200_000) }
        }
        #expect(up, "the serving node never answered")
        // The announcer recovers within seconds; look up until its peer is found (bounded).
        var found = false
        var last = ""
        let deadline = Date().addingTimeInterval(90)
        var attempts = 0
        while !found && Date() < deadline && attempts < 60 {
            attempts += 1
            usleep(500_000)
            let r = try run(
                turfBinary,
                [
                    "dht", "lookup", "--bind", "127.0.0.1", "--topic", topic, "--bootstrap", boot,
                    "--no-state", "--timeout", "5", "--json",
                ],
                environment: env,
                timeout: 30
            )
            last = r.stdout + r.stderr
            found =
                r.status == 0 && r.stdout.contains("127.0.0.1:")
                && r.stdout.contains("\"peers\":[") && !r.stdout.contains("\"peers\":[]")
        }
        #expect(found, "lookup never found the announced peer; last output:\n\(last)")
    }

    /// The `turf dht` commands bind `::` by default (BEP 32: both families on one socket). An
    /// announcer that knows the serving node only as `[::1]:PORT` is found, at its IPv6 address,
    /// by a lookup that knows the same node only as `127.0.0.1:PORT` (a dual-stack join asks for
    /// both families' nodes), and the lookup reports its own IPv6 external address. A socket of
    /// one family with bootstrap nodes only of the other is an error.
    @Test func defaultBindIsDualStackAndFindsIPv6Announces() throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent(
            "turf-dht6-\(UUID().uuidString.prefix(8))"
        )
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: dir) }
        var env = ProcessInfo.processInfo.environment
        env["XDG_STATE_HOME"] = dir.path
        env["XDG_CONFIG_HOME"] = dir.path
        let serverOut = dir.appendingPathComponent("serve.out").path
        let server = try spawnBackground(
            turfBinary,
            ["dht", "serve", "--bootstrap", "none", "--no-state", "--duration", "3600", "--status-every", "0"],
            environment: env,
            stdout: serverOut
        )
        defer {
            kill(server, SIGKILL)
            var st: Int32 = 0
            waitpid(server, &st, 0)
        }
        let listening = try #require(waitForLine(serverOut, containing: "listening on", timeout: 60))
        guard listening.contains("listening on [::]:") else {
            // UDPHost falls back to 0.0.0.0 where the system has no IPv6.
            print("SKIPPED: no IPv6 here (\(listening))")
            return
        }
        let port = try #require(
            listening.split(separator: " ").first { $0.hasPrefix("[::]:") }.flatMap { UInt16($0.dropFirst(5)) }
        )
        let topic = "turf-cli-v6-\(UUID().uuidString.prefix(6))"
        let announceOut = dir.appendingPathComponent("announce.out").path
        let announcer = try spawnBackground(
            turfBinary,
            [
                "dht", "announce", "--topic", topic, "--bootstrap", "[::1]:\(port)", "--no-state", "--duration", "3600",
                "--json",
            ],
            environment: env,
            stdout: announceOut
        )
        defer {
            kill(announcer, SIGKILL)
            var st: Int32 = 0
            waitpid(announcer, &st, 0)
        }
        let announced = waitForLine(announceOut, containing: "\"stored_on\":1", timeout: 60)
        #expect(announced?.contains("\"external_address_ipv6\":\"[::1]:") == true, "\(announced ?? "none")")
        let r = try run(
            turfBinary,
            [
                "dht", "lookup", "--topic", topic, "--bootstrap", "127.0.0.1:\(port)", "--no-state", "--timeout", "20",
                "--json",
            ],
            environment: env,
            timeout: 60
        )
        #expect(r.status == 0, "\(r.stdout)\(r.stderr)")
        #expect(r.stdout.contains("\"peers\":[\"[::1]:"), "\(r.stdout)")
        #expect(r.stdout.contains("\"external_address_ipv6\":\"[::1]:"), "\(r.stdout)")
        // Whether peers can reach us over IPv6 (this machine's interfaces decide between none and
        // firewalled; open once something came in unasked).
        #expect(["none", "firewalled", "open"].contains { r.stdout.contains("\"ipv6\":\"\($0)\"") }, "\(r.stdout)")

        let wrongFamily = try run(
            turfBinary,
            ["dht", "lookup", "--bind", "127.0.0.1", "--topic", "x", "--bootstrap", "[::1]:\(port)", "--no-state"],
            environment: env,
            timeout: 30
        )
        #expect(wrongFamily.status == 1)
        #expect(wrongFamily.stderr.contains("no bootstrap node can be reached"), "\(wrongFamily.stderr)")
    }
}

/// A UDP socket on 127.0.0.1 with a kernel-chosen port, which says nothing, held until `close`.
final class UDPPortHolder {
    private var fd: Int32
    let port: UInt16

    init() throws {
        // CLOEXEC: the processes the test starts must not inherit (and keep) the port.
        #if os(Linux)
            let fd = socket(AF_INET, Int32(SOCK_DGRAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        #else
            let fd = socket(AF_INET, SOCK_DGRAM, 0)
            if fd >= 0 { _ = fcntl(fd, F_SETFD, FD_CLOEXEC) }
        #endif
        guard fd >= 0 else { throw CLIFailure("socket: \(String(cString: strerror(errno)))") }
        var addr = sockaddr_in()
        addr.sin_family = sa_family_t(AF_INET)
        addr.sin_port = 0
        addr.sin_addr.s_addr = UInt32(0x7F00_0001).bigEndian
        var len = socklen_t(MemoryLayout<sockaddr_in>.size)
        let ok = withUnsafeMutablePointer(to: &addr) { p in
            p.withMemoryRebound(to: sockaddr.self, capacity: 1) { sa in
                bind(fd, sa, len) == 0 && getsockname(fd, sa, &len) == 0
            }
        }
        guard ok else {
            closeDescriptor(fd)
            throw CLIFailure("bind: \(String(cString: strerror(errno)))")
        }
        self.fd = fd
        port = UInt16(bigEndian: addr.sin_port)
    }

    /// Waits (bounded) until a datagram arrives at the held port (someone tried to reach it).
    func waitForDatagram(timeout: Double) -> Bool {
        var p = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
        return poll(&p, 1, Int32(timeout * 1000)) == 1
    }

    func close() {
        if fd >= 0 {
            closeDescriptor(fd)
            fd = -1
        }
    }

    deinit { close() }
}

/// Polls a growing output file for a line containing `needle` (nil after `timeout` seconds).
func waitForLine(_ path: String, containing needle: String, timeout: Double) -> String? {
    let deadline = Date().addingTimeInterval(timeout)
    while Date() < deadline {
        if let text = try? String(contentsOfFile: path, encoding: .utf8),
            let line = text.split(separator: "\n").first(where: { $0.contains(needle) })
        {
            return String(line)
        }
        usleep(50_000)
    }
    return nil
}

/// Starts a process and returns its pid without waiting (stdout to `stdout` or discarded, stderr discarded).
func spawnBackground(_ executable: String, _ args: [String], environment: [String: String], stdout: String? = nil)
    throws -> pid_t
{
    var actions = posix_spawn_file_actions_t()
    posix_spawn_file_actions_init(&actions)
    defer { posix_spawn_file_actions_destroy(&actions) }
    posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0)
    if let stdout {
        posix_spawn_file_actions_addopen(&actions, 1, stdout, O_WRONLY | O_CREAT | O_TRUNC, 0o600)
    } else {
        posix_spawn_file_actions_addopen(&actions, 1, "/dev/null", O_WRONLY, 0)
    }
    posix_spawn_file_actions_addopen(&actions, 2, "/dev/null", O_WRONLY, 0)
    let argv = ([executable] + args).map { strdup($0) } + [nil]
    let envList = environment.map { strdup("\($0.key)=\($0.value)") } + [nil]
    defer {
        argv.forEach { free($0) }
        envList.forEach { free($0) }
    }
    var pid: pid_t = 0
    let rc = posix_spawn(&pid, executable, &actions, nil, argv, envList)
    guard rc == 0 else { throw CLIFailure("cannot start \(executable): \(String(cString: strerror(rc)))") }
    return pid
}

/// `close(2)`, where a method named `close` hides it.
private func closeDescriptor(_ fd: Int32) { _ = close(fd) }
