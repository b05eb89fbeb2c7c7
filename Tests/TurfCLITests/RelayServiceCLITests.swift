import Foundation
import Testing

/// Relaying for others while turf runs (docs/nat.md, "Players relay for each other") can be
/// turned off: `--no-relay-service`, or `relay_service = off` in dht.conf. Each host says so once
/// (`relay_service` off, `opted_out`), never turns it on, and its `end` event says it too.
@Suite struct RelayServiceCLITests {
    @Test func theRelayServiceCanBeTurnedOff() throws {
        let party = try LANPartyCLITests.Party()
        let flag = try party.start(
            "flag",
            ["host", "--topic", "relay-off-a", "--seconds", "5", "--start-when", "1", "--no-relay-service"]
        )
        let confDir = party.dir.appendingPathComponent("conf/config/turf")
        try FileManager.default.createDirectory(at: confDir, withIntermediateDirectories: true)
        try Data("relay_service = off\nrelay_kib_per_second = 8\n".utf8).write(
            to: confDir.appendingPathComponent("dht.conf")
        )
        let conf = try party.start("conf", ["host", "--topic", "relay-off-b", "--seconds", "5", "--start-when", "1"])
        for (pid, peer, by) in [(flag, "flag", "flag"), (conf, "conf", "config")] {
            #expect(party.wait(pid) == 0, "\(peer): \(party.events(peer))")
            let said = party.events(peer, "relay_service")
            #expect(said.count == 1, "\(peer): \(said)")
            #expect(said.first?["status"] as? String == "off")
            #expect(said.first?["reason"] as? String == "opted_out")
            #expect(said.first?["by"] as? String == by)
            let end = try #require(party.events(peer, "end").last, "\(peer): \(party.events(peer))")
            let service = try #require(end["relay_service"] as? [String: Any], "\(end)")
            #expect(service["status"] as? String == "off")
            #expect(service["opted_out"] as? String == by)
            #expect(service["channels_opened"] as? Int == 0)
            #expect(service["kib_per_second"] as? Int == (by == "config" ? 8 : 64))
        }
    }
}
