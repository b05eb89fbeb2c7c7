import Bencode
import Determinism
import Foundation
import Keys
import NetCore

/// The small record a host keeps in the DHT as a BEP 44 mutable item signed with its identity
/// key (docs/lobby.md): joining by key reads it. Bencoded:
///
///     { "a": compact IPv4 addresses (6 bytes each: IPv4, port), "a6": compact IPv6 addresses
///       (18 bytes each; absent without any), "n": players, "p": 0|1 passphrase, "t": topic,
///       "v": lobby protocol version, "r": members that relay for others (absent without any) }
///
/// The families are apart, as BEP 32 keeps `nodes` and `nodes6`: a reader that knows only `a`
/// still reads the IPv4 addresses. `r` holds at most `maxRelays` compact addresses of either
/// family, one after another, each with its length first (6 or 18): a joiner that cannot punch
/// joins through one of the lobby's own members before strangers (docs/nat.md, "Players relay
/// for each other"). A reader that does not know `r` ignores it; one that does drops an `r` that
/// is malformed and keeps the rest of the record.
public struct LobbyRecord: Equatable, Sendable {
    public var version: Int
    public var addresses: [PeerAddress]
    public var passphrase: Bool
    public var players: Int
    public var topic: String
    /// Members of the lobby that relay for others, where the host's sessions see them.
    public var relays: [PeerAddress]

    public static let maxAddresses = 16
    public static let maxRelays = 4
    public static let maxTopicBytes = 200

    public var value: BValue {
        let kept = addresses.prefix(Self.maxAddresses)
        let a = kept.filter { !$0.isIPv6 }.flatMap(\.compact)
        let a6 = kept.filter(\.isIPv6).flatMap(\.compact)
        return .dictionary(
            [("a", .bytes(a))] + (a6.isEmpty ? [] : [("a6", .bytes(a6))]) + [
                ("n", .int(Int64(players))), ("p", .int(passphrase ? 1 : 0)), ("t", .string(topic)),
                ("v", .int(Int64(version))),
            ] + (r.isEmpty ? [] : [("r", .bytes(r))])
        )
    }

    /// `r`: each relay's compact form after its size (`PeerAddress.tagged`).
    private var r: [UInt8] { PeerAddress.tagged(Array(relays.prefix(Self.maxRelays))) }

    /// Parses `r` (nil when it is malformed: a wrong size byte, a short address, more than
    /// `maxRelays`, a port 0 or an unspecified address).
    static func parseRelays(_ b: [UInt8]) -> [PeerAddress]? {
        guard let out = PeerAddress.untagged(b, limit: maxRelays),
            out.allSatisfy({ $0.port != 0 && !$0.isUnspecified })
        else { return nil }
        return out
    }

    /// Parses a record read from the DHT (signed, but by whoever holds the key: still bounded).
    public init?(_ v: BValue) {
        guard case .dict(let entries) = v else { return nil }
        func get(_ k: String) -> BValue? { entries.first { $0.key == Array(k.utf8) }?.value }
        var a6: [UInt8] = []
        if let v6 = get("a6") {
            guard case .bytes(let b) = v6 else { return nil }
            a6 = b
        }
        guard case .int(let ver)? = get("v"), case .bytes(let a)? = get("a"), a.count % 6 == 0, a6.count % 18 == 0,
            a.count / 6 + a6.count / 18 <= Self.maxAddresses, case .int(let p)? = get("p"),
            case .int(let n)? = get("n"),
            case .bytes(let t)? = get("t"), t.count <= Self.maxTopicBytes,
            let topic = String(validating: t, as: UTF8.self)
        else { return nil }
        version = Int(clamping: ver)
        // `!`: every slice is 6 or 18 bytes (checked above).
        addresses =
            stride(from: 0, to: a.count, by: 6).map { PeerAddress(compact: a[$0..<$0 + 6])! }
            + stride(from: 0, to: a6.count, by: 18).map { PeerAddress(compact: a6[$0..<$0 + 18])! }
        passphrase = p != 0
        players = Int(clamping: n)
        self.topic = topic
        // Optional, and only a hint: a malformed `r` is ignored, not the record.
        if case .bytes(let rb)? = get("r"), rb.count <= Self.maxRelays * 19, let rs = Self.parseRelays(rb) {
            relays = rs
        } else {
            relays = []
        }
    }

    public init(
        version: Int,
        addresses: [PeerAddress],
        passphrase: Bool,
        players: Int,
        topic: String,
        relays: [PeerAddress] = []
    ) {
        self.version = version
        self.addresses = addresses
        self.passphrase = passphrase
        self.players = players
        self.topic = topic
        self.relays = Array(relays.prefix(Self.maxRelays))
    }
}

/// An invite: everything a friend needs to join without the DHT (the host's key, the topic that
/// salts the passphrase, the addresses to try), one word to paste:
///
///     turf-invite1.<turf1KEY>.<topic as hex>.<ip:port>,<ip:port>…
public struct Invite: Equatable, Sendable {
    public static let prefix = "turf-invite1."
    public var key: PeerKey
    public var topic: String
    public var addresses: [PeerAddress]

    public var text: String {
        Self.prefix + key.text + "." + topic.utf8.map { String(format: "%02x", $0) }.joined() + "."
            + addresses.prefix(LobbyRecord.maxAddresses).map(\.description).joined(separator: ",")
    }

    public init(key: PeerKey, topic: String, addresses: [PeerAddress]) {
        self.key = key
        self.topic = topic
        self.addresses = addresses
    }

    public init?(text: String) {
        guard text.hasPrefix(Self.prefix), text.utf8.count < 2000 else { return nil }
        let parts = text.dropFirst(Self.prefix.count).split(
            separator: ".",
            maxSplits: 2,
            omittingEmptySubsequences: false
        )
        guard parts.count == 3, let key = PeerKey(text: String(parts[0])), parts[1].count % 2 == 0,
            parts[1].count / 2 <= LobbyRecord.maxTopicBytes
        else { return nil }
        var bytes: [UInt8] = []
        var hex = parts[1][...]
        while !hex.isEmpty {
            guard let b = UInt8(hex.prefix(2), radix: 16) else { return nil }
            bytes.append(b)
            hex = hex.dropFirst(2)
        }
        guard let topic = String(validating: bytes, as: UTF8.self) else { return nil }
        let addrs = parts[2].split(separator: ",").compactMap { PeerAddress(String($0)) }
        guard !addrs.isEmpty, addrs.count <= LobbyRecord.maxAddresses else { return nil }
        self.init(key: key, topic: topic, addresses: addrs)
    }
}
