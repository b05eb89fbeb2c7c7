import Foundation
import NIOCore
import NIOPosix
import NetCore
import Testing

@testable import NetPOSIX

/// Real UDP on 127.0.0.1 only.
@Suite(.serialized) struct UDPHostTests {
    /// Waits (bounded) on a condition checked on the host's event loop.
    func wait(_ host: UDPHost, timeout: Double = 5, _ cond: @escaping @Sendable () -> Bool) throws -> Bool {
        let deadline = Date().addingTimeInterval(timeout)
        while Date() < deadline {
            if try host.sync(cond) { return true }
            usleep(2_000)
        }
        return false
    }

    /// A value that lives on `host`'s event loop, for the callbacks there to write and `sync` to read.
    func onLoop<T>(_ host: UDPHost, _ value: sending T) -> NIOLoopBoundBox<T> {
        .makeBoxSendingValue(value, eventLoop: host.eventLoop)
    }

    /// Without SO_REUSEADDR nobody else can bind our port and take our traffic; our own port is
    /// free again as soon as we close it.
    @Test func aBoundPortCannotBeSharedButIsFreeAfterClose() throws {
        let a = try UDPHost.bind(PeerAddress(127, 0, 0, 1, port: 0))
        let port = a.localAddress.port
        #expect(throws: (any Error).self, "a second socket on the same port") {
            let b = try UDPHost.bind(PeerAddress(127, 0, 0, 1, port: port))
            b.close()
        }
        a.close()
        let again = try UDPHost.bind(PeerAddress(127, 0, 0, 1, port: port))
        again.close()
    }

    /// A process started while the socket is open does not inherit it (close-on-exec), so our
    /// port is free again when we close it, even while that process runs.
    @Test func aChildProcessDoesNotKeepThePort() throws {
        let a = try bindBelowEphemeralRange()
        let port = a.localAddress.port
        var pid: pid_t = 0
        let argv: [UnsafeMutablePointer<CChar>?] = [strdup("/bin/sleep"), strdup("30"), nil]
        defer { argv.forEach { free($0) } }
        #expect(posix_spawn(&pid, "/bin/sleep", nil, nil, argv, nil) == 0)  // an empty environment
        defer {
            kill(pid, SIGKILL)
            var st: Int32 = 0
            waitpid(pid, &st, 0)
        }
        a.close()
        let again = try UDPHost.bind(PeerAddress(127, 0, 0, 1, port: port))
        again.close()
    }

    /// The channel dying under the host: it rebinds the same port (without SO_REUSEADDR) and
    /// keeps receiving.
    @Test func aDeadChannelIsReboundOnTheSamePort() throws {
        let a = try bindBelowEphemeralRange()
        defer { a.close() }
        let b = try UDPHost.bind(PeerAddress(127, 0, 0, 1, port: 0))
        defer { b.close() }
        let got = onLoop(a, 0)
        try a.sync { a.onReceive = { _, _ in got.value += 1 } }
        try a.sync { a.channel.close(promise: nil) }
        #expect(try wait(a) { a.stats.rebinds == 1 }, "no rebind")
        #expect(try a.sync { a.stats.rebindFailures } == 0)
        b.send([0x01], to: a.localAddress)
        #expect(try wait(a) { got.value == 1 })
    }

    @Test func loopbackExchange() throws {
        let a = try UDPHost.bind(PeerAddress(127, 0, 0, 1, port: 0))
        defer { a.close() }
        let b = try UDPHost.bind(PeerAddress(127, 0, 0, 1, port: 0))
        defer { b.close() }
        #expect(a.localAddress.port != 0 && a.localAddress.isLoopback)
        let got = onLoop(b, [([UInt8], PeerAddress)]())
        try b.sync { b.onReceive = { got.value.append(($0, $1)) } }
        for i in 0..<10 { a.send([0x01, UInt8(i)], to: b.localAddress) }
        #expect(try wait(b) { got.value.count == 10 })
        let received = try b.sync { got.value.map { Received(bytes: $0.0, source: $0.1) } }
        #expect(Set(received.map { $0.bytes[1] }) == Set(0..<10))
        #expect(received.allSatisfy { $0.source == a.localAddress })
    }

    /// A dual-stack socket (`[::]`) talks to an IPv6 peer on ::1 and an IPv4 peer on 127.0.0.1, and
    /// names the IPv4 one by its plain IPv4 address (not `::ffff:127.0.0.1`); an IPv4-only
    /// socket drops a send to IPv6 and counts it.
    @Test func dualStackSocketSpeaksBothFamilies() throws {
        let dual = try UDPHost.bind(.anyDualStack(port: 0))
        defer { dual.close() }
        #expect(dual.isDualStack && dual.localAddress.port != 0)
        let v6 = try UDPHost.bind(PeerAddress(ip6: .loopback, port: 0))
        defer { v6.close() }
        let v4 = try UDPHost.bind(PeerAddress(127, 0, 0, 1, port: 0))
        defer { v4.close() }
        let got = onLoop(dual, [Received]())
        try dual.sync { dual.onReceive = { got.value.append(Received(bytes: $0, source: $1)) } }
        v6.send([6], to: PeerAddress(ip6: .loopback, port: dual.localAddress.port))
        v4.send([4], to: PeerAddress(127, 0, 0, 1, port: dual.localAddress.port))
        #expect(try wait(dual) { got.value.count == 2 })
        let sources = try dual.sync { Dictionary(uniqueKeysWithValues: got.value.map { ($0.bytes[0], $0.source) }) }
        #expect(sources[6] == v6.localAddress)
        #expect(sources[4] == v4.localAddress)
        // And back, to each family from the one socket.
        let back6 = onLoop(v6, 0)
        let back4 = onLoop(v4, 0)
        try v6.sync { v6.onReceive = { _, _ in back6.value += 1 } }
        try v4.sync { v4.onReceive = { _, _ in back4.value += 1 } }
        dual.send([1], to: v6.localAddress)
        dual.send([1], to: v4.localAddress)
        #expect(try wait(v6) { back6.value == 1 })
        #expect(try wait(v4) { back4.value == 1 })
        v4.send([1], to: v6.localAddress)
        #expect(try wait(v4) { v4.stats.unreachableFamily == 1 })
    }

    /// Sending to a closed port brings back ICMP port unreachable. The unconnected socket never
    /// hears of it (no IP_RECVERR), so the channel is never torn down: every datagram sent to it
    /// meanwhile arrives, and no rebind happens.
    @Test func refusedSendsDoNotStopReceiving() throws {
        let a = try UDPHost.bind(PeerAddress(127, 0, 0, 1, port: 0))
        defer { a.close() }
        let closed = try UDPHost.bind(PeerAddress(127, 0, 0, 1, port: 0))
        let deadPort = closed.localAddress
        closed.close()
        let b = try UDPHost.bind(PeerAddress(127, 0, 0, 1, port: 0))
        defer { b.close() }
        let got = onLoop(a, 0)
        try a.sync { a.onReceive = { _, _ in got.value += 1 } }
        // Interleave sends to the dead port with datagrams arriving from a live peer.
        for i in 0..<200 {
            a.send([1, 2, 3], to: deadPort)
            if i % 4 == 0 { b.send([9], to: a.localAddress) }
        }
        #expect(try wait(a) { a.stats.sent == 200 })
        #expect(try wait(a) { got.value == 50 })
        // One more datagram after everything: once it is in, the refusals before it were handled.
        b.send([8], to: a.localAddress)
        #expect(try wait(a) { got.value == 51 })
        let s = try a.sync { a.stats }
        #expect(s.rebinds == 0 && s.rebindFailures == 0, "\(s)")
        #expect(try a.sync { got.value } == 51)
        #expect(try a.sync { a.isActive })
    }

    @Test func timersFireOnTheLoopAndCancel() throws {
        let h = try UDPHost.bind(PeerAddress(127, 0, 0, 1, port: 0))
        defer { h.close() }
        let fired = onLoop(h, [Int]())
        let start = h.now
        let firedAt = onLoop(h, Nanos(0))
        try h.sync {
            h.schedule(after: .milliseconds(5)) {
                fired.value.append(1)
                firedAt.value = h.now
            }
            let t = h.schedule(after: .milliseconds(5)) { fired.value.append(2) }
            t.cancel()
        }
        #expect(try wait(h) { fired.value == [1] })
        // A timer due after the cancelled one fires: had the cancelled one not been, it would
        // have fired first.
        try h.sync { _ = h.schedule(after: .milliseconds(20)) { fired.value.append(3) } }
        #expect(try wait(h) { fired.value.count >= 2 })
        #expect(try h.sync { fired.value } == [1, 3])
        #expect(try h.sync { firedAt.value } - start >= Nanos.milliseconds(5))
    }

    @Test func oversizedSendIsDroppedAndCounted() throws {
        let h = try UDPHost.bind(PeerAddress(127, 0, 0, 1, port: 0))
        defer { h.close() }
        try h.sync { h.send([UInt8](repeating: 0, count: 5000), to: h.localAddress) }
        #expect(try h.sync { h.stats.oversizedSends } == 1)
    }

    /// The demultiplexer on a real socket: KRPC-looking datagrams go one way, turf's another,
    /// unknown first bytes are counted as dropped.
    @Test func demultiplexerOnRealSocket() throws {
        let a = try UDPHost.bind(PeerAddress(127, 0, 0, 1, port: 0))
        defer { a.close() }
        let b = try UDPHost.bind(PeerAddress(127, 0, 0, 1, port: 0))
        defer { b.close() }
        let krpc = onLoop(b, 0)
        let turf = onLoop(b, 0)
        let demux = try b.sync { () -> NIOLoopBound<Demultiplexer> in
            let d = Demultiplexer(socket: b)
            d.route([Demultiplexer.krpcFirstByte]) { _, _ in krpc.value += 1 }
            d.route(0x01...0x05) { _, _ in turf.value += 1 }
            return NIOLoopBound(d, eventLoop: b.eventLoop)
        }
        a.send(Array("d1:y1:qe".utf8), to: b.localAddress)
        a.send([0x02, 0, 0], to: b.localAddress)
        a.send([0xFF], to: b.localAddress)
        a.send([], to: b.localAddress)
        #expect(try wait(b) { krpc.value == 1 && turf.value == 1 && demux.value.dropped == 2 })
    }
}

/// One datagram a test received: what and from where.
struct Received: Sendable {
    var bytes: [UInt8]
    var source: PeerAddress
}

/// A host on a port below the kernel's ephemeral range (32768 and up here), for tests that close
/// or lose a socket and bind its port again: no other test's port-0 bind, running in parallel,
/// can take the port in between.
private func bindBelowEphemeralRange() throws -> UDPHost {
    for _ in 0..<50 {
        if let h = try? UDPHost.bind(PeerAddress(127, 0, 0, 1, port: UInt16.random(in: 20_000..<30_000))) { return h }
    }
    throw UDPHostTestError.noFreePort
}

private enum UDPHostTestError: Error { case noFreePort }
