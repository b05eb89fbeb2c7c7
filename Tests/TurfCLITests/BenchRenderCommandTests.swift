import Foundation
import Testing

/// `turf bench render`: the keys docs/benchmarks.md documents, at a few frames (no timing checked).
@Suite struct BenchRenderCommandTests {
    @Test func benchRenderPrintsDocumentedJSON() throws {
        for extra in [[], ["--no-color", "--ascii"]] {
            let o = try IdAndBenchCommandTests.json(["bench", "render", "--json", "--frames", "20"] + extra)
            #expect(o["benchmark"] as? String == "render")
            #expect((o["frames"] as? NSNumber)?.intValue == 20)
            #expect(o["color"] as? Bool == extra.isEmpty)
            #expect(o["map_80x24"] as? String == "Dojo")
            #expect(o["map_200x60"] as? String == "Warren")
            for size in ["80x24", "200x60"] {
                for key in ["frame_us_p50_", "frame_us_p99_", "frame_us_max_", "pty_bytes_per_frame_"] {
                    let v = try #require((o[key + size] as? NSNumber)?.doubleValue, "\(key + size) missing in \(o)")
                    #expect(v > 0, "\(key + size) = \(v)")
                }
            }
            let p99 = try #require((o["frame_us_p99"] as? NSNumber)?.doubleValue)
            #expect(
                p99
                    == max(
                        (o["frame_us_p99_80x24"] as? NSNumber)?.doubleValue ?? 0,
                        (o["frame_us_p99_200x60"] as? NSNumber)?.doubleValue ?? 0
                    )
            )
            #expect((o["target_frame_us_p99"] as? NSNumber)?.intValue == 2000)
            #expect(o["within_target"] is Bool)
        }
        let bad = try run(turfBinary, ["bench", "render", "--frames", "5"], timeout: 60)
        #expect(bad.status == 64 && bad.stderr.contains("10-1000000"), "\(bad.stderr)")
    }
}
