import ArgumentParser
import Foundation
import TextOutput
import Transport

/// `turf id`: prints this user's public key, creating the identity on first use.
struct IdCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "id",
        abstract: "Print your public key (give it to a friend so they can join you by key).",
        discussion: "The key file lives under $XDG_CONFIG_HOME/turf/ (default ~/.config/turf/), mode 0600."
    )

    @Flag(help: "Print the key file's path instead of the key.")
    var path = false

    func run() throws {
        let store = IdentityStore.standard()
        if path {
            print(store.path)
            return
        }
        do {
            let (identity, created) = try store.loadOrCreate()
            if created {
                printErr("turf: created a new identity in " + SafeText.display(store.path, limit: 400))
            }
            print(identity.publicKey.text)
        } catch let e as IdentityStoreError {
            // The path comes from the environment: escaped, as every error line is.
            printErr("turf: " + SafeText.display(e.description, limit: 2000))
            throw ExitCode(1)
        }
    }
}
