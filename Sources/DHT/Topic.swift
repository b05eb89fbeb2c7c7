import Sodium

/// Topics: how a human-readable lobby topic becomes the 20-byte info-hash turf announces under.
///
///     info_hash = BLAKE2b-160( "turf:dht-topic:v1:" || UTF-8(topic) )
///
/// BLAKE2b with a 20-byte output length (an output parameter of BLAKE2b, not a truncation of the
/// 64-byte hash) and no key. The topic's UTF-8 bytes are used exactly as given: no normalisation,
/// no trimming, case-sensitive. The prefix names the application and a version, so another
/// application (or a later turf) never collides with these hashes. See docs/dht.md.
public enum Topic {
    public static let prefix = "turf:dht-topic:v1:"

    public static func infoHash(_ topic: String) -> NodeID {
        let input = Array(prefix.utf8) + Array(topic.utf8)
        let h = BLAKE2b.hash(input, length: .bytes20)
        return NodeID(bytes: h)!  // cannot fail: the hash is 20 bytes, a node id's length
    }
}
