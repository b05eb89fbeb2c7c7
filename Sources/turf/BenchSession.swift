import ArgumentParser
import Foundation
import NetCore
import Transport

/// `turf bench session`: round trips over real loopback UDP, raw echo vs an encrypted session
/// echo, on the same two sockets in the same run.
struct BenchSession: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "session", abstract: "Encrypted session round trip vs raw UDP echo over loopback.")

    @Flag(help: "Print one JSON object.") var json = false
    @Option(help: Limits.sessionSize.help("Payload bytes per message.", default: 100), transform: Limits.sessionSize.parse)
    var size = 100
    @Option(help: Limits.sessionSamples.help("Round trips per round.", default: 2000), transform: Limits.sessionSamples.parse)
    var samples = 2000
    @Option(help: Limits.sessionRounds.help("Rounds, raw and session alternating.", default: 5), transform: Limits.sessionRounds.parse)
    var rounds = 5

    /// A first byte outside turf's packet types, used only by this benchmark's raw echo.
    static let rawEchoByte: UInt8 = 0x1F

    final class Side {
        let host: UDPHost
        var demux: Demultiplexer!
        var manager: SessionManager!
        var inbound: Session?
        init() throws {
            host = try UDPHost.bind(PeerAddress(127, 0, 0, 1, port: 0))
            try host.sync {
                self.demux = Demultiplexer(socket: self.host)
                self.manager = SessionManager(host: self.host, demux: self.demux, identity: .generate())
                self.manager.onInbound = { self.inbound = $0 }
            }
        }
    }

    /// Runs `count` sequential round trips driven from `a`'s event loop; returns RTTs in µs.
    final class PingLoop {
        var rtts: [Double] = []
        var sentAt: UInt64 = 0
        var remaining = 0
        let done = DispatchSemaphore(value: 0)
        var send: () -> Void = {}

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
        let a = try Side(), b = try Side()
        defer { a.host.close(); b.host.close() }
        let payload = (0..<size).map { UInt8(truncatingIfNeeded: $0) }
        let rawPacket = [BenchSession.rawEchoByte] + payload

        // Raw echo: b sends back what it gets; a times it.
        let rawLoop = PingLoop()
        try b.host.sync { b.demux.route([BenchSession.rawEchoByte]) { p, src in b.host.send(p, to: src) } }
        try a.host.sync {
            a.demux.route([BenchSession.rawEchoByte]) { _, _ in rawLoop.received(now: a.host.now) }
            rawLoop.send = { a.host.send(rawPacket, to: b.host.localAddress) }
        }

        // Session echo over the unreliable channel.
        let s = try a.host.sync { a.manager.connect(to: b.host.localAddress, mode: .discovered) }
        let deadline = Date().addingTimeInterval(10)
        func ready() throws -> Bool { try a.host.sync { s.isEstablished } && b.host.sync { b.inbound != nil } }
        while Date() < deadline, try !ready() { usleep(1000) }
        guard try a.host.sync({ s.isEstablished }), let sb = try b.host.sync({ b.inbound }) else {
            throw ValidationError("session did not establish")
        }
        let sessionLoop = PingLoop()
        try b.host.sync {
            sb.unreliable.redundancy = 0
            sb.unreliable.onReceive = { try? sb.unreliable.send($0) }
        }
        try a.host.sync {
            s.unreliable.redundancy = 0
            s.unreliable.onReceive = { _ in sessionLoop.received(now: a.host.now) }
            sessionLoop.send = { try? s.unreliable.send(payload) }
        }

        func measure(_ loop: PingLoop, _ n: Int) throws {
            loop.remaining = n
            try a.host.sync { loop.fire(now: a.host.now) }
            if loop.done.wait(timeout: .now() + 30) == .timedOut { throw ValidationError("round trips stalled") }
        }
        // Warm up both paths, then alternate rounds so drift hits both alike.
        try measure(rawLoop, 200); try measure(sessionLoop, 200)
        rawLoop.rtts.removeAll(); sessionLoop.rtts.removeAll()
        for _ in 0..<rounds {
            try measure(rawLoop, samples)
            try measure(sessionLoop, samples)
        }
        let raw50 = BenchSupport.percentile(rawLoop.rtts, 0.5), ses50 = BenchSupport.percentile(sessionLoop.rtts, 0.5)
        let fields: [(String, Any)] = [
            ("benchmark", "session"), ("payload_bytes", size), ("round_trips", rawLoop.rtts.count),
            ("raw_rtt_us_p50", raw50), ("session_rtt_us_p50", ses50), ("rtt_overhead_us_p50", ses50 - raw50),
            ("raw_rtt_us_p99", BenchSupport.percentile(rawLoop.rtts, 0.99)),
            ("session_rtt_us_p99", BenchSupport.percentile(sessionLoop.rtts, 0.99)),
        ]
        json ? BenchSupport.printJSON(fields) : BenchSupport.printText(fields)
    }
}
