import ArgumentParser
import CSodium
import Foundation
import NetCore
import NetSim
import Noise
import Sodium
import Transport

/// `turf bench crypto`: 100-byte packets sealed and opened by the session code against raw
/// libsodium calls on the same sizes, in the same run; and full XX handshakes per second.
struct BenchCrypto: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "crypto",
        abstract: "Session packet crypto vs raw libsodium, and handshakes per second."
    )

    @Flag(help: "Print one JSON object.") var json = false
    @Option(help: Limits.cryptoSize.help("Payload bytes per packet.", default: 100), transform: Limits.cryptoSize.parse)
    var size = 100
    @Option(
        help: Limits.cryptoPackets.help("Packets per round.", default: 100000),
        transform: Limits.cryptoPackets.parse
    )
    var packets = 100_000
    @Option(
        help: Limits.cryptoRounds.help(
            "Rounds: raw and session alternate; each round's session/raw ratio is taken from adjacent runs and the median ratio is reported.",
            default: 9
        ),
        transform: Limits.cryptoRounds.parse
    )
    var rounds = 9
    @Option(help: Limits.handshakes.help("Handshakes to time.", default: 2000), transform: Limits.handshakes.parse)
    var handshakes = 2000

    func validate() throws {
        guard (1...Wire.maxTransportPayload).contains(size) else {
            throw ValidationError("--size must be between 1 and \(Wire.maxTransportPayload) bytes")
        }
        guard packets >= 1, rounds >= 1, handshakes >= 1 else {
            throw ValidationError("--packets, --rounds and --handshakes must be at least 1")
        }
    }

    func run() throws {
        Sodium.ensureInitialized()
        let payload = (0..<size).map { UInt8(truncatingIfNeeded: $0) }
        let (sender, receiver, keepAlive) = try establishedPair()
        var rawRates: [Double] = []
        var sessionRates: [Double] = []
        var ratios: [Double] = []
        _ = rawRound(payload)
        _ = try sessionRound(payload, sender, receiver)  // warm up
        for _ in 0..<rounds {
            let r = rawRound(payload)
            let s = try sessionRound(payload, sender, receiver)
            rawRates.append(r)
            sessionRates.append(s)
            ratios.append(s / r)
        }
        withExtendedLifetime(keepAlive) {}
        let raw = BenchSupport.median(rawRates)
        let session = BenchSupport.median(sessionRates)
        let hs = try handshakeRate()
        let fields: [(String, Any)] = [
            ("benchmark", "crypto"), ("payload_bytes", size), ("packets_per_round", packets), ("rounds", rounds),
            ("session_packets_per_sec", session), ("raw_packets_per_sec", raw),
            ("speed_ratio", BenchSupport.median(ratios)),
            ("speed_ratio_min", ratios.min() ?? 0), ("handshakes_per_sec", hs),
        ]
        json ? BenchSupport.printJSON(fields) : BenchSupport.printText(fields)
    }

    /// Raw libsodium: encrypt then decrypt each packet into preallocated buffers, counter nonces.
    func rawRound(_ payload: [UInt8]) -> Double {
        let key = Sodium.randomBytes(32)
        var ct = [UInt8](repeating: 0, count: payload.count + 16)
        var pt = [UInt8](repeating: 0, count: payload.count)
        var nonce = [UInt8](repeating: 0, count: 12)
        let ad = [UInt8](repeating: 5, count: 14)
        var failures = 0
        let start = BenchSupport.nanos()
        for i in 0..<packets {
            nonce.withUnsafeMutableBytes { $0.storeBytes(of: UInt64(i).littleEndian, toByteOffset: 4, as: UInt64.self) }
            ct.withUnsafeMutableBufferPointer { c in
                pt.withUnsafeMutableBufferPointer { p in
                    payload.withUnsafeBufferPointer { m in
                        key.withUnsafeBufferPointer { k in
                            nonce.withUnsafeBufferPointer { n in
                                ad.withUnsafeBufferPointer { a in
                                    // `!`s: every buffer is at least 1 byte (validate() bounds --size).
                                    _ = crypto_aead_chacha20poly1305_ietf_encrypt(
                                        c.baseAddress!,
                                        nil,
                                        m.baseAddress!,
                                        UInt64(m.count),
                                        a.baseAddress!,
                                        UInt64(a.count),
                                        nil,
                                        n.baseAddress!,
                                        k.baseAddress!
                                    )
                                    if crypto_aead_chacha20poly1305_ietf_decrypt(
                                        p.baseAddress!,
                                        nil,
                                        nil,
                                        c.baseAddress!,
                                        UInt64(c.count),
                                        a.baseAddress!,
                                        UInt64(a.count),
                                        n.baseAddress!,
                                        k.baseAddress!
                                    ) != 0 {
                                        failures += 1
                                    }
                                }
                            }
                        }
                    }
                }
            }
        }
        let elapsed = BenchSupport.nanos() - start
        precondition(failures == 0 && pt == payload)
        return Double(packets) / (Double(elapsed) / 1e9)
    }

    /// The session path as SessionManager runs it: Session.seal into the session's reused send
    /// buffer (header, counter, rekey check), then header parsing and Session.open into the
    /// reused receive buffer (epoch, replay window, authentication).
    func sessionRound(_ payload: [UInt8], _ sender: Session, _ receiver: Session) throws -> Double {
        var opened = 0
        var packet: [UInt8] = []
        var plain: [UInt8] = []
        let start = BenchSupport.nanos()
        for _ in 0..<packets {
            guard sender.seal(payload, now: 0, into: &packet),
                let header = try? TransportHeader.decode(packet),
                receiver.open(packet, header: header, now: 0, into: &plain)
            else { continue }
            opened += plain.count == payload.count ? 1 : 0
        }
        let elapsed = BenchSupport.nanos() - start
        precondition(opened == packets, "session round lost packets")
        return Double(packets) / (Double(elapsed) / 1e9)
    }

    /// Two sessions established over the simulated network (the real handshake code).
    func establishedPair() throws -> (Session, Session, [AnyObject]) {
        let net = SimNetwork(seed: 1, conditions: .perfect)
        let sa = net.bind(PeerAddress(10, 0, 0, 1, port: 1))
        let sb = net.bind(PeerAddress(10, 0, 0, 2, port: 1))
        let da = Demultiplexer(socket: sa)
        let db = Demultiplexer(socket: sb)
        let ma = SessionManager(host: sa, demux: da, identity: .generate())
        let mb = SessionManager(host: sb, demux: db, identity: .generate())
        var inbound: Session?
        mb.onInbound = { inbound = $0 }
        let s = ma.connect(to: sb.localAddress, mode: .discovered)
        _ = net.run(until: .seconds(5), while: { !(s.isEstablished && inbound != nil) })
        guard s.isEstablished, let r = inbound else {
            throw ValidationError("handshake failed: \(s.state) \(ma.stats) \(mb.stats) \(net.stats)")
        }
        return (s, r, [net, sa, sb, da, db, ma, mb])
    }

    /// Complete Noise XX handshakes (three messages, both sides, identity payloads, split).
    func handshakeRate() throws -> Double {
        let proto = try NoiseProtocol(name: HandshakeKind.xx.noiseName)
        let a = X25519.KeyPair.generate()
        let b = X25519.KeyPair.generate()
        let idA = Sodium.randomBytes(32)
        let idB = Sodium.randomBytes(32)
        let start = BenchSupport.nanos()
        for _ in 0..<handshakes {
            var i = try HandshakeState(protocol: proto, initiator: true, localStatic: a)
            var r = try HandshakeState(protocol: proto, initiator: false, localStatic: b)
            _ = try r.readMessage(try i.writeMessage())
            _ = try i.readMessage(try r.writeMessage(idB))
            _ = try r.readMessage(try i.writeMessage(idA))
            _ = try i.split()
            _ = try r.split()
        }
        return Double(handshakes) / (Double(BenchSupport.nanos() - start) / 1e9)
    }
}
