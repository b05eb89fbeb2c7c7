import Determinism
import Foundation
import NetCore
import NetSim

/// Where `bench internet`'s hosts are and what their links do (docs/benchmarks.md, "bench
/// internet"): a region per public IP, a last-mile delay and loss per public IP, and the round
/// trip between regions. Every figure is a pure function of the seed and the two addresses, so a
/// run repeats exactly.
///
/// Sources, rounded (docs/benchmarks.md lists them): round trips between regions are the order
/// of WonderNetwork's public ping tables between major cities (wondernetwork.com/pings: within
/// Europe ≈ 25–40 ms, within North America ≈ 40–70 ms, transatlantic ≈ 80–110 ms, Europe–Asia
/// ≈ 200–250 ms, North America–Asia ≈ 150–200 ms); the last mile adds a median 5 ms each way on
/// fixed broadband (FCC Measuring Broadband America: idle latency of cable/fibre ≈ 10–25 ms round
/// trip) and 20 ms on mobile and carrier-grade NATs; loss per end 0.1–1 % (log-uniform).
package struct LinkModel: Sendable {
    package enum Region: Int, CaseIterable, Sendable {
        case northAmerica, europe, asia, southAmerica, oceania
    }

    /// Shares of hosts per region (assumed, close to where Mainline's nodes are reported to be).
    static let shares: [Double] = [0.25, 0.35, 0.30, 0.05, 0.05]
    /// Round trip in ms between regions.
    static let rttMs: [[Double]] = [
        [50, 95, 170, 140, 170],
        [95, 30, 230, 200, 280],
        [170, 230, 70, 300, 130],
        [140, 200, 300, 60, 300],
        [170, 280, 130, 300, 40],
    ]

    package let seed: UInt64

    package init(seed: UInt64) { self.seed = seed }

    @inline(__always) private func unit(_ key: UInt64, _ salt: UInt64) -> Double {
        Double(StableHash.of(seed, key, salt) >> 11) / Double(1 << 53)
    }

    package func region(_ a: PeerAddress) -> Region {
        let u = unit(a.with(port: 0).sourceKey, 0x1)
        var acc = 0.0
        for (i, s) in Self.shares.enumerated() {
            acc += s
            if u < acc { return Region(rawValue: i)! }
        }
        return .oceania
    }

    /// One-way last-mile delay in ms: log-normal, median 5 ms (fixed) or 20 ms (mobile), σ 0.6.
    package func access(_ a: PeerAddress) -> Double {
        let key = a.with(port: 0).sourceKey
        let u1 = max(1e-12, unit(key, 0x2))
        let u2 = unit(key, 0x3)
        let z = (-2 * log(u1)).squareRoot() * cos(2 * Double.pi * u2)
        let median = !a.isIPv6 && AddressPlan.isCGNATPublic(a.ip) ? 20.0 : 5.0
        return median * exp(0.6 * z)
    }

    /// Loss at one end: log-uniform in 0.1–1 %.
    package func loss(_ a: PeerAddress) -> Double { 0.001 * pow(10, unit(a.with(port: 0).sourceKey, 0x4)) }

    package func conditions(from s: PeerAddress, to d: PeerAddress) -> LinkConditions {
        // Within a home (a LAN): a millisecond, nothing lost.
        if s.isPrivate && d.isPrivate { return LinkConditions(latency: .milliseconds(1)) }
        let oneWay = Self.rttMs[region(s).rawValue][region(d).rawValue] / 2 + access(s) + access(d)
        let latency = Nanos(oneWay * 1e6)
        return LinkConditions(
            loss: loss(s) + loss(d),
            latency: latency,
            jitter: latency / 10
        )
    }
}

/// What is between a player and the internet (the mix is `InternetSimulation.Parameters.natMix`).
package enum PlayerNAT: String, Sendable, CaseIterable, Codable {
    /// A public address of its own.
    case open
    /// A home router with endpoint-independent mapping (half of them filter by endpoint,
    /// half let anyone in to a mapping: `SimNAT`).
    case consistent
    /// A home router that maps a new port per destination.
    case random
    /// A carrier's NAT shared with many subscribers, a new port per destination, no hairpinning.
    case cgnat
}

/// The address plan: plain DHT nodes on 11.0.0.0/8 (`PlainSwarm`), players' public IPs in
/// 198.18.0.0/15 (RFC 2544's benchmarking range), homes' LANs on 10.0.0.0/8, carrier-grade
/// subscribers on 100.64.0.0/10 (RFC 6598).
enum AddressPlan {
    static let port: UInt16 = 7000
    static func homePublic(_ home: Int) -> UInt32 { 0xC612_0000 &+ UInt32(home) &+ 1 }
    static func cgnatPublic(pool: Int, _ j: Int) -> UInt32 { 0xC613_0000 &+ UInt32(pool * 4 + j) &+ 1 }
    static func homeInside(_ home: Int, member: Int) -> PeerAddress {
        PeerAddress(ip: 0x0A00_0000 | UInt32(home & 0xFFFF) << 8 | UInt32(2 + member), port: port)
    }
    static func subscriber(_ n: Int) -> PeerAddress { PeerAddress(ip: 0x6440_0000 &+ UInt32(n) &+ 2, port: port) }
    static func isCGNATPublic(_ ip: UInt32) -> Bool { ip >> 16 == 0xC613 }
}
