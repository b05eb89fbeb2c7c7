// swift-tools-version:6.1
// turf: a peer-to-peer territory game for the terminal, and the engine under it.
import PackageDescription

// Swift 6 language mode (complete concurrency checking) for every target: the tools-version
// already defaults to it; it is spelled out so no target slips back to Swift 5.
// Whole-program cross-module optimisation in release builds: the engine is generic over a game's
// rules, and without it every op merged in a replay goes through unspecialised generic code.
let settings: [SwiftSetting] = [
    .swiftLanguageMode(.v6),
    .unsafeFlags(["-cross-module-optimization"], .when(configuration: .release)),
]

let package = Package(
    name: "turf",
    platforms: [.macOS(.v14)],
    products: [
        .executable(name: "turf", targets: ["turf"]),
        // For the fuzzing package in Fuzz/, which depends on this one by path.
        .library(name: "FuzzHarness", targets: ["FuzzHarness"]),
        .library(name: "DHT", targets: ["DHT"]),
        .library(name: "TurfRules", targets: ["TurfRules"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser.git", from: "1.8.2"),
        .package(url: "https://github.com/apple/swift-log.git", from: "1.16.2"),
        .package(url: "https://github.com/apple/swift-nio.git", from: "2.101.2"),
        .package(url: "https://github.com/x-sheep/swift-property-based.git", from: "2.0.1"),
    ],
    targets: [
        // C libraries, wrapped.
        .systemLibrary(
            name: "CSodium",
            pkgConfig: "libsodium",
            providers: [.apt(["libsodium-dev"]), .brew(["libsodium"])]
        ),
        .systemLibrary(
            name: "CNcursesw",
            pkgConfig: "ncursesw",
            providers: [.apt(["libncursesw5-dev"]), .brew(["ncurses"])]
        ),
        .target(name: "CursesShim", dependencies: ["CNcursesw"]),

        // Deterministic building blocks shared by the engine and the network layers: seeded RNG,
        // a stable hash, byte readers/writers that report offsets.
        .target(name: "Determinism", swiftSettings: settings),

        // Text from files and peers shown to people (control characters escaped, length bounded)
        // and the one JSON writer: pure code, for the terminal, the command and the network layers.
        .target(name: "TextOutput", swiftSettings: settings),

        // Every file turf reads or writes: bounded reads of untrusted paths, durable writes, XDG paths.
        .target(name: "LocalFiles", swiftSettings: settings),

        // The network split as swift-nio splits itself (NIOCore / NIOPosix / NIOEmbedded):
        // NetCore: addresses, the datagram/timer interfaces, the demultiplexer, the UI mailbox and
        // the monotonic clock; no SwiftNIO.
        .target(name: "NetCore", swiftSettings: settings),
        // NetPOSIX: the real UDP host, on a SwiftNIO event loop.
        .target(
            name: "NetPOSIX",
            dependencies: [
                "NetCore",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
            ],
            swiftSettings: settings
        ),
        // TESTING DOUBLE. NetSim: the simulated network (virtual time, seeded link conditioner).
        // Used by tests, the session chaos runs, the fuzz harness and `turf bench`; the shipped
        // game's code paths do not use it.
        .target(name: "NetSim", dependencies: ["NetCore", "Determinism"], swiftSettings: settings),

        // Crypto, Noise, sessions.
        .target(name: "Sodium", dependencies: ["CSodium"], swiftSettings: settings),
        .target(name: "Noise", dependencies: ["Sodium"], swiftSettings: settings),
        // The one key type (a peer's Ed25519 public key and its `turf1…` text form): the transport,
        // the lobby, the engine (a player's owner) and the networked match all name peers by it.
        .target(name: "Keys", dependencies: ["Sodium"], swiftSettings: settings),
        .target(
            name: "Transport",
            dependencies: [
                "NetCore", "Noise", "Sodium", "Keys", "Determinism",
                .product(name: "Logging", package: "swift-log"),
            ],
            swiftSettings: settings
        ),

        // Untrusted bytes into every network parser: shared by the libFuzzer targets (Fuzz/) and
        // the corpus tests.
        .target(
            name: "FuzzHarness",
            dependencies: ["Transport", "Noise", "Sodium", "NetCore", "NetSim"],
            swiftSettings: settings
        ),

        // Bencode (BEP 3), strict and bounded: the DHT's wire format and the lobby record's.
        .target(name: "Bencode", swiftSettings: settings),

        // The Mainline DHT. It takes its bootstrap nodes as addresses: where they come from
        // (flags, $TURF_DHT_BOOTSTRAP, dht.conf, the public routers) is the app's (Sources/turf).
        .target(
            name: "DHT",
            dependencies: [
                "NetCore", "Bencode", "Sodium", "Determinism",
                .product(name: "Logging", package: "swift-log"),
            ],
            swiftSettings: settings
        ),
        // TESTING DOUBLE. DHTSim: thousands of real DHT nodes on NetSim (`turf bench dht`, tests).
        .target(name: "DHTSim", dependencies: ["DHT", "NetCore", "NetSim", "Determinism"], swiftSettings: settings),

        // This process on the network: one socket, its demultiplexer, the DHT node and the sessions.
        .target(
            name: "NetStack",
            dependencies: [
                "NetCore", "NetPOSIX", "DHT", "Transport", "Sodium", "Determinism",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "Logging", package: "swift-log"),
            ],
            swiftSettings: settings
        ),

        // TESTING DOUBLE. InternetSim: turf's players on a simulated internet (`turf bench internet`):
        // a plain Mainline DHT at scale, NATs, real-world latency and loss, lobbies, player relays.
        .target(
            name: "InternetSim",
            dependencies: [
                "NetCore", "NetSim", "DHT", "DHTSim", "NetStack", "Transport", "Sodium", "Determinism",
            ],
            swiftSettings: settings
        ),

        // The deterministic engine (generic over a game's rules) and turf's rules.
        .target(name: "Engine", dependencies: ["Determinism", "Keys"], swiftSettings: settings),
        .target(name: "TurfRules", dependencies: ["Engine", "Determinism", "Keys"], swiftSettings: settings),

        // The lobby protocol (docs/lobby.md): messages, their bounded codec, the seed's commit-reveal.
        .target(
            name: "Lobby",
            dependencies: ["Engine", "Determinism", "Sodium", "Keys", "NetCore", "Bencode"],
            swiftSettings: [.swiftLanguageMode(.v6)]
        ),

        // A networked match's replication: signed op logs, acks and relays, desync detection,
        // liveness; speaks to links (any session, or an in-memory pipe), not to the transport.
        .target(
            name: "NetMatch",
            dependencies: ["Engine", "Determinism", "Sodium", "Keys"],
            swiftSettings: [
                .swiftLanguageMode(.v6),
                .unsafeFlags(["-cross-module-optimization"], .when(configuration: .release)),
            ]
        ),
        // TESTING DOUBLE. NetMatchSim: a whole networked match in one process over an in-memory
        // network in virtual time (`turf bench netmatch`, the NetMatch tests).
        .target(
            name: "NetMatchSim",
            dependencies: ["NetMatch", "Engine", "Determinism", "Sodium", "Keys"],
            swiftSettings: [
                .swiftLanguageMode(.v6),
                .unsafeFlags(["-cross-module-optimization"], .when(configuration: .release)),
            ]
        ),

        // The networked game as a library with no I/O of its own (docs/lobby.md): the host's and the
        // joiner's lobby and the match session as state machines (link events and time in, link
        // actions and events out), driven by `turf` on the real event loop and by the chaos
        // harness on the simulated network.
        .target(
            name: "NetPlay",
            dependencies: ["Keys", "Lobby", "Engine", "NetMatch", "NetCore", "Sodium", "TextOutput"],
            swiftSettings: settings
        ),

        // TESTING DOUBLE. A whole networked match through the real stack (sessions, lobby codec,
        // NetMatch, engine) on the simulated network in virtual time: the session chaos runs of the
        // tests and `turf bench netmatch --chaos-stack sessions`.
        .target(
            name: "NetChaos",
            dependencies: [
                "NetCore", "NetSim", "NetStack", "Transport", "DHT", "Lobby", "NetMatch", "NetPlay", "Engine",
                "TurfRules",
                "Sodium", "Keys",
                "Determinism",
            ],
            swiftSettings: settings
        ),

        // The terminal front-end.
        .target(
            name: "TerminalUI",
            dependencies: [
                "CNcursesw", "CursesShim", "Engine", "TurfRules", "TextOutput",
                .product(name: "Logging", package: "swift-log"),
            ],
            swiftSettings: settings
        ),

        // The `turf` command. The testing doubles (NetSim, DHTSim, NetMatchSim, NetChaos) are linked
        // for the `turf bench` subcommands only; play, host, join and dht never reach them.
        .executableTarget(
            name: "turf",
            dependencies: [
                "Engine", "TurfRules", "TerminalUI", "NetCore", "NetPOSIX", "NetMatch", "LocalFiles", "TextOutput",
                "CSodium", "Sodium", "Keys", "Noise", "Transport", "DHT", "NetStack", "Lobby", "NetPlay", "NetChaos",
                "NetSim", "DHTSim", "NetMatchSim", "InternetSim",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOConcurrencyHelpers", package: "swift-nio"),
            ],
            swiftSettings: settings
        ),

        // Tests mirror Sources.
        .testTarget(name: "DeterminismTests", dependencies: ["Determinism"], swiftSettings: settings),
        .testTarget(name: "TextOutputTests", dependencies: ["TextOutput"], swiftSettings: settings),
        .testTarget(name: "LocalFilesTests", dependencies: ["LocalFiles"], swiftSettings: settings),
        .testTarget(name: "NetCoreTests", dependencies: ["NetCore", "NetSim", "NetPOSIX"], swiftSettings: settings),
        .testTarget(name: "NetPOSIXTests", dependencies: ["NetPOSIX", "NetCore"], swiftSettings: settings),
        .testTarget(name: "NetSimTests", dependencies: ["NetSim", "NetCore"], swiftSettings: settings),
        .testTarget(
            name: "EngineTests",
            dependencies: [
                "Engine", "TurfRules", "Keys",
                .product(name: "PropertyBased", package: "swift-property-based"),
            ],
            swiftSettings: settings
        ),
        .testTarget(
            name: "TurfRulesTests",
            dependencies: [
                "TurfRules", "Engine",
                .product(name: "PropertyBased", package: "swift-property-based"),
            ],
            swiftSettings: settings
        ),
        .testTarget(name: "TerminalUITests", dependencies: ["TerminalUI"], swiftSettings: settings),
        .testTarget(
            name: "TurfCLITests",
            dependencies: [
                "Engine", "TurfRules", "Determinism", "NetMatch", "Sodium", "Keys", "NetStack", "Transport", "Lobby",
                "NetCore",
                // `@testable import turf`: the app's own configuration and identity store.
                "turf",
            ],
            swiftSettings: settings
        ),
        .testTarget(name: "SodiumTests", dependencies: ["Sodium"], swiftSettings: settings),
        .testTarget(name: "NoiseTests", dependencies: ["Noise", "Sodium"], swiftSettings: settings),
        .testTarget(
            name: "TransportTests",
            dependencies: ["Transport", "NetCore", "NetSim", "NetPOSIX", "Noise", "Sodium", "Keys", "FuzzHarness"],
            swiftSettings: settings
        ),
        .testTarget(
            name: "NetMatchTests",
            dependencies: ["NetMatch", "NetMatchSim", "Engine", "TurfRules", "Sodium", "Keys", "Determinism"],
            swiftSettings: [.swiftLanguageMode(.v6)]
        ),
        .testTarget(
            name: "DHTTests",
            dependencies: ["DHT", "DHTSim", "Bencode", "NetCore", "NetSim", "NetPOSIX", "Sodium"],
            swiftSettings: settings
        ),
        .testTarget(
            name: "LobbyTests",
            dependencies: ["Lobby", "Engine", "Determinism", "Keys", "Bencode", "NetCore", "DHT", "Transport"],
            swiftSettings: settings
        ),
        .testTarget(
            name: "NetPlayTests",
            dependencies: ["NetPlay", "Lobby", "Engine", "TurfRules", "NetMatch", "Keys", "Sodium", "NetCore"],
            swiftSettings: settings
        ),
        .testTarget(
            name: "NetChaosTests",
            dependencies: ["NetChaos", "TurfRules", "NetCore", "NetSim"],
            swiftSettings: settings
        ),
        .testTarget(
            name: "InternetSimTests",
            dependencies: ["InternetSim", "NetSim", "NetCore", "DHT", "DHTSim"],
            swiftSettings: settings
        ),
        .testTarget(
            name: "NetStackTests",
            dependencies: ["NetStack", "DHT", "Bencode", "Transport", "NetCore", "NetSim", "NetPOSIX"],
            swiftSettings: settings
        ),
    ]
)
