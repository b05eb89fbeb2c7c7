import LocalFiles
import NetCore

/// The app's configuration that the libraries never read: where `turf dht` (and `turf host`/`join`)
/// find their bootstrap nodes (`--bootstrap`, `$TURF_DHT_BOOTSTRAP`, `dht.conf`, the public routers).
/// The DHT itself takes a plain address list (`DHTConfig.bootstrap`). Pure logic, so it is testable
/// without a network.
///
/// A bootstrap setting decides which network a node joins, so one that cannot be read or parsed is
/// an error, never a silent fallback to the public routers (a player who set a LAN bootstrap must
/// not end up on the public DHT).
enum DHTBootstrap {
    /// The public Mainline routers, used when nothing else is configured.
    static let publicRouters = [
        "router.bittorrent.com:6881", "dht.transmissionbt.com:6881", "router.utorrent.com:6881",
    ]

    /// The word that means "no bootstrap nodes, on purpose" (the first node of a new network).
    static let none = "none"

    /// The largest `dht.conf` read (it holds a line or two).
    static let configLimit = 64 << 10

    /// A bootstrap setting that cannot be used: one line, naming where it came from.
    struct SettingError: Error, CustomStringConvertible, Equatable {
        var description: String
        init(_ description: String) { self.description = description }
    }

    /// HOST:PORT specs, first source that applies: `flags`; `$TURF_DHT_BOOTSTRAP` (comma or space
    /// separated; unset or empty: not given); a `bootstrap = ...` line in
    /// `$XDG_CONFIG_HOME/turf/dht.conf` (default `~/.config`); the public routers. An empty result
    /// means none on purpose: a source that says `none`, or a `bootstrap =` line with nothing
    /// after it. `readFile` returns a file's text, nil if there is no such file, and throws if it
    /// exists but cannot be read (not UTF-8, too large, not a regular file…): that is an error here.
    static func specs(
        flags: [String],
        environment: [String: String],
        homeDirectory: String,
        readFile: (String) throws -> String?
    ) throws -> [String] {
        if !flags.isEmpty {
            var all: [String] = []
            for f in flags { all += try parseList(f, source: "--bootstrap") }
            return try checkNone(all, source: "--bootstrap")
        }
        if let env = environment["TURF_DHT_BOOTSTRAP"], !env.isEmpty {
            return try parseList(env, source: "TURF_DHT_BOOTSTRAP")
        }
        let path = configPath(environment: environment, homeDirectory: homeDirectory)
        let text: String?
        do { text = try readFile(path) } catch {
            throw SettingError(
                "cannot read the DHT config: \(error) (fix or remove it; the public DHT is not used instead)"
            )
        }
        if let text, let specs = try parseConfig(text, path: path) { return specs }
        return publicRouters
    }

    /// A list of HOST:PORT separated by commas or spaces, or `none`. Every entry must be well
    /// formed; a list that names nothing at all (only spaces or commas) is an error, not `none`.
    static func parseList(_ s: String, source: String) throws -> [String] {
        let parts = s.split(whereSeparator: { $0 == "," || $0 == " " || $0 == "\t" }).map(String.init)
        guard !parts.isEmpty else {
            throw SettingError(
                "\(source) names no bootstrap node; give HOST:PORT[,HOST:PORT…], or 'none' to start a new network"
            )
        }
        for p in parts where p != none {
            guard isHostPort(p) else {
                throw SettingError(
                    "\(source): '\(p)' is not HOST:PORT (a host name, an IPv4 address or [an IPv6 address], a port 1-65535) or 'none'"
                )
            }
        }
        return try checkNone(parts, source: source)
    }

    /// `none` stands alone: mixed with nodes it is a contradiction, so an error.
    static func checkNone(_ parts: [String], source: String) throws -> [String] {
        guard parts.contains(none) else { return parts }
        guard parts.allSatisfy({ $0 == none }) else {
            throw SettingError("\(source): 'none' cannot be combined with bootstrap nodes")
        }
        return []
    }

    /// Whether `s` is HOST:PORT: a host name or dotted IPv4 address (letters, digits, '-', '.'),
    /// or an IPv6 address in brackets (`[2001:db8::1]:6881`), and a decimal port 1-65535.
    static func isHostPort(_ s: String) -> Bool {
        if s.hasPrefix("[") {
            guard let a = PeerAddress(s), a.port != 0 else { return false }
            return true
        }
        guard let colon = s.lastIndex(of: ":") else { return false }
        let host = s[..<colon]
        let port = s[s.index(after: colon)...]
        guard !host.isEmpty, host.count <= 253,
            host.unicodeScalars.allSatisfy({
                ($0.isASCII && ($0.properties.isAlphabetic || ("0"..."9").contains($0))) || $0 == "-" || $0 == "."
            }),
            !port.isEmpty, port.count <= 5, port.allSatisfy(\.isASCII), let p = Int(port), (1...65535).contains(p)
        else { return false }
        return true
    }

    /// The settings `dht.conf` may hold: `bootstrap`, `lan_discovery` (docs/nat.md, "LAN parties"),
    /// and `relay_service` and `relay_kib_per_second` (docs/nat.md, "Players relay for each other").
    static let settingNames = ["bootstrap", "lan_discovery", "relay_service", "relay_kib_per_second"]

    /// A `dht.conf`'s `key = value` lines, each with `path:line`. Blank lines and lines starting
    /// with `#` are skipped; any line ending (LF, CRLF, CR) is accepted. An unknown key, a line
    /// without `=` or a key given twice is an error naming `path:line`.
    static func settings(_ text: String, path: String) throws -> [(key: String, value: String, at: String)] {
        var out: [(key: String, value: String, at: String)] = []
        var lineNumber = 0
        for line in text.split(omittingEmptySubsequences: false, whereSeparator: \.isNewline) {
            lineNumber += 1
            let trimmed = line.trimmingCharacters(in: " \t")
            if trimmed.isEmpty || trimmed.hasPrefix("#") { continue }
            let parts = trimmed.split(separator: "=", maxSplits: 1, omittingEmptySubsequences: false)
                .map { $0.trimmingCharacters(in: " \t") }
            let at = "\(path):\(lineNumber)"
            guard parts.count == 2 else { throw SettingError("\(at): expected 'key = value'") }
            guard settingNames.contains(parts[0]) else {
                throw SettingError(
                    "\(at): unknown setting '\(parts[0].prefix(40))' (the settings are \(settingNames.map { "'\($0)'" }.joined(separator: ", ")))"
                )
            }
            guard !out.contains(where: { $0.key == parts[0] }) else {
                throw SettingError("\(at): a second '\(parts[0])' line")
            }
            out.append((parts[0], parts[1], at))
        }
        return out
    }

    /// The bootstrap nodes a `dht.conf` names: nil when it has no `bootstrap` line. A bad value,
    /// or anything `settings` refuses, is an error naming `path:line`.
    static func parseConfig(_ text: String, path: String) throws -> [String]? {
        // One file, one verdict: a bad line anywhere is an error.
        _ = try parseLANDiscovery(text, path: path)
        _ = try parseRelayService(text, path: path)
        guard let line = try settings(text, path: path).first(where: { $0.key == "bootstrap" }) else { return nil }
        return line.value.isEmpty ? [] : try parseList(line.value, source: line.at)
    }

    /// Whether `dht.conf` turns local discovery on or off (`lan_discovery = on|off`): nil when it
    /// says nothing. Any other value, or anything `settings` refuses, is an error naming `path:line`.
    static func parseLANDiscovery(_ text: String, path: String) throws -> Bool? {
        guard let line = try settings(text, path: path).first(where: { $0.key == "lan_discovery" }) else {
            return nil
        }
        switch line.value {
        case "on": return true
        case "off": return false
        default:
            throw SettingError("\(line.at): lan_discovery must be 'on' or 'off', not '\(line.value.prefix(40))'")
        }
    }

    /// What `dht.conf` says of relaying for others while playing: `relay_service = on|off` (nil
    /// when absent) and `relay_kib_per_second = N` (the total a player's relay forwards, 1–102400
    /// KiB/s; nil when absent). Any other value is an error naming `path:line`.
    static func parseRelayService(_ text: String, path: String) throws -> (on: Bool?, kibPerSecond: Int?) {
        let lines = try settings(text, path: path)
        var on: Bool?
        if let line = lines.first(where: { $0.key == "relay_service" }) {
            switch line.value {
            case "on": on = true
            case "off": on = false
            default:
                throw SettingError("\(line.at): relay_service must be 'on' or 'off', not '\(line.value.prefix(40))'")
            }
        }
        var kib: Int?
        if let line = lines.first(where: { $0.key == "relay_kib_per_second" }) {
            guard line.value.count <= 6, line.value.allSatisfy(\.isASCII), let n = Int(line.value),
                (1...102_400).contains(n)
            else {
                throw SettingError(
                    "\(line.at): relay_kib_per_second must be a whole number from 1 to 102400, not '\(line.value.prefix(40))'"
                )
            }
            kib = n
        }
        return (on, kib)
    }

    /// `$XDG_CONFIG_HOME/turf/dht.conf`, by the rules of every turf path (`XDGPaths`): `$HOME`
    /// (else `homeDirectory`) + `/.config` when `$XDG_CONFIG_HOME` is unset or relative.
    static func configPath(environment: [String: String], homeDirectory: String) -> String {
        var env = environment
        if env["HOME"]?.isEmpty ?? true { env["HOME"] = homeDirectory }
        return XDGPaths(environment: env).dhtConfig
    }
}

extension StringProtocol {
    fileprivate func trimmingCharacters(in set: String) -> String {
        let chars = Set(set)
        var s = Substring(self)
        while let f = s.first, chars.contains(f) { s.removeFirst() }
        while let l = s.last, chars.contains(l) { s.removeLast() }
        return String(s)
    }
}
