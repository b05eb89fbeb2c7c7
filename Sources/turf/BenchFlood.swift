import ArgumentParser
import Foundation
import NetCore
import NetSim
import Noise
import Sodium
import Transport

/// `turf bench flood`: 100,000 handshake initiations from one source against a responder on the
/// simulated network, while a legitimate peer connects. Reports the responder's CPU time (real,
/// measured around its receive path) and how much expensive work the flood caused.
struct BenchFlood: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "flood",
        abstract: "Handshake flood from one source: responder CPU and whether a peer still connects."
    )

    @Flag(help: "Print one JSON object.") var json = false
    @Option(
        help: Limits.initiations.help("Initiations sent by the attacker.", default: 100000),
        transform: Limits.initiations.parse
    )
    var initiations = 100_000
    @Option(
        help: Limits.floodSeconds.help("Virtual seconds the flood lasts.", default: 10),
        transform: Limits.floodSeconds.parse
    )
    var seconds = 10
    @Option(
        help: Limits.distinct.help("Distinct valid initiations the attacker cycles through.", default: 256),
        transform: Limits.distinct.parse
    )
    var distinct = 256

    func run() throws {
        let net = SimNetwork(seed: 42, conditions: LinkConditions(latency: .milliseconds(5)))
        let rSock = net.bind(PeerAddress(10, 0, 0, 1, port: 4000))
        let rDemux = Demultiplexer(socket: rSock)
        let responder = SessionManager(host: rSock, demux: rDemux, identity: .generate())
        // Time the responder's whole receive path, including the demultiplexer.
        var responderCPU: UInt64 = 0
        let inner = rSock.onReceive!  // `!`: the demultiplexer set it when made, above
        rSock.onReceive = { p, s in
            let t = BenchSupport.cpuNanos()
            inner(p, s)
            responderCPU += BenchSupport.cpuNanos() - t
        }
        let lSock = net.bind(PeerAddress(10, 0, 0, 2, port: 4000))
        let lDemux = Demultiplexer(socket: lSock)
        let legit = SessionManager(host: lSock, demux: lDemux, identity: .generate())

        let attacker = net.bind(PeerAddress(10, 0, 0, 66, port: 666))
        var attackerGot = 0
        attacker.onReceive = { p, _ in attackerGot += p.count }
        let proto = try NoiseProtocol(name: HandshakeKind.xx.noiseName)
        var templates: [[UInt8]] = []
        for i in 0..<distinct {
            var hs = try HandshakeState(
                protocol: proto,
                initiator: true,
                prologue: Wire.noisePrologue,
                localStatic: X25519.KeyPair.generate()
            )
            templates.append(
                HandshakeMACs.seal(
                    HandshakeInitiation(kind: .xx, senderIndex: UInt32(i + 1), noiseMessage: try hs.writeMessage())
                        .encode()
                )
            )
        }
        var sent = 0
        let interval = Nanos.seconds(seconds) / Nanos(initiations)
        func sendNext() {
            attacker.send(templates[sent % templates.count], to: rSock.localAddress)
            sent += 1
            if sent < initiations { net.schedule(after: interval, sendNext) }
        }
        net.schedule(after: 0, sendNext)
        var session: Session?
        var connectStart: Nanos = 0
        var connectedAt: Nanos?
        net.schedule(after: .seconds(max(1, seconds / 5))) {
            connectStart = net.now
            let s = legit.connect(to: rSock.localAddress, mode: .discovered)
            s.onStateChange = { if $0 == .established { connectedAt = net.now } }
            session = s
        }
        _ = net.run(for: .seconds(seconds) + .seconds(5))
        let st = responder.stats
        let fields: [(String, Any)] = [
            ("benchmark", "flood"), ("initiations", sent), ("flood_seconds_virtual", seconds),
            ("responder_cpu_ms", Double(responderCPU) / 1e6),
            ("responder_cpu_us_per_initiation", Double(responderCPU) / 1e3 / Double(max(sent, 1))),
            ("responder_cpu_fraction_of_flood", Double(responderCPU) / Double(Nanos.seconds(seconds))),
            ("dh_handshakes_processed", st.handshakesProcessed), ("cookie_replies", st.cookieRepliesSent),
            ("dropped_rate_limited", st.rateLimited), ("pending_handshakes", responder.pendingHandshakeCount),
            ("attacker_bytes_sent", sent * Wire.initiationLength), ("attacker_bytes_received", attackerGot),
            ("legit_connected", session?.isEstablished == true),
            ("legit_connect_ms_virtual", connectedAt.map { Double($0 - connectStart) / 1e6 } ?? -1),
        ]
        json ? BenchSupport.printJSON(fields) : BenchSupport.printText(fields)
    }
}
