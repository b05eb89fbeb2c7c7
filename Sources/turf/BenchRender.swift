import ArgumentParser
import Engine
import Foundation
import TerminalUI
import TurfRules

extension Limits {
    static let renderFrames = OptionRange(10...1_000_000)
}

/// `turf bench render`: the CPU one frame of a networked match's screen costs. An 8-player match
/// of bots plays one tick per frame; each frame is the match screen with its network HUD
/// (`NetMatchRenderer`) drawn and sent through curses (`CursesTerminal.draw`: the diff against the
/// previous frame, curses' own update) into a pseudo-terminal, whose output a thread reads and
/// discards. Timed per frame with the thread's CPU clock, so waiting on the pseudo-terminal is
/// not counted; stepping the match is outside the timed part.
struct BenchRender: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "render",
        abstract: "CPU per frame of the match screen with its HUD, into a pseudo-terminal, at 80x24 and 200x60."
    )

    @Flag(help: "Print one JSON object.") var json = false
    @Option(
        help: Limits.renderFrames.help("Frames timed at each size.", default: 3000),
        transform: Limits.renderFrames.parse
    )
    var frames = 3000
    @Flag(help: "Draw without colour (as NO_COLOR does).") var noColor = false
    @Flag(help: "Draw with ASCII only (as --ascii does).") var ascii = false

    static let sizes = [(80, 24), (200, 60)]
    static let warmup = 60

    func run() throws {
        var fields: [(String, Any)] = [
            ("benchmark", "render"), ("frames", frames), ("players", 8),
            ("color", !noColor), ("unicode", !ascii),
        ]
        var worst = 0.0
        for (w, h) in BenchRender.sizes {
            let r = try measure(width: w, height: h)
            let tag = "\(w)x\(h)"
            fields += [
                ("map_\(tag)", r.map), ("frame_us_p50_\(tag)", r.p50), ("frame_us_p99_\(tag)", r.p99),
                ("frame_us_max_\(tag)", r.max), ("pty_bytes_per_frame_\(tag)", r.bytesPerFrame),
            ]
            worst = max(worst, r.p99)
        }
        let p50s = fields.compactMap { $0.0.hasPrefix("frame_us_p50_") ? $0.1 as? Double : nil }
        fields += [
            ("frame_us_p50", p50s.max() ?? 0), ("frame_us_p99", worst), ("target_frame_us_p99", 2000),
            ("within_target", worst <= 2000),
        ]
        json ? BenchSupport.printJSON(fields) : BenchSupport.printText(fields)
    }

    struct Result {
        var map: String
        var p50: Double
        var p99: Double
        var max: Double
        var bytesPerFrame: Double
    }

    /// The largest map that fits the screen at two columns per cell, as `turf demo` picks.
    static func map(width: Int, height: Int) throws -> ArenaMap {
        let maps = MapLibrary.available().compactMap { try? MapLibrary.load($0) }.filter { $0.spawns.count >= 8 }
        guard let smallest = maps.min(by: { $0.floorCells.count < $1.floorCells.count }) else {
            throw CLIError("no map with 8 spawn points found (looked in the map directories)")
        }
        let fitting = maps.filter { $0.width * 2 <= width && $0.height <= height - 3 }
        return fitting.max { $0.floorCells.count < $1.floorCells.count } ?? smallest
    }

    func measure(width: Int, height: Int) throws -> Result {
        let arena = try BenchRender.map(width: width, height: height)
        var players = TurfMatch.players(humans: [], total: 8)
        // A hostile name: combining marks up to the byte limit of a name (each costs a lookup).
        players[3].name = "x" + String(repeating: "\u{0301}", count: (PlayerInfo.maxNameBytes - 1) / 2)
        let config = TurfSettings(map: arena).matchConfig(
            seed: 7,
            players: players,
            seconds: (frames + BenchRender.warmup) / 30 + 2
        )
        var match = try TurfMatch.local(config: config)
        let term = try CursesTerminal(pseudoTerminalColumns: width, rows: height, wantColor: !noColor, unicode: !ascii)
        defer { term.stop() }
        let renderer = NetMatchRenderer(theme: term.theme)
        var net = NetStatus(
            peers: (0..<8).map {
                PeerStatus(
                    player: $0,
                    pingMs: $0 == 0 ? nil : 20 + 7 * $0,
                    path: $0 == 0 ? nil : ($0 % 3 == 0 ? .relayed : .direct)
                )
            }
        )
        var samples: [Double] = []
        samples.reserveCapacity(frames)
        for i in 0..<(frames + BenchRender.warmup) {
            match.step()
            // The HUD changes as it would: pings move, a peer drops and comes back, a desync shows late.
            net.peers[1 + i % 7].pingMs = 20 + (i * 13) % 90
            net.peers[5].connected = (i / 300) % 2 == 0
            if i == frames / 2 { net.desyncTick = match.tick }
            let scene = ArenaScene(
                world: match.replica.state,
                tick: min(match.tick, config.lengthTicks),
                config: config,
                focus: 0,
                title: "turf"
            )
            let start = BenchRender.threadCPUNanos()
            term.draw(renderer.render(scene, net: net, width: width, height: height))
            let spent = BenchRender.threadCPUNanos() - start
            if i >= BenchRender.warmup { samples.append(Double(spent) / 1000) }
        }
        term.stop()
        let bytes = Double(term.pseudoTerminalBytes) / Double(frames + BenchRender.warmup)
        return Result(
            map: arena.name,
            p50: BenchSupport.percentile(samples, 0.5),
            p99: BenchSupport.percentile(samples, 0.99),
            max: samples.max() ?? 0,
            bytesPerFrame: bytes
        )
    }

    /// This thread's CPU time in nanoseconds.
    static func threadCPUNanos() -> UInt64 {
        var ts = timespec()
        clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts)
        return UInt64(ts.tv_sec) * 1_000_000_000 + UInt64(ts.tv_nsec)
    }
}
