import Bencode
import NetCore
import Sodium

/// BEP 44 items: arbitrary bencoded values stored in the DHT. Immutable items are keyed by the
/// SHA-1 of their bencoded value; mutable items by SHA-1(public key + salt) and signed with
/// Ed25519 over `[4:salt<len>:<salt>]3:seqi<seq>e1:v<bencoded value>`. turf uses mutable items
/// for signed lobby descriptors.
public enum DHTItem: Equatable, Sendable {
    case immutable(BValue)
    case mutable(MutableItem)

    public var value: BValue {
        switch self {
        case .immutable(let v): return v
        case .mutable(let m): return m.value
        }
    }

    public var target: NodeID {
        switch self {
        case .immutable(let v): return DHTItem.immutableTarget(v)
        case .mutable(let m): return m.target
        }
    }

    /// `!`: a SHA-1 hash is 20 bytes, a node id's length.
    public static func immutableTarget(_ v: BValue) -> NodeID { NodeID(bytes: SHA1.hash(Bencode.encode(v)))! }

    /// Largest bencoded value BEP 44 allows.
    public static let maxValueSize = 1000
    public static let maxSaltSize = 64
}

public struct MutableItem: Equatable, Sendable {
    public var publicKey: [UInt8]
    public var salt: [UInt8]
    public var seq: Int64
    public var value: BValue
    public var signature: [UInt8]

    public init(publicKey: [UInt8], salt: [UInt8], seq: Int64, value: BValue, signature: [UInt8]) {
        self.publicKey = publicKey
        self.salt = salt
        self.seq = seq
        self.value = value
        self.signature = signature
    }

    /// Signs `value` as sequence number `seq` under `salt`.
    public init(signedBy key: Ed25519.KeyPair, salt: [UInt8] = [], seq: Int64, value: BValue) {
        publicKey = key.publicKey
        self.salt = salt
        self.seq = seq
        self.value = value
        signature = key.sign(MutableItem.signable(salt: salt, seq: seq, value: value))
    }

    /// `!`: a SHA-1 hash is 20 bytes, a node id's length.
    public static func target(publicKey: [UInt8], salt: [UInt8]) -> NodeID {
        NodeID(bytes: SHA1.hash(publicKey + salt))!
    }
    public var target: NodeID { MutableItem.target(publicKey: publicKey, salt: salt) }

    /// The bytes BEP 44 signs.
    public static func signable(salt: [UInt8], seq: Int64, value: BValue) -> [UInt8] {
        var out: [UInt8] = []
        if !salt.isEmpty {
            out += Array("4:salt".utf8)
            Bencode.encode(.bytes(salt), into: &out)
        }
        out += Array("3:seqi\(seq)e1:v".utf8)
        Bencode.encode(value, into: &out)
        return out
    }

    public var isValid: Bool {
        publicKey.count == Ed25519.publicKeyLength && signature.count == Ed25519.signatureLength
            && salt.count <= DHTItem.maxSaltSize
            && Ed25519.verify(
                signature: signature,
                message: MutableItem.signable(salt: salt, seq: seq, value: value),
                publicKey: publicKey
            )
    }
}

/// Items stored on this node for others: capped in count and size, expiring after 2 hours.
struct ItemStore {
    var maxItems = 1000
    var ttl: Nanos = .seconds(2 * 3600)
    private(set) var items: [NodeID: (item: DHTItem, expires: Nanos)] = [:]

    func get(_ target: NodeID, now: Nanos) -> DHTItem? {
        guard let e = items[target], e.expires > now else { return nil }
        return e.item
    }

    /// Stores `item` unless full; the caller has checked signatures and sequence numbers.
    mutating func put(_ item: DHTItem, now: Nanos) -> Bool {
        let t = item.target
        if items[t] == nil && items.count >= maxItems {
            expire(now: now)
            if items.count >= maxItems { return false }
        }
        items[t] = (item, now &+ ttl)
        return true
    }

    mutating func expire(now: Nanos) { items = items.filter { $0.value.expires > now } }
}

extension KRPCResponse {
    /// A BEP 44 item in a `get` response, if present and valid for `target` (mutable items are
    /// checked under the `salt` the getter asked for; responses do not carry it).
    func item(for target: NodeID, salt: [UInt8]) -> DHTItem? {
        guard let v = body["v"] else { return nil }
        if let k = body["k"]?.bytesValue {
            guard let sig = body["sig"]?.bytesValue, let seq = body["seq"]?.intValue else { return nil }
            let m = MutableItem(publicKey: k, salt: salt, seq: seq, value: v, signature: sig)
            guard m.isValid, m.target == target else { return nil }
            return .mutable(m)
        }
        guard DHTItem.immutableTarget(v) == target else { return nil }
        return .immutable(v)
    }
}
