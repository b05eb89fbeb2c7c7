#if canImport(Glibc)
    import Glibc
#elseif canImport(Darwin)
    import Darwin
#endif

/// Nanoseconds on the system's monotonic clock (CLOCK_MONOTONIC): the one real clock of turf's
/// network and shell. `UDPHost.now`, the match loop's ticks, the mailbox's datagram timestamps and
/// every deadline the command polls read it, so their readings compare. The engine never reads a
/// clock: it is handed these numbers. (Simulations use `SimNetwork`'s virtual time instead.)
public func monotonicNanos() -> Nanos {
    var ts = timespec()
    clock_gettime(CLOCK_MONOTONIC, &ts)
    return Nanos(ts.tv_sec) * 1_000_000_000 + Nanos(ts.tv_nsec)
}
