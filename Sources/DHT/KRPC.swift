import Bencode
import NetCore

/// A node as the DHT passes it around: id and UDP address (26 bytes in compact form for IPv4,
/// 38 for IPv6).
public struct NodeInfo: Hashable, Sendable, CustomStringConvertible {
    public var id: NodeID
    public var address: PeerAddress

    public init(id: NodeID, address: PeerAddress) {
        self.id = id
        self.address = address
    }

    public var description: String { "\(id.hexString.prefix(8))@\(address)" }

    /// Compact node info: each node's id, then its compact address. The caller passes nodes of
    /// one family (`nodes` holds IPv4 nodes, `nodes6` IPv6 ones).
    public static func compact(_ nodes: [NodeInfo]) -> [UInt8] {
        var out: [UInt8] = []
        out.reserveCapacity(nodes.count * 38)
        for n in nodes {
            out.append(contentsOf: n.id.bytes)
            out.append(contentsOf: n.address.compact)
        }
        return out
    }

    /// Parses IPv4 compact node info; nil unless the length is a multiple of 26.
    public static func parseCompact(_ b: [UInt8]) -> [NodeInfo]? { parseCompact(b, family: .v4)?.nodes }

    /// Parses compact node info of one family (26-byte entries for IPv4, 38 for IPv6); nil unless
    /// the length is a multiple of the entry size. An IPv6 entry that cannot name an IPv6 node
    /// (an IPv4-mapped address, which belongs in `nodes`; the unspecified address; multicast) is
    /// left out and counted in `dropped`.
    static func parseCompact(_ b: [UInt8], family: AddressFamily) -> (nodes: [NodeInfo], dropped: Int)? {
        let size = family.nodeInfoSize
        guard b.count % size == 0 else { return nil }
        var out: [NodeInfo] = []
        out.reserveCapacity(b.count / size)
        var dropped = 0
        var i = 0
        while i < b.count {
            // `!`s: 20 bytes of id, and 6 or 18 of address (the length is a multiple of the entry
            // size, checked above; 16 address bytes always make an IPv6Address).
            let id = NodeID(bytes: b[i..<(i + 20)])!
            let address = PeerAddress(compact: b[(i + 20)..<(i + size)])!
            if family == .v6 && (address.family != .v6 || !address.isUsableUnicast) {
                dropped += 1
            } else {
                out.append(NodeInfo(id: id, address: address))
            }
            i += size
        }
        return (out, dropped)
    }
}

/// KRPC error codes (BEP 5, BEP 44).
enum KRPCErrorCode {
    static let generic = 201
    static let server = 202
    static let protocolError = 203
    static let methodUnknown = 204
    static let messageTooBig = 205
    static let invalidSignature = 206
    static let saltTooBig = 207
    static let casMismatch = 301
    static let sequenceTooLow = 302
}

/// A query's method: the six of BEP 5 and BEP 44 this node knows, turf's two knock messages
/// (docs/dht.md, "Knocking"), or any other name.
enum KRPCMethod: Hashable, Sendable {
    case ping, findNode, getPeers, announcePeer, get, put
    /// `turf_knock`: a joiner asks a node that stores an announcement to pass a small blob to the
    /// announcers. `turf_knocked`: that node passing it on (never answered).
    case knock, knocked
    /// A method this node does not know (answered with error 204).
    case unknown(String)

    init(name: String) {
        switch name {
        case "ping": self = .ping
        case "find_node": self = .findNode
        case "get_peers": self = .getPeers
        case "announce_peer": self = .announcePeer
        case "get": self = .get
        case "put": self = .put
        case "turf_knock": self = .knock
        case "turf_knocked": self = .knocked
        default: self = .unknown(name)
        }
    }

    /// The name on the wire (`q`).
    var name: String {
        switch self {
        case .ping: return "ping"
        case .findNode: return "find_node"
        case .getPeers: return "get_peers"
        case .announcePeer: return "announce_peer"
        case .get: return "get"
        case .put: return "put"
        case .knock: return "turf_knock"
        case .knocked: return "turf_knocked"
        case .unknown(let name): return name
        }
    }
}

/// One decoded KRPC query (`y` = `q`). Arguments beyond BEP 5's are kept in `args`. The decoder
/// checks that a known method has the arguments it needs (a target for find_node, …).
struct KRPCQuery: Equatable, Sendable {
    var method: KRPCMethod
    var id: NodeID
    /// find_node target, or BEP 44 get target.
    var target: NodeID?
    /// get_peers / announce_peer info-hash.
    var infoHash: NodeID?
    var port: UInt16?
    var impliedPort: Bool
    var token: [UInt8]?
    /// BEP 43: the sender is read-only and must not enter routing tables.
    var readOnly: Bool
    /// BEP 32: the families of nodes the sender asks for (`want`: `n4`, `n6`); nil without
    /// `want` (then the answer carries the family the query came over).
    var want: Set<AddressFamily>?
    var args: BValue

    init(
        method: KRPCMethod,
        id: NodeID,
        target: NodeID? = nil,
        infoHash: NodeID? = nil,
        port: UInt16? = nil,
        impliedPort: Bool = false,
        token: [UInt8]? = nil,
        readOnly: Bool = false,
        want: Set<AddressFamily>? = nil,
        extra: [(String, BValue)] = []
    ) {
        self.method = method
        self.id = id
        self.target = target
        self.infoHash = infoHash
        self.port = port
        self.impliedPort = impliedPort
        self.token = token
        self.readOnly = readOnly
        self.want = want
        var a: [(String, BValue)] = [("id", .bytes(id.bytes))]
        if let target { a.append(("target", .bytes(target.bytes))) }
        if let infoHash { a.append(("info_hash", .bytes(infoHash.bytes))) }
        if let port { a.append(("port", .int(Int64(port)))) }
        if impliedPort { a.append(("implied_port", .int(1))) }
        if let token { a.append(("token", .bytes(token))) }
        if let want { a.append(("want", .list(want.sorted().map { .string($0.want) }))) }
        a.append(contentsOf: extra)
        args = .dictionary(a)
    }
}

struct KRPCResponse: Equatable, Sendable {
    var id: NodeID
    /// IPv4 nodes (`nodes`, 26-byte entries).
    var nodes: [NodeInfo]
    /// IPv6 nodes (BEP 32 `nodes6`, 38-byte entries).
    var nodes6: [NodeInfo]
    /// Peers of either family (BEP 32: receivers must accept a mixed list).
    var values: [PeerAddress]
    var token: [UInt8]?
    /// Entries of `nodes6` left out by the decoder as unusable (the node counts them).
    var droppedNodes: Int = 0
    /// Everything in `r`, for extensions (BEP 44).
    var body: BValue

    init(
        id: NodeID,
        nodes: [NodeInfo] = [],
        nodes6: [NodeInfo] = [],
        values: [PeerAddress] = [],
        token: [UInt8]? = nil,
        extra: [(String, BValue)] = []
    ) {
        self.id = id
        self.nodes = nodes
        self.nodes6 = nodes6
        self.values = values
        self.token = token
        var r: [(String, BValue)] = [("id", .bytes(id.bytes))]
        if !nodes.isEmpty { r.append(("nodes", .bytes(NodeInfo.compact(nodes)))) }
        if !nodes6.isEmpty { r.append(("nodes6", .bytes(NodeInfo.compact(nodes6)))) }
        if !values.isEmpty { r.append(("values", .list(values.map { .bytes($0.compact) }))) }
        if let token { r.append(("token", .bytes(token))) }
        r.append(contentsOf: extra)
        body = .dictionary(r)
    }
}

struct KRPCErrorBody: Equatable, Sendable {
    var code: Int
    var message: String
    init(code: Int, message: String) {
        self.code = code
        self.message = message
    }
}

struct KRPCMessage: Equatable, Sendable {
    enum Body: Equatable, Sendable {
        case query(KRPCQuery)
        case response(KRPCResponse)
        case error(KRPCErrorBody)
    }

    var transactionID: [UInt8]
    var body: Body
    /// BEP 42: in responses, the requester's address as the responder saw it.
    var ip: PeerAddress?
    /// The client version (`v`), if sent.
    var version: [UInt8]?

    init(transactionID: [UInt8], body: Body, ip: PeerAddress? = nil, version: [UInt8]? = nil) {
        self.transactionID = transactionID
        self.body = body
        self.ip = ip
        self.version = version
    }

    func encoded() -> [UInt8] {
        var d: [(String, BValue)] = [("t", .bytes(transactionID))]
        switch body {
        case .query(let q):
            d.append(("y", .string("q")))
            d.append(("q", .string(q.method.name)))
            d.append(("a", q.args))
            if q.readOnly { d.append(("ro", .int(1))) }
        case .response(let r):
            d.append(("y", .string("r")))
            d.append(("r", r.body))
        case .error(let e):
            d.append(("y", .string("e")))
            d.append(("e", .list([.int(Int64(e.code)), .string(e.message)])))
        }
        if let ip { d.append(("ip", .bytes(ip.compact))) }
        if let version { d.append(("v", .bytes(version))) }
        return Bencode.encode(.dictionary(d))
    }

    /// Decodes one datagram (dictionary keys in any order, otherwise strict bencode). Errors say what is wrong; `transactionID` is set on the error when
    /// the message had one, so a malformed query can be answered with error 203.
    static func decode(_ bytes: [UInt8]) throws(KRPCDecodeError) -> KRPCMessage {
        let v: BValue
        // Real clients sometimes send dictionary keys out of order: accepted (sorted on the way
        // in; `encoded()` is always canonical). Everything else is strict.
        do { v = try Bencode.decode(bytes, limits: .krpc, unsortedKeys: true) } catch {
            throw KRPCDecodeError(.bencode(error), transactionID: nil)
        }
        guard case .dict = v else { throw KRPCDecodeError(.notADictionary, transactionID: nil) }
        guard let t = v["t"]?.bytesValue else { throw KRPCDecodeError(.missing("t"), transactionID: nil) }
        guard t.count <= 64 else { throw KRPCDecodeError(.invalid("t", "longer than 64 bytes"), transactionID: nil) }
        guard let y = v["y"]?.bytesValue, y.count == 1 else { throw KRPCDecodeError(.missing("y"), transactionID: t) }
        var ip: PeerAddress? = nil
        if let ipb = v["ip"]?.bytesValue {
            // BEP 42: 6 bytes (IPv4) or 18 (IPv6); any other length is ignored.
            ip = PeerAddress(compact: ipb)
        }
        let version = v["v"]?.bytesValue
        func id(_ d: BValue, _ key: String = "id") throws(KRPCDecodeError) -> NodeID {
            guard let b = d[key]?.bytesValue else { throw KRPCDecodeError(.missing(key), transactionID: t) }
            guard let n = NodeID(bytes: b) else {
                throw KRPCDecodeError(.invalid(key, "must be 20 bytes, got \(b.count)"), transactionID: t)
            }
            return n
        }
        switch y[0] {
        case UInt8(ascii: "q"):
            guard let q = v["q"]?.stringValue, !q.isEmpty, q.utf8.count <= 32 else {
                throw KRPCDecodeError(.missing("q"), transactionID: t)
            }
            guard let a = v["a"], case .dict = a else { throw KRPCDecodeError(.missing("a"), transactionID: t) }
            var query = KRPCQuery(method: KRPCMethod(name: q), id: try id(a))
            query.args = a
            if a["target"] != nil { query.target = try id(a, "target") }
            if a["info_hash"] != nil { query.infoHash = try id(a, "info_hash") }
            if let p = a["port"] {
                guard let pi = p.intValue, (0...65535).contains(pi) else {
                    throw KRPCDecodeError(.invalid("port", "not a port number"), transactionID: t)
                }
                query.port = UInt16(pi)
            }
            if let ipv = a["implied_port"]?.intValue { query.impliedPort = ipv != 0 }
            if let tok = a["token"] {
                guard let tb = tok.bytesValue else {
                    throw KRPCDecodeError(.invalid("token", "not a byte string"), transactionID: t)
                }
                query.token = tb
            }
            if let ro = v["ro"]?.intValue { query.readOnly = ro == 1 }
            if let w = a["want"] {
                // BEP 32: a list of strings; strings other than n4 and n6 are ignored.
                guard let list = w.listValue else {
                    throw KRPCDecodeError(.invalid("want", "not a list"), transactionID: t)
                }
                var want = Set<AddressFamily>()
                for e in list {
                    if let f = AddressFamily.allCases.first(where: { Array($0.want.utf8) == e.bytesValue }) {
                        want.insert(f)
                    }
                }
                query.want = want
            }
            // Method-specific required arguments.
            switch query.method {
            case .ping, .unknown: break
            case .findNode:
                guard query.target != nil else { throw KRPCDecodeError(.missing("target"), transactionID: t) }
            case .getPeers:
                guard query.infoHash != nil else { throw KRPCDecodeError(.missing("info_hash"), transactionID: t) }
            case .announcePeer:
                guard query.infoHash != nil else { throw KRPCDecodeError(.missing("info_hash"), transactionID: t) }
                guard query.token != nil else { throw KRPCDecodeError(.missing("token"), transactionID: t) }
                guard query.port != nil || query.impliedPort else {
                    throw KRPCDecodeError(.missing("port"), transactionID: t)
                }
            case .get:
                guard query.target != nil else { throw KRPCDecodeError(.missing("target"), transactionID: t) }
            case .put:
                guard query.token != nil else { throw KRPCDecodeError(.missing("token"), transactionID: t) }
                guard a["v"] != nil else { throw KRPCDecodeError(.missing("v"), transactionID: t) }
            case .knock:
                guard query.infoHash != nil else { throw KRPCDecodeError(.missing("info_hash"), transactionID: t) }
                guard query.token != nil else { throw KRPCDecodeError(.missing("token"), transactionID: t) }
                guard a["blob"]?.bytesValue != nil else { throw KRPCDecodeError(.missing("blob"), transactionID: t) }
            case .knocked:
                guard query.infoHash != nil else { throw KRPCDecodeError(.missing("info_hash"), transactionID: t) }
                guard a["blob"]?.bytesValue != nil else { throw KRPCDecodeError(.missing("blob"), transactionID: t) }
                guard let src = a["src"]?.bytesValue, src.count == 6 || src.count == 18 else {
                    throw KRPCDecodeError(.missing("src"), transactionID: t)
                }
            }
            return KRPCMessage(transactionID: t, body: .query(query), ip: ip, version: version)
        case UInt8(ascii: "r"):
            guard let r = v["r"], case .dict = r else { throw KRPCDecodeError(.missing("r"), transactionID: t) }
            var resp = KRPCResponse(id: try id(r))
            resp.body = r
            if let n = r["nodes"] {
                guard let nb = n.bytesValue, let nodes = NodeInfo.parseCompact(nb) else {
                    throw KRPCDecodeError(
                        .invalid("nodes", "not compact node info (26-byte entries)"),
                        transactionID: t
                    )
                }
                resp.nodes = nodes
            }
            if let n = r["nodes6"] {
                guard let nb = n.bytesValue, let parsed = NodeInfo.parseCompact(nb, family: .v6) else {
                    throw KRPCDecodeError(
                        .invalid("nodes6", "not compact IPv6 node info (38-byte entries)"),
                        transactionID: t
                    )
                }
                resp.nodes6 = parsed.nodes
                resp.droppedNodes = parsed.dropped
            }
            if let vals = r["values"] {
                guard let list = vals.listValue else {
                    throw KRPCDecodeError(.invalid("values", "not a list"), transactionID: t)
                }
                for e in list {
                    // BEP 32: 6-byte IPv4 and 18-byte IPv6 peers, in any mixture.
                    guard let b = e.bytesValue, let peer = PeerAddress(compact: b) else {
                        throw KRPCDecodeError(.invalid("values", "entries must be compact peers"), transactionID: t)
                    }
                    resp.values.append(peer)
                }
            }
            if let tok = r["token"] {
                guard let tb = tok.bytesValue else {
                    throw KRPCDecodeError(.invalid("token", "not a byte string"), transactionID: t)
                }
                resp.token = tb
            }
            return KRPCMessage(transactionID: t, body: .response(resp), ip: ip, version: version)
        case UInt8(ascii: "e"):
            guard let e = v["e"]?.listValue, e.count >= 2, let code = e[0].intValue, let msg = e[1].bytesValue else {
                throw KRPCDecodeError(.invalid("e", "must be [code, message]"), transactionID: t)
            }
            let clamped = Int(clamping: code)
            return KRPCMessage(
                transactionID: t,
                body: .error(KRPCErrorBody(code: clamped, message: String(decoding: msg, as: UTF8.self))),
                ip: ip,
                version: version
            )
        default:
            throw KRPCDecodeError(.invalid("y", "must be q, r or e"), transactionID: t)
        }
    }
}

struct KRPCDecodeError: Error, Equatable, CustomStringConvertible, Sendable {
    enum Reason: Equatable, Sendable {
        case bencode(BencodeError)
        case notADictionary
        case missing(String)
        case invalid(String, String)
    }
    var reason: Reason
    var transactionID: [UInt8]?

    init(_ reason: Reason, transactionID: [UInt8]?) {
        self.reason = reason
        self.transactionID = transactionID
    }

    var description: String {
        switch reason {
        case .bencode(let e): return "KRPC: \(e)"
        case .notADictionary: return "KRPC: message is not a dictionary"
        case .missing(let k): return "KRPC: missing or malformed key '\(k)'"
        case .invalid(let k, let why): return "KRPC: key '\(k)' \(why)"
        }
    }
}
