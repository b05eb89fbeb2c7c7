import Foundation
import Noise
import Sodium

/// Checks a Noise vector file (the cacophony JSON layout) against turf's Noise implementation.
enum VectorVerifier {
    struct Result {
        var checked = 0
        var skipped: [String] = []
        var failures: [String] = []
    }

    /// The package root, found from this file's path (Tests/NoiseTests/VectorVerifier.swift).
    static var packageRoot: URL {
        URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
            .deletingLastPathComponent()
    }

    /// `../shared/vectors/noise/...` next to the package, wherever the checkout is.
    static var sharedVectorFile: URL {
        packageRoot.deletingLastPathComponent()
            .appendingPathComponent("shared/vectors/noise/cacophony-25519-ChaChaPoly-BLAKE2b.json")
    }

    static func hex(_ s: String) -> [UInt8]? {
        guard s.count % 2 == 0 else { return nil }
        var out: [UInt8] = []
        out.reserveCapacity(s.count / 2)
        var idx = s.startIndex
        while idx < s.endIndex {
            let next = s.index(idx, offsetBy: 2)
            guard let b = UInt8(s[idx..<next], radix: 16) else { return nil }
            out.append(b)
            idx = next
        }
        return out
    }

    /// Why a vector file (one named by NOISE_VECTORS_FILE) did not really test anything, or nil:
    /// it had no vector this implementation supports, or more were skipped (unsupported
    /// primitives) than checked, which usually means the wrong file was given.
    static func coverageProblem(_ r: Result) -> String? {
        if r.checked == 0 { return "no usable vector (\(r.skipped.count) skipped)" }
        if r.skipped.count > r.checked { return "\(r.skipped.count) vectors skipped but only \(r.checked) checked" }
        return nil
    }

    static func verify(file: URL) throws -> Result {
        let data = try Data(contentsOf: file)
        guard let root = try JSONSerialization.jsonObject(with: data) as? [String: Any],
            let vectors = root["vectors"] as? [[String: Any]]
        else {
            throw CocoaError(.fileReadCorruptFile)
        }
        var result = Result()
        for (i, v) in vectors.enumerated() {
            let name = v["protocol_name"] as? String ?? "vector \(i)"
            guard let proto = try? NoiseProtocol(name: name) else {
                result.skipped.append(name)
                continue
            }
            do {
                try check(v, proto)
                result.checked += 1
            } catch {
                result.failures.append("\(i) \(name): \(error)")
            }
        }
        return result
    }

    struct Mismatch: Error, CustomStringConvertible {
        var description: String
    }

    static func field(_ v: [String: Any], _ key: String) throws -> [UInt8]? {
        guard let s = v[key] as? String else { return nil }
        guard let b = hex(s) else { throw Mismatch(description: "\(key) is not hex") }
        return b
    }

    static func check(_ v: [String: Any], _ proto: NoiseProtocol) throws {
        func keyPair(_ k: String) throws -> X25519.KeyPair? {
            try field(v, k).map { try X25519.KeyPair(secretKey: $0) }
        }
        func psks(_ k: String) throws -> [SecretBytes] {
            try (v[k] as? [String] ?? []).map {
                guard let b = hex($0) else { throw Mismatch(description: "\(k) is not hex") }
                return SecretBytes(copying: b)
            }
        }
        var initiator = try HandshakeState(
            protocol: proto,
            initiator: true,
            prologue: try field(v, "init_prologue") ?? [],
            localStatic: try keyPair("init_static"),
            localEphemeral: try keyPair("init_ephemeral"),
            remoteStatic: try field(v, "init_remote_static"),
            psks: try psks("init_psks")
        )
        var responder = try HandshakeState(
            protocol: proto,
            initiator: false,
            prologue: try field(v, "resp_prologue") ?? [],
            localStatic: try keyPair("resp_static"),
            localEphemeral: try keyPair("resp_ephemeral"),
            remoteStatic: try field(v, "resp_remote_static"),
            psks: try psks("resp_psks")
        )
        guard let messages = v["messages"] as? [[String: String]], !messages.isEmpty else {
            throw Mismatch(description: "no messages")
        }
        var initCiphers: (send: CipherState, receive: CipherState)?
        var respCiphers: (send: CipherState, receive: CipherState)?
        for (i, m) in messages.enumerated() {
            guard let payload = m["payload"].flatMap(hex), let expected = m["ciphertext"].flatMap(hex) else {
                throw Mismatch(description: "message \(i) is not hex")
            }
            let fromInitiator = i % 2 == 0
            var ct: [UInt8]
            var pt: [UInt8]
            if !initiator.isComplete {
                if fromInitiator {
                    ct = try initiator.writeMessage(payload)
                    pt = try responder.readMessage(expected)
                } else {
                    ct = try responder.writeMessage(payload)
                    pt = try initiator.readMessage(expected)
                }
                if initiator.isComplete {
                    guard responder.isComplete else { throw Mismatch(description: "responder not complete") }
                    if let hh = try field(v, "handshake_hash") {
                        guard initiator.handshakeHash == hh, responder.handshakeHash == hh else {
                            throw Mismatch(description: "handshake hash differs")
                        }
                    }
                    initCiphers = try initiator.split()
                    respCiphers = try responder.split()
                }
            } else {
                if fromInitiator {
                    ct = try initCiphers!.send.encrypt(ad: [], plaintext: payload)
                    pt = try respCiphers!.receive.decrypt(ad: [], ciphertext: expected)
                } else {
                    ct = try respCiphers!.send.encrypt(ad: [], plaintext: payload)
                    pt = try initCiphers!.receive.decrypt(ad: [], ciphertext: expected)
                }
            }
            guard ct == expected else { throw Mismatch(description: "message \(i): ciphertext differs") }
            guard pt == payload else { throw Mismatch(description: "message \(i): payload differs") }
        }
        guard initiator.isComplete else { throw Mismatch(description: "handshake did not complete") }
    }
}
