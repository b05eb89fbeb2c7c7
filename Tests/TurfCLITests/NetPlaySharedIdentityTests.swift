import Foundation
import Testing

/// Two `turf` processes on one machine sharing one XDG_CONFIG_HOME (two terminals, no setup): the
/// first holds the stored identity, the second plays as a guest key, and the match is a real
/// two-player match that converges.
@Suite(.serialized) struct NetPlaySharedIdentityTests {
    @Test func twoPeersSharingOneIdentityPlayAsTwoKeys() throws {
        let lab = try NetPlayTests.Lab()
        let topic = "shared-\(UUID().uuidString.prefix(8))"
        let host = try lab.start("alice", ["host", "--topic", topic, "--seconds", "5", "--start-when", "2"])
        let lobby = try #require(lab.waitForEvent("alice", "lobby"), "the host did not open its lobby")
        // Bob's output is his own file; his XDG directories are Alice's.
        let shared = lab.env("alice").filter { $0.key.hasPrefix("XDG_") }
        let join = try lab.start("bob", ["join", "--topic", topic], extraEnv: shared)
        #expect(lab.wait(host) == 0, "host: \(lab.events("alice"))")
        #expect(lab.wait(join) == 0, "joiner: \(lab.events("bob"))")
        let joined = try #require(lab.event("bob", "joined"), "bob never joined: \(lab.events("bob"))")
        let hostKey = try #require(lobby["key"] as? String)
        #expect(joined["host"] as? String == hostKey)
        #expect(joined["key"] as? String != hostKey, "both processes played as one key")
        #expect(lab.event("bob", "start")?["players"] as? Int == 2)
        var hashes = Set<String>()
        for p in ["alice", "bob"] {
            let end = try #require(lab.event(p, "end"), "\(p) printed no end event: \(lab.events(p))")
            #expect(end["converged"] as? Bool == true, "\(p): \(end)")
            let hash = try #require(end["final_hash"] as? String)
            hashes.insert(hash)
            let replay = try #require(end["replay"] as? String)
            let v = try run(turfBinary, ["replay", "--headless", replay])
            #expect(v.status == 0 && v.stdout.contains("\"final_hash\":\"\(hash)\""), "\(p): \(v.stdout) \(v.stderr)")
        }
        #expect(hashes.count == 1, "final hashes differ: \(hashes)")
    }
}
