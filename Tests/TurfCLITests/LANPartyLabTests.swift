import Foundation
import Testing

/// A LAN party with no internet (docs/nat.md, "LAN parties"; `scripts/natlab.sh lan-party`): two
/// network namespaces this test creates on one bridge (10.77.0.0/24), no DHT node anywhere, no
/// route out, no name server in reach. `turf host --topic T --headless` (the default bootstrap,
/// which cannot be resolved there) and `turf join --topic T --headless --bootstrap` at an address
/// where nothing answers meet by BEP 14 discovery and play a short match to equal final hashes
/// over the LAN. Needs root (CI runs `make test` as root); without it the test is skipped.
@Suite(.serialized) struct LANPartyLabTests {
    @Test(
        .enabled(if: getuid() == 0, "needs root: network namespaces (CI runs make test as root)")
    )
    func twoNamespacesWithNoDHTMeetByDiscoveryAndPlay() throws {
        let runs = try NATLabTests.lab(["lan-party"])
        let r = try #require(runs["lan-party"])
        #expect(r.ok, "\(r.fields)")
        #expect(r.fields["hashes_agree"] as? Bool == true)
        #expect(r.text("path") == "lan")
        #expect(r.text("host_path") == "lan")
        // Found on the LAN: the host's address on the bridge.
        #expect(r.text("lan_found")?.hasPrefix("10.77.0.2:") == true, "\(r.fields)")
        // No DHT: the host could not resolve its bootstrap nodes (a warning, not an error), and no
        // DHT node ever held its announcement.
        #expect(r.fields["host_dht_unreachable"] as? Bool == true)
        #expect(r.fields["host_announced"] as? Bool == false)
    }
}
