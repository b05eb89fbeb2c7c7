import ArgumentParser
import Engine
import Foundation
import LocalFiles
import Logging
import NetCore
import TerminalUI
import TextOutput
import TurfRules

/// `--level`: the bots' strength; `mixed` alternates easy and hard.
enum BotLevelChoice: String, CaseIterable, ExpressibleByArgument {
    case easy, hard, mixed
    var level: Bot.Level? {
        switch self {
        case .easy: return .easy
        case .hard: return .hard
        case .mixed: return nil
        }
    }
}

/// `turf demo`: a local match against bots, at once: no network, no prompts.
struct Demo: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Play a local match against bots (no network needed).",
        discussion:
            "Steer with arrows, WASD or hjkl; p pauses; ? shows help; q quits. Every match is saved under $XDG_STATE_HOME/turf/replays."
    )

    @Option(
        help:
            "Map name (\(MapLibrary.available().joined(separator: ", "))) or path. Default: the largest that fits the terminal."
    )
    var map: String?
    @Option(help: Limits.bots.help("Number of bots.", default: 3), transform: Limits.bots.parse) var bots: Int = 3
    @Option(help: "Bot level.") var level: BotLevelChoice = .mixed
    @Option(help: Limits.demoSeconds.help("Round length.", default: 90), transform: Limits.demoSeconds.parse)
    var seconds: Int = 90
    @Option(help: "Match seed (default: from the clock).") var seed: UInt64?
    @Option(help: "Your name (cut to 12 characters and \(PlayerInfo.maxNameBytes) bytes).", transform: Demo.playerName)
    var name: String = Demo.playerName(
        ProcessInfo.processInfo.environment["USER"].flatMap { $0.isEmpty ? nil : $0 } ?? "you"
    )
    @Flag(help: "Draw without colour (also: NO_COLOR=1).") var noColor = false
    @Flag(help: "Draw with ASCII only.") var ascii = false
    @Flag(help: "Do not save a replay.") var noRecord = false

    func run() throws {
        Logs.bootstrap()
        let env = ProcessInfo.processInfo.environment
        let arena = try map.map(MapLibrary.load) ?? Demo.mapFittingTerminal(players: bots + 1)
        let botLevel = level.level
        let matchSeed = seed ?? monotonicNanos() ^ UInt64(UInt32(truncatingIfNeeded: getpid())) << 32
        let settings = TurfSettings(map: arena)
        let players = TurfMatch.players(humans: [name], total: bots + 1, botLevel: botLevel)
        guard players.count <= arena.spawns.count else {
            throw CLIError(
                "map '\(arena.name)' has \(arena.spawns.count) spawn points; use --bots \(arena.spawns.count - 1) or fewer"
            )
        }
        let config = settings.matchConfig(seed: matchSeed, players: players, seconds: seconds)
        let crash = env["TURF_DEBUG_CRASH_AT_TICK"].flatMap { Tick($0) }
        guard isatty(STDIN_FILENO) == 1 && isatty(STDOUT_FILENO) == 1 else {
            throw CLIError(
                "turf needs a terminal (stdin and stdout must be a TTY); for scripts use 'turf replay --headless'"
            )
        }
        // Everything that would stop the match or lose it is checked before it starts, while the
        // terminal is still ours to report on: a terminal curses cannot drive, and a replay
        // directory that cannot be written (the match would be played and then lost).
        if let problem = CursesTerminal.terminalProblem() { throw CLIError(problem) }
        if !noRecord {
            do { try DurableFile.checkWritableDirectory(StatePaths.replays) } catch {
                throw CLIError("cannot save replays: \(error); fix that, or pass --no-record to play without saving")
            }
        }
        // Matches a crash interrupted earlier become replays before this one starts. Reported now:
        // the lines stay on the terminal's main screen, under the game's, and are there after it.
        if !noRecord { for r in JournalRecovery.recoverAll() { print(RecoverCommand.describe(r)) } }
        // Curses owns the screen while the app runs: save errors wait here and are printed after.
        let saveFailures = SaveFailures()
        let app = DemoApp(
            options: .init(
                config: config,
                wantColor: Theme.colorWanted(environment: env) && !noColor,
                unicode: localeIsUTF8(environment: env) && !ascii,
                crashAtTick: crash,
                stderrCapture: Demo.stderrCapturePath()
            ),
            now: monotonicNanos,
            record: { replay in noRecord ? nil : Demo.save(replay, failures: saveFailures) },
            journal: { config in noRecord ? nil : JournalFile.open(config) }
        )
        let log = Logger(label: "turf.demo")
        log.info("match started: map \(arena.name), \(players.count) players, seed \(matchSeed), \(seconds) s")
        let (outcome, saved) = try app.run()
        log.info("match ended: \(outcome); replays: \(saved)")
        for path in saved { print("replay saved: " + SafeText.display(path, limit: 400)) }
        for failure in saveFailures.messages { printErr(SafeText.display(failure, limit: 2000)) }
        if case .signal(let s) = outcome { throw ExitCode(128 + s) }
        // A match that could not be saved is a failure, whatever else went well.
        if !saveFailures.messages.isEmpty { throw ExitCode(1) }
    }

    /// A name as recorded: its first 12 characters, fewer if those are over the byte limit of a
    /// name in a replay (12 emoji sequences can be 300 bytes, and a replay holding them could
    /// not be read back: the match would be lost).
    @Sendable static func playerName(_ s: String) -> String {
        var name = String(s.prefix(12))
        while name.utf8.count > PlayerInfo.maxNameBytes { name.removeLast() }
        return name.isEmpty ? "you" : name
    }

    /// The directory of the unnamed file that holds stderr while the game owns the screen (nil
    /// if the state directory cannot be made: stderr is then left alone).
    static func stderrCapturePath() -> String? {
        (try? StatePaths.ensure(StatePaths.root)).map { StatePaths.root }
    }

    /// Messages about replays that could not be saved, kept until curses has given the screen back
    /// (anything written to stderr while it runs lands on its screen and is wiped).
    final class SaveFailures {
        var messages: [String] = []
    }

    /// Saves a recording under $XDG_STATE_HOME/turf/replays; returns the path, or nil on failure
    /// (logged and added to `failures`; a failed save never takes the game down).
    static func save(_ replay: TurfReplay, failures: SaveFailures) -> String? {
        do {
            try StatePaths.ensure(StatePaths.replays)
            return try DurableFile.createNew(
                ReplayFile.encode(replay),
                base: "\(StatePaths.replays)/\(ReplayNames.base(replay.config))",
                ext: "turfreplay"
            )
        } catch {
            failures.messages.append(
                "could not save the replay: \(error) (its journal, if one was written, stays in \(StatePaths.replays) for 'turf replay recover')"
            )
            Logger(label: "turf.demo").error("could not save the replay: \(error)")
            return nil
        }
    }

    /// The largest map whose arena fits the terminal at two columns per cell, else the smallest.
    static func mapFittingTerminal(players: Int) throws -> ArenaMap {
        var ws = winsize()
        let ok = ioctl(STDOUT_FILENO, UInt(TIOCGWINSZ), &ws) == 0 && ws.ws_col > 0
        let cols = ok ? Int(ws.ws_col) : 80
        let rows = ok ? Int(ws.ws_row) : 24
        let maps = MapLibrary.available().compactMap { try? MapLibrary.load($0) }.filter { $0.spawns.count >= players }
        guard !maps.isEmpty else { return try MapLibrary.load("dojo") }
        let fitting = maps.filter { $0.width * 2 <= cols && $0.height <= rows - 3 }
        return fitting.max { $0.floorCells.count < $1.floorCells.count } ?? maps.min {
            $0.floorCells.count < $1.floorCells.count
        }!
    }
}
