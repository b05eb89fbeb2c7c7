import Foundation

#if canImport(Glibc)
    import Glibc
#endif

/// Monotonic nanoseconds: the shell's one clock, passed into the engine as a number.
func monotonicNanos() -> UInt64 {
    var ts = timespec()
    clock_gettime(CLOCK_MONOTONIC, &ts)
    return UInt64(ts.tv_sec) * 1_000_000_000 + UInt64(ts.tv_nsec)
}
