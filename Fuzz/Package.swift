// swift-tools-version:6.1
// libFuzzer targets for turf's network parsers. Separate from the root package so that the
// sanitizer flags never touch the normal build. Build and run, from this directory:
//   swift build -c debug --sanitize=fuzzer --sanitize=address --product FuzzKRPC
//   .build/debug/FuzzKRPC -max_total_time=60 Corpus/krpc
import PackageDescription

let package = Package(
    name: "turf-fuzz",
    dependencies: [.package(name: "turf", path: "..")],
    targets: [
        // Bencode and KRPC (Sources/DHT): the DHT's parsers face the whole internet.
        .executableTarget(name: "FuzzKRPC", dependencies: [.product(name: "DHT", package: "turf")],
                          swiftSettings: [.swiftLanguageMode(.v5)]),
        // Replay files (Sources/Engine/ReplayFile.swift): users share them; a bad one must never crash.
        .executableTarget(name: "FuzzReplay", dependencies: [.product(name: "TurfRules", package: "turf")],
                          swiftSettings: [.swiftLanguageMode(.v5)]),
    ]
)
