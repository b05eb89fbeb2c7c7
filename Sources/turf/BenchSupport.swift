import Foundation

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

    /// Prints one JSON object with keys in the given order.
    static func printJSON(_ fields: [(String, Any)]) {
        let body = fields.map { key, value -> String in
            let v: String
            switch value {
            case let d as Double: v = d.isFinite ? String(format: "%.4g", d) : "null"
            case let b as Bool: v = b ? "true" : "false"
            case let s as String: v = "\"\(s)\""
            default: v = "\(value)"
            }
            return "  \"\(key)\": \(v)"
        }
        print("{\n" + body.joined(separator: ",\n") + "\n}")
    }

    static func printText(_ fields: [(String, Any)]) {
        for (k, v) in fields { print("\(k): \(v)") }
    }
}
