import Engine
import Foundation
import LocalFiles
import Logging
import NetCore
import TerminalUI
import TextOutput
import TurfRules

/// `turf replay` on a terminal with no file: the saved matches, newest first (ReplayBrowserScreen).
/// The list shows at once from the directory; a worker thread then reads each file (its summary:
/// map, players, winner, length, kind) and, once all are read, verifies each as `--headless` does,
/// and the screen fills in as it goes. Enter watches the highlighted match in the replay viewer
/// (the worker pauses meanwhile), `d` then `y` deletes its file, q quits.
final class ReplayBrowser {
    /// What the worker and the screen share: the items (looked up by path, since deleting one
    /// moves the others), and the worker's switches.
    struct Shared: Sendable {
        var items: [ReplayCatalog.Item]
        var stopped = false
        /// Bumped at every change to `items` (the screen rebuilds its rows only then).
        var version = 0
    }

    let directory: String
    let found: Int
    let wantColor: Bool
    let unicode: Bool
    private let shared: Locked<Shared>
    /// Closed while a replay is watched: the worker waits there (woken, not polling).
    private let gate = PauseGate()
    private let log = Logger(label: "turf.replay.browser")

    init(listing: ReplayCatalog.Listing, wantColor: Bool, unicode: Bool) {
        directory = listing.directory
        found = listing.found
        self.wantColor = wantColor
        self.unicode = unicode
        shared = Locked(Shared(items: listing.items))
    }

    /// Runs until q. Returns the signal that ended it (the shell exits 128 + it), or nil.
    func run() throws -> Int32? {
        let term = try CursesTerminal(wantColor: wantColor, unicode: unicode)
        defer {
            shared.withLock { $0.stopped = true }
            gate.open()
            term.stop()
        }
        startWorker()
        var input = ReplayBrowserController()
        var notice = ""
        var deleted = 0
        var shown: (ReplayBrowserView, Int, Int)?
        var rows: (version: Int, rows: [ReplayRow]) = (-1, [])
        while true {
            if let s = term.quitSignal { return s }
            var (items, version) = shared.withLock { ($0.items, $0.version) }
            for key in term.readKeys() {
                if key == .resize {
                    term.invalidate()
                    shown = nil
                    continue
                }
                switch input.handle(key, count: items.count) {
                case .quit?: return nil
                case .open(let i)?:
                    notice = ""
                    if let s = watch(items[i], on: term, notice: &notice) { return s }
                    shown = nil
                case .delete(let i)?:
                    let before = items.count
                    notice = delete(items[i])
                    (items, version) = shared.withLock { ($0.items, $0.version) }
                    input.clamp(count: items.count)
                    deleted += before - items.count
                case .keep?:
                    notice = "kept " + items[input.selected].name
                case nil:
                    if key != .enter { notice = "" }
                }
            }
            if rows.version != version { rows = (version, items.map(Self.row)) }
            let view = ReplayBrowserView(
                directory: directory,
                rows: rows.rows,
                found: max(found - deleted, items.count),
                selected: input.selected,
                confirmingDelete: input.confirmingDelete,
                notice: notice
            )
            let (w, h) = term.size
            if shown.map({ $0.0 != view || $0.1 != w || $0.2 != h }) ?? true {
                term.draw(ReplayBrowserScreen(theme: term.theme).render(view, width: w, height: h))
                shown = (view, w, h)
            }
            term.wait(nanos: 100_000_000)
        }
    }

    /// Watches `item` in the replay viewer, on this terminal; nil unless a signal ended it. A file
    /// that no longer reads is a notice, not an exit.
    private func watch(_ item: ReplayCatalog.Item, on term: CursesTerminal, notice: inout String) -> Int32? {
        gate.close()
        defer { gate.open() }
        do {
            let replay = try ReplayCatalog.open(item.path)
            let viewer = try ReplayViewer(
                player: ReplayPlayer(replay),
                title: SafeText.display(item.name, limit: 60),
                wantColor: wantColor,
                unicode: unicode,
                now: monotonicNanos
            )
            let signal = viewer.run(on: term)
            term.invalidate()
            return signal
        } catch {
            notice = "cannot watch it: \(error)"
            return nil
        }
    }

    /// Deletes `item`'s file (never a directory; a symlink itself, not what it points to) and
    /// drops it from the list. Returns the notice to show.
    private func delete(_ item: ReplayCatalog.Item) -> String {
        do {
            try DurableFile.remove(item.path)
        } catch {
            return "could not delete it: \(error)"
        }
        log.notice("deleted the replay \(item.path)")
        shared.withLock { s in
            s.items.removeAll { $0.path == item.path }
            s.version += 1
        }
        return "deleted " + item.name
    }

    /// Reads every file, newest first, then verifies every readable one; pauses while a replay is
    /// watched, stops when the browser closes.
    private func startWorker() {
        let (shared, gate) = (self.shared, self.gate)
        let paths = shared.withLock { $0.items.map(\.path) }
        let thread = Thread {
            /// The item at `path` (nil once deleted or stopped), after any pause.
            func next(_ path: String) -> ReplayCatalog.Item? {
                gate.waitWhileClosed()
                let (stopped, item) = shared.withLock { s in (s.stopped, s.items.first { $0.path == path }) }
                return stopped ? nil : item
            }
            func store(_ item: ReplayCatalog.Item) {
                shared.withLock { s in
                    guard let i = s.items.firstIndex(where: { $0.path == item.path }) else { return }
                    s.items[i] = item
                    s.version += 1
                }
            }
            for p in paths {
                guard var item = next(p) else { continue }
                item.read()
                store(item)
            }
            for p in paths {
                guard var item = next(p), item.summary != nil else { continue }
                item.verify()
                store(item)
            }
        }
        thread.name = "turf.replay.browser"
        thread.start()
    }

    /// An item as the screen shows it.
    static func row(_ item: ReplayCatalog.Item) -> ReplayRow {
        let content: ReplayRow.Content
        if let s = item.summary {
            content = .match(
                ReplayRowInfo(
                    map: s.map,
                    players: s.players.map { ($0.name, $0.cells) },
                    winner: ReplayCatalog.winnerText(s),
                    length: ReplayCatalog.duration(s.seconds),
                    networked: s.networked
                )
            )
        } else if let p = item.problem {
            content = .unreadable(p)
        } else {
            content = .pending
        }
        let check: ReplayRow.Check
        switch item.verification {
        case .unknown: check = .notYet
        case .ok: check = .ok
        case .failed(let why): check = .failed(why)
        }
        return ReplayRow(
            file: item.name,
            date: ReplayCatalog.shortDate(item.modified),
            size: item.bytes.map(Self.size) ?? "? bytes",
            content: content,
            check: check
        )
    }

    static func size(_ bytes: Int64) -> String {
        if bytes < 1024 { return "\(bytes) bytes" }
        if bytes < 1 << 20 { return "\((bytes + 512) / 1024) KB" }
        return String(format: "%.1f MB", Double(bytes) / Double(1 << 20))
    }
}

/// A gate a thread waits at while it is closed, woken when it opens (no polling).
// @unchecked Sendable: `closed` is read and written only with `condition` locked.
final class PauseGate: @unchecked Sendable {
    private let condition = NSCondition()
    private var closed = false

    func close() {
        condition.lock()
        closed = true
        condition.unlock()
    }

    func open() {
        condition.lock()
        closed = false
        condition.broadcast()
        condition.unlock()
    }

    func waitWhileClosed() {
        condition.lock()
        while closed { condition.wait() }
        condition.unlock()
    }
}
