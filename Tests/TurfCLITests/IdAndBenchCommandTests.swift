import Foundation
import Testing

/// `turf id` and the transport benchmarks' JSON, run as a user would.
@Suite(.serialized) struct IdAndBenchCommandTests {
    static func tempConfig() throws -> URL {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent(
            "turf-id-\(UUID().uuidString.prefix(8))"
        )
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        return dir
    }

    static func environment(config: URL) -> [String: String] {
        var env = ProcessInfo.processInfo.environment
        env["XDG_CONFIG_HOME"] = config.path
        env["HOME"] = config.path
        return env
    }

    @Test func idPrintsKeyAndCreatesPrivateFile() throws {
        let config = try Self.tempConfig()
        defer { try? FileManager.default.removeItem(at: config) }
        let env = Self.environment(config: config)
        let first = try run(turfBinary, ["id"], environment: env, timeout: 60)
        #expect(first.status == 0, "\(first.stderr)")
        let key = first.stdout.trimmingCharacters(in: .newlines)
        // turf1 + base32 (lower case, no padding) of 32 key bytes + 2 checksum bytes: 60 characters.
        #expect(key.count == 60 && key.hasPrefix("turf1"), "\(key)")
        #expect(key.dropFirst(5).allSatisfy { "abcdefghijklmnopqrstuvwxyz234567".contains($0) }, "\(key)")
        #expect(first.stdout == key + "\n", "exactly one line")
        #expect(first.stderr.contains("created a new identity"))
        let file = config.appendingPathComponent("turf/identity.key").path
        let attrs = try FileManager.default.attributesOfItem(atPath: file)
        #expect((attrs[.posixPermissions] as? NSNumber)?.intValue == 0o600)
        let dirAttrs = try FileManager.default.attributesOfItem(atPath: config.appendingPathComponent("turf").path)
        #expect((dirAttrs[.posixPermissions] as? NSNumber)?.intValue == 0o700)
        let text = try String(contentsOfFile: file, encoding: .utf8)
        #expect(text.hasPrefix("turf-identity-v1\n"))
        // The same key next time, with nothing on stderr.
        let second = try run(turfBinary, ["id"], environment: env, timeout: 60)
        #expect(second.status == 0 && second.stdout == first.stdout && second.stderr.isEmpty)
        #expect(try run(turfBinary, ["id", "--path"], environment: env, timeout: 60).stdout == file + "\n")
        // A key file others can read is refused with a hint.
        chmod(file, 0o644)
        let refused = try run(turfBinary, ["id"], environment: env, timeout: 60)
        #expect(refused.status != 0 && refused.stdout.isEmpty && !refused.stderr.isEmpty)
    }

    static func json(_ args: [String]) throws -> [String: Any] {
        let r = try run(turfBinary, args, timeout: 300)
        guard r.status == 0 else { throw CLIFailure("turf \(args) exited \(r.status): \(r.stderr)") }
        let data = Data(r.stdout.utf8)
        guard let object = try JSONSerialization.jsonObject(with: data) as? [String: Any] else {
            throw CLIFailure("not a JSON object: \(r.stdout)")
        }
        return object
    }

    /// The keys docs/benchmarks.md documents, with plausible values, at small counts.
    @Test func benchCryptoPrintsDocumentedJSON() throws {
        let o = try Self.json(["bench", "crypto", "--json", "--packets", "2000", "--rounds", "1", "--handshakes", "20"])
        #expect(o["benchmark"] as? String == "crypto")
        for key in [
            "session_packets_per_sec", "raw_packets_per_sec", "speed_ratio", "speed_ratio_min", "handshakes_per_sec",
        ] {
            let v = try #require((o[key] as? NSNumber)?.doubleValue, "\(key) missing in \(o)")
            #expect(v > 0, "\(key) = \(v)")
        }
        #expect((o["packets_per_round"] as? NSNumber)?.intValue == 2000)
        #expect((o["rounds"] as? NSNumber)?.intValue == 1)
        #expect((o["payload_bytes"] as? NSNumber)?.intValue == 100)
    }

    @Test func benchSessionPrintsDocumentedJSON() throws {
        let o = try Self.json(["bench", "session", "--json", "--samples", "200", "--rounds", "1"])
        #expect(o["benchmark"] as? String == "session")
        for key in ["raw_rtt_us_p50", "session_rtt_us_p50", "raw_rtt_us_p99", "session_rtt_us_p99"] {
            let v = try #require((o[key] as? NSNumber)?.doubleValue, "\(key) missing in \(o)")
            #expect(v > 0, "\(key) = \(v)")
        }
        #expect(o["rtt_overhead_us_p50"] is NSNumber)
        #expect((o["round_trips"] as? NSNumber)?.intValue == 200)
    }

    /// `--chaos-stack sessions`: the chaos runs through the real stack report their totals, and
    /// two short runs converge with loss and a partition that actually cut datagrams.
    @Test func benchNetMatchSessionChaosPrintsDocumentedJSON() throws {
        let o = try Self.json([
            "bench", "netmatch", "--json", "--minutes", "0.1", "--map", "dojo", "--chaos-stack", "sessions",
            "--chaos-runs", "2", "--chaos-seconds", "1",
        ])
        #expect(o["chaos_stack"] as? String == "sessions")
        #expect((o["chaos_runs"] as? NSNumber)?.intValue == 2)
        #expect((o["chaos_converged"] as? NSNumber)?.intValue == 2)
        let s = try #require(o["chaos_sessions"] as? [String: Any], "chaos_sessions missing in \(o)")
        #expect((s["lobbies_completed"] as? NSNumber)?.intValue == 2)
        for key in ["datagrams_lost", "datagrams_partitioned", "handshakes_completed", "virtual_s_mean"] {
            let v = try #require((s[key] as? NSNumber)?.doubleValue, "\(key) missing in \(s)")
            #expect(v > 0, "\(key) = \(v)")
        }
        #expect((s["first_failures"] as? [Any])?.isEmpty == true)
    }
}
