import Foundation

/// A 64-bit hash as 16 lowercase hex digits, as every output shows hashes.
func hex64(_ v: UInt64) -> String {
    let s = String(v, radix: 16)
    return String(repeating: "0", count: 16 - s.count) + s
}

/// One line to stderr (errors and notices, never the data a command prints on stdout).
func printErr(_ s: String) {
    FileHandle.standardError.write((s + "\n").data(using: .utf8)!)
}
