import DHT
import NetCore

/// One BEP 14 (Local Service Discovery) message: an HTTP-like request multicast on the LAN to
/// 239.192.152.143:6771 and [ff15::efc0:988f]:6771 (docs/nat.md, "LAN parties"):
///
///     BT-SEARCH * HTTP/1.1\r\n
///     Host: 239.192.152.143:6771\r\n
///     Port: 41234\r\n
///     Infohash: 0123…(40 hex digits)\r\n
///     cookie: host.9f3a5c2e71b04d88\r\n
///     \r\n
///     \r\n
///
/// `Port` is where the sender's sessions listen (its one UDP socket); the address is the
/// datagram's source IP. turf's cookie says the role: `join.` + 16 hex digits for a joiner's
/// search, `host.` + 16 hex digits for a lobby's announce. The cookie is random per process and
/// says nothing else; other BEP 14 clients put any opaque text there.
///
/// Parsing is strict and bounded: every datagram comes from anyone on the LAN. A datagram larger
/// than `maxBytes`, a byte that is not printable ASCII (CR and LF excepted), a first line other
/// than `BT-SEARCH * HTTP/1.1`, more than `maxHeaders` header lines, a header without `:`, a
/// missing or repeated `Host` or `Port`, a port outside 1-65535, an info-hash that is not 40 hex
/// digits, more than `maxInfoHashes` of them, or a cookie longer than `maxCookie`: the whole
/// message is refused with the reason (`LSDMessage.Problem`), which the caller counts.
public struct LSDMessage: Equatable, Sendable {
    public var host: String
    public var port: UInt16
    public var infoHashes: [NodeID]
    public var cookie: String?

    public static let startLine = "BT-SEARCH * HTTP/1.1"
    /// BEP 14's groups and port.
    public static let port: UInt16 = 6771
    public static let group4 = PeerAddress(239, 192, 152, 143, port: port)
    public static let group6 = PeerAddress("[ff15::efc0:988f]:6771")!
    public static let host4 = "239.192.152.143:6771"
    public static let host6 = "[ff15::efc0:988f]:6771"

    /// Bounds. A turf message is about 150 bytes; libtorrent's carry a few info-hashes at most.
    public static let maxBytes = 1024
    public static let maxHeaders = 24
    public static let maxInfoHashes = 16
    public static let maxCookie = 64

    public init(host: String = LSDMessage.host4, port: UInt16, infoHashes: [NodeID], cookie: String?) {
        self.host = host
        self.port = port
        self.infoHashes = infoHashes
        self.cookie = cookie
    }

    /// Why a datagram is not a message.
    public enum Problem: String, Error, Sendable, CaseIterable {
        case oversized, binary, startLine, tooManyHeaders, headerLine, host, port, infoHash, tooManyInfoHashes,
            cookie
    }

    /// The wire form: CRLF line ends, the two empty lines BEP 14 shows at the end.
    public func encode() -> [UInt8] {
        var s = "\(Self.startLine)\r\nHost: \(host)\r\nPort: \(port)\r\n"
        for h in infoHashes { s += "Infohash: \(h.hexString)\r\n" }
        if let cookie { s += "cookie: \(cookie)\r\n" }
        s += "\r\n\r\n"
        return Array(s.utf8)
    }

    /// Parses one datagram (see the type's notes for what is refused).
    public static func parse(_ bytes: [UInt8]) -> Result<LSDMessage, Problem> {
        guard bytes.count <= maxBytes else { return .failure(.oversized) }
        // Printable ASCII, tab, CR and LF only: nothing else belongs in these headers.
        guard bytes.allSatisfy({ (0x20...0x7E).contains($0) || $0 == 0x0D || $0 == 0x0A || $0 == 0x09 }) else {
            return .failure(.binary)
        }
        // Lines end with LF; a CR before it is dropped (CRLF is what BEP 14 sends).
        var lines = bytes.split(separator: 0x0A, omittingEmptySubsequences: false).map { line -> String in
            let l = line.last == 0x0D ? line.dropLast() : line[...]
            return String(decoding: l, as: UTF8.self)
        }
        guard let first = lines.first, first == startLine else { return .failure(.startLine) }
        lines.removeFirst()
        // Headers end at the first empty line; what follows (BEP 14's second empty line) is ignored.
        let headers = lines.prefix { !$0.isEmpty }
        guard headers.count <= maxHeaders else { return .failure(.tooManyHeaders) }
        var host: String?
        var port: UInt16?
        var hashes: [NodeID] = []
        var cookie: String?
        for line in headers {
            guard let colon = line.firstIndex(of: ":") else { return .failure(.headerLine) }
            let name = line[..<colon].lowercased()
            let value = trim(line[line.index(after: colon)...])
            guard !name.isEmpty, !name.contains(" ") else { return .failure(.headerLine) }
            switch name {
            case "host":
                guard host == nil, !value.isEmpty else { return .failure(.host) }
                host = value
            case "port":
                guard port == nil, (1...5).contains(value.count), value.allSatisfy(\.isASCIIDigit),
                    let p = Int(value), (1...65535).contains(p)
                else { return .failure(.port) }
                port = UInt16(p)
            case "infohash":
                guard value.count == 40, value.allSatisfy(\.isHexDigit), let h = NodeID(hex: value.lowercased()) else {
                    return .failure(.infoHash)
                }
                guard hashes.count < maxInfoHashes else { return .failure(.tooManyInfoHashes) }
                if !hashes.contains(h) { hashes.append(h) }
            case "cookie":
                guard cookie == nil, value.utf8.count <= maxCookie else { return .failure(.cookie) }
                cookie = value
            default:
                continue  // other headers (BEP 14 allows them) are skipped
            }
        }
        guard let host else { return .failure(.host) }
        guard let port else { return .failure(.port) }
        guard !hashes.isEmpty else { return .failure(.infoHash) }
        return .success(LSDMessage(host: host, port: port, infoHashes: hashes, cookie: cookie))
    }

    private static func trim(_ s: Substring) -> String {
        var t = s
        while let c = t.first, c == " " || c == "\t" { t.removeFirst() }
        while let c = t.last, c == " " || c == "\t" { t.removeLast() }
        return String(t)
    }
}

extension Character {
    fileprivate var isASCIIDigit: Bool { isASCII && isNumber }
}
