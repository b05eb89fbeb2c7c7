import CSodium

/// A thin, safe layer over the system libsodium: every function checks sizes before calling C,
/// returns Swift values, and reports failures as `nil` or `SodiumError` instead of trapping.
///
/// `sodium_init` runs exactly once, the first time anything here is used.
public enum Sodium {
    /// Set once by the first use; libsodium's init is itself idempotent and thread-safe.
    static let initialized: Bool = sodium_init() >= 0

    /// Makes sure libsodium is initialised. Cheap after the first call.
    @inline(__always)
    public static func ensureInitialized() {
        precondition(initialized, "libsodium failed to initialise")
    }

    /// `count` bytes from the operating system's CSPRNG.
    public static func randomBytes(_ count: Int) -> [UInt8] {
        ensureInitialized()
        guard count > 0 else { return [] }
        var out = [UInt8](repeating: 0, count: count)
        out.withUnsafeMutableBytes { randombytes_buf(u8($0), count) }
        return out
    }

    /// A uniformly random integer in 0..<upperBound (upperBound > 0).
    public static func randomUniform(_ upperBound: UInt32) -> UInt32 {
        ensureInitialized()
        return randombytes_uniform(upperBound)
    }

    /// A random 64-bit value.
    public static func randomU64() -> UInt64 {
        let b = randomBytes(8)
        return b.withUnsafeBytes { $0.loadUnaligned(as: UInt64.self) }
    }

    /// Compares two byte strings in time that depends only on their length.
    /// Different lengths are unequal (the length is not secret).
    public static func constantTimeEqual<A: ContiguousBytes, B: ContiguousBytes>(_ a: A, _ b: B) -> Bool {
        ensureInitialized()
        return a.withBytes { pa in
            b.withBytes { pb in
                guard pa.count == pb.count else { return false }
                if pa.count == 0 { return true }
                return sodium_memcmp(u8(pa), u8(pb), pa.count) == 0
            }
        }
    }

    /// Overwrites the bytes with zeros in a way the compiler may not elide.
    public static func wipe(_ bytes: inout [UInt8]) {
        bytes.withUnsafeMutableBytes { p in
            if let base = p.baseAddress { sodium_memzero(base, p.count) }
        }
    }
}

public enum SodiumError: Error, Equatable, CustomStringConvertible {
    case wrongLength(what: String, expected: Int, got: Int)
    /// X25519 produced the all-zero output: the peer's public key is of low order.
    case weakPublicKey
    /// The Ed25519 public key is not a valid curve point (conversion to X25519 failed).
    case invalidPublicKey
    case operationFailed(String)

    public var description: String {
        switch self {
        case .wrongLength(let what, let expected, let got): return "\(what) must be \(expected) bytes, got \(got)"
        case .weakPublicKey: return "the peer's X25519 public key is of low order"
        case .invalidPublicKey: return "not a valid Ed25519 public key"
        case .operationFailed(let s): return "libsodium: \(s) failed"
        }
    }
}

/// Anything that can lend its bytes contiguously: arrays, slices, `SecretBytes`.
public protocol ContiguousBytes {
    func withBytes<R>(_ body: (UnsafeRawBufferPointer) throws -> R) rethrows -> R
}

extension Array: ContiguousBytes where Element == UInt8 {
    @inline(__always)
    public func withBytes<R>(_ body: (UnsafeRawBufferPointer) throws -> R) rethrows -> R {
        try withUnsafeBytes(body)
    }
}

extension ArraySlice: ContiguousBytes where Element == UInt8 {
    @inline(__always)
    public func withBytes<R>(_ body: (UnsafeRawBufferPointer) throws -> R) rethrows -> R {
        try withUnsafeBytes(body)
    }
}

/// Secret key material in memory of its own that is zeroed when the last reference goes away.
///
/// Swift arrays may be copied freely by the runtime, so secrets live here instead; `bytes` makes
/// an ordinary copy only when one is really needed (for example to write a key file).
///
/// Thread safety: the bytes are written only by this module, and only while a value is being made
/// (before any other code can hold it); from then on they are read-only and may be read from any thread.
// @unchecked Sendable: the storage pointer is immutable and its bytes are never written after construction.
public final class SecretBytes: ContiguousBytes, @unchecked Sendable {
    public let count: Int
    private let storage: UnsafeMutableRawPointer

    public init(count: Int) {
        Sodium.ensureInitialized()
        self.count = count
        storage = UnsafeMutableRawPointer.allocate(byteCount: max(count, 1), alignment: 16)
        storage.initializeMemory(as: UInt8.self, repeating: 0, count: max(count, 1))
    }

    public convenience init<C: ContiguousBytes>(copying source: C) {
        let n = source.withBytes { $0.count }
        self.init(count: n)
        let dst = storage
        source.withBytes { p in if n > 0, let base = p.baseAddress { dst.copyMemory(from: base, byteCount: n) } }
    }

    /// Fresh random secret bytes.
    public static func random(_ count: Int) -> SecretBytes {
        let s = SecretBytes(count: count)
        if count > 0 { randombytes_buf(s.storage, count) }
        return s
    }

    deinit {
        sodium_memzero(storage, max(count, 1))
        storage.deallocate()
    }

    @inline(__always)
    public func withBytes<R>(_ body: (UnsafeRawBufferPointer) throws -> R) rethrows -> R {
        try body(UnsafeRawBufferPointer(start: storage, count: count))
    }

    /// Writes the bytes. Internal: only for filling a value this module has just made (see the type's
    /// thread-safety note).
    @inline(__always)
    func withMutableBytes<R>(_ body: (UnsafeMutableRawBufferPointer) throws -> R) rethrows -> R {
        try body(UnsafeMutableRawBufferPointer(start: storage, count: count))
    }

    /// An ordinary (unprotected) copy of the secret.
    public var bytes: [UInt8] { withBytes { Array($0) } }
}

@inline(__always)
func requireLength<C: ContiguousBytes>(_ c: C, _ n: Int, _ what: String) throws {
    let got = c.withBytes { $0.count }
    if got != n { throw SodiumError.wrongLength(what: what, expected: n, got: got) }
}

/// libsodium declares its pointer parameters non-null; an empty buffer may have no base address,
/// so it is given this one (never read, since the length passed with it is zero).
// nonisolated(unsafe): the bytes behind this pointer are never read or written (every call passes length 0).
nonisolated(unsafe) private let emptyBuffer = UnsafeMutablePointer<UInt8>.allocate(capacity: 64)

@inline(__always)
func u8(_ p: UnsafeRawBufferPointer) -> UnsafePointer<UInt8> {
    if let b = p.baseAddress { return b.assumingMemoryBound(to: UInt8.self) }
    return UnsafePointer(emptyBuffer)
}

@inline(__always)
func u8(_ p: UnsafeMutableRawBufferPointer) -> UnsafeMutablePointer<UInt8> {
    if let b = p.baseAddress { return b.assumingMemoryBound(to: UInt8.self) }
    return emptyBuffer
}
