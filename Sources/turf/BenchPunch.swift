import ArgumentParser
import Foundation
import NetCore
import TextOutput

/// `turf bench punch`: NAT traversal in the NAT lab (docs/nat.md, docs/benchmarks.md). Builds the
/// lab with scripts/natlab.sh (network namespaces, real Linux NATs; needs root), runs each case's
/// headless match `--runs` times, removes the lab, and reports per case.
struct BenchPunch: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "punch",
        abstract: "Connect host and joiner across real NATs in network namespaces (root); success rate and join time."
    )

    static let allCases = [
        "open-cone", "cone-cone", "cone-cone-key", "cone-cone-late", "cone-cone-later", "same-nat", "random-open",
        "remap",
        "remap-host", "remap-relayed", "rejoin",
        "three", "three-cone", "cone-random", "random-cone", "random-random", "lt-cone-cone", "lan-party",
        // Players relay for each other (docs/nat.md): through a member first; with no volunteer at all.
        "member-relay", "random-random-player",
        // IPv6 (docs/nat.md, "IPv6"): stateful firewalls, a random IPv4 NAT beside IPv6, no common family.
        "v6-v6", "cgnat-v6", "v6-v4-relay",
    ]
    /// Cases about a lab with no volunteer relay: run in a lab of their own (`RELAY=0`).
    static let noVolunteerCases: Set<String> = ["random-random-player"]

    @Option(help: Limits.runs.help("Runs per case.", default: 5), transform: Limits.runs.parse) var runs = 5
    @Option(
        parsing: .upToNextOption,
        help: "Cases (default: all): \(BenchPunch.allCases.joined(separator: ", "))."
    ) var cases: [String] = BenchPunch.allCases
    @Option(
        help: Limits.loss.help("Probability that each router drops a forwarded packet.", default: 0),
        transform: Limits.loss.parse
    ) var loss = 0.0
    @Option(help: "The lab script (default: scripts/natlab.sh of the checkout this binary was built in).")
    var lab: String?
    @Flag(help: "Print one JSON object.") var json = false

    func validate() throws {
        for c in cases where !Self.allCases.contains(c) {
            throw ValidationError(
                "unknown case '\(SafeText.display(c, limit: 40))': one of \(Self.allCases.joined(separator: ", "))"
            )
        }
    }

    /// scripts/natlab.sh above the binary (…/.build/<triple>/release/turf) or in the current directory.
    static func findLab() -> String? {
        let exe =
            (try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/exe")) ?? CommandLine.arguments[0]
        var dir = URL(fileURLWithPath: exe).deletingLastPathComponent()
        for _ in 0..<6 {
            let candidate = dir.appendingPathComponent("scripts/natlab.sh").path
            if FileManager.default.isExecutableFile(atPath: candidate) { return candidate }
            dir = dir.deletingLastPathComponent()
        }
        let here = FileManager.default.currentDirectoryPath + "/scripts/natlab.sh"
        return FileManager.default.isExecutableFile(atPath: here) ? here : nil
    }

    /// Runs `cases` in one lab (none: nothing) and returns what it printed, one line per run.
    func runLab(_ script: String, _ cases: [String], volunteer: Bool) throws -> Data {
        guard !cases.isEmpty else { return Data() }
        let exe =
            (try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/exe")) ?? CommandLine.arguments[0]
        let p = Process()
        p.executableURL = URL(fileURLWithPath: "/bin/bash")
        p.arguments = [script, "--turf", exe, "--runs", String(runs)] + cases
        var env = ProcessInfo.processInfo.environment
        env["LOSS"] = loss > 0 ? String(loss) : ""
        env["RELAY"] = volunteer ? env["RELAY"] ?? "1" : "0"
        p.environment = env
        let out = Pipe()
        p.standardOutput = out
        try p.run()
        // The lab prints one short line per run; bounded by what the runs can print.
        let data = out.fileHandleForReading.readDataToEndOfFile().prefix(1 << 20)
        p.waitUntilExit()
        guard p.terminationStatus == 0 else { throw CLIError("the NAT lab failed (exit \(p.terminationStatus))") }
        return Data(data)
    }

    static func add(_ j: inout JSONObject, _ key: String, _ v: Double?) {
        if let v { j.add(key, v, digits: 5) } else { j.add(key, JSONValue.null) }
    }

    func run() throws {
        guard getuid() == 0 else {
            throw CLIError("turf bench punch needs root: it builds network namespaces and NATs")
        }
        guard let script = lab ?? Self.findLab() else {
            throw CLIError("scripts/natlab.sh not found: give its path with --lab")
        }
        let started = monotonicNanos()
        // The cases that need a lab without the volunteer relay get one of their own.
        let apart = cases.filter { Self.noVolunteerCases.contains($0) }
        var data = try runLab(script, cases.filter { !Self.noVolunteerCases.contains($0) }, volunteer: true)
        data += try runLab(script, apart, volunteer: false)
        var byCase: [String: [[String: Any]]] = [:]
        for line in String(decoding: data, as: UTF8.self).split(separator: "\n") {
            guard let obj = try? JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any],
                let c = obj["case"] as? String
            else { continue }
            byCase[c, default: []].append(obj)
        }
        var rows: [JSONObject] = []
        for c in cases {
            let rs = byCase[c] ?? []
            let ok = rs.filter { $0["ok"] as? Bool == true }
            let ms = ok.compactMap { ($0["join_ms"] as? NSNumber)?.doubleValue }
            let probes = rs.compactMap { ($0["probes_sent"] as? NSNumber)?.doubleValue }
            let hostProbes = rs.compactMap { ($0["host_probes"] as? NSNumber)?.doubleValue }
            let paths = ok.compactMap { $0["path"] as? String }
            let finals = ok.compactMap { $0["final_path"] as? String }
            let upgrades = ok.compactMap { ($0["upgrade_ms"] as? NSNumber)?.doubleValue }
            var j = JSONObject()
            j.add("case", c)
            j.add("runs", rs.count)
            j.add("success_rate", rs.isEmpty ? 0 : Double(ok.count) / Double(rs.count), digits: 3)
            Self.add(&j, "join_ms_p50", ms.isEmpty ? nil : BenchSupport.median(ms))
            Self.add(&j, "join_ms_p95", ms.isEmpty ? nil : BenchSupport.percentile(ms, 0.95))
            j.add("path", Dictionary(grouping: paths, by: { $0 }).max { $0.value.count < $1.value.count }?.key)
            // Where sessions ended up (a relayed one may upgrade to direct): the share of all runs
            // that ended on a direct or LAN path, and the median time of the upgrades.
            j.add("final_path", Dictionary(grouping: finals, by: { $0 }).max { $0.value.count < $1.value.count }?.key)
            j.add(
                "direct_rate",
                rs.isEmpty ? 0 : Double(finals.filter { $0 != "relayed" }.count) / Double(rs.count),
                digits: 3
            )
            Self.add(&j, "upgrade_ms_p50", upgrades.isEmpty ? nil : BenchSupport.median(upgrades))
            // Until the session ran direct: join_ms for a run that connected direct (or over the
            // LAN), the time of the upgrade for one that connected relayed and moved.
            let toDirect = ok.compactMap { r -> Double? in
                guard let f = r["final_path"] as? String, f != "relayed" else { return nil }
                if r["path"] as? String == "relayed" { return (r["upgrade_ms"] as? NSNumber)?.doubleValue }
                return (r["join_ms"] as? NSNumber)?.doubleValue
            }
            Self.add(&j, "direct_ms_p50", toDirect.isEmpty ? nil : BenchSupport.median(toDirect))
            Self.add(&j, "direct_ms_p95", toDirect.isEmpty ? nil : BenchSupport.percentile(toDirect, 0.95))
            Self.add(&j, "probes_sent", probes.isEmpty ? nil : BenchSupport.median(probes))
            // Runs whose knock a DHT node relayed (the fast path) before the joiner connected.
            j.add("knock_fast", ok.filter { $0["knock"] as? String == "fast" }.count)
            Self.add(&j, "host_probes_sent", hostProbes.isEmpty ? nil : BenchSupport.median(hostProbes))
            // Three players: how most runs' joiners reached each other (direct: punched after the
            // host's introduction; relayed: through the host).
            let mesh = ok.compactMap { $0["mesh_path"] as? String }.filter { !$0.isEmpty }
            if !mesh.isEmpty {
                j.add("mesh_path", Dictionary(grouping: mesh, by: { $0 }).max { $0.value.count < $1.value.count }?.key)
            }
            // Three players, the second joiner's path to the host (member-relay: through the member).
            let second = ok.compactMap { $0["join2_path"] as? String }.filter { !$0.isEmpty }
            if !second.isEmpty {
                j.add(
                    "join2_path",
                    Dictionary(grouping: second, by: { $0 }).max { $0.value.count < $1.value.count }?.key
                )
            }
            // The family of the direct paths (ipv4, ipv6), the most common one.
            let families = ok.compactMap { $0["family"] as? String }.filter { !$0.isEmpty }
            if !families.isEmpty {
                j.add("family", Dictionary(grouping: families, by: { $0 }).max { $0.value.count < $1.value.count }?.key)
            }
            j.add("host_nat", rs.last?["host_nat"] as? String)
            if let v6 = rs.last?["host_ipv6"] as? String, !v6.isEmpty { j.add("host_ipv6", v6) }
            j.add("join_nat", rs.last?["join_nat"] as? String)
            rows.append(j)
        }
        let seconds = Double(monotonicNanos() - started) / 1e9
        if json {
            var j = JSONObject()
            j.add("bench", "punch")
            j.add("runs", runs)
            j.add("loss", loss, digits: 3)
            j.add("cases", rows)
            j.add("seconds", seconds, digits: 4)
            print(j.text)
        } else {
            for r in rows { print(r.text) }
            print("seconds: \(String(format: "%.1f", seconds))")
        }
    }
}
