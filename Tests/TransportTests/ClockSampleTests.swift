import NetCore
import NetSim
import Testing

@testable import Transport

/// Pings carry timestamps (T1..T4 of shared/reference/netcode.md); their pongs give clock samples.
@Suite struct ClockSampleTests {
    /// The formulas on numbers worked by hand: the peer's clock 1,000 ahead, 30 out and 10 back,
    /// 2 spent between ping and pong.
    @Test func sampleFromFourTimes() throws {
        let s = try #require(ClockSample(t1: 100, t2: 1_130, t3: 1_132, t4: 142))
        #expect(s.offset == 1_010)  // 1,000 plus half of the 20 the directions differ by
        #expect(s.delay == 40)
        #expect(s.at == 142)
        // The peer's clock far behind ours: differences wrap, the offset comes out negative.
        let behind = try #require(ClockSample(t1: 5_000, t2: 30, t3: 30, t4: 5_020))
        #expect(behind.offset == -4_980)
        #expect(behind.delay == 20)
        // Times that cannot be right give no sample.
        #expect(ClockSample(t1: 100, t2: 1_130, t3: 1_129, t4: 142) == nil)  // pong before ping
        #expect(ClockSample(t1: 100, t2: 1_000, t3: 1_100, t4: 142) == nil)  // peer took longer than the round trip
    }

    /// Two peers whose clocks differ by 5 s, on a link 30 ms one way and 10 ms the other (no
    /// jitter, virtual time): every sample reads the offset plus half the asymmetry, and the delay
    /// is the round trip, exactly, on both sides.
    @Test func samplesOnAnAsymmetricLink() throws {
        let net = SimNetwork(seed: 301, conditions: .perfect)
        let a = SimPeer(net, ip: 1)
        let b = SimPeer(net, ip: 2, clockOffset: .seconds(5))
        net.setConditions(LinkConditions(latency: .milliseconds(30)), from: a.address.ip, to: b.address.ip)
        net.setConditions(LinkConditions(latency: .milliseconds(10)), from: b.address.ip, to: a.address.ip)
        let sa = a.manager.connect(to: b.address, mode: .discovered)
        #expect(runUntil(net, seconds: 10) { sa.isEstablished && b.inbound.first?.isEstablished == true })
        let sb = try #require(b.inbound.first)
        var reported: [ClockSample] = []
        sa.onClockSample = { reported.append($0) }
        _ = net.run(for: .seconds(5))
        sa.ping()
        _ = net.run(for: .milliseconds(100))

        let fromA = sa.clockSamples
        let fromB = sb.clockSamples
        #expect(fromA.count >= 5)
        #expect(fromB.count >= 4)
        #expect(reported == Array(fromA.suffix(reported.count)))
        #expect(reported.count >= 6)  // the keepalive's five, and the extra ping's
        let offset = Int64(Nanos.seconds(5))
        let skew = Int64(Nanos.milliseconds(10))
        for s in fromA {
            #expect(s.offset == offset + skew)
            #expect(s.delay == .milliseconds(40))
        }
        for s in fromB {
            #expect(s.offset == -offset - skew)
            #expect(s.delay == .milliseconds(40))
        }
        // The RTT metric is unchanged by the timestamps: the round trip.
        #expect(sa.metrics.smoothedRTT == .milliseconds(40))
    }

    /// A pong whose echo is not the ping's time, or whose times cannot be right, gives no sample
    /// and is counted as malformed; one for a ping never sent is ignored.
    @Test func badPongsAreDropped() throws {
        var state = PingState()
        guard case .ping(let id, let sent) = state.ping(now: 1_000) else {
            Issue.record("not a ping")
            return
        }
        #expect(sent == 1_000)
        guard case .unknown = state.pong(id: id &+ 1, echo: 1_000, received: 5, sent: 5, now: 1_040) else {
            Issue.record("a pong for an unknown ping")
            return
        }
        guard case .malformed = state.pong(id: id, echo: 999, received: 5, sent: 5, now: 1_040) else {
            Issue.record("a wrong echo")
            return
        }
        #expect(state.samples.isEmpty)
        guard case .ping(let id2, _) = state.ping(now: 2_000),
            case .sample(let s, let rtt) = state.pong(id: id2, echo: 2_000, received: 7, sent: 9, now: 2_050)
        else {
            Issue.record("a good pong")
            return
        }
        #expect(rtt == 50)
        #expect(s.delay == 48)
        #expect(state.samples == [s])
    }
}
