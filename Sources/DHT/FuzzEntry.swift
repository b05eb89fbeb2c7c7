/// The body of the libFuzzer target for the DHT's parsers (Fuzz/Sources/fuzz-krpc) and of the
/// in-suite mutation test: parse, and check what the strict codec promises.
public enum DHTFuzz {
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
            if (try? Bencode.decode(data, limits: .krpc)) == nil { return "KRPC accepted what bencode refused" }
        }
        _ = RoutingTable.self
        if data.count % 26 == 0, let nodes = NodeInfo.parseCompact(data), NodeInfo.compact(nodes) != data {
            return "compact node info round trip"
        }
        return nil
    }
}
