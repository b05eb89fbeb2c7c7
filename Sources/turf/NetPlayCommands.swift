import ArgumentParser
import DHT
import Engine
import Foundation
import Keys
import Lobby
import LocalFiles
import NetCore
import NetStack
import TerminalUI
import TextOutput
import Transport
import TurfRules

/// Options shared by `turf host` and `turf join`.
struct NetPlayOptions: ParsableArguments {
    @Option(help: "Your name in the lobby (shown to others escaped, at most 24 characters).")
    var name: String = ProcessInfo.processInfo.environment["USER"].flatMap { $0.isEmpty ? nil : $0 } ?? "player"
    @OptionGroup var socket: SocketOptions
    @Option(help: "Read the lobby's passphrase from this file (also: $TURF_PASSPHRASE, or a prompt with --passphrase).")
    var passphraseFile: String?
    @Flag(help: "Ask for a passphrase at the terminal.") var passphrase = false
    @Flag(help: "No screen: a bot plays, one JSON object per line on stdout (docs/lobby.md).") var headless = false
    @Option(help: "The bot that plays for you with --headless.") var bot: BotChoice = .easy
    @Flag(
        help:
            "No LAN discovery: do not announce or search on the local network (BEP 14; also: lan_discovery = off in dht.conf)."
    )
    var noLan = false
    @Flag(
        help:
            "Do not relay for other players while turf runs (by default a machine whose NAT lets others in relays at most 64 KiB/s for pairs that cannot punch; also: relay_service = off in dht.conf)."
    )
    var noRelayService = false
    @Option(
        help: ArgumentHelp(
            "With --headless: say this line of chat in the lobby once someone can hear it (repeatable; at most \(LobbyMessage.maxChatBytes) bytes each).",
            valueName: "text"
        )
    )
    var say: [String] = []
    @Flag(help: "Draw without colour (also: NO_COLOR=1).") var noColor = false
    @Flag(help: "Draw with ASCII only.") var ascii = false

    enum BotChoice: String, CaseIterable, ExpressibleByArgument {
        case easy, hard
        var level: Bot.Level { self == .easy ? .easy : .hard }
    }

    /// The passphrase, if the lobby has one: the file, else $TURF_PASSPHRASE, else a prompt.
    func readPassphrase() throws -> String? {
        if let f = passphraseFile {
            let text = try UntrustedFile.readText(f, limit: 4096, what: "passphrase file")
            let p = text.split(whereSeparator: \.isNewline).first.map(String.init) ?? ""
            guard !p.isEmpty else { throw CLIError("the passphrase file \(f) is empty") }
            return p
        }
        if let p = ProcessInfo.processInfo.environment["TURF_PASSPHRASE"], !p.isEmpty { return p }
        if passphrase {
            guard let raw = getpass("Passphrase: ") else { throw CLIError("no passphrase read") }
            let p = String(cString: raw)
            guard !p.isEmpty else { throw CLIError("empty passphrase") }
            return p
        }
        return nil
    }

    /// `--say`: each line 1…200 bytes, at most 8 of them.
    func validateSay() throws {
        guard say.count <= 8 else { throw ValidationError("--say may be given at most 8 times") }
        for line in say where line.isEmpty || line.utf8.count > LobbyMessage.maxChatBytes {
            throw ValidationError("--say must be 1-\(LobbyMessage.maxChatBytes) bytes")
        }
    }

    /// Headless: JSON lines and a bot (a host starts at `startWhen` players and plays `matches`
    /// in a row; a member accepts rematches if `rematch`). Else the screens, once the terminal is
    /// checked (before any network work, so a problem is one plain line).
    func makeUI(startWhen: Int? = nil, matches: Int = 1, rematch: Bool = true) throws -> NetPlayUI {
        if headless {
            return HeadlessUI(bot: bot.level, startWhen: startWhen, matches: matches, rematch: rematch, say: say)
        }
        try CursesUI.check()
        Logs.bootstrap()
        let env = ProcessInfo.processInfo.environment
        return CursesUI(
            wantColor: Theme.colorWanted(environment: env) && !noColor,
            unicode: localeIsUTF8(environment: env) && !ascii,
            stderrCapture: Demo.stderrCapturePath()
        )
    }

    /// After the screens are gone: what the player needs on the terminal, and the exit status.
    func finish(_ ui: NetPlayUI, code: Int32) throws {
        ui.close()
        (ui as? CursesUI)?.printSummary()
        if let s = ui.quitSignal { throw ExitCode(128 + s) }
        if (ui as? CursesUI)?.failed == true { throw ExitCode(1) }
        if code != 0 { throw ExitCode(code) }
    }
}

enum NetPlayLimits {
    static let seconds = OptionRange(5...3600, unit: "s")
    static let maxPlayers = OptionRange(2...8)
    static let startWhen = OptionRange(1...8)
    static let matches = OptionRange(1...100)
}

/// `turf host`: open a lobby on a DHT topic and host the match.
struct HostCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "host",
        abstract: "Host a lobby on a DHT topic; friends join by topic, key or invite (docs/lobby.md)."
    )

    @Option(help: "The lobby's topic (what friends type after --topic).") var topic: String
    @Option(help: "Map name (\(MapLibrary.available().joined(separator: ", "))) or path.") var map: String = "dojo"
    @Option(help: NetPlayLimits.seconds.help("Match length.", default: 90), transform: NetPlayLimits.seconds.parse)
    var seconds: Int = 90
    @Option(
        help: NetPlayLimits.maxPlayers.help("Most players, you included.", default: 8),
        transform: NetPlayLimits.maxPlayers.parse
    )
    var maxPlayers: Int = 8
    @Option(
        help: NetPlayLimits.startWhen.help(
            "With --headless: start when this many players (you included) are in.",
            default: 2
        ),
        transform: NetPlayLimits.startWhen.parse
    )
    var startWhen: Int = 2
    @Option(
        help: NetPlayLimits.matches.help(
            "With --headless: play this many matches in a row in this lobby (a rematch is offered after each; on the screens, r offers one).",
            default: 1
        ),
        transform: NetPlayLimits.matches.parse
    )
    var matches: Int = 1
    @Option(
        help:
            "Friends only: only these keys may join: 'friends' (your friends file, turf friends) or a file, one turf1… key a line, # comments (docs/lobby.md)."
    )
    var allow: String?
    @OptionGroup var net: NetPlayOptions

    func validate() throws {
        guard !topic.isEmpty, topic.utf8.count <= LobbyRecord.maxTopicBytes else {
            throw ValidationError("--topic must be 1-\(LobbyRecord.maxTopicBytes) bytes")
        }
        guard startWhen <= maxPlayers else { throw ValidationError("--start-when must not exceed --max-players") }
        try net.validateSay()
    }

    func run() throws {
        let ui = try net.makeUI(startWhen: startWhen, matches: matches)
        defer { ui.close() }
        let arena = try MapLibrary.load(map)
        guard arena.spawns.count >= startWhen else {
            throw CLIError(
                "map '\(arena.name)' has \(arena.spawns.count) spawn points, fewer than --start-when \(startWhen)"
            )
        }
        let pass = try net.readPassphrase()
        let friendList = try FriendsFile.load()
        let friends = try allow.map { try Self.readAllowList($0, friends: friendList) }
        let rt = try NetRuntime(options: net, ui: ui, topicForPSK: topic, passphrase: pass)
        defer { rt.close() }
        rt.admission = LobbyAdmission(allowed: friends)
        rt.friends = friendList
        let code = try rt.host(
            topic: topic,
            settings: TurfSettings(map: arena),
            mapName: map,
            seconds: seconds,
            maxPlayers: min(maxPlayers, arena.spawns.count)
        )
        try net.finish(ui, code: code)
    }
}

extension HostCommand {
    /// Most bytes an allow list may have (a key line is 62; 64 KiB is a thousand friends).
    static let allowListLimit = 64 * 1024

    /// The `--allow` value that means the friends file rather than a file of keys.
    static let allowFriends = "friends"

    /// `--allow friends`: the keys in your friends file (`turf friends`; a file named `friends`
    /// is `./friends`). `--allow FILE`: one `turf1…` key a line, `#` comments. A bad line is one
    /// error naming it.
    static func readAllowList(_ path: String, friends: FriendList) throws -> [PeerKey] {
        if path == allowFriends {
            guard !friends.isEmpty else {
                throw CLIError(
                    "--allow friends: your friends file (\(FriendsFile.path)) has no friends yet (turf friends add NAME turf1…)"
                )
            }
            return friends.friends.map(\.key)
        }
        let text = try UntrustedFile.readText(path, limit: allowListLimit, what: "allow list")
        do {
            let keys = try LobbyAdmission.parseAllowList(text)
            guard !keys.isEmpty else { throw CLIError("the allow list \(path) has no keys (turf id prints yours)") }
            return keys
        } catch let e as AllowListError {
            throw CLIError("\(path):\(e.line): not a key (turf1…): \(SafeText.display(e.text, limit: 80))")
        }
    }
}

/// `turf join`: join a lobby by topic, key or invite.
struct JoinCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "join",
        abstract:
            "Join a lobby: by --topic, by the host's key (turf1…), by an invite, or by a friend's name (docs/lobby.md)."
    )

    @Argument(help: "An invite (turf-invite1.…), the host's key (turf1…) or a friend's name (turf friends).")
    var target: String?
    @Option(help: "Join the lobby announced on this topic.") var topic: String?
    @Option(help: "With --topic: the host's key or a friend's name, when several lobbies share the topic.")
    var lobby: String?
    @Flag(
        help:
            "Watch the match without playing (from the lobby, or a match already running): merge everyone's ops, send none."
    )
    var spectate = false
    @Flag(help: "With --headless: decline a rematch the host offers (leave after the match) instead of playing on.")
    var noRematch = false
    @OptionGroup var net: NetPlayOptions

    func validate() throws {
        guard (topic == nil) != (target == nil) else {
            throw ValidationError("give exactly one of --topic T, an invite, a key or a friend's name")
        }
        if let t = target, Invite(text: t) == nil, PeerKey(text: t) == nil, !FriendName.isValid(t) {
            throw ValidationError(
                "'\(SafeText.display(t, limit: 80))' is not an invite (turf-invite1.…), a key (turf1…) or a friend's name (turf friends list)"
            )
        }
        if let l = lobby, PeerKey(text: l) == nil, !FriendName.isValid(l) {
            throw ValidationError("--lobby must be a key (turf1…) or a friend's name")
        }
        try net.validateSay()
    }

    /// A key, or the key of the friend with this name (the friends file; docs/lobby.md, "Friends").
    static func hostKey(_ text: String, friends: FriendList) throws -> PeerKey {
        if let k = PeerKey(text: text) { return k }
        guard let f = friends.friend(named: text) else {
            throw CLIError(
                "'\(SafeText.display(text, limit: 80))' is not one of your friends (turf friends list shows them; turf friends add NAME turf1… adds one)"
            )
        }
        return f.key
    }

    func run() throws {
        // Before the screens and the network: a name that is no friend, or a bad friends file, is one plain line.
        let friends = try FriendsFile.load()
        let how: NetRuntime.JoinTarget
        if let topic {
            how = .topic(topic, expected: try lobby.map { try Self.hostKey($0, friends: friends) })
        } else if let t = target, let invite = Invite(text: t) {
            how = .invite(invite)
        } else {
            how = .key(try Self.hostKey(target!, friends: friends))  // `!`: validate() requires --topic or a target
        }
        let ui = try net.makeUI(rematch: !noRematch)
        defer { ui.close() }
        let started = processStartNanos()
        let pass = try net.readPassphrase()
        if !net.headless { printErr("turf: looking for the lobby…") }
        let rt = try NetRuntime(options: net, ui: ui, topicForPSK: nil, passphrase: pass)
        defer { rt.close() }
        rt.friends = friends
        let code = try rt.join(how, startedAt: started, spectate: spectate)
        try net.finish(ui, code: code)
    }
}

/// When this process started, on the monotonic clock (for `join_ms`): /proc/self/stat's start
/// time in clock ticks, else now.
func processStartNanos() -> UInt64 {
    let now = monotonicNanos()
    guard let stat = try? String(contentsOfFile: "/proc/self/stat", encoding: .utf8),
        let close = stat.lastIndex(of: ")")
    else { return now }
    let fields = stat[stat.index(after: close)...].split(separator: " ")
    // Field 22 (starttime) is the 20th after the command name.
    guard fields.count > 19, let ticks = UInt64(fields[19]) else { return now }
    let hz = UInt64(max(1, sysconf(Int32(_SC_CLK_TCK))))
    var ts = timespec()
    clock_gettime(CLOCK_BOOTTIME, &ts)
    let bootNow = UInt64(ts.tv_sec) * 1_000_000_000 + UInt64(ts.tv_nsec)
    let startBoot = ticks * 1_000_000_000 / hz
    guard bootNow > startBoot else { return now }
    let age = bootNow - startBoot
    return now > age ? now - age : now
}
