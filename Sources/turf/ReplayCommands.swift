import ArgumentParser
import Engine
import Foundation
import Keys
import LocalFiles
import NetCore
import NetMatch
import TerminalUI
import TextOutput
import Transport
import TurfRules

#if canImport(Glibc)
    import Glibc
#endif

/// `turf replay FILE`: watch a recorded match; `--headless`: verify it and print JSON;
/// `turf replay generate`: record a bot match.
struct ReplayCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "replay",
        abstract: "Browse, watch, verify, generate or recover recorded matches.",
        subcommands: [Watch.self, ListCommand.self, Generate.self, RecoverCommand.self],
        defaultSubcommand: Watch.self
    )
}

struct Watch: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "watch",
        abstract: "Watch a recorded match (the default), or verify it with --headless.",
        discussion: """
            In the viewer: space pauses, + and - change speed (x0.25 to x8), left/right seek 5 s, \
            [ and ] step one tick, g jumps to a tick, Home/End go to the start/end, q quits. \
            Without a FILE: the saved matches in $XDG_STATE_HOME/turf/replays, newest first, in a \
            browser on a terminal (up/down or j/k move, Enter watches, d deletes, q quits), else \
            printed as a list (turf replay list).
            """
    )

    @Argument(help: "The replay file (.turfreplay); without one, browse the saved matches.")
    var file: String?

    @Flag(help: "Re-derive the match without a screen, check every state hash, print one JSON object.")
    var headless = false

    @Flag(help: "Draw without colour (also: NO_COLOR=1).") var noColor = false
    @Flag(help: "Draw with ASCII only.") var ascii = false

    @Option(
        help: ArgumentHelp(
            "Delivery order for --headless: 'in-order', or 'shuffle:SEED' (seeded random order with duplicates).",
            valueName: "in-order|shuffle:SEED"
        )
    )
    var delivery: Delivery = .inOrder

    /// Ops above which headless verification draws a progress bar on stderr (a terminal only).
    /// Bots and humans make ~7.5 ops a second each, so a 60-minute 8-player match holds ~216k ops,
    /// seconds of work in a debug build: it gets a bar; anything under ~30 such minutes finishes
    /// before a bar would be read.
    static let progressThresholdOps = 100_000

    static func showsProgress(ops: Int, stderrIsTerminal: Bool) -> Bool {
        stderrIsTerminal && ops > progressThresholdOps
    }

    func validate() throws {
        if file == nil && headless {
            throw ValidationError(
                "--headless verifies one replay: give its FILE (turf replay list --json lists the saved ones)"
            )
        }
    }

    func run() throws {
        guard let file else {
            // The saved matches: a browser on a terminal, else the list as text.
            guard isatty(STDIN_FILENO) == 1 && isatty(STDOUT_FILENO) == 1 else {
                for line in ReplayCatalog.text(try ReplayCatalog.list(StatePaths.replays).readAll(), verified: false) {
                    print(line)
                }
                return
            }
            Logs.bootstrap()
            let env = ProcessInfo.processInfo.environment
            let browser = ReplayBrowser(
                listing: try ReplayCatalog.list(StatePaths.replays),
                wantColor: Theme.colorWanted(environment: env) && !noColor,
                unicode: localeIsUTF8(environment: env) && !ascii
            )
            if let s = try browser.run() { throw ExitCode(128 + s) }
            return
        }
        let decodeStart = monotonicNanos()
        let replay = try ReplayCatalog.open(file)
        let player: ReplayPlayer<TurfWorld>
        do { player = try ReplayPlayer(replay) } catch { throw CLIError("\(file): \(error)") }
        let decodeNanos = monotonicNanos() - decodeStart

        guard headless else {
            Logs.bootstrap()
            let env = ProcessInfo.processInfo.environment
            let signal = try ReplayViewer(
                player: player,
                title: URL(fileURLWithPath: file).lastPathComponent,
                wantColor: Theme.colorWanted(environment: env) && !noColor,
                unicode: localeIsUTF8(environment: env) && !ascii,
                now: monotonicNanos
            ).run()
            // Interrupted (Ctrl-C, Ctrl-\, SIGTERM): exit 128 + signal, like the demo and any shell tool.
            if let s = signal { throw ExitCode(128 + s) }
            return
        }

        let seed = delivery.shuffleSeed
        let progress = ProgressBar(
            total: replay.checkpoints.count,
            enabled: Watch.showsProgress(ops: replay.opCount, stderrIsTerminal: isatty(2) == 1)
        )
        let start = monotonicNanos()
        let result: ReplayVerification
        let final: Replica<TurfWorld>
        do { (result, final) = try player.verify(shuffleSeed: seed, progress: { progress.update($0) }) } catch {
            throw CLIError("\(file): \(error)")
        }
        let elapsed = Double(monotonicNanos() - start) / 1e9
        progress.finish()

        var j = JSONObject()
        j.add("file", file)
        j.add("ok", result.ok)
        j.add("delivery", delivery.description)
        j.add("final_hash", hex64(result.finalHash))
        j.add("recorded_final_hash", hex64(replay.finalHash))
        if let bad = result.firstBadTick { j.add("first_bad_tick", Int(bad)) } else { j.addNull("first_bad_tick") }
        j.add("map", final.state.map.name)
        j.add(
            "scores",
            replay.config.players.enumerated().map { i, p in
                var s = JSONObject()
                s.add("player", i)
                s.add("name", p.name)
                s.add("owner", ownerText(p.owner))
                s.add("cells", final.state.scores[i])
                return s
            }
        )
        let signatureProblem = ReplayCatalog.signatureProblem(replay)
        j.add("signatures", replay.signatures.isEmpty && replay.verdicts.isEmpty ? "none" : signatureProblem ?? "ok")
        // What the rules found (docs/engine.md, "Legality"): where each cheater's log stops, and why.
        j.add("cheats", final.cheats.map { cheatJSON($0, config: replay.config) })
        j.add("ticks", Int(result.ticks))
        j.add("ops", result.ops)
        j.add("checkpoints", result.checkpointsChecked)
        j.add("decode_s", Double(decodeNanos) / 1e9)
        j.add("elapsed_s", elapsed)
        j.add("ops_per_sec", Double(result.ops) / max(elapsed, 1e-9))
        j.add("ticks_per_sec", Double(result.ticks) / max(elapsed, 1e-9))
        print(j.text)
        if !result.ok {
            if let bad = result.firstBadTick {
                throw CLIError("\(file): state hash mismatch at tick \(bad) (the first bad checkpoint)")
            }
            throw CLIError("\(file): final state hash mismatch")
        }
        if let signatureProblem { throw CLIError("\(file): \(signatureProblem)") }
    }

}

extension ReplayCommand {
    /// `turf replay list`: the saved matches, newest first, as text or one JSON document.
    struct ListCommand: ParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "list",
            abstract: "List the saved matches, newest first (date, map, players, winner, length, kind).",
            discussion: """
                Reads the newest \(ReplayCatalog.keep) replays in $XDG_STATE_HOME/turf/replays (each at most \
                \(FileLimits.replay) bytes); a file that cannot be read or decoded is listed with its problem. \
                Verifying re-derives every match, so it is done only with --verify (docs/replay-format.md).
                """
        )

        @Option(help: "The directory to list (default: $XDG_STATE_HOME/turf/replays).") var dir: String?
        @Flag(help: "Print one JSON document (docs/replay-format.md, \"Listing saved matches\").") var json = false
        @Flag(help: "Also verify every replay, as --headless does (every checkpoint hash and signature).")
        var verify = false

        func run() throws {
            var listing = try ReplayCatalog.list(dir ?? StatePaths.replays).readAll()
            if verify {
                for i in listing.items.indices where listing.items[i].summary != nil { listing.items[i].verify() }
            }
            if json {
                print(ReplayCatalog.json(listing, verified: verify).text)
            } else {
                for line in ReplayCatalog.text(listing, verified: verify) { print(line) }
            }
        }
    }

    /// `turf replay generate`: a bot match simulated headlessly as fast as the CPU allows.
    struct Generate: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Simulate a bot match headlessly and record it.")

        @Option(
            help: Limits.generatePlayers.help("Number of bot players.", default: 8),
            transform: Limits.generatePlayers.parse
        )
        var players: Int = 8
        @Option(
            help: Limits.generateMinutes.help("Match length in minutes (fractions allowed).", default: 1.5),
            transform: Limits.generateMinutes.parse
        )
        var minutes: Double = 1.5
        @Option(help: "Match seed.") var seed: UInt64 = 1
        @Option(help: "Map name or path.") var map: String = "warren"
        @Option(help: Limits.tickRate.help("Tick rate.", default: 30), transform: Limits.tickRate.parse) var tickRate:
            UInt16 = 30
        @Option(name: .shortAndLong, help: "Output file (a new file, or a regular file to replace with --force).")
        var output: String
        @Flag(help: "Replace the output file if it exists.") var force = false

        func run() throws {
            // Before any work: a symlink, device, FIFO or directory is never replaced, and an
            // existing file only with --force.
            try DurableFile.checkTarget(output, overwrite: force)
            let settings = TurfSettings(map: try MapLibrary.load(map))
            let t0 = monotonicNanos()
            let replay = try TurfMatch.generate(
                settings: settings,
                players: players,
                seconds: Int((minutes * 60).rounded()),
                seed: seed,
                tickRate: tickRate
            )
            let bytes = ReplayFile.encode(replay)
            // Never write what turf would refuse to read.
            guard bytes.count <= FileLimits.replay else {
                throw CLIError(
                    "the recording is \(bytes.count) bytes, over the \(FileLimits.replay)-byte limit of a replay; record a shorter match or fewer players"
                )
            }
            try DurableFile.write(bytes, to: output, mode: 0o644, overwrite: force)
            var j = JSONObject()
            j.add("file", output)
            j.add("bytes", bytes.count)
            j.add("players", players)
            j.add("ticks", Int(replay.config.lengthTicks))
            j.add("ops", replay.opCount)
            j.add("final_hash", hex64(replay.finalHash))
            j.add("elapsed_s", Double(monotonicNanos() - t0) / 1e9)
            print(j.text)
        }
    }
}

/// Who owned a player: its key as `turf id` prints it (`turf1…`), or nil (JSON null).
func ownerText(_ owner: PeerKey?) -> String? {
    owner?.text
}

/// `--delivery`: the order in which `--headless` feeds a replay's ops to the replica.
enum Delivery: ExpressibleByArgument, CustomStringConvertible, Equatable {
    case inOrder
    /// A seeded random order, with duplicates.
    case shuffle(UInt64)

    init?(argument: String) {
        if argument == "in-order" {
            self = .inOrder
            return
        }
        guard argument.hasPrefix("shuffle:"), let seed = UInt64(argument.dropFirst("shuffle:".count)) else {
            return nil
        }
        self = .shuffle(seed)
    }

    var description: String {
        switch self {
        case .inOrder: return "in-order"
        case .shuffle(let seed): return "shuffle:\(seed)"
        }
    }

    var shuffleSeed: UInt64? {
        if case .shuffle(let seed) = self { return seed }
        return nil
    }
}

/// A progress bar on stderr, only when stderr is a terminal and the work is long.
final class ProgressBar {
    let total: Int
    let enabled: Bool
    private var last = -1
    init(total: Int, enabled: Bool) {
        self.total = max(1, total)
        self.enabled = enabled
    }
    func update(_ done: Int) {
        guard enabled else { return }
        let pct = done * 100 / total
        guard pct != last else { return }
        last = pct
        let width = 40
        let filled = pct * width / 100
        let bar = String(repeating: "#", count: filled) + String(repeating: "-", count: width - filled)
        FileHandle.standardError.write(Data("\r[\(bar)] \(pct)%".utf8))
    }
    func finish() { if enabled && last >= 0 { FileHandle.standardError.write(Data("\r\u{1B}[K".utf8)) } }
}

/// `turf replay recover`: turns the journals of matches that a crash interrupted into replays.
/// `turf demo` does the same when it starts.
struct RecoverCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "recover",
        abstract: "Turn the journals of interrupted matches into replays.",
        discussion:
            "A match in progress is journaled to $XDG_STATE_HOME/turf/replays/*.turfjournal; if turf dies before saving it, this (or the next turf demo) rebuilds the replay from the journal. Journals of matches still running are left alone."
    )

    @Option(help: "The directory to look in (default: $XDG_STATE_HOME/turf/replays).") var dir: String?
    @Flag(help: "Print one JSON object per journal.") var json = false

    func run() throws {
        Logs.bootstrap()
        let results = JournalRecovery.recoverAll(in: dir ?? StatePaths.replays)
        for r in results {
            if json {
                var j = JSONObject()
                j.add("journal", r.journal)
                if let replay = r.replay { j.add("replay", replay) } else { j.addNull("replay") }
                j.add("ops", r.ops)
                j.add("last_tick", Int(r.lastTick))
                j.add("discarded_bytes", r.discardedBytes)
                j.add("damaged", r.journal.hasSuffix(".damaged"))
                if let p = r.problem { j.add("problem", p) } else { j.addNull("problem") }
                print(j.text)
            } else {
                print(RecoverCommand.describe(r))
            }
        }
        if !json && results.isEmpty { print("no interrupted matches to recover") }
        // Damage is reported with status 1 even when part of the match was recovered.
        if results.contains(where: { $0.failed }) { throw ExitCode(1) }
    }

    /// One line about a journal, its file's text (a problem may quote it) shown through SafeText.
    static func describe(_ r: JournalRecovery.Result) -> String {
        SafeText.display(describeRaw(r), limit: 400)
    }

    private static func describeRaw(_ r: JournalRecovery.Result) -> String {
        if let replay = r.replay, r.salvaged {
            return
                "recovered part of a damaged match: \(replay) (\(r.ops) ops, up to tick \(r.lastTick)); the journal is kept as \(r.journal): \(r.problem ?? "damaged")"
        }
        if let replay = r.replay {
            let torn = r.discardedBytes > 0 ? " (a torn last write of \(r.discardedBytes) bytes dropped)" : ""
            return "recovered an interrupted match: \(replay) (\(r.ops) ops, up to tick \(r.lastTick))\(torn)"
        }
        if let p = r.problem { return "could not recover \(r.journal): \(p)" }
        return "removed an empty journal: \(r.journal)"
    }
}
