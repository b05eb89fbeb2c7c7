import Foundation
import LocalFiles
import TextOutput
import Transport

#if canImport(Glibc)
    import Glibc
#endif

/// The identity a `turf host` / `turf join` process plays as. One process at a time holds the
/// stored identity (an exclusive flock on `identity.key.lock` beside it, released by the kernel
/// when the process ends, even by `kill -9`, so a crashed peer rejoins as itself). A second process
/// sharing the same XDG_CONFIG_HOME (two terminals on one machine) would otherwise present the same
/// key as the first, and two players with one key are one player: it plays as a fresh guest key
/// for this process only, and says so.
struct IdentityLease {
    let identity: Identity
    /// False for a guest key (the stored one was in use).
    let stored: Bool
    private let lockFD: Int32

    static func acquire(_ store: IdentityStore = .standard()) throws -> IdentityLease {
        let id = try store.loadOrCreate().identity
        let held: Int32?
        do { held = try FileLock.acquire(store.path + ".lock") } catch let e as FileError {
            throw CLIError(e.description)
        }
        if let fd = held { return IdentityLease(identity: id, stored: true, lockFD: fd) }
        let guest = Identity.generate()
        printErr(
            "turf: your identity is in use by another turf on this machine; this one plays as a guest key "
                + "\(guest.publicKey.text) (it cannot rejoin after a crash: give it its own XDG_CONFIG_HOME for that)"
        )
        return IdentityLease(identity: guest, stored: false, lockFD: -1)
    }

    /// Lets the stored identity go (the process is done with the network).
    func release() { if lockFD >= 0 { close(lockFD) } }
}
