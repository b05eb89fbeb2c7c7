import Foundation
import Testing

/// The NAT lab (scripts/natlab.sh, docs/nat.md): real Linux NATs in network namespaces this test
/// creates (a fake internet on the documentation ranges, home LANs on 10.x, six `turf dht serve`
/// nodes), and a headless 5-second match per case between `turf host` and `turf join --headless`
/// (and a second joiner in the three-player case).
/// Needs root (CI runs `make test` as root); without it the test is reported as skipped.
@Suite(.serialized) struct NATLabTests {
    struct Run {
        var fields: [String: Any]
        var ok: Bool { fields["ok"] as? Bool == true }
        func text(_ k: String) -> String? { fields[k] as? String }
    }

    static func lab(_ cases: [String], loss: String = "") throws -> [String: Run] {
        let script = repoRoot.appendingPathComponent("scripts/natlab.sh").path
        var env = ProcessInfo.processInfo.environment
        env["LOSS"] = loss
        let r = try run("/bin/bash", [script, "--turf", turfBinary] + cases, environment: env, timeout: 300)
        #expect(r.status == 0, "natlab.sh exited \(r.status): \(r.stderr.suffix(2000))")
        var out: [String: Run] = [:]
        for line in r.stdout.split(separator: "\n") {
            guard let data = line.data(using: .utf8),
                let obj = try? JSONSerialization.jsonObject(with: data) as? [String: Any],
                let c = obj["case"] as? String
            else {
                Issue.record("natlab.sh printed a line that is not a run: \(line)")
                continue
            }
            out[c] = Run(fields: obj)
        }
        return out
    }

    @Test(
        .enabled(if: getuid() == 0, "needs root: network namespaces and iptables (CI runs make test as root)"),
        .timeLimit(.minutes(6))
    )
    func headlessMatchesAcrossNATs() throws {
        let runs = try Self.lab([
            "open-cone", "cone-cone", "cone-cone-key", "same-nat", "random-open", "remap", "three", "cone-random",
        ])
        #expect(runs.count == 8)
        for (c, r) in runs.sorted(by: { $0.key < $1.key }) {
            #expect(r.ok, "case \(c) failed: \(r.fields)")
            #expect(r.fields["hashes_agree"] as? Bool == true, "case \(c): final hashes differ")
        }
        // NAT classification from what the lab's DHT nodes reported.
        #expect(runs["open-cone"]?.text("host_nat") == "open")
        #expect(runs["open-cone"]?.text("join_nat") == "consistent")
        #expect(runs["cone-cone"]?.text("host_nat") == "consistent")
        #expect(runs["cone-cone"]?.text("join_nat") == "consistent")
        #expect(runs["random-open"]?.text("join_nat") == "random")
        // Paths: punched directly between two cone NATs; over the LAN behind one NAT (the router
        // does not hairpin, so the public address could not have worked).
        #expect(runs["cone-cone"]?.text("path") == "direct")
        // By key: the lobby record, put again once the host's external address was known.
        #expect(runs["cone-cone-key"]?.text("path") == "direct")
        #expect(runs["open-cone"]?.text("path") == "direct")
        #expect(runs["same-nat"]?.text("path") == "lan")
        // The joiner's router forgot its mappings mid-match and mapped to new ports: the match
        // went on (the host validated the new path) and ended with the same hash on both.
        #expect(runs["remap"]?.fields["remapped"] as? Bool == true)
        // Three players (cone host, cone joiner, open joiner): all three end with one hash.
        #expect(runs["three"]?.ok == true)
        // Cone host, random joiner: the birthday method (the joiner's extra sockets, the host's
        // probes at random ports) connected them directly.
        #expect(runs["cone-random"]?.text("host_nat") == "consistent")
        #expect(runs["cone-random"]?.text("join_nat") == "random")
        #expect(runs["cone-random"]?.text("path") == "direct")
        #expect((runs["cone-random"]?.fields["host_probes"] as? Int ?? 0) > 0)
    }

    /// Every router drops 20% of what it forwards: two cone NATs still punch, and the match's
    /// final hashes agree.
    @Test(
        .enabled(if: getuid() == 0, "needs root: network namespaces and iptables (CI runs make test as root)"),
        .timeLimit(.minutes(6))
    )
    func coneToConeUnderLoss() throws {
        let runs = try Self.lab(["cone-cone"], loss: "0.2")
        let r = try #require(runs["cone-cone"])
        #expect(r.ok, "\(r.fields)")
        #expect(r.fields["hashes_agree"] as? Bool == true)
        #expect(r.text("path") == "direct")
    }
}
