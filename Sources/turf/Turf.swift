import ArgumentParser

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
            // Networking (IdCommand.swift, DHTCommands.swift)
            IdCommand.self,
            DHTCommand.self,
            Bench.self,
        ]
    )
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
            // networked match (BenchNetMatch.swift)
            BenchNetMatch.self,
        ]
    )
}
