import Bencode

/// The body of the libFuzzer target for the DHT's parsers (Fuzz/Sources/fuzz-krpc) and of the
/// in-suite mutation test: parse, and check what the strict codec promises. Not part of the DHT's
/// API: import it with `@_spi(Fuzzing) import DHT`.
@_spi(Fuzzing) public enum DHTFuzz {
    /// Feeds `data` to the bencode and KRPC decoders. Returns a description of a broken promise,
    /// or nil. Never crashes on any input (that is the point).
    public static func check(_ data: [UInt8]) -> String? {
        if let v = try? Bencode.decode(data, limits: .krpc) {
            // Strict canonical decoding: whatever is accepted re-encodes to exactly the input.
            if Bencode.encode(v) != data { return "accepted non-canonical bencode" }
        }
        if let m = try? KRPCMessage.decode(data) {
            // A decoded message re-encodes to something that decodes to the same message.
            guard let again = try? KRPCMessage.decode(m.encoded()) else { return "re-encoded KRPC does not decode" }
            if again != m { return "KRPC round trip changed the message" }
            guard let lenient = try? Bencode.decode(data, limits: .krpc, unsortedKeys: true) else {
                return "KRPC accepted what bencode refused"
            }
            // Unsorted keys are the only relaxation: the canonical form holds the same value.
            if (try? Bencode.decode(Bencode.encode(lenient), limits: .krpc)) != lenient {
                return "lenient decode is not canonical"
            }
        }
        if let lenient = try? Bencode.decode(data, limits: .krpc, unsortedKeys: true) {
            // The lenient decoder agrees with the strict one wherever the strict one accepts, and
            // differs from the input only in key order (same length re-encoded).
            if let strict = try? Bencode.decode(data, limits: .krpc), strict != lenient {
                return "lenient and strict decoders disagree"
            }
            if Bencode.encode(lenient).count != data.count { return "lenient decode changed more than key order" }
        }
        _ = RoutingTable.self
        if data.count % 26 == 0, let nodes = NodeInfo.parseCompact(data), NodeInfo.compact(nodes) != data {
            return "compact node info round trip"
        }
        // IPv6 node info (BEP 32): whatever is kept re-encodes to its own entries.
        if data.count % 38 == 0, let parsed = NodeInfo.parseCompact(data, family: .v6) {
            if parsed.nodes.count + parsed.dropped != data.count / 38 { return "IPv6 node info lost entries" }
            if parsed.dropped == 0 && NodeInfo.compact(parsed.nodes) != data {
                return "compact IPv6 node info round trip"
            }
        }
        return nil
    }
}
