import Foundation
import Testing

/// `turf dht` end to end on loopback: a serving node, an announcer and a lookup, as three processes.
@Suite struct DHTCommandTests {
    @Test func infohashIsTheDocumentedDerivation() throws {
        let r = try run(turfBinary, ["dht", "infohash", "--topic", "hello"])
        #expect(r.status == 0)
        #expect(r.stdout.trimmingCharacters(in: .whitespacesAndNewlines) == "c35ee8023b5cbc8578f04713d05f98c44a837c1f")
        let bad = try run(turfBinary, ["dht", "lookup", "--infohash", "xyz", "--bootstrap", "127.0.0.1:1", "--no-state"])
        #expect(bad.status != 0)
        #expect(bad.stderr.contains("40 hex digits"))
    }

    @Test func anAnnouncerStartedBeforeItsBootstrapIsStillFound() throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("turf-dht-\(UUID().uuidString.prefix(8))")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: dir) }
        var env = ProcessInfo.processInfo.environment
        env["XDG_STATE_HOME"] = dir.path
        env["XDG_CONFIG_HOME"] = dir.path
        let port = UInt16.random(in: 30000...39000)
        let boot = "127.0.0.1:\(port)"
        let topic = "turf-cli-test-\(UUID().uuidString.prefix(6))"
        // The announcer starts first, while its bootstrap node is not up yet: it must recover on
        // its own (join retried while the table is empty, a failed announce retried after 5 s).
        let announcer = try spawnBackground(turfBinary, ["dht", "announce", "--bind", "127.0.0.1", "--topic", topic, "--bootstrap", boot,
                                                         "--no-state", "--duration", "60", "--json"], environment: env)
        usleep(300_000)
        let server = try spawnBackground(turfBinary, ["dht", "serve", "--bind", "127.0.0.1", "--port", "\(port)", "--no-state",
                                                      "--duration", "60", "--status-every", "0"], environment: env)
        defer {
            kill(server, SIGKILL); kill(announcer, SIGKILL)
            var st: Int32 = 0
            waitpid(server, &st, 0); waitpid(announcer, &st, 0)
        }
        // Wait until the serving node answers (a probe lookup hears from it).
        var up = false
        for _ in 0..<20 where !up {
            let probe = try run(turfBinary, ["dht", "lookup", "--bind", "127.0.0.1", "--topic", "probe", "--bootstrap", boot,
                                             "--no-state", "--timeout", "2", "--json"], environment: env, timeout: 10)
            up = probe.stdout.contains("\"nodes_answered\":") && !probe.stdout.contains("\"nodes_answered\":0")
            if !up { usleep(200_000) }
        }
        #expect(up, "the serving node never answered")
        // The announcer recovers within seconds; look up until its peer is found (bounded).
        var found = false
        var last = ""
        let deadline = Date().addingTimeInterval(45)
        var attempts = 0
        while !found && Date() < deadline && attempts < 40 {
            attempts += 1
            usleep(500_000)
            let r = try run(turfBinary, ["dht", "lookup", "--bind", "127.0.0.1", "--topic", topic, "--bootstrap", boot,
                                         "--no-state", "--timeout", "5", "--json"], environment: env, timeout: 20)
            last = r.stdout + r.stderr
            found = r.status == 0 && r.stdout.contains("127.0.0.1:")
                && r.stdout.contains("\"peers\":[") && !r.stdout.contains("\"peers\":[]")
        }
        #expect(found, "lookup never found the announced peer; last output:\n\(last)")
    }
}

/// Starts a process and returns its pid without waiting (output discarded).
func spawnBackground(_ executable: String, _ args: [String], environment: [String: String]) throws -> pid_t {
    var actions = posix_spawn_file_actions_t()
    posix_spawn_file_actions_init(&actions)
    defer { posix_spawn_file_actions_destroy(&actions) }
    posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0)
    posix_spawn_file_actions_addopen(&actions, 1, "/dev/null", O_WRONLY, 0)
    posix_spawn_file_actions_addopen(&actions, 2, "/dev/null", O_WRONLY, 0)
    let argv = ([executable] + args).map { strdup($0) } + [nil]
    let envList = environment.map { strdup("\($0.key)=\($0.value)") } + [nil]
    defer { argv.forEach { free($0) }; envList.forEach { free($0) } }
    var pid: pid_t = 0
    let rc = posix_spawn(&pid, executable, &actions, nil, argv, envList)
    guard rc == 0 else { throw CLIFailure("cannot start \(executable): \(String(cString: strerror(rc)))") }
    return pid
}
