#if canImport(Glibc)
    import Glibc
#elseif canImport(Darwin)
    import Darwin
#endif

/// A file descriptor a thread can `poll` on together with others (a terminal's stdin): readable
/// after `signal()`, until `clear()`. A pipe, both ends nonblocking and close-on-exec; its posters
/// write one byte only when there was nothing to take (`NetworkMailbox`), so it never fills, and
/// a write to a full pipe would fail at once rather than block.
public final class WakeSignal: Sendable {
    /// The end to poll for reading.
    public let fd: Int32
    private let writeFD: Int32

    public init() {
        var ends: [Int32] = [0, 0]
        precondition(pipe(&ends) == 0, "pipe failed (errno \(errno))")
        for e in ends {
            _ = fcntl(e, F_SETFL, fcntl(e, F_GETFL) | O_NONBLOCK)
            _ = fcntl(e, F_SETFD, FD_CLOEXEC)
        }
        fd = ends[0]
        writeFD = ends[1]
    }

    deinit {
        close(fd)
        close(writeFD)
    }

    /// Makes `fd` readable (from any thread; never blocks: a full pipe is readable already).
    public func signal() {
        var one: UInt8 = 1
        _ = write(writeFD, &one, 1)
    }

    /// Makes `fd` unreadable again (from the thread that polls it), taking every signal so far.
    public func clear() {
        var buf = [UInt8](repeating: 0, count: 64)
        while buf.withUnsafeMutableBytes({ read(fd, $0.baseAddress, $0.count) }) > 0 {}
    }

    /// Whether `fd` is readable now (a signal not yet cleared).
    public var isSignalled: Bool { FDWait.poll([fd], timeoutNanos: 0).ready.first ?? false }

}

/// `poll(2)` on a few descriptors for reading, with a timeout in nanoseconds (rounded up to whole
/// ms, so a wait never ends before its deadline). EINTR counts as a timeout (the caller looks at
/// its clock and waits again).
public enum FDWait {
    public struct Result: Equatable, Sendable {
        /// Per descriptor, in the order given: data to read.
        public var ready: [Bool]
        /// Per descriptor: hung up, in error or not open (`POLLHUP`, `POLLERR`, `POLLNVAL`): poll
        /// would return at once for it forever, so a caller stops watching it.
        public var gone: [Bool]
    }

    public static func poll(_ fds: [Int32], timeoutNanos: UInt64) -> Result {
        var p = fds.map { pollfd(fd: $0, events: Int16(POLLIN), revents: 0) }
        let ms = Int32(min(UInt64(Int32.max), (timeoutNanos + 999_999) / 1_000_000))
        let n = p.withUnsafeMutableBufferPointer { b in
            #if os(Linux)
                Glibc.poll(b.baseAddress, nfds_t(b.count), ms)
            #else
                Darwin.poll(b.baseAddress, nfds_t(b.count), ms)
            #endif
        }
        guard n > 0 else { return Result(ready: fds.map { _ in false }, gone: fds.map { _ in false }) }
        let bad = Int16(POLLHUP) | Int16(POLLERR) | Int16(POLLNVAL)
        return Result(
            ready: p.map { $0.revents & Int16(POLLIN) != 0 },
            gone: p.map { $0.revents & bad != 0 }
        )
    }
}
