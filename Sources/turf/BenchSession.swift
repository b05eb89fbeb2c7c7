import ArgumentParser
import Foundation
import NIOCore
import NetCore
import NetPOSIX
import Transport

/// `turf bench session`: round trips over real loopback UDP, raw echo vs an encrypted session
/// echo, on the same two sockets in the same run.
struct BenchSession: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "session",
        abstract: "Encrypted session round trip vs raw UDP echo over loopback."
    )

    @Flag(help: "Print one JSON object.") var json = false
    @Option(
        help: Limits.sessionSize.help("Payload bytes per message.", default: 100),
        transform: Limits.sessionSize.parse
    )
    var size = 100
    @Option(
        help: Limits.sessionSamples.help("Round trips per round.", default: 2000),
        transform: Limits.sessionSamples.parse
    )
    var samples = 2000
    @Option(
        help: Limits.sessionRounds.help("Rounds, raw and session alternating.", default: 5),
        transform: Limits.sessionRounds.parse
    )
    var rounds = 5

    /// A first byte outside turf's packet types, used only by this benchmark's raw echo.
    static let rawEchoByte: UInt8 = 0x1F

    /// One side: a socket, and on its event loop the demultiplexer, the session manager and the
    /// session the other side opened.
    final class Side: Sendable {
        let host: UDPHost
        let state: NIOLoopBound<State>

        final class State {
            let demux: Demultiplexer
            let manager: SessionManager
            var inbound: Session?
            init(host: UDPHost) {
                demux = Demultiplexer(socket: host)
                manager = SessionManager(host: host, demux: demux, identity: .generate())
            }
        }

        init() throws {
            let h = try UDPHost.bind(PeerAddress(127, 0, 0, 1, port: 0))
            host = h
            state = try h.sync {
                let s = State(host: h)
                s.manager.onInbound = { s.inbound = $0 }
                return NIOLoopBound(s, eventLoop: h.eventLoop)
            }
        }
    }

    /// Runs `remaining` sequential round trips driven from `a`'s event loop, where all of it lives;
    /// RTTs in µs. Signals `done` when the last one is back.
    final class PingLoop {
        var rtts: [Double] = []
        var sentAt: UInt64 = 0
        var remaining = 0
        let done: DispatchSemaphore
        var send: () -> Void = {}

        init(done: DispatchSemaphore) { self.done = done }

        func received(now: UInt64) {
            rtts.append(Double(now - sentAt) / 1000)
            remaining -= 1
            if remaining == 0 { done.signal() } else { fire(now: now) }
        }

        func fire(now: UInt64) {
            sentAt = now
            send()
        }
    }

    func run() throws {
        let a = try Side()
        let b = try Side()
        defer {
            a.host.close()
            b.host.close()
        }
        let payload = (0..<size).map { UInt8(truncatingIfNeeded: $0) }
        let rawPacket = [BenchSession.rawEchoByte] + payload
        let bAddress = b.host.localAddress

        // Raw echo: b sends back what it gets; a times it.
        let rawDone = DispatchSemaphore(value: 0)
        try b.host.sync { b.state.value.demux.route([BenchSession.rawEchoByte]) { p, src in b.host.send(p, to: src) } }
        let rawLoop = try a.host.sync {
            let loop = PingLoop(done: rawDone)
            a.state.value.demux.route([BenchSession.rawEchoByte]) { _, _ in loop.received(now: a.host.now) }
            loop.send = { a.host.send(rawPacket, to: bAddress) }
            return NIOLoopBound(loop, eventLoop: a.host.eventLoop)
        }

        // Session echo over the unreliable channel.
        let s = try a.host.sync {
            NIOLoopBound(a.state.value.manager.connect(to: bAddress, mode: .discovered), eventLoop: a.host.eventLoop)
        }
        let deadline = Date().addingTimeInterval(10)
        func ready() throws -> Bool {
            try a.host.sync { s.value.isEstablished } && b.host.sync { b.state.value.inbound != nil }
        }
        while Date() < deadline, try !ready() { usleep(1000) }
        guard try ready() else { throw ValidationError("session did not establish") }
        let sessionDone = DispatchSemaphore(value: 0)
        try b.host.sync {
            guard let sb = b.state.value.inbound else { return }
            sb.unreliable.redundancy = 0
            sb.unreliable.onReceive = { try? sb.unreliable.send($0) }
        }
        let sessionLoop = try a.host.sync {
            let loop = PingLoop(done: sessionDone)
            let session = s.value
            session.unreliable.redundancy = 0
            session.unreliable.onReceive = { _ in loop.received(now: a.host.now) }
            loop.send = { try? session.unreliable.send(payload) }
            return NIOLoopBound(loop, eventLoop: a.host.eventLoop)
        }

        func measure(_ loop: NIOLoopBound<PingLoop>, _ done: DispatchSemaphore, _ n: Int) throws {
            try a.host.sync {
                loop.value.remaining = n
                loop.value.fire(now: a.host.now)
            }
            if done.wait(timeout: .now() + 30) == .timedOut { throw ValidationError("round trips stalled") }
        }
        func rtts(_ loop: NIOLoopBound<PingLoop>) throws -> [Double] { try a.host.sync { loop.value.rtts } }
        // Warm up both paths, then alternate rounds so drift hits both alike.
        try measure(rawLoop, rawDone, 200)
        try measure(sessionLoop, sessionDone, 200)
        try a.host.sync {
            rawLoop.value.rtts.removeAll()
            sessionLoop.value.rtts.removeAll()
        }
        for _ in 0..<rounds {
            try measure(rawLoop, rawDone, samples)
            try measure(sessionLoop, sessionDone, samples)
        }
        let rawRTTs = try rtts(rawLoop)
        let sessionRTTs = try rtts(sessionLoop)
        let raw50 = BenchSupport.percentile(rawRTTs, 0.5)
        let ses50 = BenchSupport.percentile(sessionRTTs, 0.5)
        let fields: [(String, Any)] = [
            ("benchmark", "session"), ("payload_bytes", size), ("round_trips", rawRTTs.count),
            ("raw_rtt_us_p50", raw50), ("session_rtt_us_p50", ses50), ("rtt_overhead_us_p50", ses50 - raw50),
            ("raw_rtt_us_p99", BenchSupport.percentile(rawRTTs, 0.99)),
            ("session_rtt_us_p99", BenchSupport.percentile(sessionRTTs, 0.99)),
        ]
        json ? BenchSupport.printJSON(fields) : BenchSupport.printText(fields)
    }
}
