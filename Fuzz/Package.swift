// swift-tools-version:6.1
// libFuzzer targets for every parser that reads bytes from the network. A separate package so the
// game itself is never built with fuzzer instrumentation. Build and run with `make fuzz` from the
// repository root, or: swift build --sanitize=fuzzer --sanitize=address (inside Fuzz/).
import Foundation
import PackageDescription

// The root package's identity is its directory name, whatever the checkout is called.
let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
let harness = Target.Dependency.product(name: "FuzzHarness", package: root.lastPathComponent.lowercased())

let package = Package(
    name: "turf-fuzz",
    dependencies: [.package(path: "..")],
    targets: ["noise", "transport", "frames"].map { name in
        .executableTarget(name: "fuzz-\(name)", dependencies: [harness], path: "Sources/fuzz-\(name)",
                          swiftSettings: [.swiftLanguageMode(.v5)])
    }
)
