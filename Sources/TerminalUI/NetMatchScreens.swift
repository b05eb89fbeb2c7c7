import Engine
import TurfRules

/// The match screen of a networked match: the arena as `ArenaRenderer` draws it, with the score
/// row replaced by one entry per player carrying its link (ping, direct or relayed, connected or
/// not), and a warning line when a desync or rejected ops were seen. Pure: no curses, no clock.
///
/// Each entry is the longest form that fits the player's share of the row:
/// `A*alice 120 14% 45ms direct`, `A*alice 120 45ms`, `A*120 45ms`, `A*120`; a disconnected player
/// shows `lost` (or `x`) instead of its ping, a relayed one `relayed` (or a trailing `r`), so it
/// reads without colour. Your own entry ends with your NAT when it fits (`A*alice 120 14% NAT
/// consistent`). Names are fitted with `CellText`.
public struct NetMatchRenderer: Sendable {
    public var theme: Theme

    public init(theme: Theme) { self.theme = theme }

    public func render(_ scene: ArenaScene, net: NetStatus, width: Int, height: Int) -> Frame {
        // The arena renderer draws names too (the score row, replaced below): give it fitted ones,
        // so a hostile name costs no more there than here.
        var scene = scene
        for i in scene.config.players.indices {
            scene.config.players[i].name = CellText.fit(scene.config.players[i].name, width: 12, ascii: !theme.unicode)
        }
        var f = ArenaRenderer(theme: theme).render(scene, width: width, height: height)
        guard width >= ArenaRenderer.minWidth && height >= ArenaRenderer.minHeight else { return f }
        drawPlayers(scene, net: net, into: &f)
        if let warning = NetMatchRenderer.warning(net, names: scene.config.players.map(\.name)) {
            f.fill(
                x: 0,
                y: height - 1,
                width: width,
                height: 1,
                style: Style(color: Palette.hud, bold: true, reverse: true)
            )
            f.putField(
                warning,
                x: 0,
                y: height - 1,
                width: width - 1,
                ascii: !theme.unicode,
                style: Style(color: Palette.hud, bold: true, reverse: true)
            )
        }
        return f
    }

    /// The warning line, or nil when all is well.
    public static func warning(_ net: NetStatus, names: [String] = []) -> String? {
        var parts: [String] = []
        for c in net.cheats {
            let who = c.player < names.count ? names[c.player] : "player \(Theme.letter(c.player))"
            parts.append("\(who) CHEATED (\(c.rule), tick \(c.tick)): later moves ignored")
        }
        if let t = net.desyncTick { parts.append("DESYNC at tick \(t): states differ (logged)") }
        if net.rejectedOps > 0 {
            parts.append("\(net.rejectedOps) invalid op\(net.rejectedOps == 1 ? "" : "s") rejected")
        }
        return parts.isEmpty ? nil : " ! " + parts.joined(separator: " · ")
    }

    /// The forms of one player's entry, longest first.
    static func entries(
        letter: Character,
        you: Bool,
        name: [Character],
        score: Int,
        percent: Int,
        link: PeerStatus?,
        nat: String? = nil,
        cheated: Bool = false
    ) -> [String] {
        let mark = cheated ? "!" : you ? "*" : " "
        let head = "\(letter)\(mark)"
        let long: String
        let short: String
        let tiny: String
        if cheated {
            (long, short, tiny) = ("CHEATER", "CHEAT", "")
        } else if let link, !link.connected {
            (long, short, tiny) = ("disconnected", "lost", "x")
        } else if let link, !you {
            let ping = link.pingMs.map { "\($0)ms" } ?? "…"
            let relayed = link.path == .relayed
            (long, short, tiny) = (
                ping + (link.path.map { " " + $0.rawValue } ?? ""), ping + (relayed ? "r" : ""), relayed ? "r" : ""
            )
        } else if you, let nat {
            // Your own entry: your NAT (the widest form only).
            (long, short, tiny) = ("NAT " + String(nat.prefix(12)), "", "")
        } else {
            (long, short, tiny) = ("", "", "")
        }
        func join(_ parts: String...) -> String { parts.filter { !$0.isEmpty }.joined(separator: " ") }
        let n = String(name)
        let n8 = String(name.prefix(8))
        return [
            head + join(n, "\(score)", "\(percent)%", long),
            head + join(n8, "\(score)", short),
            head + join("\(score)", short),
            head + "\(score)" + tiny,
        ]
    }

    func drawPlayers(_ s: ArenaScene, net: NetStatus, into f: inout Frame) {
        f.fill(x: 0, y: 1, width: f.width, height: 1)
        let players = s.config.players
        guard !players.isEmpty else { return }
        let floor = max(1, s.world.map.floorCells.count)
        let best = s.world.scores.max() ?? 0
        let share = max(4, f.width / players.count)
        var cx = 0
        for (i, p) in players.enumerated() {
            let score = i < s.world.scores.count ? s.world.scores[i] : 0
            let link = net.status(of: i)
            let budget = share - 1 - (theme.color ? 1 : 0)
            let name = CellText.cells(p.name, width: 12, ascii: !theme.unicode)
            let forms = NetMatchRenderer.entries(
                letter: Theme.letter(i),
                you: s.focus == PlayerID(i),
                name: name,
                score: score,
                percent: score * 100 / floor,
                link: link,
                nat: net.nat,
                cheated: net.cheats.contains { $0.player == i }
            )
            let label = forms.first { $0.count <= budget } ?? forms[forms.count - 1]
            let lost = link.map { !$0.connected } ?? false
            let style = Style(color: Palette.player(i), bold: score == best && best > 0, dim: lost)
            if theme.color {
                f.put(" ", x: cx, y: 1, style: Style(color: Palette.territory(i)))
                cx += 1
            }
            // The label is made of fitted cells and plain ASCII: put it cell by cell, cut to the budget.
            f.putField(label, x: cx, y: 1, width: max(1, budget), ascii: !theme.unicode, style: style)
            cx = (i + 1) * share
            if cx >= f.width { break }
        }
    }
}

/// The end screen of a networked match: the local end screen (ranking, territory chart), then the
/// final hash, where the replay was saved, desyncs and rejected ops, and one line per link; while
/// the lobby goes on after the match (`after`), the series' tally, the rematch, and the chat.
public struct NetEndScreen: Sendable {
    public var theme: Theme
    public init(theme: Theme) { self.theme = theme }

    public func render(
        world: TurfWorld,
        config: MatchConfig,
        history: TerritoryHistory,
        focus: PlayerID?,
        summary: NetEndSummary,
        footer: String,
        after: AfterMatchView? = nil,
        width: Int,
        height: Int
    ) -> Frame {
        var f = Frame(width: width, height: height)
        let ascii = !theme.unicode
        guard width >= 40 && height >= 12 else {
            f.put("Round over. q quits.", x: 0, y: 0)
            f.putField("final hash " + summary.finalHash, x: 0, y: 1, width: width, ascii: ascii)
            return f
        }
        // Rows for the network part: hash, replay, counts, a heading and the links (as many as fit).
        let maxLinks = max(0, min(summary.links.count, height / 3 - 3))
        let chatRows = after.map { min($0.chat.count, 3, max(0, (height - 12) / 4)) } ?? 0
        let afterRows = after.map { 2 + chatRows + ($0.chatInput == nil ? 0 : 1) } ?? 0
        let netRows =
            3 + (summary.cheats.isEmpty ? 0 : 1)
            + (summary.links.isEmpty ? 0 : 1 + maxLinks + (maxLinks < summary.links.count ? 1 : 0)) + afterRows
        let top = EndScreen(theme: theme).render(
            world: world,
            config: config,
            history: history,
            focus: focus,
            footer: "",
            width: width,
            height: height - netRows - 1
        )
        for y in 0..<top.height { for x in 0..<width { f[x, y] = top[x, y] } }
        var y = top.height
        let bold = Style(bold: true)
        var x = f.put(" final hash ", x: 0, y: y, style: bold)
        f.putField(summary.finalHash, x: x, y: y, width: width - x - 1, ascii: ascii)
        y += 1
        if let path = summary.replayPath {
            x = f.put(" replay ", x: 0, y: y, style: bold)
            f.putField(path, x: x, y: y, width: width - x - 1, ascii: ascii)
        } else {
            f.put(" replay NOT saved (see turf.log)", x: 0, y: y, style: bold)
        }
        y += 1
        let trouble = summary.desyncs > 0 || summary.rejectedOps > 0 || !summary.converged
        var counts = " desyncs \(summary.desyncs) · rejected ops \(summary.rejectedOps)"
        if !summary.converged { counts += " · NOT CONVERGED: peers ended with other hashes" }
        f.putField(counts, x: 0, y: y, width: width - 1, ascii: ascii, style: Style(bold: trouble))
        y += 1
        if !summary.cheats.isEmpty {
            let names = summary.cheats.map { c in
                let name = c.player < config.players.count ? config.players[c.player].name : "?"
                return "\(Theme.letter(c.player)) \(name) \(c.rule) at tick \(c.tick)"
            }
            x = f.put(" cheated ", x: 0, y: y, style: bold)
            f.putField(names.joined(separator: ", "), x: x, y: y, width: width - x - 1, ascii: ascii, style: bold)
            y += 1
        }
        if !summary.links.isEmpty {
            f.put(" links: path, rtt p50, bytes out and in, seconds", x: 0, y: y, style: Style(dim: true))
            y += 1
            for link in summary.links.prefix(maxLinks) {
                var lx = f.putField(link.name, x: 2, y: y, width: 12, ascii: ascii)
                lx = max(lx + 1, 15)
                if width >= 72 {
                    lx = f.putField(LobbyScreen.fingerprint(link.key), x: lx, y: y, width: 17, ascii: ascii) + 1
                }
                let rtt = link.rttMsP50.map { "\(Int($0.rounded())) ms" } ?? "-"
                let text =
                    "\(link.path.rawValue), \(rtt), \(NetEndScreen.bytes(link.bytesSent)) out, "
                    + "\(NetEndScreen.bytes(link.bytesReceived)) in, \(Int(link.seconds.rounded())) s"
                f.putField(text, x: lx, y: y, width: width - lx - 1, ascii: ascii)
                y += 1
            }
            if maxLinks < summary.links.count {
                f.put("  … \(summary.links.count - maxLinks) more links", x: 0, y: y, style: Style(dim: true))
                y += 1
            }
        }
        if let after {
            drawAfter(after, chatRows: chatRows, into: &f, y: y)
        }
        f.putField(
            footer,
            x: 0,
            y: height - 1,
            width: width - 1,
            ascii: ascii,
            style: Style(color: Palette.hud, bold: true)
        )
        return f
    }

    /// The series' tally, where the rematch stands, the last lines of chat and the chat input.
    func drawAfter(_ a: AfterMatchView, chatRows: Int, into f: inout Frame, y start: Int) {
        let ascii = !theme.unicode
        let width = f.width
        var y = start
        let matches = a.match == 1 ? "1 match" : "\(a.match) matches"
        var x = f.put(" series (\(matches)) ", x: 0, y: y, style: Style(bold: true))
        for (i, row) in a.tally.enumerated() where x < width - 4 {
            if i > 0 { x = f.put(" · ", x: x, y: y) }
            x = f.putField(row.name, x: x, y: y, width: min(12, max(1, width - x - 6)), ascii: ascii)
            x = f.put(" \(row.wins)", x: x, y: y, style: Style(bold: true))
        }
        if a.ties > 0 && x < width - 10 { f.put(" · ties \(a.ties)", x: x, y: y) }
        y += 1
        let line: String
        switch a.rematch {
        case .canOffer(let n): line = "r offers a rematch (match \(n))"
        case .offered(let n, let waiting):
            line =
                "rematch (match \(n)) offered: waiting for " + (waiting.isEmpty ? "…" : waiting.joined(separator: ", "))
        case .offeredToYou(let n): line = "the host offers a rematch (match \(n)): y plays again, q leaves"
        case .accepted(let n): line = "rematch (match \(n)) accepted: it starts once everyone answered"
        case .waiting: line = "waiting for the host: a rematch, or the end"
        case .over(let why): line = why
        }
        let text = a.notice.isEmpty ? line : line + " · " + a.notice
        f.putField(" " + text, x: 0, y: y, width: width - 1, ascii: ascii, style: Style(color: Palette.hud, bold: true))
        y += 1
        for chat in a.chat.suffix(chatRows) {
            f.putChat(chat, x: 1, y: y, width: width - 2, ascii: ascii)
            y += 1
        }
        if let typed = a.chatInput { f.putInput(typed, y: y, width: width, ascii: ascii) }
    }

    static func bytes(_ n: UInt64) -> String {
        if n < 10_000 { return "\(n) B" }
        if n < 10_000_000 { return "\(n / 1000) kB" }
        return "\(n / 1_000_000) MB"
    }
}
