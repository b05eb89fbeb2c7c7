import Foundation
import Testing

/// `turf bench input`: a real host and joiner on pseudo-terminals, a few key presses; the JSON
/// keys docs/benchmarks.md documents and that samples were taken (no timing checked).
@Suite struct BenchInputCommandTests {
    @Test func benchInputMeasuresKeyPressesOnBothScreens() throws {
        let o = try IdAndBenchCommandTests.json(["bench", "input", "--samples", "3", "--json"])
        #expect(o["benchmark"] as? String == "input")
        let samples = try #require((o["samples"] as? NSNumber)?.intValue, "\(o)")
        #expect(samples >= 1 && samples <= 3, "\(o)")
        for key in [
            "key_to_own_screen_ms_p50", "key_to_own_screen_ms_p99", "key_to_own_screen_ms_max",
            "key_to_peer_screen_ms_p50", "key_to_peer_screen_ms_p99", "key_to_peer_screen_ms_max",
        ] {
            let v = try #require((o[key] as? NSNumber)?.doubleValue, "\(key) missing in \(o)")
            #expect(v >= 0, "\(key) = \(v)")
        }
        #expect(((o["key_to_own_screen_ms_p50"] as? NSNumber)?.doubleValue ?? 0) > 0, "\(o)")
        #expect((o["peer_samples"] as? NSNumber)?.intValue ?? 0 >= 1, "\(o)")
        #expect((o["one_way_ms"] as? NSNumber)?.doubleValue == 0)
        #expect((o["columns"] as? NSNumber)?.intValue == 100 && (o["rows"] as? NSNumber)?.intValue == 32)
        // The terminal emulator understood everything curses sent.
        #expect((o["unhandled_escapes"] as? NSNumber)?.intValue == 0, "\(o)")
        let bad = try run(turfBinary, ["bench", "input", "--samples", "0"], timeout: 60)
        #expect(bad.status == 64 && bad.stderr.contains("1-10000"), "\(bad.stderr)")
    }
}
