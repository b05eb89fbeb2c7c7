/// Where `turf dht` finds its bootstrap nodes: pure logic, so it is testable without a network.
public enum DHTBootstrap {
    /// The public Mainline routers, used when nothing else is configured.
    public static let publicRouters = ["router.bittorrent.com:6881", "dht.transmissionbt.com:6881", "router.utorrent.com:6881"]

    /// The word that means "no bootstrap nodes, on purpose" (the first node of a new network).
    public static let none = "none"

    /// HOST:PORT specs, first source that applies: `flags`; `$TURF_DHT_BOOTSTRAP` (comma or space
    /// separated); a `bootstrap = ...` line in `$XDG_CONFIG_HOME/turf/dht.conf` (default
    /// `~/.config`); the public routers. An empty result means none on purpose: a source that says
    /// `none`, or a `bootstrap =` line with nothing after it.
    /// `readFile` returns a file's text, or nil if it cannot be read.
    public static func specs(flags: [String], environment: [String: String], homeDirectory: String,
                             readFile: (String) -> String?) -> [String] {
        func split(_ s: String) -> [String] {
            let parts = s.split(whereSeparator: { (c: Character) in c == "," || c == " " || c == "\t" }).map(String.init)
            return parts.filter { $0 != none }
        }
        if !flags.isEmpty { return flags.flatMap { split($0) } }
        if let env = environment["TURF_DHT_BOOTSTRAP"], !env.isEmpty { return split(env) }
        if let path = configPath(environment: environment, homeDirectory: homeDirectory), let text = readFile(path) {
            for line in text.split(separator: "\n") {
                let parts = line.split(separator: "=", maxSplits: 1, omittingEmptySubsequences: false)
                    .map { $0.trimmingCharacters(in: " \t\r") }
                if parts.count == 2 && parts[0] == "bootstrap" { return split(parts[1]) }
            }
        }
        return publicRouters
    }

    /// `$XDG_CONFIG_HOME/turf/dht.conf`, `$XDG_CONFIG_HOME` defaulting to `~/.config`.
    public static func configPath(environment: [String: String], homeDirectory: String) -> String? {
        let configHome = environment["XDG_CONFIG_HOME"].flatMap { $0.isEmpty ? nil : $0 } ?? (homeDirectory + "/.config")
        return configHome + "/turf/dht.conf"
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
