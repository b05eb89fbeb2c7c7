// swift-tools-version:6.1
// libFuzzer targets for every parser that reads untrusted bytes: Noise messages, transport packets,
// reliable-channel frames, bencode/KRPC, replay files, maps and journals. A separate package so the game itself is
// never built with fuzzer instrumentation. Build and run with `make fuzz` from the repository root,
// or: swift build --sanitize=fuzzer --sanitize=address (inside Fuzz/).
import Foundation
import PackageDescription

// The root package's identity is its directory name, whatever the checkout is called.
let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
let turf = root.lastPathComponent.lowercased()

/// Each target: its name (fuzz-NAME, corpus Fuzz/Corpus/NAME) and the root product it fuzzes.
let targets: [(String, String)] = [
    ("noise", "FuzzHarness"), ("transport", "FuzzHarness"), ("frames", "FuzzHarness"),
    ("krpc", "DHT"),  // the DHT's parsers face the whole internet
    ("replay", "TurfRules"),  // users share replay files; a bad one must never crash
    ("map", "TurfRules"),  // maps travel inside every replay and journal
    ("journal", "TurfRules"),  // `turf demo` recovers every journal it finds at startup
]

let package = Package(
    name: "turf-fuzz",
    dependencies: [.package(path: "..")],
    targets: targets.map { name, product in
        .executableTarget(
            name: "fuzz-\(name)",
            dependencies: [.product(name: product, package: turf)],
            path: "Sources/fuzz-\(name)",
            swiftSettings: [.swiftLanguageMode(.v6)]
        )
    }
)
