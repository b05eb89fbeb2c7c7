import Foundation
import LocalFiles
import TerminalUI
import TextOutput

/// `turf` with no arguments on a terminal: the start screen (`StartMenu`). Each choice runs as
/// its own `turf` process on the same terminal (`turf demo`, `turf host`, `turf join`, `turf
/// replay`), with the settings as flags, and the menu comes back when it ends; a failure's last
/// line is shown in the menu. Without a terminal, `turf` prints its help.
enum StartFlow {
    static func run() throws {
        let (saved, problem) = StartSettings.load()
        var menu = StartMenu(settings: saved)
        if let problem { menu.notice = SafeText.display(problem, limit: 300) }
        let env = ProcessInfo.processInfo.environment
        while true {
            let term = try CursesTerminal(
                wantColor: menu.settings.color && Theme.colorWanted(environment: env),
                unicode: !menu.settings.ascii && localeIsUTF8(environment: env)
            )
            var action = StartMenu.Action.none
            while true {
                let look = (menu.settings.color, menu.settings.ascii)
                action = term.runStartMenu(&menu)
                guard action == .saveSettings else { break }
                save(menu.settings, into: &menu)
                // Colour and characters take a new terminal setup to show.
                if look != (menu.settings.color, menu.settings.ascii) { break }
            }
            term.stop()
            switch action {
            case .quit: return
            case .saveSettings, .none: continue
            default:
                save(menu.settings, into: &menu)
                let args = arguments(for: action, settings: menu.settings)
                let (status, last) = runChild(args)
                if status != 0 {
                    let why = last.isEmpty ? "" : ": " + last
                    menu.notice = SafeText.display("turf \(args[0]) ended with status \(status)\(why)", limit: 300)
                }
            }
        }
    }

    static func save(_ s: StartMenu.Settings, into menu: inout StartMenu) {
        do { try StartSettings.save(s) } catch {
            menu.notice = SafeText.display("cannot save the settings: \(error)", limit: 300)
        }
    }

    /// The `turf` command line an action runs.
    static func arguments(for action: StartMenu.Action, settings s: StartMenu.Settings) -> [String] {
        let look = (s.ascii ? ["--ascii"] : []) + (s.color ? [] : ["--no-color"])
        switch action {
        case .playBots: return ["demo", "--name", s.name, "--bots", String(s.bots)] + look
        case .host(let topic): return ["host", "--topic", topic, "--name", s.name] + look
        case .joinTopic(let topic): return ["join", "--topic", topic, "--name", s.name] + look
        case .join(let target): return ["join", target, "--name", s.name] + look
        case .replays: return ["replay"] + look
        case .none, .quit, .saveSettings: return []
        }
    }

    /// Runs `turf ARGS` on this terminal and waits: in this process group (the terminal's
    /// foreground group, so the child reads the keys; Foundation's `Process` starts a new one),
    /// stdin and stdout inherited, stderr through a pipe whose last 4 KiB are kept. Returns the
    /// status (128 + the signal for a killed child) and the last line written to stderr.
    static func runChild(_ args: [String]) -> (Int32, String) {
        let exe =
            (try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/exe")) ?? CommandLine.arguments[0]
        var fds: [Int32] = [-1, -1]
        guard pipe(&fds) == 0 else { return (127, "cannot make a pipe") }
        _ = fcntl(fds[0], F_SETFD, FD_CLOEXEC)
        #if canImport(Darwin)
            var actions: posix_spawn_file_actions_t?  // a pointer on Darwin, a struct in Glibc
        #else
            var actions = posix_spawn_file_actions_t()
        #endif
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        posix_spawn_file_actions_adddup2(&actions, fds[1], 2)
        posix_spawn_file_actions_addclose(&actions, fds[1])
        let argv = ([exe] + args).map { strdup($0) } + [nil]
        defer { argv.forEach { free($0) } }
        var pid: pid_t = 0
        let rc = posix_spawn(&pid, exe, &actions, nil, argv, environ)
        close(fds[1])
        guard rc == 0 else {
            close(fds[0])
            return (127, "cannot run \(exe): \(String(cString: strerror(rc)))")
        }
        // Read until the child (and anything it left holding the pipe) is done: bounded memory.
        var tail: [UInt8] = []
        var buf = [UInt8](repeating: 0, count: 4096)
        while true {
            let n = buf.withUnsafeMutableBytes { read(fds[0], $0.baseAddress, $0.count) }
            if n < 0 && errno == EINTR { continue }
            if n <= 0 { break }
            tail += buf[0..<n]
            if tail.count > 4096 { tail.removeFirst(tail.count - 4096) }
        }
        close(fds[0])
        var status: Int32 = 0
        while waitpid(pid, &status, 0) < 0 && errno == EINTR {}
        let code: Int32 = (status & 0x7f) == 0 ? (status >> 8) & 0xff : 128 + (status & 0x7f)
        let text = String(decoding: tail, as: UTF8.self)
        let last = text.split(whereSeparator: \.isNewline).last.map(String.init) ?? ""
        return (code, last)
    }
}
