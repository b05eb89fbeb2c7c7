/// The start screen (`turf` on a terminal): a menu to play against bots, host, join (by topic, a
/// friend's name, a key or an invite), watch a replay, or change the settings. Pure: keys in, an
/// `Action` out, drawn by `StartScreen`; the command runs the chosen action and comes back.
///
/// Keys alone drive it: ↑/↓ (or k/j) move, Enter chooses, Esc (or q) goes back, and on the main
/// page q quits; the digits choose a row directly. A text field takes printable characters,
/// Backspace, Enter (done) and Esc (cancel).
public struct StartMenu: Sendable, Equatable {
    /// What the player chose; the caller carries it out.
    public enum Action: Sendable, Equatable {
        case none
        case quit
        case playBots
        case host(topic: String)
        case joinTopic(String)
        /// A friend's name, a `turf1…` key or an invite: `turf join` tells them apart.
        case join(String)
        case replays
        /// The settings changed (the caller saves them).
        case saveSettings
    }

    /// What the start screen remembers between runs (`$XDG_CONFIG_HOME/turf/settings.conf`).
    public struct Settings: Sendable, Equatable {
        public var name: String
        public var color: Bool
        public var ascii: Bool
        public var bots: Int
        /// The last topic hosted or joined, offered again.
        public var topic: String
        /// The last friend, key or invite joined.
        public var target: String

        public static let maxName = 12
        public static let botRange = 1...7

        public init(
            name: String,
            color: Bool = true,
            ascii: Bool = false,
            bots: Int = 3,
            topic: String = "",
            target: String = ""
        ) {
            self.name = name
            self.color = color
            self.ascii = ascii
            self.bots = bots
            self.topic = topic
            self.target = target
        }
    }

    public enum Page: Sendable, Equatable {
        case main, join, settings
        /// Editing a line of text, then back to `page`.
        case editing(Field)
    }

    public enum Field: Sendable, Equatable {
        case hostTopic, joinTopic, joinTarget, name

        /// The most UTF-8 bytes the field takes (a topic's limit, a name's, an invite's).
        public var maxBytes: Int {
            switch self {
            case .hostTopic, .joinTopic: return 200
            case .joinTarget: return 1000
            case .name: return 48
            }
        }

        public var prompt: String {
            switch self {
            case .hostTopic: return "Topic to host"
            case .joinTopic: return "Topic to join"
            case .joinTarget: return "Friend's name, turf1 key or invite"
            case .name: return "Your name"
            }
        }
    }

    public private(set) var page: Page = .main
    public private(set) var selected = 0
    public private(set) var text = ""
    public var settings: Settings
    /// One line of news: an error from the last action, a saved setting.
    public var notice = ""

    public init(settings: Settings) { self.settings = settings }

    public static let mainItems = [
        "Play against bots", "Host a lobby", "Join a lobby", "Watch a replay", "Settings", "Quit",
    ]
    public static let joinItems = ["By topic", "By a friend's name, a key or an invite", "Back"]

    /// The rows of the current page.
    public var items: [String] {
        switch page {
        case .main: return Self.mainItems
        case .join: return Self.joinItems
        case .settings:
            return [
                "Name: " + settings.name,
                "Colour: " + (settings.color ? "on" : "off"),
                "Characters: " + (settings.ascii ? "ASCII" : "Unicode"),
                "Bots in a local match: \(settings.bots)",
                "Back",
            ]
        case .editing: return []
        }
    }

    public mutating func handle(_ key: Key) -> Action {
        if case .editing(let field) = page { return edit(field, key) }
        let rows = items.count
        switch key {
        case .up, .char("k"): selected = (selected + rows - 1) % rows
        case .down, .char("j"): selected = (selected + 1) % rows
        case .home: selected = 0
        case .end: selected = rows - 1
        case .char(let c) where c.isASCII && c.isNumber:
            guard let n = c.wholeNumberValue, (1...rows).contains(n) else { return .none }
            selected = n - 1
            return choose()
        case .enter, .char(" "): return choose()
        case .escape, .char("q"), .char("Q"):
            if page == .main { return .quit }
            back()
        case .char("h") where page == .settings, .left where page == .settings:
            return adjustBots(-1)
        case .char("l") where page == .settings, .right where page == .settings:
            return adjustBots(+1)
        default: break
        }
        return .none
    }

    private mutating func back() {
        selected = page == .join ? 2 : page == .settings ? 4 : 0
        page = .main
    }

    private mutating func open(_ p: Page, at row: Int = 0) {
        page = p
        selected = row
        notice = ""
    }

    private mutating func startEditing(_ field: Field, with initial: String) {
        page = .editing(field)
        text = initial
    }

    private mutating func choose() -> Action {
        switch (page, selected) {
        case (.main, 0): return .playBots
        case (.main, 1): startEditing(.hostTopic, with: settings.topic)
        case (.main, 2): open(.join)
        case (.main, 3): return .replays
        case (.main, 4): open(.settings)
        case (.main, _): return .quit
        case (.join, 0): startEditing(.joinTopic, with: settings.topic)
        case (.join, 1): startEditing(.joinTarget, with: settings.target)
        case (.join, _): back()
        case (.settings, 0): startEditing(.name, with: settings.name)
        case (.settings, 1):
            settings.color.toggle()
            return .saveSettings
        case (.settings, 2):
            settings.ascii.toggle()
            return .saveSettings
        case (.settings, 3): return adjustBots(+1, wrap: true)
        case (.settings, _): back()
        default: break
        }
        return .none
    }

    private mutating func adjustBots(_ by: Int, wrap: Bool = false) -> Action {
        guard selected == 3 else { return .none }
        var n = settings.bots + by
        if wrap && n > Settings.botRange.upperBound { n = Settings.botRange.lowerBound }
        n = min(max(n, Settings.botRange.lowerBound), Settings.botRange.upperBound)
        guard n != settings.bots else { return .none }
        settings.bots = n
        return .saveSettings
    }

    private mutating func edit(_ field: Field, _ key: Key) -> Action {
        let returnTo: (Page, Int) =
            switch field {
            case .hostTopic: (.main, 1)
            case .joinTopic: (.join, 0)
            case .joinTarget: (.join, 1)
            case .name: (.settings, 0)
            }
        switch key {
        case .escape:
            (page, selected) = returnTo
        case .backspace:
            if !text.isEmpty { text.removeLast() }
        case .enter:
            let value = String(text.drop(while: \.isWhitespace).reversed().drop(while: \.isWhitespace).reversed())
            guard !value.isEmpty else {
                notice = field == .name ? "A name cannot be empty." : "Type something first (Esc goes back)."
                return .none
            }
            (page, selected) = returnTo
            notice = ""
            switch field {
            case .hostTopic:
                settings.topic = value
                return .host(topic: value)
            case .joinTopic:
                settings.topic = value
                return .joinTopic(value)
            case .joinTarget:
                settings.target = value
                return .join(value)
            case .name:
                settings.name = String(value.prefix(Settings.maxName))
                return .saveSettings
            }
        case .char(let c):
            // Printable characters only, within the field's byte limit: no control characters,
            // so nothing typed (or pasted) can move the cursor.
            guard !c.unicodeScalars.contains(where: { $0.properties.generalCategory == .control || $0.value == 0x7F }),
                text.utf8.count + String(c).utf8.count <= field.maxBytes
            else { return .none }
            text.append(c)
        default: break
        }
        return .none
    }
}
