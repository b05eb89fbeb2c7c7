import ArgumentParser
import Foundation
import Transport

/// The range a numeric option accepts, the one mechanism for every numeric option of every
/// command: `help` shows it in `--help`, and `parse` (the option's transform) makes the parser
/// refuse anything outside it (NaN and infinities included) with its usual one-line error and
/// exit status 64, before any work starts.
///
///     static let bots = OptionRange(1...7)
///     @Option(help: Limits.bots.help("Number of bots."), transform: Limits.bots.parse) var bots = 3
struct OptionRange<T: Comparable & LosslessStringConvertible & Sendable>: Sendable {
    let range: ClosedRange<T>
    let unit: String

    init(_ range: ClosedRange<T>, unit: String = "") {
        self.range = range
        self.unit = unit
    }

    /// "lower-upper unit", as help and errors show it.
    var text: String {
        "\(Self.show(range.lowerBound))-\(Self.show(range.upperBound))\(unit.isEmpty ? "" : " " + unit)"
    }

    /// The option's help: its abstract, then the range (and the default, when given).
    func help(_ abstract: String, default value: T? = nil) -> ArgumentHelp {
        ArgumentHelp("\(abstract) (\(text)\(value.map { "; default \(Self.show($0))" } ?? ""))")
    }

    /// The option's transform.
    var parse: @Sendable (String) throws -> T {
        { [range, text] s in
            guard let v = T(s), range.contains(v) else { throw ValidationError("must be \(text)") }
            return v
        }
    }

    func contains(_ v: T) -> Bool { range.contains(v) }

    private static func show(_ v: T) -> String {
        if let d = v as? Double {
            return d == d.rounded() && abs(d) < 1e15 ? String(Int64(d)) : String(format: "%g", d)
        }
        return "\(v)"
    }
}

/// The ranges of turf's numeric options, in one place (docs/untrusted-input.md lists them).
/// Seeds (`UInt64`) and ports (`UInt16`) take their type's whole range, which the parser enforces.
enum Limits {
    // Play.
    static let bots = OptionRange(1...7)
    static let demoSeconds = OptionRange(5...3600, unit: "s")
    static let generatePlayers = OptionRange(2...8)
    /// MatchConfig.maxLengthTicks: 4 hours at 30 Hz.
    static let generateMinutes = OptionRange(0.1...240.0)
    static let tickRate = OptionRange<UInt16>(1...240, unit: "Hz")
    // DHT commands: seconds that fit Nanos with room to spare (about 31 years).
    static let dhtSeconds = OptionRange(0.0...1e9, unit: "s")
    static let relaySessions = OptionRange(1...1024)
    static let relayKiBPerSecond = OptionRange(1...1_048_576, unit: "KiB/s")
    static let relayChannelMiB = OptionRange(1...1_048_576, unit: "MiB")
    static let relayChannels = OptionRange(1...65_536)
    // Benchmarks: large enough for any figure in docs/benchmarks.md, small enough to finish.
    static let benchMinutes = OptionRange(0.1...240.0)
    static let benchPlayers = OptionRange(2...8)
    static let runs = OptionRange(1...100)
    static let lateness = OptionRange(1...100_000, unit: "ticks")
    static let lateSamples = OptionRange(1...1000)
    static let lateWindow = OptionRange(1...10_000, unit: "ticks")
    static let cryptoSize = OptionRange(1...Wire.maxTransportPayload, unit: "bytes")
    static let cryptoPackets = OptionRange(1...100_000_000)
    static let cryptoRounds = OptionRange(1...1000)
    static let handshakes = OptionRange(1...1_000_000)
    static let sessionSize = OptionRange(1...UnreliableChannel.maxMessageSize, unit: "bytes")
    static let sessionSamples = OptionRange(1...1_000_000)
    static let sessionRounds = OptionRange(1...1000)
    static let initiations = OptionRange(1...10_000_000)
    static let floodSeconds = OptionRange(1...3600, unit: "s")
    static let distinct = OptionRange(1...100_000)
    static let dhtNodes = OptionRange(20...100_000)
    static let churn = OptionRange(0.0...0.9)
    static let hopMs = OptionRange(0...10_000, unit: "ms")
    static let topics = OptionRange(1...50_000)
    static let lookups = OptionRange(1...1_000_000)
    static let simSeconds = OptionRange(1...1_000_000, unit: "s")
    static let loss = OptionRange(0.0...0.5)
    static let inputSamples = OptionRange(1...10_000)
    // bench internet.
    static let internetNodes = OptionRange(1000...1_000_000)
    static let internetPlayers = OptionRange(2...100_000)
    static let internetWindow = OptionRange(10...3600, unit: "s")
    static let matchSeconds = OptionRange(0...3600, unit: "s")
    static let volunteers = OptionRange(0...1000)
    static let share = OptionRange(0.0...1.0)
    static let churnPerHour = OptionRange(0.0...10.0)
    static let relayShards = OptionRange(1...4096)
    static let relayAfterMs = OptionRange(0...60_000, unit: "ms")
}
