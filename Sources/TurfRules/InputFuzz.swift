import Engine

/// The body of the map-parser fuzz target (Fuzz/Sources/fuzz-map) and of the suite's corpus test:
/// any bytes either fail to parse with a one-line `MapError` naming a line and column, or parse
/// to a map whose promises hold and that survives the trip through a match config.
@_spi(Fuzzing) public enum MapFuzz {
    /// Returns a description of a broken promise, or nil. Never crashes on any input.
    public static func check(_ data: [UInt8]) -> String? {
        // Maps are read as strict UTF-8; invalid bytes are fuzzed too, as replacement characters.
        let text = String(decoding: data, as: UTF8.self)
        let map: ArenaMap
        do { map = try ArenaMap(parsing: text, file: "fuzz.map") } catch let e as MapError {
            guard e.line >= 1, e.column >= 1 else { return "error at line \(e.line), column \(e.column)" }
            guard !e.description.unicodeScalars.contains(where: { $0.value < 0x20 || (0x7F...0x9F).contains($0.value) })
            else {
                return "the error message holds a control character"
            }
            return nil
        } catch { return "a map error that is not a MapError: \(error)" }
        guard (1...ArenaMap.maxSide).contains(map.width), (1...ArenaMap.maxSide).contains(map.height),
            map.cells.count == map.width * map.height
        else { return "grid is \(map.width)×\(map.height) with \(map.cells.count) cells" }
        guard (2...8).contains(map.spawns.count),
            map.spawns.allSatisfy({ map.cells.indices.contains($0) && map.isFloor($0) })
        else {
            return "spawns \(map.spawns) are not 2–8 floor cells"
        }
        guard (1...ArenaMap.maxNameLength).contains(map.name.unicodeScalars.count),
            !map.name.unicodeScalars.contains(where: ArenaMap.isForbiddenInHeader)
        else { return "bad name \(map.name.debugDescription)" }
        guard map.floorCells == map.cells.indices.filter({ map.isFloor($0) }) else {
            return "floorCells disagree with the grid"
        }
        guard let again = try? ArenaMap(parsing: map.source), again.cells == map.cells, again.spawns == map.spawns
        else {
            return "the map's own source does not parse to the same map"
        }
        let settings = TurfSettings(map: map)
        guard let back = try? TurfSettings.decode(settings.encoded()), back == settings else {
            return "the map does not survive the match config"
        }
        return nil
    }
}

/// The body of the journal-recovery fuzz target (Fuzz/Sources/fuzz-journal) and of the suite's
/// corpus test: any bytes either are refused as a journal, or recover to a replay that survives
/// encoding and verifies, with the skipped and damaged byte ranges inside the file. Run once as
/// given and once with every checksum made to match, as `ReplayFuzz` does.
@_spi(Fuzzing) public enum JournalFuzz {
    public static func check(_ data: [UInt8]) -> String? {
        if let problem = checkOnce(data) { return problem }
        let resealed = ReplayFile.resealed(data)
        return resealed == data ? nil : checkOnce(resealed)
    }

    static func checkOnce(_ data: [UInt8]) -> String? {
        guard let rec = try? ReplayJournal.recover(data, as: TurfWorld.self) else { return nil }
        guard rec.discardedBytes <= data.count else { return "recovery discarded more bytes than it read" }
        var last = 0
        for r in rec.damaged {
            guard r.lowerBound >= last, r.upperBound <= data.count, !r.isEmpty else {
                return "damaged ranges \(rec.damaged) out of order"
            }
            last = r.upperBound
        }
        guard rec.damaged.reduce(0, { $0 + $1.count }) <= rec.discardedBytes else {
            return "more damaged than discarded bytes"
        }
        return ReplayFuzz.checkJournal(data)
    }
}
