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

    static func lab(_ cases: [String], loss: String = "", relay: Bool = true) throws -> [String: Run] {
        let script = repoRoot.appendingPathComponent("scripts/natlab.sh").path
        var env = ProcessInfo.processInfo.environment
        env["LOSS"] = loss
        env["RELAY"] = relay ? "1" : "0"
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
        .enabled(if: getuid() == 0, "needs root: network namespaces and iptables (CI runs make test as root)")
    )
    func headlessMatchesAcrossNATs() throws {
        let runs = try Self.lab([
            "open-cone", "cone-cone", "cone-cone-key", "same-nat", "random-open", "remap", "three",
            "three-cone", "random-random", "cone-random", "random-cone", "remap-host", "rejoin", "cone-cone-late",
            "same-port", "remap-relayed", "member-relay",
        ])
        #expect(runs.count == 17)
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
        // The knock's fast path: a turf DHT node holding the host's announcement relayed the
        // joiner's sealed knock through the host's NAT (docs/nat.md), by topic and by key.
        #expect(runs["cone-cone"]?.text("knock") == "fast")
        #expect(runs["cone-cone-key"]?.text("knock") == "fast")
        // By key: the lobby record, put again once the host's external address was known.
        #expect(runs["cone-cone-key"]?.text("path") == "direct")
        #expect(runs["open-cone"]?.text("path") == "direct")
        #expect(runs["same-nat"]?.text("path") == "lan")
        // Both players on --port 7000 in their two homes: the joiner tries the host's address
        // (before, bound to 0.0.0.0 it took any address at its own port for its own, and relayed).
        #expect(runs["same-port"]?.text("path") == "direct")
        // The joiner's router forgot its mappings mid-match and mapped to new ports: the match
        // went on (the host validated the new path) and ended with the same hash on both.
        #expect(runs["remap"]?.fields["remapped"] as? Bool == true)
        // The same with the host behind the router that forgets: the joiner follows the host.
        #expect(runs["remap-host"]?.fields["remapped"] as? Bool == true)
        // Two random NATs play through the relay, and the joiner's router forgets its mappings
        // mid-match: the relay moved the channel's end to the joiner's new port (its `moved`
        // count), and the match ended with one hash.
        #expect(runs["remap-relayed"]?.text("path") == "relayed")
        #expect(runs["remap-relayed"]?.fields["remapped"] as? Bool == true)
        // A joiner killed mid-match and started again (same identity) knocks again: the host
        // answers knocks through the match, and the rejoiner plays on to the same final hash.
        #expect(runs["rejoin"]?.fields["rejoined"] as? Bool == true)
        // Three players, a cone host and two random joiners (each reaches the host relayed or by
        // the birthday method; their own pair cannot punch and goes through the host): all three
        // end with one hash. An open host and two cone joiners: the host's roster introduces the
        // joiners, and they punch to each other.
        #expect(runs["three"]?.ok == true)
        #expect(["relayed", "direct"].contains(runs["three"]?.text("mesh_path") ?? ""))
        #expect(runs["three-cone"]?.text("mesh_path") == "direct")
        // Two random NATs cannot punch: the session runs through the lab's relay (a `turf dht
        // serve --relay` node found on the DHT). A random joiner behind a cone host connects at
        // least relayed.
        #expect(runs["random-random"]?.text("path") == "relayed")
        #expect(runs["random-random"]?.text("host_path") == "relayed")
        #expect(runs["cone-cone"]?.text("host_path") == "direct")
        #expect(runs["random-random"]?.text("host_nat") == "random")
        // Cone host, random joiner: it connects through the relay first (after 1 s), and the
        // birthday method (the joiner's extra sockets, the host's probes at random ports) moves
        // the session to a direct path; or the birthday wins before the relay.
        #expect(["relayed", "direct"].contains(runs["cone-random"]?.text("path") ?? ""))
        #expect(runs["cone-random"]?.text("final_path") == "direct")
        #expect(runs["cone-random"]?.text("host_nat") == "consistent")
        #expect(runs["cone-random"]?.text("join_nat") == "random")
        #expect((runs["cone-random"]?.fields["host_probes"] as? Int ?? 0) > 0)
        // Two cone NATs whose direct path was blocked until the joiner connected (relayed): the
        // joiner's re-punch (knocks and probes every 2 s) moves the session to the direct path.
        #expect(runs["cone-cone-late"]?.text("path") == "relayed")
        #expect(runs["cone-cone-late"]?.text("final_path") == "direct")
        // The roles reversed (a random host, a cone joiner): relayed first, then the host's extra
        // sockets and the joiner's probes at random ports move it to a direct path.
        #expect(runs["random-cone"]?.text("host_nat") == "random")
        #expect(runs["random-cone"]?.text("join_nat") == "consistent")
        #expect(runs["random-cone"]?.text("final_path") == "direct")
        // Members relay for each other before strangers: a random host, an open member that
        // relays, then a random joiner by key. The host lists the member in its lobby record
        // (`r`) and registers there; the joiner's session runs through the member although the
        // lab's volunteer relay is there too.
        #expect(runs["member-relay"]?.text("join2_path") == "relayed")
        #expect(runs["member-relay"]?.text("join2_relay")?.hasPrefix("203.0.113.50:") == true)
    }

    /// IPv6 (docs/nat.md, "IPv6"): homes with a routed /64 of 2001:db8::/32 behind an ip6tables
    /// stateful firewall. Two IPv6-only homes punch directly over IPv6; two homes whose IPv4 is
    /// behind random NATs (relayed over IPv4 alone) meet directly over IPv6; an IPv6-only host and
    /// an IPv4-only joiner share no family and meet through the relay that has both.
    @Test(
        .enabled(if: getuid() == 0, "needs root: network namespaces and ip6tables (CI runs make test as root)")
    )
    func ipv6BehindStatefulFirewalls() throws {
        let runs = try Self.lab(["v6-v6", "cgnat-v6", "v6-v4-relay"])
        #expect(runs.count == 3)
        for (c, r) in runs.sorted(by: { $0.key < $1.key }) {
            #expect(r.ok, "case \(c) failed: \(r.fields)")
            #expect(r.fields["hashes_agree"] as? Bool == true, "case \(c): final hashes differ")
        }
        #expect(runs["v6-v6"]?.text("path") == "direct")
        #expect(runs["v6-v6"]?.text("family") == "ipv6")
        #expect(runs["v6-v6"]?.text("host_path") == "direct")
        // Nothing came in unasked: the host's firewall is seen as such.
        #expect(runs["v6-v6"]?.text("host_ipv6") == "firewalled")
        #expect(runs["cgnat-v6"]?.text("host_nat") == "random")
        #expect(runs["cgnat-v6"]?.text("join_nat") == "random")
        #expect(runs["cgnat-v6"]?.text("final_path") == "direct")
        #expect(runs["cgnat-v6"]?.text("family") == "ipv6")
        #expect(runs["v6-v4-relay"]?.text("path") == "relayed")
        #expect(runs["v6-v4-relay"]?.text("host_path") == "relayed")
    }

    /// libtorrent's Python binding (python3-libtorrent, `make deps`) is importable.
    static let libtorrent = (try? run("/usr/bin/python3", ["-c", "import libtorrent"], timeout: 30))?.status == 0

    /// Only third-party nodes (libtorrent) hold the lobby: they do not know turf's knock, so the
    /// joiner's knock takes the slow path (its announce on the knock info-hash, the host's poll),
    /// and two cone NATs still punch: directly at once, or, when the slow path took longer than
    /// the joiner's wait before it asks a relay (0.5 s), relayed first and then moved to the
    /// direct path by the re-punch.
    @Test(
        .enabled(if: getuid() == 0, "needs root: network namespaces and iptables (CI runs make test as root)"),
        .enabled(if: libtorrent, "needs python3-libtorrent (make deps)")
    )
    func slowPathWhenOnlyLibtorrentNodesHoldTheLobby() throws {
        let runs = try Self.lab(["lt-cone-cone"])
        let r = try #require(runs["lt-cone-cone"])
        #expect(r.ok, "\(r.fields)")
        #expect(r.fields["hashes_agree"] as? Bool == true)
        #expect(["direct", "relayed"].contains(r.text("path") ?? ""), "\(r.fields)")
        #expect(r.text("final_path") == "direct", "\(r.fields)")
        #expect(r.text("knock") == "slow")
    }

    /// Players relay for each other (docs/nat.md, "Players relay for each other"): a lab with no
    /// volunteer relay anywhere, and a third player (an open `turf host` on another topic) whose
    /// relay service came on: the random ↔ random pair, which cannot punch, plays through it.
    @Test(
        .enabled(if: getuid() == 0, "needs root: network namespaces and iptables (CI runs make test as root)")
    )
    func randomToRandomThroughAPlayerRelay() throws {
        let runs = try Self.lab(["random-random-player"], relay: false)
        let r = try #require(runs["random-random-player"])
        #expect(r.ok, "\(r.fields)")
        #expect(r.fields["hashes_agree"] as? Bool == true)
        #expect(r.text("path") == "relayed")
        #expect(r.text("host_path") == "relayed")
        // The third player's address (`pub`), not a volunteer's: there is none.
        #expect(r.text("relay")?.hasPrefix("203.0.113.50:") == true, "\(r.fields)")
    }

    /// Every router drops 20% of what it forwards: two cone NATs still punch, and the match's
    /// final hashes agree. The lab has no relay here (a slow punch would otherwise fall back to
    /// it): this is about punching.
    @Test(
        .enabled(if: getuid() == 0, "needs root: network namespaces and iptables (CI runs make test as root)")
    )
    func coneToConeUnderLoss() throws {
        let runs = try Self.lab(["cone-cone"], loss: "0.2", relay: false)
        let r = try #require(runs["cone-cone"])
        #expect(r.ok, "\(r.fields)")
        #expect(r.fields["hashes_agree"] as? Bool == true)
        #expect(r.text("path") == "direct")
    }
}
