import ArgumentParser
import DHT
import Dispatch
import Foundation
import NetCore
import NetStack
#if canImport(Glibc)
import Glibc
#endif

/// `turf dht ...`: run a Mainline DHT node, announce or look up a topic (docs/dht.md).
struct DHTCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "dht",
        abstract: "The Mainline DHT: serve, announce, look up, and compute topic info-hashes.",
        subcommands: [DHTServe.self, DHTAnnounce.self, DHTLookup.self, DHTInfohash.self])
}

/// Options shared by the commands that run a node.
struct DHTNodeOptions: ParsableArguments {
    @Option(help: "UDP port to bind (0: any free port).") var port: UInt16 = 0
    @Option(help: "IPv4 address to bind.") var bind = "0.0.0.0"
    @Option(name: .customLong("bootstrap"), parsing: .singleValue,
            help: "Bootstrap node HOST:PORT (repeatable; 'none': start a new network). Default: $TURF_DHT_BOOTSTRAP, then the config file, then the public Mainline routers.")
    var bootstrap: [String] = []
    @Option(help: "Routing table state file (default: $XDG_STATE_HOME/turf/dht-PORT.state, or dht.state without --port).") var state: String?
    @Flag(help: "Do not load or save the routing table.") var noState = false
    @Flag(name: .customLong("read-only"), help: "BEP 43 read-only mode: query, never answer.") var readOnly = false
}

/// `close(2)`, callable where a method named `close` hides it.
private func closeDescriptor(_ fd: Int32) { _ = close(fd) }

enum DHTCLI {
    /// Flags, else $TURF_DHT_BOOTSTRAP, else the config file, else the public routers
    /// (`DHTBootstrap.specs`, which the tests check without a network).
    static func bootstrapSpecs(_ flags: [String]) -> [String] {
        DHTBootstrap.specs(flags: flags, environment: ProcessInfo.processInfo.environment, homeDirectory: NSHomeDirectory()) {
            try? String(contentsOfFile: $0, encoding: .utf8)
        }
    }

    /// The bootstrap addresses; an error if nodes were configured and none of them resolves (a
    /// node without any would sit alone). No nodes at all only when the user said `none`.
    static func bootstrapAddresses(_ flags: [String]) throws -> [PeerAddress] {
        let specs = bootstrapSpecs(flags)
        let addresses = specs.flatMap(resolve)
        if !specs.isEmpty && addresses.isEmpty {
            throw ValidationError("no bootstrap node could be resolved (\(specs.joined(separator: ", "))); give --bootstrap HOST:PORT, or --bootstrap none to start a new network")
        }
        return addresses
    }

    /// Seconds given on the command line, as Nanos; refuses what would not fit.
    static func checkSeconds(_ s: Double, _ option: String) throws {
        guard s.isFinite, s >= 0, s <= maxSeconds else {
            throw ValidationError("\(option) must be between 0 and \(Int(maxSeconds)) seconds")
        }
    }
    /// About 31 years: far below what Nanos holds (584 years).
    static let maxSeconds: Double = 1e9

    /// Resolves HOST:PORT to IPv4 addresses (here, in the shell: the DHT core never resolves names).
    static func resolve(_ spec: String) -> [PeerAddress] {
        if let a = PeerAddress(spec) { return [a] }
        guard let colon = spec.lastIndex(of: ":"), let port = UInt16(spec[spec.index(after: colon)...]) else { return [] }
        let host = String(spec[..<colon])
        var hints = addrinfo()
        hints.ai_family = AF_INET
        hints.ai_socktype = Int32(SOCK_DGRAM.rawValue)
        var res: UnsafeMutablePointer<addrinfo>?
        guard getaddrinfo(host, nil, &hints, &res) == 0, let first = res else { return [] }
        defer { freeaddrinfo(first) }
        var out: [PeerAddress] = []
        var p: UnsafeMutablePointer<addrinfo>? = first
        while let ai = p {
            if ai.pointee.ai_family == AF_INET, let sa = ai.pointee.ai_addr {
                let sin = sa.withMemoryRebound(to: sockaddr_in.self, capacity: 1) { $0.pointee }
                let a = PeerAddress(ip: UInt32(bigEndian: sin.sin_addr.s_addr), port: port)
                if !out.contains(a) { out.append(a) }
            }
            p = ai.pointee.ai_next
        }
        return out
    }

    static func statePath(_ o: DHTNodeOptions, port: UInt16) -> String? {
        if o.noState { return nil }
        if let s = o.state { return s }
        let env = ProcessInfo.processInfo.environment
        let stateHome = env["XDG_STATE_HOME"].flatMap { $0.isEmpty ? nil : $0 } ?? (NSHomeDirectory() + "/.local/state")
        // A fixed port keeps its own table; ephemeral-port runs (lookups) share one.
        return stateHome + (o.port == 0 ? "/turf/dht.state" : "/turf/dht-\(o.port).state")
    }

    static func infoHash(topic: String?, infohash: String?) throws -> NodeID {
        switch (topic, infohash) {
        case let (t?, nil): return Topic.infoHash(t)
        case let (nil, h?):
            guard let id = NodeID(hex: h) else { throw ValidationError("--infohash must be 40 hex digits") }
            return id
        default: throw ValidationError("give exactly one of --topic and --infohash")
        }
    }

    /// A node on a real UDP socket (a `LivePeer`: the socket, its demultiplexer and the DHT node;
    /// no sessions, as these commands have no identity), with its state file.
    final class Running {
        let live: LivePeer
        let statePath: String?
        /// Held (flock) while this run owns the state file.
        private var lockFD: Int32 = -1

        init(_ o: DHTNodeOptions, verbose: Bool) throws {
            guard let ip = PeerAddress.parseIPv4(o.bind) else { throw ValidationError("--bind must be an IPv4 address") }
            var config = DHTConfig()
            config.readOnly = o.readOnly
            config.bootstrap = try bootstrapAddresses(o.bootstrap)
            // One run per state file owns it (its id and its saves): a second run sharing it (two
            // lookups without --port, say) reads its nodes but takes a fresh id and saves nothing.
            let path = DHTCLI.statePath(o, port: o.port)
            var owned = false
            if let path {
                let dir = (path as NSString).deletingLastPathComponent
                try? FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
                lockFD = open(path + ".lock", O_RDWR | O_CREAT | O_CLOEXEC, 0o600)
                owned = lockFD >= 0 && flock(lockFD, LOCK_EX | LOCK_NB) == 0
            }
            statePath = owned ? path : nil
            var saved: [NodeInfo] = []
            if let path, let data = FileManager.default.contents(atPath: path),
               let s = try? DHTNode.savedState(Array(data)) {
                // Loaded, not pinned: a BEP 42 id replaces it if it does not fit our public IP.
                if owned { config.savedNodeID = s.id }
                saved = s.nodes
            }
            do {
                live = try LivePeer.bind(PeerAddress(ip: ip, port: o.port), dht: config)
            } catch {
                if lockFD >= 0 { closeDescriptor(lockFD); lockFD = -1 }
                throw error
            }
            if verbose {
                FileHandle.standardError.write("dht: bound \(live.localAddress); bootstrap \(config.bootstrap.map(\.description).joined(separator: ", "))\n".data(using: .utf8)!)
                if let path, !owned {
                    FileHandle.standardError.write("dht: \(path) is in use by another run; using a fresh id and not saving\n".data(using: .utf8)!)
                }
            }
            live.start(savedNodes: saved)
            scheduleSave()
        }

        var localAddress: PeerAddress { live.localAddress }

        func scheduleSave() {
            live.execute { [self] peer in
                peer.host.schedule(after: .seconds(30)) { [self] in
                    save()
                    scheduleSave()
                }
            }
        }

        /// Writes the routing table (from the event loop or outside it).
        func save() {
            guard let path = statePath else { return }
            let bytes = live.onEventLoop ? live.peer.dht.serializedState() : ((try? live.sync { $0.dht.serializedState() }) ?? [])
            guard !bytes.isEmpty else { return }
            let dir = (path as NSString).deletingLastPathComponent
            try? FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
            let tmp = path + ".tmp"
            if FileManager.default.createFile(atPath: tmp, contents: Data(bytes), attributes: [.posixPermissions: 0o600]) {
                _ = rename(tmp, path)
            }
        }

        /// Waits on the calling thread for `work`'s callback (bounded by `timeout`).
        func waitFor<T>(timeout: Double, _ work: @escaping (DHTNode, @escaping (T) -> Void) -> Void) -> T? {
            live.waitFor(timeout: timeout) { peer, done in work(peer.dht, done) }
        }

        func snapshot() -> (external: PeerAddress?, nat: NATType, nodes: Int, stats: DHTStats, id: NodeID) {
            (try? live.sync { p in (p.dht.externalAddress, p.dht.natType, p.dht.routingTableSize, p.dht.stats, p.dht.id) })
                ?? (nil, .unknown, 0, DHTStats(), NodeID.zero)
        }

        func close() {
            save()
            live.close()
            if lockFD >= 0 { closeDescriptor(lockFD); lockFD = -1 }
        }
    }


    static func waitForever(until deadline: Double?) {
        if let d = deadline {
            while Date().timeIntervalSince1970 < d { Thread.sleep(forTimeInterval: min(1, d - Date().timeIntervalSince1970)) }
        } else {
            while true { Thread.sleep(forTimeInterval: 3600) }
        }
    }
}

struct DHTServe: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "serve", abstract: "Run a long-lived DHT node (a LAN bootstrap or a helper for the public network).")
    @OptionGroup var node: DHTNodeOptions
    @Option(help: "Stop after this many seconds (default: run until killed).") var duration: Double?
    @Option(help: "Print a status line every this many seconds (0: never).") var statusEvery: Double = 60

    func validate() throws {
        if let d = duration { try DHTCLI.checkSeconds(d, "--duration") }
        try DHTCLI.checkSeconds(statusEvery, "--status-every")
    }

    func run() throws {
        let r = try DHTCLI.Running(node, verbose: true)
        print("dht serve: listening on \(r.localAddress) node id \(r.snapshot().id.hexString)")
        fflush(stdout)
        let end = duration.map { Date().timeIntervalSince1970 + $0 }
        while end.map({ Date().timeIntervalSince1970 < $0 }) ?? true {
            let step = min(statusEvery > 0 ? statusEvery : 3600, end.map { $0 - Date().timeIntervalSince1970 } ?? 3600)
            if step > 0 { Thread.sleep(forTimeInterval: step) }
            let s = r.snapshot()
            if statusEvery > 0 {
                print("dht: \(s.nodes) nodes; external \(s.external?.description ?? "unknown") (\(s.nat.rawValue)); answered \(s.stats.queriesAnswered), dropped malformed \(s.stats.malformed) rate-limited \(s.stats.rateLimited)")
            }
        }
        r.close()
    }
}

/// What `announce` and `lookup` act on: a topic or a raw info-hash.
struct DHTTargetOptions: ParsableArguments {
    @Option(help: "Topic (hashed to an info-hash as docs/dht.md describes).") var topic: String?
    @Option(help: "Info-hash, 40 hex digits.") var infohash: String?

    func infoHash() throws -> NodeID { try DHTCLI.infoHash(topic: topic, infohash: infohash) }
}

struct DHTAnnounce: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "announce", abstract: "Join, announce a topic with implied_port, and keep re-announcing.")
    @OptionGroup var node: DHTNodeOptions
    @OptionGroup var target: DHTTargetOptions
    @Option(help: "Seconds to keep announcing.") var duration: Double = 1800
    @Flag(help: "Print JSON lines.") var json = false

    func validate() throws { try DHTCLI.checkSeconds(duration, "--duration") }

    func run() throws {
        let h = try target.infoHash()
        let r = try DHTCLI.Running(node, verbose: !json)
        let port = r.localAddress.port
        let durationNanos = Nanos(duration * 1e9)
        r.live.execute { peer in
            let node = peer.dht
            node.keepAnnouncing(h, port: port, impliedPort: true, duration: durationNanos) { result, stored in
                if json {
                    print("{\"info_hash\":\"\(h.hexString)\",\"stored_on\":\(stored),\"closest\":\(result.closest.count),\"queries\":\(result.queriesSent),\"external_address\":\(node.externalAddress.map { "\"\($0)\"" } ?? "null")}")
                } else {
                    print("announced \(h.hexString) on \(stored) of \(result.closest.count) closest nodes (\(result.queriesSent) queries); external address \(node.externalAddress?.description ?? "unknown")")
                }
                fflush(stdout)
            }
        }
        DHTCLI.waitForever(until: Date().timeIntervalSince1970 + duration)
        r.close()
    }
}

struct DHTLookup: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "lookup", abstract: "Find the peers announced on a topic, and this node's external address.")
    @OptionGroup var node: DHTNodeOptions
    @OptionGroup var target: DHTTargetOptions
    @Option(help: "Give up after this many seconds.") var timeout: Double = 30
    @Flag(help: "Print one JSON object.") var json = false

    func validate() throws { try DHTCLI.checkSeconds(timeout, "--timeout") }

    func run() throws {
        let h = try target.infoHash()
        let r = try DHTCLI.Running(node, verbose: !json)
        let started = Date()
        // Join first (the node's start lookup), then the get_peers lookup.
        _ = r.waitFor(timeout: timeout) { (n: DHTNode, done: @escaping (Bool) -> Void) in n.findNode(n.id) { _ in done(true) } }
        let left = max(1, timeout - Date().timeIntervalSince(started))
        let result = r.waitFor(timeout: left) { (n: DHTNode, done: @escaping (LookupResult) -> Void) in n.getPeers(h, done) }
        let s = r.snapshot()
        r.close()
        let peers = result?.peers ?? []
        if json {
            struct Out: Encodable {
                var info_hash: String
                var peers: [String]
                var external_address: String?
                var nat: String
                var nodes_answered: Int
                var queries: Int
                var completed: Bool
            }
            let out = Out(info_hash: h.hexString, peers: peers.map(\.description), external_address: s.external?.description,
                          nat: s.nat.rawValue, nodes_answered: result?.closest.count ?? 0, queries: result?.queriesSent ?? 0,
                          completed: result != nil)
            let enc = JSONEncoder()
            enc.outputFormatting = [.sortedKeys]
            print(String(decoding: try enc.encode(out), as: UTF8.self))
        } else {
            print("info-hash \(h.hexString): \(peers.count) peer\(peers.count == 1 ? "" : "s")\(result == nil ? " (lookup timed out)" : "")")
            for p in peers { print("  \(p)") }
            print("external address: \(s.external?.description ?? "unknown") (NAT \(s.nat.rawValue))")
        }
        if result == nil { throw ExitCode(2) }
    }
}

struct DHTInfohash: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "infohash", abstract: "Print the info-hash of a topic.")
    @Option(help: "The topic.") var topic: String

    func run() {
        print(Topic.infoHash(topic).hexString)
    }
}
