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
    public enum Cell: UInt8, Sendable { case void = 0, wall = 1, floor = 2 }

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

    public init(parsing text: String, file: String = "<map>") throws {
        source = text
        var name: String?
        var gridStart: Int?
        let lines = text.split(separator: "\n", omittingEmptySubsequences: false).map { line -> Substring in
            line.hasSuffix("\r") ? line.dropLast() : line
        }
        for (i, line) in lines.enumerated() {
            let trimmed = line.trimmingCharacters(in: " \t")
            if trimmed == "---" { gridStart = i + 1; break }
            if trimmed.isEmpty || trimmed.hasPrefix("#") { continue }
            guard let colon = trimmed.firstIndex(of: ":") else {
                throw MapError(file: file, line: i + 1, column: 1, "expected 'key: value' or '---' in the header")
            }
            let key = trimmed[..<colon].trimmingCharacters(in: " \t")
            let value = trimmed[trimmed.index(after: colon)...].trimmingCharacters(in: " \t")
            switch key {
            case "name":
                guard !value.isEmpty, value.count <= 40 else {
                    throw MapError(file: file, line: i + 1, column: 1, "map name must be 1–40 characters")
                }
                name = value
            case "author", "description": break
            default:
                throw MapError(file: file, line: i + 1, column: 1, "unknown header key '\(key)' (known: name, author, description)")
            }
        }
        guard let start = gridStart else {
            throw MapError(file: file, line: lines.count, column: 1, "no '---' line separating the header from the grid")
        }
        guard let mapName = name else { throw MapError(file: file, line: 1, column: 1, "the header has no 'name:' line") }
        var rows = Array(lines[start...])
        while let last = rows.last, last.allSatisfy({ $0 == " " }) { rows.removeLast() }
        guard !rows.isEmpty else { throw MapError(file: file, line: start + 1, column: 1, "the grid is empty") }
        guard rows.count <= ArenaMap.maxSide else {
            throw MapError(file: file, line: start + ArenaMap.maxSide + 1, column: 1, "the grid is taller than \(ArenaMap.maxSide) rows")
        }
        let w = rows.map { $0.count }.max() ?? 0
        guard w <= ArenaMap.maxSide else {
            let r = rows.firstIndex { $0.count > ArenaMap.maxSide }!
            throw MapError(file: file, line: start + r + 1, column: ArenaMap.maxSide + 1, "the grid is wider than \(ArenaMap.maxSide) columns")
        }
        var cells = [Cell](repeating: .void, count: w * rows.count)
        var spawnAt = [Int?](repeating: nil, count: 8)
        for (y, row) in rows.enumerated() {
            for (x, ch) in row.enumerated() {
                let i = y * w + x
                switch ch {
                case "#": cells[i] = .wall
                case ".": cells[i] = .floor
                case " ": cells[i] = .void
                case "1"..."8":
                    let n = Int(ch.asciiValue! - UInt8(ascii: "1"))  // `!`: "1"..."8" are ASCII
                    if spawnAt[n] != nil {
                        throw MapError(file: file, line: start + y + 1, column: x + 1, "spawn point '\(ch)' appears twice")
                    }
                    spawnAt[n] = i
                    cells[i] = .floor
                case "\t":
                    throw MapError(file: file, line: start + y + 1, column: x + 1, "tab in the grid (use spaces for void)")
                default:
                    throw MapError(file: file, line: start + y + 1, column: x + 1,
                                   "unexpected character '\(ch)' (expected '#' wall, '.' floor, ' ' void or a spawn digit 1-8)")
                }
            }
        }
        let count = spawnAt.prefix { $0 != nil }.count
        if let gap = spawnAt[count...].firstIndex(where: { $0 != nil }) {
            throw MapError(file: file, line: start + 1, column: 1, "spawn point '\(gap + 1)' present but '\(count + 1)' missing (spawns must be numbered 1, 2, 3, …)")
        }
        guard count >= 2 else { throw MapError(file: file, line: start + 1, column: 1, "the map needs at least 2 spawn points, found \(count)") }
        // Every floor cell on the edge of the grid would let an avatar walk off the arena.
        for y in 0..<rows.count {
            for x in 0..<w where cells[y * w + x] == .floor {
                let neighbours = [(x - 1, y), (x + 1, y), (x, y - 1), (x, y + 1)]
                for (nx, ny) in neighbours where nx < 0 || ny < 0 || nx >= w || ny >= rows.count || cells[ny * w + nx] == .void {
                    throw MapError(file: file, line: start + y + 1, column: x + 1, "floor cell touches the outside of the arena: enclose it with walls")
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
        let x = i % width, y = i / width
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
    case up = 0, right = 1, down = 2, left = 3
    // `!`s: a raw value masked with 3 is 0...3, and all four are cases.
    public var opposite: Direction { Direction(rawValue: (rawValue + 2) & 3)! }
    public var turns: [Direction] { [Direction(rawValue: (rawValue + 1) & 3)!, Direction(rawValue: (rawValue + 3) & 3)!] }
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

extension Substring {
    func trimmingCharacters(in set: String) -> String {
        var s = self[...]
        while let f = s.first, set.contains(f) { s = s.dropFirst() }
        while let l = s.last, set.contains(l) { s = s.dropLast() }
        return String(s)
    }
}
