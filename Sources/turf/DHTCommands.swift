import ArgumentParser
import DHT
import Dispatch
import Foundation
import LocalFiles
import Logging
import NetCore
import NetPOSIX
import NetStack
import TextOutput

#if canImport(Glibc)
    import Glibc
#elseif canImport(Darwin)
    import Darwin
#endif

/// `turf dht ...`: run a Mainline DHT node, announce or look up a topic (docs/dht.md).
struct DHTCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "dht",
        abstract: "The Mainline DHT: serve, announce, look up, and compute topic info-hashes.",
        subcommands: [DHTServe.self, DHTAnnounce.self, DHTLookup.self, DHTInfohash.self]
    )
}

/// The socket a command binds and the DHT it bootstraps from: shared by `turf dht serve/announce/
/// lookup` (through `DHTNodeOptions`) and by `turf host` / `turf join`. The default address is
/// `::`: one dual-stack socket, so the node takes part in the IPv4 and the IPv6 DHT (BEP 32) and
/// sessions reach peers of both families (where the system has no IPv6, `UDPHost` binds 0.0.0.0).
struct SocketOptions: ParsableArguments {
    @Option(help: "UDP port to bind (0: any free port).") var port: UInt16 = 0
    @Option(help: "Address to bind: IPv4 or IPv6; \"::\" (the default) is both families on one socket.")
    var bind = "::"
    @Option(
        name: .customLong("bootstrap"),
        parsing: .singleValue,
        help: ArgumentHelp(
            "Bootstrap node HOST:PORT (repeatable, or comma separated; 'none': start a new network). Default: $TURF_DHT_BOOTSTRAP, then the config file, then the public Mainline routers.",
            valueName: "host:port|none"
        )
    )
    var bootstrap: [BootstrapArgument] = []

    /// `--bind` and `--port` as an address.
    func bindAddress() throws -> PeerAddress {
        guard let a = PeerAddress(host: bind, port: port) else {
            throw ValidationError("--bind must be an IPv4 or IPv6 address")
        }
        return a
    }

    /// The bootstrap nodes: the flags, else the environment, the config file, the public routers.
    func bootstrapAddresses() throws -> [PeerAddress] { try DHTCLI.bootstrapAddresses(bootstrap.map(\.text)) }
}

/// Options shared by the commands that run a node.
struct DHTNodeOptions: ParsableArguments {
    @OptionGroup var socket: SocketOptions
    @Option(
        help: "Routing table state file (default: $XDG_STATE_HOME/turf/dht-PORT.state, or dht.state without --port)."
    ) var state: String?
    @Flag(help: "Do not load or save the routing table.") var noState = false
    @Flag(name: .customLong("read-only"), help: "BEP 43 read-only mode: query, never answer.") var readOnly = false
}

/// One `--bootstrap` value: `none`, or HOST:PORT[,HOST:PORT…]; anything else gets the parser's error.
struct BootstrapArgument: ExpressibleByArgument {
    let text: String
    init?(argument: String) {
        guard (try? DHTBootstrap.parseList(argument, source: "--bootstrap")) != nil else { return nil }
        text = argument
    }
    static var defaultCompletionKind: CompletionKind { .default }
}

/// `close(2)`, callable where a method named `close` hides it.
private func closeDescriptor(_ fd: Int32) { _ = close(fd) }

enum DHTCLI {
    /// Flags, else $TURF_DHT_BOOTSTRAP, else the config file, else the public routers
    /// (`DHTBootstrap.specs`, which the tests check without a network). A setting that cannot be
    /// read or parsed is an error: never a silent fallback to the public network.
    static func bootstrapSpecs(_ flags: [String]) throws -> [String] {
        do {
            return try DHTBootstrap.specs(
                flags: flags,
                environment: ProcessInfo.processInfo.environment,
                homeDirectory: NSHomeDirectory()
            ) {
                try UntrustedFile.readTextIfPresent($0, limit: DHTBootstrap.configLimit, what: "DHT config")
            }
        } catch let e as DHTBootstrap.SettingError {
            throw CLIError(SafeText.display(e.description, limit: 400))
        }
    }

    /// The bootstrap addresses; an error if nodes were configured and none of them resolves (a
    /// node without any would sit alone). No nodes at all only when the user said `none`.
    static func bootstrapAddresses(_ flags: [String]) throws -> [PeerAddress] {
        let specs = try bootstrapSpecs(flags)
        let addresses = specs.flatMap(resolve)
        if !specs.isEmpty && addresses.isEmpty { throw CLIError(unresolvedMessage(specs)) }
        return addresses
    }

    static func unresolvedMessage(_ specs: [String]) -> String {
        "no bootstrap node could be resolved (\(specs.joined(separator: ", "))); give --bootstrap HOST:PORT, or --bootstrap none to start a new network"
    }

    /// Resolves HOST:PORT (an IPv4 address, `[IPv6]:PORT`, or a host name) to addresses of both
    /// families (here, in the shell: the DHT core never resolves names). The node uses those of
    /// the families its socket reaches (BEP 32: each family bootstraps its own DHT).
    static func resolve(_ spec: String) -> [PeerAddress] {
        if let a = PeerAddress(spec) { return [a] }
        guard !spec.hasPrefix("["), let colon = spec.lastIndex(of: ":"),
            let port = UInt16(spec[spec.index(after: colon)...])
        else {
            return []
        }
        let host = String(spec[..<colon])
        var hints = addrinfo()
        hints.ai_family = AF_UNSPEC
        #if os(Linux)
            hints.ai_socktype = Int32(SOCK_DGRAM.rawValue)  // an enum in Glibc
        #else
            hints.ai_socktype = SOCK_DGRAM  // an Int32 in Darwin
        #endif
        var res: UnsafeMutablePointer<addrinfo>?
        guard getaddrinfo(host, nil, &hints, &res) == 0, let first = res else { return [] }
        defer { freeaddrinfo(first) }
        var out: [PeerAddress] = []
        var p: UnsafeMutablePointer<addrinfo>? = first
        while let ai = p {
            if let sa = ai.pointee.ai_addr {
                var a: PeerAddress?
                if ai.pointee.ai_family == AF_INET {
                    let sin = sa.withMemoryRebound(to: sockaddr_in.self, capacity: 1) { $0.pointee }
                    a = PeerAddress(ip: UInt32(bigEndian: sin.sin_addr.s_addr), port: port)
                } else if ai.pointee.ai_family == AF_INET6 {
                    let sin6 = sa.withMemoryRebound(to: sockaddr_in6.self, capacity: 1) { $0.pointee }
                    let bytes = withUnsafeBytes(of: sin6.sin6_addr) { Array($0) }
                    a = IPv6Address(bytes: bytes).map { PeerAddress(ip6: $0, port: port) }
                }
                if let a, !out.contains(a) { out.append(a) }
            }
            p = ai.pointee.ai_next
        }
        return out
    }

    /// Whether a socket bound at `local` reaches `a`: `::` reaches both families, any other
    /// address its own.
    static func reaches(_ local: PeerAddress, _ a: PeerAddress) -> Bool {
        local.ip6?.isUnspecified == true || local.isIPv6 == a.isIPv6
    }

    /// `--state`, else `XDGPaths.dhtState`: a fixed port keeps its own table; ephemeral-port runs
    /// (lookups) share one.
    static func statePath(_ o: DHTNodeOptions) -> String? {
        if o.noState { return nil }
        return o.state ?? XDGPaths().dhtState(port: o.socket.port)
    }

    /// Writes one line to stdout in one write(2), newline included: a line never merges with
    /// anything else written to the same terminal or file.
    static func emit(_ line: String) {
        let bytes = Array((line + "\n").utf8)
        try? DurableFile.writeAll(STDOUT_FILENO, bytes)
    }

    static func infoHash(topic: String?, infohash: String?) throws -> NodeID {
        switch (topic, infohash) {
        case (let t?, nil): return Topic.infoHash(t)
        case (nil, let h?):
            guard let id = NodeID(hex: h) else { throw ValidationError("--infohash must be 40 hex digits") }
            return id
        default: throw ValidationError("give exactly one of --topic and --infohash")
        }
    }

    /// A node on a real UDP socket (a `LivePeer`: the socket, its demultiplexer and the DHT node;
    /// no sessions, as these commands have no identity), with its state file. Made and closed on
    /// the calling thread; Sendable so the save timer on the event loop can hold it.
    final class Running: Sendable {
        let live: LivePeer
        let statePath: String?
        /// Held (flock) while this run owns the state file; closed by `close()` (called once).
        private let lockFD: Int32

        init(_ o: DHTNodeOptions, verbose: Bool) throws {
            // Logs go to the log file, never between the command's output lines.
            Logs.bootstrap()
            let address = try o.socket.bindAddress()
            var config = DHTConfig()
            config.readOnly = o.readOnly
            config.bootstrap = try o.socket.bootstrapAddresses()
            // The state file is checked, locked and read before the socket is bound: a bad one is
            // an error at once. One run per state file owns it (its id and its saves): a second
            // run sharing it (two lookups without --port, say) reads its nodes but takes a fresh
            // id and saves nothing.
            let path = DHTCLI.statePath(o)
            var owned = false
            var saved: [NodeInfo] = []
            var lockFD: Int32 = -1
            if let path {
                try DurableFile.checkTarget(path, overwrite: true)
                try DurableFile.ensureDirectory(DurableFile.directory(of: path))
                do {
                    lockFD = try FileLock.acquire(path + ".lock") ?? -1
                } catch let e as FileError {
                    throw CLIError("cannot use the DHT state file \(path): \(e)")
                }
                owned = lockFD >= 0
                if !owned && verbose {
                    printErr(
                        "dht: \(SafeText.display(path, limit: 400)) is in use by another run; using a fresh id and not saving"
                    )
                }
                if let bytes = try UntrustedFile.readIfPresent(
                    path,
                    limit: DHTNode.maxStateFileSize,
                    what: "DHT state file"
                ) {
                    let s: (id: NodeID, nodes: [NodeInfo])
                    do { s = try DHTNode.savedState(bytes) } catch {
                        throw CLIError("DHT state file \(path) is damaged (\(error)); remove it, or pass --no-state")
                    }
                    // Loaded, not pinned: a BEP 42 id replaces it if it does not fit our public IP.
                    if owned { config.savedNodeID = s.id }
                    saved = s.nodes
                }
            }
            statePath = owned ? path : nil
            self.lockFD = lockFD
            do {
                live = try LivePeer.bind(address, dht: config)
            } catch {
                if lockFD >= 0 { closeDescriptor(lockFD) }
                throw error
            }
            // Bootstrap nodes only of a family the socket cannot reach would leave the node alone.
            if !config.bootstrap.isEmpty && !config.bootstrap.contains(where: { DHTCLI.reaches(live.localAddress, $0) })
            {
                let bound = live.localAddress
                live.close()
                if lockFD >= 0 { closeDescriptor(lockFD) }
                throw CLIError(
                    "no bootstrap node can be reached from \(bound) (bootstrap \(config.bootstrap.map(\.description).joined(separator: ", "))); bind another address family (--bind)"
                )
            }
            if verbose {
                printErr(
                    "dht: bound \(live.localAddress); bootstrap \(config.bootstrap.map(\.description).joined(separator: ", "))"
                )
            }
            live.start(savedNodes: saved)
            scheduleSave()
        }

        var localAddress: PeerAddress { live.localAddress }

        func scheduleSave() {
            live.execute { [self] peer in
                peer.host.schedule(after: .seconds(30)) { [self] in
                    do { try save() } catch {
                        Logger(label: "turf.dht").error("could not save the routing table: \(error)")
                    }
                    scheduleSave()
                }
            }
        }

        /// Writes the routing table durably (from the event loop or outside it); throws if it
        /// could not (the periodic saves log it, the last one is reported).
        func save() throws {
            guard let path = statePath else { return }
            let bytes =
                live.onEventLoop
                ? live.peer.dht.serializedState() : ((try? live.sync { $0.dht.serializedState() }) ?? [])
            guard !bytes.isEmpty else { return }
            try DurableFile.write(bytes, to: path, mode: 0o600, overwrite: true)
        }

        /// Waits on the calling thread for `work`'s callback (bounded by `timeout`, and cut short
        /// by a stop signal).
        func waitFor<T: Sendable>(
            timeout: Double,
            stop: StopSignals,
            _ work: @escaping @Sendable (DHTNode, @escaping (T) -> Void) -> Void
        ) -> T? {
            live.waitFor(timeout: timeout, interrupted: { stop.caught != nil }) { peer, done in work(peer.dht, done) }
        }

        /// What the node knows of itself: its external address per family (IPv4 with the NAT's
        /// kind; IPv6, if any IPv6 node reported one), routing table sizes, stats and id.
        struct Snapshot: Sendable {
            var external: PeerAddress?
            var nat: NATType
            var external6: PeerAddress?
            /// IPv6: open, firewalled or none (`IPv6Reach`).
            var ipv6: IPv6Reach
            var nodes4: Int
            var nodes6: Int
            var stats: DHTStats
            var id: NodeID
            var nodes: Int { nodes4 + nodes6 }
        }

        func snapshot() -> Snapshot {
            (try? live.sync { p in
                let d = p.dht
                return Snapshot(
                    external: d.externalAddress,
                    nat: d.natType,
                    external6: d.externalAddress6,
                    ipv6: IPv6Reach.classify(
                        socketSpeaksIPv6: p.dht.localAddress.isIPv6,
                        hasGlobalAddress: LocalInterfaces.hasGlobalIPv6(),
                        unsolicited: p.unsolicitedIPv6
                    ),
                    nodes4: d.routingTableSizes.v4,
                    nodes6: d.routingTableSizes.v6,
                    stats: d.stats,
                    id: d.id
                )
            })
                ?? Snapshot(
                    external: nil,
                    nat: .unknown,
                    external6: nil,
                    ipv6: .none,
                    nodes4: 0,
                    nodes6: 0,
                    stats: DHTStats(),
                    id: .zero
                )
        }

        /// Saves the table, stops the node and closes the socket. A save that fails is reported
        /// on stderr and makes the command exit 1 (unless a signal already sets the status).
        func close() throws {
            var saveError: Error?
            do { try save() } catch { saveError = error }
            live.close()
            if lockFD >= 0 { closeDescriptor(lockFD) }
            if let saveError { throw CLIError("could not save the routing table: \(saveError)") }
        }

        /// Closes, then ends the command as the signal (if any) says: exit 128 + the signal, the
        /// table saved first, as for any shell tool stopped by one.
        func finish(_ stop: StopSignals) throws {
            let signal = stop.caught
            do { try close() } catch {
                printErr("Error: " + SafeText.display("\(error)", limit: 2000))
                throw ExitCode(signal.map { 128 + $0 } ?? 1)
            }
            if let signal { throw ExitCode(128 + signal) }
        }
    }
}

/// SIGINT, SIGTERM and SIGHUP turned into an event the main thread waits for: the signal's
/// default action (death) is ignored, and a dispatch source (not a signal handler: no work runs
/// in signal context) records the signal and wakes the waiter, which saves and exits.
final class StopSignals: @unchecked Sendable {  // `caught` is guarded by `lock`; the sources are only touched in init.
    static let signals: [Int32] = [SIGINT, SIGTERM, SIGHUP]
    private let lock = NSLock()
    private var received: Int32?
    private let wake = DispatchSemaphore(value: 0)
    private var sources: [DispatchSourceSignal] = []
    private let queue = DispatchQueue(label: "turf.signals")

    init() {
        for s in StopSignals.signals {
            signal(s, SIG_IGN)
            let source = DispatchSource.makeSignalSource(signal: s, queue: queue)
            source.setEventHandler { [unowned self] in self.fire(s) }
            source.resume()
            sources.append(source)
        }
    }

    private func fire(_ s: Int32) {
        lock.lock()
        let first = received == nil
        if first { received = s }
        lock.unlock()
        if first { wake.signal() }
    }

    /// The first stop signal that arrived, if any.
    var caught: Int32? {
        lock.lock()
        defer { lock.unlock() }
        return received
    }

    /// Sleeps until `seconds` pass (nil: forever) or a stop signal arrives; returns the signal.
    @discardableResult
    func sleep(_ seconds: Double?) -> Int32? {
        if let s = caught { return s }
        if let seconds {
            guard seconds > 0 else { return nil }
            if wake.wait(timeout: .now() + seconds) == .success { wake.signal() }
        } else {
            wake.wait()
            wake.signal()
        }
        return caught
    }
}

/// What `announce` and `lookup` act on: a topic or a raw info-hash.
struct DHTTargetOptions: ParsableArguments {
    @Option(help: "Topic (hashed to an info-hash as docs/dht.md describes).") var topic: String?
    @Option(help: "Info-hash, 40 hex digits.") var infohash: String?

    func infoHash() throws -> NodeID { try DHTCLI.infoHash(topic: topic, infohash: infohash) }
}

struct DHTAnnounce: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "announce",
        abstract: "Join, announce a topic with implied_port, and keep re-announcing."
    )
    @OptionGroup var node: DHTNodeOptions
    @OptionGroup var target: DHTTargetOptions
    @Option(
        help: Limits.dhtSeconds.help("Seconds to keep announcing.", default: 1800),
        transform: Limits.dhtSeconds.parse
    )
    var duration: Double = 1800
    @Flag(help: "Print JSON lines.") var json = false

    func run() throws {
        let h = try target.infoHash()
        let stop = StopSignals()
        let r = try DHTCLI.Running(node, verbose: !json)
        let port = r.localAddress.port
        let durationNanos = Nanos(duration * 1e9)
        r.live.execute { peer in
            let node = peer.dht
            node.keepAnnouncing(h, port: port, impliedPort: true, duration: durationNanos) { result, stored in
                if json {
                    var j = JSONObject()
                    j.add("info_hash", h.hexString)
                    j.add("stored_on", stored)
                    j.add("closest", result.closest.count)
                    j.add("queries", result.queriesSent)
                    j.add("external_address", node.externalAddress?.description)
                    j.add("external_address_ipv6", node.externalAddress6?.description)
                    DHTCLI.emit(j.text)
                } else {
                    DHTCLI.emit(
                        "announced \(h.hexString) on \(stored) of \(result.closest.count) closest nodes (\(result.queriesSent) queries); external address \(node.externalAddress?.description ?? "unknown"), IPv6 \(node.externalAddress6?.description ?? "none")"
                    )
                }
            }
        }
        stop.sleep(duration)
        try r.finish(stop)
    }
}

struct DHTLookup: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "lookup",
        abstract: "Find the peers announced on a topic, and this node's external address."
    )
    @OptionGroup var node: DHTNodeOptions
    @OptionGroup var target: DHTTargetOptions
    @Option(
        help: Limits.dhtSeconds.help("Give up after this many seconds.", default: 30),
        transform: Limits.dhtSeconds.parse
    )
    var timeout: Double = 30
    @Flag(help: "Print one JSON object.") var json = false

    func run() throws {
        let h = try target.infoHash()
        let stop = StopSignals()
        let r = try DHTCLI.Running(node, verbose: !json)
        let started = Date()
        // Join first (the node's start lookup), then the get_peers lookup.
        _ = r.waitFor(timeout: timeout, stop: stop) { (n: DHTNode, done: @escaping (Bool) -> Void) in
            n.findNode(n.id) { _ in done(true) }
        }
        let left = max(1, timeout - Date().timeIntervalSince(started))
        let result =
            stop.caught != nil
            ? nil
            : r.waitFor(timeout: left, stop: stop) { (n: DHTNode, done: @escaping (LookupResult) -> Void) in
                n.getPeers(h, done)
            }
        let s = r.snapshot()
        try r.finish(stop)
        let peers = result?.peers ?? []
        if json {
            var j = JSONObject()
            j.add("completed", result != nil)
            j.add("external_address", s.external?.description)
            j.add("external_address_ipv6", s.external6?.description)
            j.add("info_hash", h.hexString)
            j.add("ipv6", s.ipv6.rawValue)
            j.add("nat", s.nat.rawValue)
            j.add("nodes_answered", result?.closest.count ?? 0)
            j.add("peers", peers.map(\.description))
            j.add("queries", result?.queriesSent ?? 0)
            print(j.text)
        } else {
            print(
                "info-hash \(h.hexString): \(peers.count) peer\(peers.count == 1 ? "" : "s")\(result == nil ? " (lookup timed out)" : "")"
            )
            for p in peers { print("  \(p)") }
            print("external address: \(s.external?.description ?? "unknown") (NAT \(s.nat.rawValue))")
            print("IPv6 external address: \(s.external6?.description ?? "none") (IPv6: \(s.ipv6.rawValue))")
        }
        if result == nil { throw ExitCode(2) }
    }
}

struct DHTInfohash: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "infohash",
        abstract: "Print the info-hash of a topic."
    )
    @Option(help: "The topic.") var topic: String

    func run() {
        print(Topic.infoHash(topic).hexString)
    }
}
