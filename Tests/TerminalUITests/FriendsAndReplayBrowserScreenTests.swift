import TerminalUI
import Testing

/// The lobby roster's friend labels, and the saved-match browser's screen and keys.
@Suite struct FriendsAndReplayBrowserScreenTests {
    static let hostKey = "turf1" + String(repeating: "a", count: 50) + "host"
    static let bobKey = "turf1" + String(repeating: "b", count: 50) + "bobk"
    static let malKey = "turf1" + String(repeating: "m", count: 50) + "malk"

    func rows(_ f: Frame) -> [String] {
        f.text.split(separator: "\n", omittingEmptySubsequences: false).map(String.init)
    }

    func lobby(_ roster: [RosterRow]) -> LobbyView {
        LobbyView(
            role: .host,
            topic: "friday",
            ownKey: Self.hostKey,
            invite: "turf-invite1.x",
            mapName: "Dojo",
            matchSeconds: 60,
            roster: roster
        )
    }

    // MARK: friend labels

    @Test(arguments: [80, 60, 40])
    func aFriendShowsTheNameYouGaveThemBesideTheirChosenName(width: Int) {
        let v = lobby([
            RosterRow(name: "alice", key: Self.hostKey, isHost: true, isYou: true),
            RosterRow(name: "bob", key: Self.bobKey, pingMs: 12, path: .direct, friend: "Bobby"),
        ])
        let f = LobbyScreen(theme: Theme(color: false, unicode: false)).render(v, width: width, height: 24)
        let bob = rows(f).first { $0.contains("bob") } ?? ""
        // 40 columns leave the name and its label 18 cells: the label is cut, never dropped.
        #expect(bob.contains(width >= 60 ? "bob (friend: Bobby)" : "bob (friend: Bob"), "\(f.text)")
        // The label stands for the key: no fingerprint beside it, and the row fits.
        #expect(!bob.contains("turf1bbb"), "\(bob)")
        #expect(rows(f).allSatisfy { $0.count == width })
    }

    /// A stranger cannot look like a friend by the name he chooses: his brackets are not turf's
    /// parentheses, of any kind (ASCII, full-width, superscript, ornamental), and only a key in
    /// your friends file gets the label.
    @Test func aChosenNameCannotImpersonateAFriendsLabel() {
        let fakes = [
            "mal (friend: Bob)", "mal \u{FF08}friend: Bob\u{FF09}", "mal \u{207D}friend: Bob\u{207E}",
            "mal \u{2768}friend: Bob\u{2769}", "mal (host)",
        ]
        for fake in fakes {
            let v = lobby([
                RosterRow(name: "alice", key: Self.hostKey, isHost: true, isYou: true),
                RosterRow(name: fake, key: Self.malKey, pingMs: 9, path: .direct),
            ])
            for unicode in [false, true] {
                let f = LobbyScreen(theme: Theme(color: false, unicode: unicode)).render(v, width: 80, height: 24)
                let row = rows(f).first { $0.contains("mal") } ?? ""
                #expect(!row.contains("(friend:") && !row.contains("(host"), "\(fake): \(row)")
                #expect(row.contains("[friend: Bob]") || row.contains("[host]"), "\(fake): \(row)")
                // A stranger keeps his key's fingerprint.
                #expect(row.contains("turf1mmmm"), "\(row)")
            }
        }
        #expect(RosterRow.label("mal (friend: Bobby)", friend: nil) == "mal [friend: Bobby]")
        #expect(RosterRow.label("bob", friend: "Bobby") == "bob (friend: Bobby)")
    }

    @Test func aFriendWhoHostsIsLabelledOnTheJoinersScreen() {
        var v = lobby([
            RosterRow(name: "alice", key: Self.hostKey, isHost: true, friend: "Al"),
            RosterRow(name: "bob", key: Self.bobKey, isYou: true),
        ])
        v.role = .joiner
        let f = LobbyScreen(theme: Theme(color: false, unicode: false)).render(v, width: 80, height: 24)
        #expect(f.text.contains("alice (host, friend: Al)"), "\(f.text)")
    }

    // MARK: the replay browser

    func browser(selected: Int = 0, confirming: Bool = false) -> ReplayBrowserView {
        ReplayBrowserView(
            directory: "/home/u/.local/state/turf/replays",
            rows: [
                ReplayRow(
                    file: "20251204-213000-dojo-a1b2c3.turfreplay",
                    date: "2025-12-04 21:30",
                    size: "3 KB",
                    content: .match(
                        ReplayRowInfo(
                            map: "Dojo",
                            players: [("alice", 220), ("bob\u{1B}[31m", 116)],
                            winner: "alice",
                            length: "1:30",
                            networked: true
                        )
                    ),
                    check: .ok
                ),
                ReplayRow(
                    file: "broken\u{202E}.turfreplay",
                    date: "2025-12-03 10:00",
                    size: "2 KB",
                    content: .unreadable("truncated: config section needs 2054 bytes (at byte 15)")
                ),
                ReplayRow(file: "old.turfreplay", date: "2025-01-01 09:00", size: "80 KB"),
            ],
            found: 3,
            selected: selected,
            confirmingDelete: confirming
        )
    }

    @Test func theBrowserFitsEightyByTwentyFourInASCII() {
        let f = ReplayBrowserScreen(theme: Theme(color: false, unicode: false)).render(
            browser(),
            width: 80,
            height: 24
        )
        let text = f.text
        #expect(text.unicodeScalars.allSatisfy { $0.isASCII && $0.value >= 0x20 || $0 == "\n" }, "\(text)")
        #expect(text.contains("3 saved matches, newest first"))
        #expect(text.contains("Dojo") && text.contains("1:30") && text.contains("net") && text.contains("alice"))
        #expect(text.contains("unreadable: truncated"))
        // The third is not read yet; the second's file name is escaped, not obeyed.
        #expect(text.contains("..."))
        #expect(text.contains("verified: every state hash"))
        #expect(text.contains("Enter: watch") && text.contains("d: delete") && text.contains("q: quit"))
        #expect(rows(f).allSatisfy { $0.count == 80 })
        let second = ReplayBrowserScreen(theme: Theme(color: false, unicode: false)).render(
            browser(selected: 1),
            width: 80,
            height: 24
        )
        #expect(second.text.contains("broken\\u{202e}.turfreplay"), "\(second.text)")
        #expect(second.text.contains("cannot be watched"))
    }

    @Test func deletingAsksYesOrNo() {
        let f = ReplayBrowserScreen(theme: Theme(color: false, unicode: false)).render(
            browser(confirming: true),
            width: 80,
            height: 24
        )
        #expect(f.text.contains("Delete 20251204-213000-dojo-a1b2c3.turfreplay? (y/n)"), "\(f.text)")
        #expect(f.text.contains("y: delete the file"))
    }

    @Test func theBrowsersKeys() {
        var c = ReplayBrowserController()
        #expect(c.handle(.down, count: 3) == nil && c.selected == 1)
        #expect(c.handle(.char("j"), count: 3) == nil && c.selected == 2)
        #expect(c.handle(.char("j"), count: 3) == nil && c.selected == 2)
        #expect(c.handle(.char("k"), count: 3) == nil && c.selected == 1)
        #expect(c.handle(.enter, count: 3) == .open(1))
        #expect(c.handle(.char("d"), count: 3) == nil && c.confirmingDelete)
        #expect(c.handle(.char("n"), count: 3) == .keep && !c.confirmingDelete)
        #expect(c.handle(.char("d"), count: 3) == nil)
        #expect(c.handle(.char("q"), count: 3) == .keep)  // q answers the question: keep
        #expect(c.handle(.char("d"), count: 3) == nil)
        #expect(c.handle(.char("y"), count: 3) == .delete(1))
        c.clamp(count: 1)
        #expect(c.selected == 0)
        #expect(c.handle(.end, count: 5) == nil && c.selected == 4)
        #expect(c.handle(.home, count: 5) == nil && c.selected == 0)
        #expect(c.handle(.enter, count: 0) == nil)
        #expect(c.handle(.char("d"), count: 0) == nil && !c.confirmingDelete)
        #expect(c.handle(.escape, count: 0) == .quit)
    }

    @Test func anEmptyDirectorySaysHowMatchesGetThere() {
        let v = ReplayBrowserView(directory: "/tmp/x", rows: [], found: 0)
        let f = ReplayBrowserScreen(theme: Theme(color: false, unicode: false)).render(v, width: 80, height: 24)
        #expect(f.text.contains("No saved matches yet"))
        #expect(f.text.contains("q: quit"))
    }
}
