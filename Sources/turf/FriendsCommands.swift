import ArgumentParser
import Foundation
import Keys
import TextOutput

/// `turf friends`: the names you give your friends' keys (Friends.swift; docs/lobby.md, "Friends").
struct FriendsCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "friends",
        abstract: "Name your friends' keys: join them by name, label them in lobbies, host for them only.",
        discussion: """
            The list lives in $XDG_CONFIG_HOME/turf/friends (default ~/.config/turf/friends). \
            turf join NAME joins a friend's open lobby; turf host --allow friends seats only your friends; \
            a lobby's roster shows a friend as 'bob (friend: Bobby)'.
            """,
        subcommands: [List.self, Add.self, Remove.self],
        defaultSubcommand: List.self
    )

    struct Add: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Add a friend: a name of your choice and their key.")

        @Argument(
            help: "The name you give them: letters, digits, '-', '_' and '.', at most \(FriendName.maxLength)."
        )
        var name: String
        @Argument(help: "Their key (turf1…, what `turf id` prints for them).") var key: String

        func validate() throws {
            if let problem = FriendName.problem(name) {
                throw ValidationError("'\(SafeText.display(name, limit: 40))': \(problem)")
            }
            guard PeerKey(text: key) != nil else {
                throw ValidationError(
                    "'\(SafeText.display(key, limit: 80))' is not a key (turf1…): ask your friend to run turf id"
                )
            }
        }

        func run() throws {
            let friend = Friend(name: name, key: PeerKey(text: key)!)  // `!`: validate() checked it
            // Your own key is no friend of yours (a copy-paste slip): said, not stored.
            if let mine = try? IdentityStore.standard().load(), mine.publicKey == friend.key {
                throw CLIError("\(friend.key.text) is your own key (turf id); add your friend's key instead")
            }
            try FriendsFile.change { list in
                do { try list.add(friend) } catch let e as FriendsChangeError {
                    throw CLIError("\(e) (\(FriendsFile.path))")
                }
            }
            print("added \(friend.name) (\(friend.key.text)): turf join \(friend.name) joins their lobby")
        }
    }

    struct Remove: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Remove a friend, by the name you gave them or their key."
        )

        @Argument(help: "The friend's name (any case) or key.") var friend: String

        func run() throws {
            let removed = try FriendsFile.change { $0.remove(friend) }
            guard let removed else {
                throw CLIError(
                    "no friend named '\(SafeText.display(friend, limit: 80))' in \(FriendsFile.path) (turf friends list shows them)"
                )
            }
            print("removed \(removed.name) (\(removed.key.text))")
        }
    }

    struct List: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "List your friends (the default).")

        @Flag(help: "Print one JSON object: the file and its friends.") var json = false

        func run() throws {
            let list = try FriendsFile.load()
            if json {
                var j = JSONObject()
                j.add("file", FriendsFile.path)
                j.add(
                    "friends",
                    list.friends.map { f in
                        var o = JSONObject()
                        o.add("name", f.name)
                        o.add("key", f.key.text)
                        return o
                    }
                )
                print(j.text)
                return
            }
            guard !list.isEmpty else {
                print("no friends yet: turf friends add NAME turf1… (the key their turf id prints)")
                return
            }
            let width = list.friends.map { $0.name.count }.max() ?? 0
            for f in list.friends {
                // Names passed FriendName's rules when the file was read: letters, digits, - _ .
                print(f.name + String(repeating: " ", count: width - f.name.count + 2) + f.key.text)
            }
        }
    }
}
