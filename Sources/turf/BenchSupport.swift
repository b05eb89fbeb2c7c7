import Foundation
import NetCore
import TextOutput

/// Shared helpers for `turf bench` commands.
enum BenchSupport {
    /// Monotonic nanoseconds.
    static func nanos() -> UInt64 { monotonicNanos() }

    /// Process CPU time in nanoseconds.
    static func cpuNanos() -> UInt64 {
        var ts = timespec()
        clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts)
        return UInt64(ts.tv_sec) * 1_000_000_000 + UInt64(ts.tv_nsec)
    }

    static func median(_ xs: [Double]) -> Double {
        guard !xs.isEmpty else { return 0 }
        let s = xs.sorted()
        return s.count % 2 == 1 ? s[s.count / 2] : (s[s.count / 2 - 1] + s[s.count / 2]) / 2
    }

    static func percentile(_ xs: [Double], _ p: Double) -> Double {
        guard !xs.isEmpty else { return 0 }
        let s = xs.sorted()
        return s[min(s.count - 1, Int(Double(s.count - 1) * p + 0.5))]
    }

    /// Prints one JSON object with keys in the given order (through the one JSON writer).
    static func printJSON(_ fields: [(String, Any)]) {
        var j = JSONObject()
        for (key, value) in fields {
            switch value {
            case let d as Double: j.add(key, d, digits: 4)
            case let b as Bool: j.add(key, b)
            case let s as String: j.add(key, s)
            case let i as Int: j.add(key, i)
            case let u as UInt64: j.add(key, u)
            default: j.add(key, "\(value)")
            }
        }
        print(j.text)
    }

    static func printText(_ fields: [(String, Any)]) {
        for (k, v) in fields { print("\(k): \(v)") }
    }
}
