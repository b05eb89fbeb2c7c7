import Foundation
import LocalFiles
import TurfRules

/// Finds and loads maps: a path, or a name looked up in $TURF_ASSETS/maps, ./Assets/maps, and the
/// Assets/maps folder of the checkout the binary was built in.
enum MapLibrary {
    static var searchDirectories: [String] {
        var dirs: [String] = []
        if let env = ProcessInfo.processInfo.environment["TURF_ASSETS"], !env.isEmpty { dirs.append(env + "/maps") }
        dirs.append(FileManager.default.currentDirectoryPath + "/Assets/maps")
        var exe = URL(fileURLWithPath: CommandLine.arguments[0]).resolvingSymlinksInPath().deletingLastPathComponent()
        for _ in 0..<5 {
            dirs.append(exe.appendingPathComponent("Assets/maps").path)
            exe = exe.deletingLastPathComponent()
        }
        return dirs
    }

    static func path(for nameOrPath: String) throws -> String {
        if nameOrPath.contains("/") || nameOrPath.hasSuffix(".map") {
            guard FileManager.default.fileExists(atPath: nameOrPath) else {
                throw CLIError("map file not found: \(nameOrPath)")
            }
            return nameOrPath
        }
        for d in searchDirectories {
            let p = "\(d)/\(nameOrPath.lowercased()).map"
            if FileManager.default.fileExists(atPath: p) { return p }
        }
        throw CLIError(
            "no map named '\(nameOrPath)' (looked in: \(searchDirectories.joined(separator: ", "))); set TURF_ASSETS or pass a path"
        )
    }

    static func load(_ nameOrPath: String) throws -> ArenaMap {
        let p = try path(for: nameOrPath)
        let text = try UntrustedFile.readText(p, limit: FileLimits.map, what: "map")
        return try ArenaMap(parsing: text, file: p)
    }

    static func available() -> [String] {
        for d in searchDirectories {
            if let names = try? FileManager.default.contentsOfDirectory(atPath: d).filter({ $0.hasSuffix(".map") }),
                !names.isEmpty
            {
                return names.map { String($0.dropLast(4)) }.sorted()
            }
        }
        return []
    }
}
