import Engine
import TerminalUI
import Testing
import TurfRules

/// The screens of a networked match: lobby, HUD, end screen; and the fitting of peer text.
@Suite struct NetScreenTests {
    static let hostKey = "turf1" + String(repeating: "a", count: 50) + "host"
    static let bobKey = "turf1" + String(repeating: "b", count: 50) + "bobk"
    static let hostile = [
        String(repeating: "\u{0301}", count: 10_000),
        "x" + String(repeating: "\u{0301}", count: 10_000),
        String(repeating: "\u{1B}[2J\u{07}\u{9B}", count: 2_500),
        String(repeating: "\u{202E}\u{200D}\u{FE0F}", count: 3_000),
        String(repeating: "漢字🎉👍🏽🇫🇷", count: 2_000),
        "ab\u{1100}\u{1161}\u{11A8}cd\u{0E33}",
    ]

    func lobby(role: LobbyView.Role = .host, phase: LobbyView.Phase = .waiting, names: [String] = ["alice", "bob"])
        -> LobbyView
    {
        var roster: [RosterRow] = []
        for (i, n) in names.enumerated() {
            roster.append(
                RosterRow(
                    name: n,
                    key: i == 0 ? NetScreenTests.hostKey : NetScreenTests.bobKey,
                    pingMs: i == 0 ? nil : 23 + i,
                    path: i == 0 ? nil : (i % 2 == 1 ? .direct : .relayed),
                    connected: i != 3,
                    isHost: i == 0,
                    isYou: role == .host ? i == 0 : i == 1
                )
            )
        }
        return LobbyView(
            role: role,
            phase: phase,
            topic: "friday-night",
            ownKey: role == .host ? NetScreenTests.hostKey : NetScreenTests.bobKey,
            invite: role == .host ? "turf-invite:" + String(repeating: "q", count: 150) + "END" : nil,
            mapName: "Dojo",
            matchSeconds: 180,
            passphrase: true,
            roster: roster
        )
    }

    /// Every cell holds exactly one scalar that takes one column: no controls, no marks, nothing wide.
    func expectSafeCells(_ f: Frame, sourceLocation: SourceLocation = #_sourceLocation) {
        for cell in f.cells {
            let scalars = Array(cell.text.unicodeScalars)
            #expect(
                scalars.count == 1,
                "cell \(scalars.map { String($0.value, radix: 16) })",
                sourceLocation: sourceLocation
            )
            if let u = scalars.first {
                #expect(!(u.value < 0x20 || (0x7F...0x9F).contains(u.value)), sourceLocation: sourceLocation)
                #expect(
                    u.properties.generalCategory != .nonspacingMark && u.properties.generalCategory != .format,
                    sourceLocation: sourceLocation
                )
                #expect(
                    !u.properties.isEmojiPresentation && !(0x4E00...0x9FFF).contains(u.value),
                    sourceLocation: sourceLocation
                )
            }
        }
    }

    func rows(_ f: Frame) -> [String] {
        f.text.split(separator: "\n", omittingEmptySubsequences: false).map(String.init)
    }

    // MARK: fitting peer text

    @Test func cellTextFitsHostileNamesInTheirWidth() {
        for name in NetScreenTests.hostile {
            for width in [0, 1, 5, 12, 80] {
                for ascii in [false, true] {
                    let cells = CellText.cells(name, width: width, ascii: ascii)
                    #expect(cells.count <= width)
                    for c in cells {
                        #expect(c.unicodeScalars.count == 1)
                        let u = c.unicodeScalars.first!
                        #expect(u.value >= 0x20 && !(0x7F...0x9F).contains(u.value))
                        if ascii { #expect(u.isASCII || c == "~") }
                    }
                }
            }
        }
        #expect(CellText.fit("x" + String(repeating: "\u{0301}", count: 40), width: 12) == "x")
        #expect(CellText.fit(String(repeating: "\u{0301}", count: 80), width: 12) == "")
        #expect(CellText.fit("ab\u{1100}\u{1161}\u{11A8}cd\u{0E33}", width: 12) == "ab?cd")
        // 10,000 marks: more than the scan limit, so the cut shows.
        #expect(CellText.fit("x" + String(repeating: "\u{0301}", count: 10_000), width: 12) == "x…")
        #expect(CellText.fit("\u{1B}[2Jbob", width: 20) == "\\x1b[2Jbob")
        #expect(CellText.fit("\u{1B}[2Jbob", width: 6) == "\\x1b[…")
        #expect(CellText.fit("漢字 bob", width: 12) == "?? bob")
        #expect(CellText.fit("Zoë Müller", width: 12) == "Zoë Müller")
        #expect(CellText.fit("Zoë Müller", width: 12, ascii: true) == "Zo? M?ller")
        #expect(CellText.fit("abcdefghijkl", width: 12) == "abcdefghijkl")
        #expect(CellText.fit("abcdefghijklm", width: 12) == "abcdefghijk…")
        #expect(CellText.fit("abcdefghijklm", width: 12, ascii: true) == "abcdefghijk~")
        // A name longer than the scan limit is cut, and says so.
        #expect(CellText.fit(String(repeating: "\u{0301}", count: 10_000) + "bob", width: 12) == "…")
        #expect(
            CellText.fit(String(repeating: "\u{0301}", count: CellText.scanLimit(width: 12) - 3) + "bob", width: 12)
                == "bob"
        )
        #expect(
            CellText.fit(String(repeating: "\u{0301}", count: CellText.scanLimit(width: 12) - 2) + "bob", width: 12)
                == "bo…"
        )
    }

    @Test func putFieldNeverWritesOutsideItsField() {
        for name in NetScreenTests.hostile {
            var f = Frame(width: 30, height: 3)
            let end = f.putField(name, x: 5, y: 1, width: 10, ascii: false)
            #expect(end <= 15)
            #expect(rows(f)[1].prefix(5) == "     ")
            #expect(rows(f)[1].dropFirst(15).allSatisfy { $0 == " " })
            #expect(rows(f)[0].allSatisfy { $0 == " " } && rows(f)[2].allSatisfy { $0 == " " })
            expectSafeCells(f)
        }
    }

    // MARK: lobby

    @Test func hostLobbyShowsTopicKeyInviteMatchAndRoster() {
        let screen = LobbyScreen(theme: Theme(color: false, unicode: true))
        let f = screen.render(lobby(names: ["alice", "bob", "carol", "dave"]), width: 80, height: 24)
        let text = f.text
        let r = rows(f)
        #expect(r[0].contains("turf lobby · topic friday-night"))
        #expect(r[0].contains("you host"))
        // The key and the invite are shown whole (wrapped), for copying.
        let joined = r.map { $0.dropFirst(12).trimmingTrailing() }.joined()
        #expect(joined.contains(NetScreenTests.hostKey))
        #expect(joined.contains("turf-invite:" + String(repeating: "q", count: 150) + "END"))
        #expect(text.contains("Dojo · 03:00 · up to 8 players · passphrase yes"))
        #expect(text.contains("Players 4/8"))
        let alice = r.first { $0.contains("alice") }!
        #expect(alice.contains("(host, you)") && alice.contains("here"))
        let bob = r.first { $0.contains("bob") }!
        #expect(
            bob.contains("turf1bbbb…") && bob.contains("24 ms") && bob.contains("direct") && bob.contains("connected")
        )
        let carol = r.first { $0.contains("carol") }!
        #expect(carol.contains("relayed"))
        let dave = r.first { $0.contains("dave") }!
        #expect(dave.contains("disconnected"))
        #expect(r[23].contains("Enter: start the match (4 players) · ↑/↓ k: kick · c: chat · q: leave"))
        expectSafeCells(f)
        // Alone in the lobby: one player, and no one to kick.
        let alone = rows(screen.render(lobby(names: ["alice"]), width: 80, height: 24))
        #expect(alone[23].contains("Enter: start the match (1 player) · c: chat · q: leave"))
    }

    @Test func joinerWaitsForTheHost() {
        let f = LobbyScreen(theme: Theme(color: true, unicode: false)).render(
            lobby(role: .joiner),
            width: 80,
            height: 24
        )
        #expect(rows(f)[0].contains("you joined"))
        #expect(f.text.contains("Waiting for the host to start the match"))
        #expect(!f.text.contains("Invite"))
        #expect(!f.text.contains("Enter"))
        let bob = rows(f).first { $0.hasPrefix(" B bob") }!
        #expect(bob.contains("(you)") && bob.contains("here"))
    }

    @Test func joinerPicksOneOfSeveralLobbies() {
        let lobbies = (0..<30).map {
            LobbyListing(
                hostKey: "turf1host\($0)" + String(repeating: "x", count: 40),
                hostName: $0 == 2 ? "\u{1B}]0;evil\u{07}" : "host\($0)",
                players: $0 % 8 + 1,
                maxPlayers: 8,
                passphrase: $0 % 2 == 0,
                pingMs: 10 + $0,
                lan: $0 == 0
            )
        }
        let view = lobby(role: .joiner, phase: .choosing(lobbies))
        var controller = LobbyController()
        #expect(controller.handle(.down, view: view) == nil)
        #expect(controller.handle(.char("j"), view: view) == nil)
        #expect(controller.selected == 2)
        let f = LobbyScreen(theme: Theme(color: false, unicode: true)).render(
            view,
            selected: controller.selected,
            width: 80,
            height: 24
        )
        let picked = rows(f).first { $0.contains("▶") }!
        #expect(picked.contains("\\x1b]0;evil\\x07"))
        #expect(picked.contains("3/8 players · 12 ms · passphrase"))
        // A lobby found on the LAN says so (docs/nat.md, "LAN parties").
        #expect(rows(f).first { $0.contains("host0") }?.contains("LAN · 1/8 players · 10 ms") == true)
        #expect(f.text.contains("30 lobbies share this topic"))
        #expect(f.text.contains("↑/↓: pick · Enter: join · q: leave"))
        expectSafeCells(f)
        #expect(controller.handle(.enter, view: view) == .pick(hostKey: lobbies[2].hostKey))
        // Scrolling: the highlighted lobby stays on screen far down the list.
        for _ in 0..<40 { _ = controller.handle(.down, view: view) }
        #expect(controller.selected == 29)
        let end = LobbyScreen(theme: Theme(color: false, unicode: false)).render(
            view,
            selected: controller.selected,
            width: 80,
            height: 24
        )
        #expect(rows(end).contains { $0.hasPrefix(" > host29") })
        #expect(controller.handle(.up, view: view) == nil)
        #expect(controller.selected == 28)
        #expect(controller.handle(.char("q"), view: view) == .leave)
    }

    @Test func controllerStartsOnlyForTheHost() {
        var c = LobbyController()
        #expect(c.handle(.enter, view: lobby(role: .host)) == .start)
        #expect(c.handle(.enter, view: lobby(role: .joiner)) == nil)
        #expect(c.handle(.enter, view: lobby(role: .host, phase: .starting(secondsLeft: 3))) == nil)
        #expect(c.handle(.enter, view: lobby(role: .joiner, phase: .choosing([]))) == nil)
        #expect(c.handle(.escape, view: lobby(role: .joiner)) == .leave)
    }

    @Test func lobbyPhasesSayWhatIsHappening() {
        let s = LobbyScreen(theme: Theme(color: false, unicode: true))
        #expect(
            s.render(lobby(role: .joiner, phase: .searching(detail: "asking the DHT")), width: 80, height: 24).text
                .contains("Looking for lobbies: asking the DHT")
        )
        #expect(
            s.render(lobby(phase: .starting(secondsLeft: 3)), width: 80, height: 24).text.contains(
                "The match starts in 3 s"
            )
        )
        let failed = s.render(
            lobby(role: .joiner, phase: .failed(reason: "wrong passphrase\u{1B}[31m")),
            width: 80,
            height: 24
        )
        #expect(failed.text.contains("wrong passphrase\\x1b[31m"))
        #expect(failed.text.contains("q: quit"))
        var v = lobby()
        v.rejectedJoins = 2
        v.notice = "carol\u{1B}[1m joined"
        let f = s.render(v, width: 80, height: 24)
        #expect(f.text.contains("wrong passphrase: 2"))
        #expect(rows(f)[21].contains("carol\\x1b[1m joined"))
    }

    @Test func hostileNamesStayInTheirColumns() {
        for size in [(80, 24), (200, 60), (40, 12)] {
            for unicode in [true, false] {
                let names = ["alice"] + NetScreenTests.hostile
                let f = LobbyScreen(theme: Theme(color: true, unicode: unicode)).render(
                    lobby(names: names),
                    width: size.0,
                    height: size.1
                )
                expectSafeCells(f)
                if size.0 >= 72 {
                    // Every roster row still has its ping and path in the ping column.
                    let rosterRows = rows(f).filter {
                        $0.hasPrefix(" B ") || $0.hasPrefix(" C ") || $0.hasPrefix(" D ")
                    }
                    #expect(rosterRows.count == 3)
                    for r in rosterRows { #expect(Array(r)[40...].starts(with: Array("2"))) }
                }
            }
        }
    }

    @Test func narrowLobbyKeepsPingAndPath() throws {
        for width in [40, 50, 71] {
            let f = LobbyScreen(theme: Theme(color: false, unicode: true)).render(
                lobby(names: ["alice", "bob", "carol", "dave"]),
                width: width,
                height: 24
            )
            let r = rows(f)
            let bob = try #require(r.first { $0.hasPrefix(" B bob") }, "\(f.text)")
            #expect(bob.contains("24 ms") && bob.contains("direct"), "\(f.text)")
            #expect(try #require(r.first { $0.hasPrefix(" C carol") }).contains("relayed"))
            #expect(try #require(r.first { $0.hasPrefix(" D dave") }).contains("lost"))
            #expect(!f.text.contains("turf1bbbb…"))
            expectSafeCells(f)
        }
        // A short screen says how many rows it could not show.
        let short = LobbyScreen(theme: Theme(color: false, unicode: true)).render(
            lobby(names: ["a", "b", "c", "d", "e", "f", "g", "h"]),
            width: 80,
            height: 16
        )
        #expect(short.text.contains("more"))
    }

    @Test func smallTerminalGetsAMessage() {
        let f = LobbyScreen(theme: Theme(color: false, unicode: true)).render(lobby(), width: 39, height: 20)
        #expect(f.text.contains("Terminal too small"))
        _ = LobbyScreen(theme: Theme(color: false, unicode: true)).render(lobby(), width: 0, height: 0)
    }

    // MARK: the match HUD

    func match(names: [String], ticks: Int = 60) throws -> (ArenaScene, TurfLocalMatch) {
        let map = try ArenaMap(
            parsing: "name: Tiny\n---\n############\n#1...5....2#\n#7........8#\n#3...6....4#\n############\n"
        )
        var s = TurfSettings(map: map)
        s.pickupInterval = 0
        var players = TurfMatch.players(humans: ["me"], total: names.count)
        // A match config holds names of at most PlayerInfo.maxNameBytes (checked before play): the
        // longest prefix of each hostile name that fits.
        for (i, n) in names.enumerated() {
            var name = String.UnicodeScalarView()
            for u in n.unicodeScalars {
                if String(name).utf8.count + String(u).utf8.count > PlayerInfo.maxNameBytes { break }
                name.append(u)
            }
            players[i].name = String(name)
        }
        let config = s.matchConfig(seed: 3, players: players, seconds: 20)
        var m = try TurfMatch.local(config: config)
        for _ in 0..<ticks { m.step() }
        return (ArenaScene(world: m.replica.state, tick: m.tick, config: config, focus: 0, title: "turf"), m)
    }

    static let net = NetStatus(peers: [
        PeerStatus(player: 0),
        PeerStatus(player: 1, pingMs: 45, path: .direct),
        PeerStatus(player: 2, pingMs: 130, path: .relayed),
        PeerStatus(player: 3, pingMs: 80, path: .direct, connected: false),
    ])

    @Test func hudShowsEveryPlayersLink() throws {
        let (scene, m) = try match(names: ["alice", "bob", "carol", "dave"])
        let f = NetMatchRenderer(theme: Theme(color: false, unicode: true)).render(
            scene,
            net: NetScreenTests.net,
            width: 200,
            height: 60
        )
        let hud = rows(f)[1]
        let scores = m.replica.state.scores
        #expect(hud.contains("A*alice \(scores[0])"))
        #expect(hud.contains("B bob \(scores[1])") && hud.contains("45ms direct"))
        #expect(hud.contains("C carol \(scores[2])") && hud.contains("130ms relayed"))
        #expect(hud.contains("D dave \(scores[3])") && hud.contains("disconnected"))
        #expect(!f.text.contains("DESYNC"))
        #expect(f.text.contains("A@"))

        // At 80 columns the entries get shorter but keep the link.
        let small = rows(
            NetMatchRenderer(theme: Theme(color: true, unicode: false)).render(
                scene,
                net: NetScreenTests.net,
                width: 80,
                height: 24
            )
        )[1]
        #expect(
            small.contains("45ms") && small.contains("130ms")
                && (small.contains("lost") || small.contains("disconnected"))
        )
    }

    /// A cheater (docs/threat-model.md) is marked in its HUD entry and named on the warning line;
    /// the end screen names it with the rule and the tick, and says when peers did not converge.
    @Test func aCheaterIsMarkedOnTheHUDAndTheEndScreen() throws {
        let (scene, _) = try match(names: ["alice", "bob", "carol"], ticks: 60)
        var net = NetScreenTests.net
        net.cheats = [CheatMark(player: 1, rule: "teleport", tick: 312)]
        for (w, hh) in [(80, 24), (200, 60)] {
            let f = NetMatchRenderer(theme: Theme(color: false, unicode: false)).render(
                scene,
                net: net,
                width: w,
                height: hh
            )
            let r = rows(f)
            #expect(r[1].contains("B!"), "\(r[1])")
            #expect(r[1].contains("CHEAT"), "\(r[1])")
            #expect(r[hh - 1].contains("bob CHEATED (teleport, tick 312)"), "\(r[hh - 1])")
            expectSafeCells(f)
        }
        let summary = NetEndSummary(
            finalHash: "0123456789abcdef",
            replayPath: "/tmp/x.turfreplay",
            cheats: [CheatMark(player: 1, rule: "teleport", tick: 312)],
            converged: false
        )
        let end = NetEndScreen(theme: Theme(color: false, unicode: true)).render(
            world: scene.world,
            config: scene.config,
            history: TerritoryHistory(),
            focus: 0,
            summary: summary,
            footer: " q: quit",
            width: 100,
            height: 30
        )
        #expect(end.text.contains("cheated B bob teleport at tick 312"), "\(end.text)")
        #expect(end.text.contains("NOT CONVERGED"))
        expectSafeCells(end)
    }

    /// Your own NAT (docs/nat.md) is on the lobby's roster line and in your HUD entry when it fits.
    @Test func lobbyAndHUDShowYourNAT() throws {
        var v = lobby()
        #expect(
            !LobbyScreen(theme: Theme(color: false, unicode: true)).render(v, width: 80, height: 24).text.contains(
                "NAT"
            )
        )
        v.nat = "random"
        let r = rows(LobbyScreen(theme: Theme(color: false, unicode: true)).render(v, width: 80, height: 24))
        let line = try #require(r.first { $0.contains("Players 2/8") })
        #expect(line.contains("your NAT: random"))
        // Whether this machine relays for others: in full on a wide screen, shorter on 80 columns.
        v.nat = "open"
        v.ipv6 = "none"
        v.relaying = true
        let wide = rows(LobbyScreen(theme: Theme(color: false, unicode: true)).render(v, width: 120, height: 24))
        #expect(wide.contains { $0.contains("your NAT: open · IPv6: none · relaying for others: on") })
        let narrow = rows(LobbyScreen(theme: Theme(color: false, unicode: true)).render(v, width: 80, height: 24))
        #expect(narrow.contains { $0.contains("your NAT: open · relaying: on") })
        v.relaying = nil
        v.nat = "random"
        let (scene, _) = try match(names: ["alice", "bob"])
        var net = NetScreenTests.net
        net.peers = Array(net.peers.prefix(2))
        net.nat = "consistent"
        let hud = rows(
            NetMatchRenderer(theme: Theme(color: false, unicode: true)).render(scene, net: net, width: 120, height: 40)
        )[1]
        #expect(hud.contains("NAT consistent") && hud.contains("45ms direct"))
    }

    @Test func hudWithEightPlayersAt80ColumnsKeepsEveryEntryInItsShare() throws {
        let names = ["alice"] + NetScreenTests.hostile + ["h"]
        let (scene, _) = try match(names: names)
        var net = NetStatus(
            peers: (0..<8).map {
                PeerStatus(
                    player: $0,
                    pingMs: $0 == 0 ? nil : 100 + $0,
                    path: $0 % 2 == 0 ? .relayed : .direct,
                    connected: $0 != 5
                )
            }
        )
        net.desyncTick = 1234
        net.rejectedOps = 3
        for (w, h) in [(80, 24), (200, 60)] {
            for color in [true, false] {
                let f = NetMatchRenderer(theme: Theme(color: color, unicode: !color)).render(
                    scene,
                    net: net,
                    width: w,
                    height: h
                )
                expectSafeCells(f)
                let share = w / 8
                for p in 0..<8 {
                    #expect(f[p * share + (color ? 1 : 0), 1].text == Theme.letter(p), "\(f.text)")
                }
                let last = rows(f)[h - 1]
                #expect(last.contains("DESYNC at tick 1234") && last.contains("3 invalid ops rejected"), "\(last)")
            }
        }
    }

    // MARK: the end screen

    @Test func endScreenShowsResultHashReplayAndLinks() throws {
        let (scene, _) = try match(names: ["alice", "bob", "carol", "dave"], ticks: 200)
        var h = TerritoryHistory()
        for t in stride(from: 0, through: 200, by: 30) { h.record(tick: Tick(t), scores: [t / 10, t / 20, t / 30, 1]) }
        let links = [
            LinkSummary(
                name: "bob",
                key: NetScreenTests.bobKey,
                path: .direct,
                rttMsP50: 23.4,
                bytesSent: 41_234,
                bytesReceived: 40_000,
                seconds: 180
            ),
            LinkSummary(
                name: NetScreenTests.hostile[2],
                key: "turf1carol",
                path: .relayed,
                rttMsP50: nil,
                bytesSent: 900,
                bytesReceived: 12_000_000,
                seconds: 179.6
            ),
        ]
        let summary = NetEndSummary(
            finalHash: "0123456789abcdef",
            replayPath: "/home/a/.local/state/turf/replays/x.turfreplay",
            desyncs: 0,
            rejectedOps: 2,
            links: links
        )
        for (w, hh) in [(80, 24), (200, 60)] {
            let f = NetEndScreen(theme: Theme(color: false, unicode: true)).render(
                world: scene.world,
                config: scene.config,
                history: h,
                focus: 0,
                summary: summary,
                footer: " q: quit",
                width: w,
                height: hh
            )
            let text = f.text
            #expect(text.contains("Round over"))
            #expect(text.contains("final hash 0123456789abcdef"))
            #expect(text.contains("replay /home/a/.local/state/turf/replays/x.turfreplay"))
            #expect(text.contains("desyncs 0 · rejected ops 2"))
            #expect(text.contains("bob") && text.contains("direct, 23 ms, 41 kB out, 40 kB in, 180 s"))
            #expect(text.contains("relayed, -, 900 B out, 12 MB in, 180 s"))
            #expect(rows(f)[hh - 1].contains("q: quit"), "\(text)")
            expectSafeCells(f)
        }
        let unsaved = NetEndScreen(theme: Theme(color: false, unicode: false)).render(
            world: scene.world,
            config: scene.config,
            history: h,
            focus: 0,
            summary: NetEndSummary(finalHash: "ff", replayPath: nil),
            footer: "q",
            width: 80,
            height: 24
        )
        #expect(unsaved.text.contains("replay NOT saved"))
    }
}

extension Substring {
    func trimmingTrailing() -> Substring {
        var s = self
        while s.last == " " { s = s.dropLast() }
        return s
    }
}
