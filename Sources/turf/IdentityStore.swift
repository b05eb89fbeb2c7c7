import Foundation
import LocalFiles
import Sodium
import Transport

#if canImport(Glibc)
    import Glibc
#endif

enum IdentityStoreError: Error, CustomStringConvertible, Equatable {
    case insecurePermissions(path: String, mode: UInt32)
    case notOwned(path: String)
    case malformed(path: String)
    case io(path: String, errno: Int32, what: String)
    /// The key file is not a regular file, is too large or cannot be read (the whole line).
    case unreadable(String)

    var description: String {
        switch self {
        case .insecurePermissions(let path, let mode):
            return
                "refusing to use the key file \(path): group or others have access to it (mode \(String(mode & 0o777, radix: 8))). Run `chmod 600 \(path)` if it is really yours, or delete it to make a new identity."
        case .notOwned(let path):
            return "refusing to use the key file \(path): it belongs to another user"
        case .malformed(let path):
            return
                "the key file \(path) is not a turf identity (expected the line 'turf-identity-v1' and a 64-digit hex seed)"
        case .unreadable(let message):
            return message
        case .io(let path, let e, let what):
            return "\(what) \(path): \(String(cString: strerror(e)))"
        }
    }
}

/// The key file under `$XDG_CONFIG_HOME/turf/` (default `~/.config/turf/`).
///
/// Created on first use without a race: the seed is written to a private temporary file opened
/// with O_CREAT|O_EXCL and mode 0600, synced, then hard-linked to the final name. `link` fails if
/// another process got there first, in which case its key is read instead; a half-written key file
/// is never visible. A key file readable by group or others is refused.
struct IdentityStore: Sendable {
    let directory: String
    var path: String { directory + "/identity.key" }
    static let header = "turf-identity-v1"

    init(directory: String) { self.directory = directory }

    /// The default location from the environment.
    static func standard(environment: [String: String] = ProcessInfo.processInfo.environment) -> IdentityStore {
        let base: String
        if let x = environment["XDG_CONFIG_HOME"], x.hasPrefix("/") {
            base = x
        } else {
            base = (environment["HOME"] ?? NSHomeDirectory()) + "/.config"
        }
        return IdentityStore(directory: base + "/turf")
    }

    /// Loads the identity, creating it if there is none. `created` tells which happened.
    func loadOrCreate() throws -> (identity: Identity, created: Bool) {
        if let id = try load() { return (id, false) }
        try makeDirectories()
        let identity = Identity.generate()
        var text = Array(
            "\(IdentityStore.header)\n\(identity.signing.seed.bytes.map { String(format2: $0) }.joined())\n".utf8
        )
        defer { Sodium.wipe(&text) }
        let tmp = directory + "/.identity.key.\(getpid()).\(Sodium.randomU64())"
        let fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0o600)
        guard fd >= 0 else { throw IdentityStoreError.io(path: tmp, errno: errno, what: "cannot create") }
        defer { unlink(tmp) }
        let written = text.withUnsafeBytes { write(fd, $0.baseAddress, $0.count) }
        let synced = fsync(fd)
        close(fd)
        guard written == text.count, synced == 0 else {
            throw IdentityStoreError.io(path: tmp, errno: errno, what: "cannot write")
        }
        if link(tmp, path) != 0 {
            let e = errno
            if e == EEXIST, let other = try load() { return (other, false) }
            throw IdentityStoreError.io(path: path, errno: e, what: "cannot create")
        }
        return (identity, true)
    }

    /// The largest key file read: the key is 82 bytes ("turf-identity-v1", newline, 64 hex
    /// digits, newline); anything over this is not a key.
    static let maxKeyFileSize = 256

    /// Loads the identity, or nil if the file does not exist. Opened through `UntrustedFile`:
    /// without blocking (a FIFO is refused at once, never waited on), regular files only, never
    /// through a symlink, at most `maxKeyFileSize` bytes.
    func load() throws -> Identity? {
        let fd: Int32
        do {
            guard let opened = try UntrustedFile.openIfExists(path, what: "key file", extraFlags: O_NOFOLLOW) else {
                return nil
            }
            fd = opened
        } catch let e as FileError {
            throw IdentityStoreError.unreadable(e.description)
        }
        defer { close(fd) }
        var st = stat()
        guard fstat(fd, &st) == 0 else { throw IdentityStoreError.io(path: path, errno: errno, what: "cannot stat") }
        guard st.st_uid == geteuid() else { throw IdentityStoreError.notOwned(path: path) }
        guard UInt32(st.st_mode) & 0o077 == 0 else {
            throw IdentityStoreError.insecurePermissions(path: path, mode: UInt32(st.st_mode))
        }
        var buf: [UInt8]
        do {
            buf = try UntrustedFile.readAll(fd, limit: IdentityStore.maxKeyFileSize, path: path, what: "key file")
        } catch let e as FileError {
            throw IdentityStoreError.unreadable(e.description)
        }
        defer { Sodium.wipe(&buf) }
        let n = buf.count
        guard n > 0 else { throw IdentityStoreError.malformed(path: path) }
        let lines = String(decoding: buf[0..<n], as: UTF8.self).split(separator: "\n")
        guard lines.count == 2, lines[0] == IdentityStore.header, lines[1].count == 64 else {
            throw IdentityStoreError.malformed(path: path)
        }
        var seed: [UInt8] = []
        var idx = lines[1].startIndex
        while idx < lines[1].endIndex {
            let next = lines[1].index(idx, offsetBy: 2)
            guard let b = UInt8(lines[1][idx..<next], radix: 16) else { throw IdentityStoreError.malformed(path: path) }
            seed.append(b)
            idx = next
        }
        defer { Sodium.wipe(&seed) }
        return try Identity(signing: Ed25519.KeyPair(seed: seed))
    }

    private func makeDirectories() throws {
        var current = ""
        for part in directory.split(separator: "/") {
            current += "/" + part
            if mkdir(current, 0o700) != 0 && errno != EEXIST {
                throw IdentityStoreError.io(path: current, errno: errno, what: "cannot create directory")
            }
        }
    }
}

extension String {
    init(format2 v: UInt8) {
        let d = Array("0123456789abcdef")
        self = String([d[Int(v >> 4)], d[Int(v & 15)]])
    }
}
