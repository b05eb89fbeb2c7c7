import ArgumentParser
import Foundation
import TerminalUI
import TextOutput

/// The `turf` command. Each command group lives in its own file.
@main
struct Turf: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "turf",
        abstract: "A peer-to-peer territory game for the terminal.",
        version: "0.1.0",
        subcommands: [
            // Play and replay (Sources/turf/PlayCommands.swift, ReplayCommands.swift)
            Demo.self, ReplayCommand.self,
            // Play together (NetPlayCommands.swift, NetRuntime.swift, MatchRunner.swift)
            HostCommand.self, JoinCommand.self,
            // Networking (IdCommand.swift, FriendsCommands.swift, DHTCommands.swift)
            IdCommand.self, FriendsCommand.self,
            DHTCommand.self,
            Bench.self,
        ]
    )

    /// `turf` alone: the start screen on a terminal (StartCommand.swift), the help elsewhere.
    func run() throws {
        guard isatty(STDIN_FILENO) == 1 && isatty(STDOUT_FILENO) == 1 && CursesTerminal.terminalProblem() == nil
        else {
            print(Turf.helpMessage())
            return
        }
        try StartFlow.run()
    }

    /// As ArgumentParser's `main`, but every error is one line, shown through `SafeText`: an
    /// error may quote a file's or a peer's text (a replay's game id, a map's header key, a
    /// config value), which must never reach the terminal as escape sequences. A bad option gets
    /// the parser's message and a pointer to `--help` (exit 64); help itself prints as usual.
    static func main() {
        do {
            var command = try parseAsRoot()
            try command.run()
        } catch {
            let code = exitCode(for: error)
            if code == .success { exit(withError: error) }
            let message = message(for: error).split(whereSeparator: \.isNewline).joined(separator: " ")
            if !message.isEmpty {
                let hint = code == .validationFailure ? " (see --help)" : ""
                printErr("Error: " + SafeText.display(message, limit: 2000) + hint)
            }
            Foundation.exit(code.rawValue)
        }
    }
}

/// `turf bench NAME --json`: benchmarks documented in docs/benchmarks.md. One file per benchmark.
struct Bench: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Measure turf's figures (see docs/benchmarks.md).",
        subcommands: [
            // engine (BenchEngine.swift)
            BenchReplay.self, BenchLateOp.self,
            // transport (BenchCrypto.swift, BenchSession.swift, BenchFlood.swift)
            BenchCrypto.self, BenchSession.self, BenchFlood.self,
            // dht (BenchDHT.swift)
            BenchDHT.self,
            // a simulated internet: DHT, NATs, lobbies, player relays (BenchInternet.swift)
            BenchInternet.self,
            // terminal (BenchRender.swift)
            BenchRender.self,
            // networked match (BenchNetMatch.swift)
            BenchNetMatch.self,
            // NAT traversal in the NAT lab (BenchPunch.swift)
            BenchPunch.self,
            // key-to-screen latency with real peers on pseudo-terminals (BenchInput.swift)
            BenchInput.self,
        ]
    )
}
