import Foundation
import NetCore
import Testing

#if canImport(Glibc)
    import Glibc
#endif

/// The repository root, from this file's path.
let repoRoot = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
    .deletingLastPathComponent()

/// The `turf` binary under test: $TURF_BIN, else the debug build in this checkout.
var turfBinary: String {
    if let b = ProcessInfo.processInfo.environment["TURF_BIN"], !b.isEmpty { return b }
    return repoRoot.appendingPathComponent(".build/debug/turf").path
}

struct CommandResult {
    var status: Int32
    var stdout: String
    var stderr: String
}

/// Runs a command to completion, with a time limit, via posix_spawn and waitpid (Foundation's
/// Process misses the exit of a child that daemonises, like the tmux client). Output goes through
/// temporary files so a daemon the command starts cannot hold a pipe open.
@discardableResult
func run(_ executable: String, _ args: [String], environment: [String: String]? = nil, timeout: TimeInterval = 120)
    throws -> CommandResult
{
    let dir = FileManager.default.temporaryDirectory.path
    let tag = UUID().uuidString
    let outPath = "\(dir)/turf-run-\(tag).out"
    let errPath = "\(dir)/turf-run-\(tag).err"
    defer {
        unlink(outPath)
        unlink(errPath)
    }
    #if canImport(Darwin)
        var actions: posix_spawn_file_actions_t?  // a pointer on Darwin, a struct in Glibc
    #else
        var actions = posix_spawn_file_actions_t()
    #endif
    posix_spawn_file_actions_init(&actions)
    defer { posix_spawn_file_actions_destroy(&actions) }
    posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0)
    posix_spawn_file_actions_addopen(&actions, 1, outPath, O_WRONLY | O_CREAT | O_TRUNC, 0o600)
    posix_spawn_file_actions_addopen(&actions, 2, errPath, O_WRONLY | O_CREAT | O_TRUNC, 0o600)
    let argv = ([executable] + args).map { strdup($0) } + [nil]
    let envList = (environment ?? ProcessInfo.processInfo.environment).map { strdup("\($0.key)=\($0.value)") } + [nil]
    defer {
        argv.forEach { free($0) }
        envList.forEach { free($0) }
    }
    var pid: pid_t = 0
    let rc = posix_spawn(&pid, executable, &actions, nil, argv, envList)
    guard rc == 0 else { throw CLIFailure("cannot run \(executable): \(String(cString: strerror(rc)))") }
    var status: Int32 = 0
    let deadline = Date().addingTimeInterval(timeout)
    while waitpid(pid, &status, WNOHANG) == 0 {
        if Date() > deadline {
            kill(pid, SIGKILL)
            waitpid(pid, &status, 0)
            Issue.record("\(executable) \(args) timed out after \(timeout) s")
            break
        }
        usleep(5_000)
    }
    let exitStatus: Int32 = (status & 0x7f) == 0 ? (status >> 8) & 0xff : 128 + (status & 0x7f)
    return CommandResult(
        status: exitStatus,
        stdout: (try? String(contentsOfFile: outPath, encoding: .utf8)) ?? "",
        stderr: (try? String(contentsOfFile: errPath, encoding: .utf8)) ?? ""
    )
}

func tmuxPath() -> String? {
    ["/usr/bin/tmux", "/usr/local/bin/tmux", "/bin/tmux"].first { FileManager.default.isExecutableFile(atPath: $0) }
}

/// A program running in a detached tmux session of a given size, with its own tmux server socket
/// (so tests never touch a user's tmux), torn down on `close()`.
final class TmuxSession {
    let tmux: String
    let socket: String
    let name = "turf-test"
    let dir: URL

    /// Starts `command` (run by /bin/sh) in a `width`×`height` terminal. After the command exits,
    /// the pane shows `EXIT:<status>` and the terminal's `icanon`/`echo` settings, then stays open.
    init(width: Int, height: Int, command: String, environment: [String: String] = [:]) throws {
        guard let t = tmuxPath() else { throw CLIFailure("tmux is not installed (make deps installs it)") }
        tmux = t
        dir = FileManager.default.temporaryDirectory.appendingPathComponent("turf-tmux-\(UUID().uuidString.prefix(8))")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        socket = dir.appendingPathComponent("tmux.sock").path
        var env = [
            "HOME": dir.path, "XDG_STATE_HOME": dir.appendingPathComponent("state").path,
            "XDG_CONFIG_HOME": dir.appendingPathComponent("config").path, "LANG": "C.UTF-8", "TERM": "xterm-256color",
        ]
        for (k, v) in environment { env[k] = v }
        let exports = env.map { "\($0.key)='\($0.value)'" }.joined(separator: " ")
        let script =
            "trap : INT QUIT; export \(exports); \(command); echo EXIT:$?; stty -a | tr ' ;' '\\n\\n' | grep -E '^-?(icanon|echo)$' | tr '\\n' ' '; echo; sleep 120"
        let r = try run(
            tmux,
            [
                "-S", socket, "-f", "/dev/null", "new-session", "-d", "-s", name, "-x", "\(width)", "-y", "\(height)",
                "/bin/sh", "-c", script,
            ],
            timeout: 10
        )
        guard r.status == 0 else { throw CLIFailure("tmux new-session failed: \(r.stderr)") }
    }

    func screen() -> String {
        (try? run(tmux, ["-S", socket, "capture-pane", "-p", "-t", name], timeout: 10).stdout) ?? ""
    }

    func send(_ keys: String...) {
        _ = try? run(tmux, ["-S", socket, "send-keys", "-t", name] + keys, timeout: 10)
    }

    func resize(width: Int, height: Int) {
        _ = try? run(
            tmux,
            ["-S", socket, "resize-window", "-t", name, "-x", "\(width)", "-y", "\(height)"],
            timeout: 10
        )
    }

    /// The pid of the program the pane's shell started (its first child).
    func programPid() -> Int32? {
        guard
            let shell = try? run(tmux, ["-S", socket, "display-message", "-p", "-t", name, "#{pane_pid}"], timeout: 10)
                .stdout
                .trimmingCharacters(in: .whitespacesAndNewlines), let spid = Int32(shell)
        else { return nil }
        let children = (try? String(contentsOfFile: "/proc/\(spid)/task/\(spid)/children", encoding: .utf8)) ?? ""
        return children.split(separator: " ").first.flatMap { Int32($0) }
    }

    /// Polls the screen until `predicate` holds or `timeout` passes; returns the last screen and
    /// the seconds it took (nil if it never held).
    func waitFor(timeout: TimeInterval, _ predicate: (String) -> Bool) -> (String, TimeInterval?) {
        let start = Date()
        var s = ""
        while Date().timeIntervalSince(start) < timeout {
            s = screen()
            if predicate(s) { return (s, Date().timeIntervalSince(start)) }
            usleep(50_000)
        }
        return (s, nil)
    }

    func close() {
        // The program in the pane gets SIGHUP when tmux goes; one that outlives its terminal all
        // the same (seen once: a host whose lobby had just kicked a player) is killed, so no test
        // leaves a process behind.
        let program = programPid()
        _ = try? run(tmux, ["-S", socket, "kill-server"], timeout: 10)
        // SIGKILL to a program already on its way out is harmless; none is waited for.
        if let program, kill(program, 0) == 0 { kill(program, SIGKILL) }
        try? FileManager.default.removeItem(at: dir)
    }
}

struct CLIFailure: Error, CustomStringConvertible {
    var description: String
    init(_ d: String) { description = d }
}

/// Waits for child `pid` to exit, at most `timeout` seconds (then kills it); its exit status
/// (128 + the signal for a killed child), -1 after a timeout. Woken by the exit itself: a
/// blocking `waitpid` on another thread, no polling.
func waitForExit(_ pid: pid_t, timeout: Double) -> Int32 {
    let status = Locked<Int32>(0)
    let exited = DispatchSemaphore(value: 0)
    Thread {
        var s: Int32 = 0
        while waitpid(pid, &s, 0) < 0 && errno == EINTR {}
        status.withLock { $0 = s }
        exited.signal()
    }.start()
    guard exited.wait(timeout: .now() + max(0, timeout)) == .success else {
        kill(pid, SIGKILL)
        exited.wait()
        return -1
    }
    let s = status.withLock { $0 }
    return (s & 0x7f) == 0 ? (s >> 8) & 0xff : 128 + (s & 0x7f)
}
