/// An arena: walls, floor and 2–8 numbered spawn points, parsed from a plain text file.
///
///     # comments start with '#' in the header only
///     name: Courtyard
///     ---
///     ##########
///     #1......2#
///     ##########
///
/// Grid legend: `#` wall, `.` floor, ` ` void (outside the arena: impassable, not drawn),
/// `1`–`8` floor with that player's spawn point. Rows shorter than the widest are padded with void.
public final class ArenaMap: Equatable, Sendable {
    public enum Cell: UInt8, Sendable {
        case void = 0
        case wall = 1
        case floor = 2
    }

    public let name: String
    public let width: Int
    public let height: Int
    public let cells: [Cell]
    /// Spawn cell indices, by player number (spawns[0] is '1').
    public let spawns: [Int]
    /// Indices of all floor cells, ascending.
    public let floorCells: [Int]
    /// The source text, recorded in replays so a replay never depends on a file on disk.
    public let source: String

    public static let maxSide = 250
    /// The largest map text, in UTF-8 bytes: a 250×250 grid with CRLF line ends is 63 KB, the
    /// shipped maps are under 2 KB. Checked before parsing, wherever the text comes from.
    public static let maxSourceBytes = 256 << 10

    /// Longest map name, in Unicode scalars (it is drawn in the title bar and the end screen).
    public static let maxNameLength = 40
    /// Longest `author:` or `description:` value, in Unicode scalars.
    public static let maxHeaderValueLength = 200

    /// Parses a map. The text is read as Unicode scalars, never as Characters: a combining mark
    /// or a "\r\n" pair is never fused with its neighbour into something that looks like a map
    /// character. Lines end with "\n" or "\r\n". Header values are shown on screen, so they are
    /// bounded and may hold no control characters (C0, DEL, C1) nor bidirectional overrides.
    /// The grid is ASCII: anything outside its alphabet is an error at its line and column
    /// (columns count Unicode scalars, from 1).
    public init(parsing text: String, file: String = "<map>") throws {
        guard text.utf8.count <= ArenaMap.maxSourceBytes else {
            throw MapError(
                file: file,
                line: 1,
                column: 1,
                "the map is \(text.utf8.count) bytes (at most \(ArenaMap.maxSourceBytes))"
            )
        }
        source = text
        var name: String?
        var gridStart: Int?
        let lines = ArenaMap.lines(text)
        for (i, line) in lines.enumerated() {
            if let bad = line.firstIndex(where: ArenaMap.isForbiddenInHeader) {
                throw MapError(
                    file: file,
                    line: i + 1,
                    column: bad + 1,
                    "control character \(ArenaMap.describe(line[bad])) in the header"
                )
            }
            let trimmed = line.trimmingBlanks()
            if trimmed.elementsEqual("---".unicodeScalars) {
                gridStart = i + 1
                break
            }
            if trimmed.isEmpty || trimmed.first == "#" { continue }
            guard let colon = trimmed.firstIndex(of: ":") else {
                throw MapError(file: file, line: i + 1, column: 1, "expected 'key: value' or '---' in the header")
            }
            let key = String(String.UnicodeScalarView(trimmed[..<colon].trimmingBlanks()))
            let valueScalars = trimmed[(colon + 1)...].trimmingBlanks()
            let value = String(String.UnicodeScalarView(valueScalars))
            switch key {
            case "name":
                guard !valueScalars.isEmpty, valueScalars.count <= ArenaMap.maxNameLength else {
                    throw MapError(
                        file: file,
                        line: i + 1,
                        column: 1,
                        "map name must be 1–\(ArenaMap.maxNameLength) characters"
                    )
                }
                name = value
            case "author", "description":
                guard valueScalars.count <= ArenaMap.maxHeaderValueLength else {
                    throw MapError(
                        file: file,
                        line: i + 1,
                        column: 1,
                        "\(key) must be at most \(ArenaMap.maxHeaderValueLength) characters"
                    )
                }
            default:
                // Shown bounded, a tab (the one control character a header may hold) escaped.
                var shown = String(String.UnicodeScalarView(key.unicodeScalars.prefix(40))).replacingTabs()
                if key.unicodeScalars.count > 40 { shown += "…" }
                throw MapError(
                    file: file,
                    line: i + 1,
                    column: 1,
                    "unknown header key '\(shown)' (known: name, author, description)"
                )
            }
        }
        guard let start = gridStart else {
            throw MapError(
                file: file,
                line: lines.count,
                column: 1,
                "no '---' line separating the header from the grid"
            )
        }
        guard let mapName = name else {
            throw MapError(file: file, line: 1, column: 1, "the header has no 'name:' line")
        }
        var rows = Array(lines[start...])
        while let last = rows.last, last.allSatisfy({ $0 == " " }) { rows.removeLast() }
        guard !rows.isEmpty else { throw MapError(file: file, line: start + 1, column: 1, "the grid is empty") }
        guard rows.count <= ArenaMap.maxSide else {
            throw MapError(
                file: file,
                line: start + ArenaMap.maxSide + 1,
                column: 1,
                "the grid is taller than \(ArenaMap.maxSide) rows"
            )
        }
        // Every grid character is checked before anything else looks at the row.
        for (y, row) in rows.enumerated() {
            for (x, u) in row.enumerated() where !ArenaMap.isGridCharacter(u) {
                if u == "\t" {
                    throw MapError(
                        file: file,
                        line: start + y + 1,
                        column: x + 1,
                        "tab in the grid (use spaces for void)"
                    )
                }
                throw MapError(
                    file: file,
                    line: start + y + 1,
                    column: x + 1,
                    "unexpected character \(ArenaMap.describe(u)) (expected '#' wall, '.' floor, ' ' void or a spawn digit 1-8)"
                )
            }
        }
        let w = rows.map { $0.count }.max() ?? 0
        guard w <= ArenaMap.maxSide else {
            let r = rows.firstIndex { $0.count > ArenaMap.maxSide }!
            throw MapError(
                file: file,
                line: start + r + 1,
                column: ArenaMap.maxSide + 1,
                "the grid is wider than \(ArenaMap.maxSide) columns"
            )
        }
        var cells = [Cell](repeating: .void, count: w * rows.count)
        var spawnAt = [Int?](repeating: nil, count: 8)
        for (y, row) in rows.enumerated() {
            for (x, u) in row.enumerated() {
                let i = y * w + x
                switch u.value {
                case 0x23: cells[i] = .wall  // '#'
                case 0x2E: cells[i] = .floor  // '.'
                case 0x31...0x38:  // '1'...'8'
                    let n = Int(u.value - 0x31)
                    if spawnAt[n] != nil {
                        throw MapError(
                            file: file,
                            line: start + y + 1,
                            column: x + 1,
                            "spawn point '\(n + 1)' appears twice"
                        )
                    }
                    spawnAt[n] = i
                    cells[i] = .floor
                default: cells[i] = .void  // ' ', the only other grid character
                }
            }
        }
        let count = spawnAt.prefix { $0 != nil }.count
        if let gap = spawnAt[count...].firstIndex(where: { $0 != nil }) {
            throw MapError(
                file: file,
                line: start + 1,
                column: 1,
                "spawn point '\(gap + 1)' present but '\(count + 1)' missing (spawns must be numbered 1, 2, 3, …)"
            )
        }
        guard count >= 2 else {
            throw MapError(
                file: file,
                line: start + 1,
                column: 1,
                "the map needs at least 2 spawn points, found \(count)"
            )
        }
        // Every floor cell on the edge of the grid would let an avatar walk off the arena.
        for y in 0..<rows.count {
            for x in 0..<w where cells[y * w + x] == .floor {
                let neighbours = [(x - 1, y), (x + 1, y), (x, y - 1), (x, y + 1)]
                for (nx, ny) in neighbours
                where nx < 0 || ny < 0 || nx >= w || ny >= rows.count || cells[ny * w + nx] == .void {
                    throw MapError(
                        file: file,
                        line: start + y + 1,
                        column: x + 1,
                        "floor cell touches the outside of the arena: enclose it with walls"
                    )
                }
            }
        }
        self.name = mapName
        width = w
        height = rows.count
        self.cells = cells
        spawns = spawnAt.prefix(count).map { $0! }  // `!`: spawns 1...count were checked present above
        floorCells = cells.indices.filter { cells[$0] == .floor }
    }

    @inline(__always) public func isFloor(_ i: Int) -> Bool { cells[i] == .floor }
    @inline(__always) public func x(_ i: Int) -> Int { i % width }
    @inline(__always) public func y(_ i: Int) -> Int { i / width }
    @inline(__always) public func index(_ x: Int, _ y: Int) -> Int { y * width + x }

    /// The cell one step from `i` in `d`, or nil off the grid.
    @inline(__always) public func step(_ i: Int, _ d: Direction) -> Int? {
        let x = i % width
        let y = i / width
        switch d {
        case .up: return y > 0 ? i - width : nil
        case .down: return y + 1 < height ? i + width : nil
        case .left: return x > 0 ? i - 1 : nil
        case .right: return x + 1 < width ? i + 1 : nil
        }
    }

    public static func == (l: ArenaMap, r: ArenaMap) -> Bool { l.source == r.source }
}

public enum Direction: UInt8, CaseIterable, Sendable {
    case up = 0
    case right = 1
    case down = 2
    case left = 3
    // `!`s: a raw value masked with 3 is 0...3, and all four are cases.
    public var opposite: Direction { Direction(rawValue: (rawValue + 2) & 3)! }
    public var turns: [Direction] {
        [Direction(rawValue: (rawValue + 1) & 3)!, Direction(rawValue: (rawValue + 3) & 3)!]
    }
}

/// A bad map: names the file, line and column.
public struct MapError: Error, Equatable, CustomStringConvertible {
    public var file: String
    public var line: Int
    public var column: Int
    public var message: String
    public init(file: String, line: Int, column: Int, _ message: String) {
        self.file = file
        self.line = line
        self.column = column
        self.message = message
    }
    public var description: String { "\(file):\(line):\(column): \(message)" }
}

extension ArenaMap {
    /// The text's lines as Unicode scalars, split at "\n", a "\r" before it dropped.
    static func lines(_ text: String) -> [[Unicode.Scalar]] {
        var out: [[Unicode.Scalar]] = []
        var line: [Unicode.Scalar] = []
        for u in text.unicodeScalars {
            if u == "\n" {
                if line.last == "\r" { line.removeLast() }
                out.append(line)
                line.removeAll(keepingCapacity: true)
            } else {
                line.append(u)
            }
        }
        if line.last == "\r" { line.removeLast() }
        out.append(line)
        return out
    }

    /// `#`, `.`, ` ` and `1`–`8`: everything else is an error in the grid.
    @inline(__always) static func isGridCharacter(_ u: Unicode.Scalar) -> Bool {
        switch u.value {
        case 0x20, 0x23, 0x2E, 0x31...0x38: return true
        default: return false
        }
    }

    /// Characters that would act on a terminal rather than be shown: C0 controls except tab,
    /// DEL, C1 controls, and the bidirectional embeddings, overrides and isolates.
    static func isForbiddenInHeader(_ u: Unicode.Scalar) -> Bool {
        switch u.value {
        case 0x09: return false
        case 0x00...0x1F, 0x7F...0x9F: return true
        case 0x2028, 0x2029, 0x202A...0x202E, 0x2066...0x2069, 0x200E, 0x200F, 0x061C: return true
        default: return false
        }
    }

    /// A scalar for an error message: printable ASCII quoted, anything else as U+XXXX.
    static func describe(_ u: Unicode.Scalar) -> String {
        if (0x21...0x7E).contains(u.value) { return "'\(u)'" }
        let hex = String(u.value, radix: 16, uppercase: true)
        return "U+" + String(repeating: "0", count: max(0, 4 - hex.count)) + hex
    }
}

extension String {
    fileprivate func replacingTabs() -> String {
        var out = String.UnicodeScalarView()
        for u in unicodeScalars {
            if u == "\t" { out.append(contentsOf: "\\t".unicodeScalars) } else { out.append(u) }
        }
        return String(out)
    }
}

extension ArraySlice where Element == Unicode.Scalar {
    func trimmingBlanks() -> ArraySlice<Unicode.Scalar> {
        var s = self
        while let f = s.first, f == " " || f == "\t" { s = s.dropFirst() }
        while let l = s.last, l == " " || l == "\t" { s = s.dropLast() }
        return s
    }
}

extension Array where Element == Unicode.Scalar {
    func trimmingBlanks() -> ArraySlice<Unicode.Scalar> { self[...].trimmingBlanks() }
}
