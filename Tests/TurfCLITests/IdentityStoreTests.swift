import Foundation
import Keys
import Testing
import Transport

@testable import turf

@Suite struct IdentityStoreTests {
    func tempDir() -> String {
        let d = FileManager.default.temporaryDirectory.appendingPathComponent("turf-id-\(UUID().uuidString)").path
        return d
    }

    @Test func createsPrivateFileOnceAndReloads() throws {
        let base = tempDir()
        defer { try? FileManager.default.removeItem(atPath: base) }
        let store = IdentityStore.standard(environment: ["XDG_CONFIG_HOME": base, "HOME": "/nonexistent"])
        #expect(store.path == base + "/turf/identity.key")
        let (first, created) = try store.loadOrCreate()
        #expect(created)
        let attrs = try FileManager.default.attributesOfItem(atPath: store.path)
        #expect((attrs[.posixPermissions] as? Int) == 0o600)
        let dirAttrs = try FileManager.default.attributesOfItem(atPath: base + "/turf")
        #expect((dirAttrs[.posixPermissions] as? Int) == 0o700)
        let (again, createdAgain) = try store.loadOrCreate()
        #expect(!createdAgain)
        #expect(again.publicKey == first.publicKey)
        // No temporary files are left behind.
        #expect(try FileManager.default.contentsOfDirectory(atPath: base + "/turf") == ["identity.key"])
    }

    /// A FIFO as the key file would block an ordinary open forever; a file larger than any key
    /// is not read whole. Both are one-line errors at once.
    @Test func aFifoOrAnOversizedKeyFileIsRefusedAtOnce() throws {
        let base = tempDir()
        defer { try? FileManager.default.removeItem(atPath: base) }
        let store = IdentityStore(directory: base)
        try FileManager.default.createDirectory(atPath: base, withIntermediateDirectories: true)
        #expect(mkfifo(store.path, 0o600) == 0)
        #expect(throws: IdentityStoreError.unreadable("key file \(store.path) is not a regular file (a FIFO)")) {
            try store.load()
        }
        unlink(store.path)
        let big = "turf-identity-v1\n" + String(repeating: "0", count: 64) + "\n" + String(repeating: " ", count: 400)
        #expect(
            FileManager.default.createFile(
                atPath: store.path,
                contents: Data(big.utf8),
                attributes: [.posixPermissions: 0o600]
            )
        )
        do {
            _ = try store.load()
            Issue.record("an oversized key file was accepted")
        } catch let e as IdentityStoreError {
            #expect(e.description.contains("too large") && !e.description.contains("\n"), "\(e)")
        }
    }

    @Test func defaultsToHomeConfig() {
        let store = IdentityStore.standard(environment: ["HOME": "/home/alice"])
        #expect(store.path == "/home/alice/.config/turf/identity.key")
        // A relative XDG_CONFIG_HOME is invalid per the spec and ignored.
        #expect(
            IdentityStore.standard(environment: ["HOME": "/h", "XDG_CONFIG_HOME": "rel"]).path
                == "/h/.config/turf/identity.key"
        )
    }

    @Test(arguments: [0o644, 0o640, 0o604, 0o660])
    func refusesReadableByOthers(mode: Int) throws {
        let base = tempDir()
        defer { try? FileManager.default.removeItem(atPath: base) }
        let store = IdentityStore(directory: base)
        _ = try store.loadOrCreate()
        try FileManager.default.setAttributes([.posixPermissions: mode], ofItemAtPath: store.path)
        do {
            _ = try store.loadOrCreate()
            Issue.record("a key file with mode \(String(mode, radix: 8)) was accepted")
        } catch let e as IdentityStoreError {
            guard case .insecurePermissions = e else {
                Issue.record("wrong error \(e)")
                return
            }
            #expect(e.description.contains("chmod 600"))
        }
    }

    @Test func malformedFileIsAClearError() throws {
        let base = tempDir()
        defer { try? FileManager.default.removeItem(atPath: base) }
        let store = IdentityStore(directory: base)
        try FileManager.default.createDirectory(atPath: base, withIntermediateDirectories: true)
        _ = FileManager.default.createFile(
            atPath: store.path,
            contents: Data("hello\n".utf8),
            attributes: [.posixPermissions: 0o600]
        )
        #expect(throws: IdentityStoreError.malformed(path: store.path)) { _ = try store.loadOrCreate() }
    }

    /// Many threads create the identity at once: exactly one key wins and everyone gets it.
    @Test func concurrentCreationAgreesOnOneKey() throws {
        let base = tempDir()
        defer { try? FileManager.default.removeItem(atPath: base) }
        let store = IdentityStore(directory: base + "/deep/er")
        let n = 16
        // One slot per thread: each writes only its own, and concurrentPerform returns after all.
        let results = UnsafeMutableBufferPointer<Result<(PeerKey, Bool), any Error>?>.allocate(capacity: n)
        results.initialize(repeating: nil)
        defer { results.deallocate() }
        nonisolated(unsafe) let slots = results  // nonisolated(unsafe): thread i touches only slots[i]
        DispatchQueue.concurrentPerform(iterations: n) { i in
            slots[i] = Result { try store.loadOrCreate() }.map { ($0.0.publicKey, $0.1) }
        }
        let all = results.compactMap { $0 }
        let keys = all.compactMap { try? $0.get().0 }
        let errors = all.compactMap { r -> String? in if case .failure(let e) = r { "\(e)" } else { nil } }
        #expect(errors.isEmpty, "\(errors)")
        #expect(Set(keys).count == 1 && keys.count == n)
        #expect(all.filter { (try? $0.get().1) == true }.count == 1)
    }
}
