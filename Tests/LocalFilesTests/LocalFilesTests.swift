import Foundation
import LocalFiles
import Testing

#if canImport(Glibc)
    import Glibc
#endif

/// A fresh directory per test, removed afterwards.
private func withTempDir(_ body: (String) throws -> Void) throws {
    let dir = NSTemporaryDirectory() + "turf-files-\(getpid())-\(UInt64.random(in: 0...UInt64.max))"
    try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
    defer { try? FileManager.default.removeItem(atPath: dir) }
    try body(dir)
}

@Suite struct UntrustedFileTests {
    @Test func readsARegularFileWithinItsLimit() throws {
        try withTempDir { dir in
            let p = dir + "/a"
            _ = FileManager.default.createFile(atPath: p, contents: Data([1, 2, 3]))
            let got = try UntrustedFile.read(p, limit: 3, what: "test")
            #expect(got == [1, 2, 3])
        }
    }

    @Test func refusesAFileOverItsLimitBeforeReadingIt() throws {
        try withTempDir { dir in
            // A sparse 4 GB file: refused from its size alone, with no memory spent on it.
            let p = dir + "/sparse"
            let fd = open(p, O_WRONLY | O_CREAT, 0o600)
            #expect(ftruncate(fd, 4 << 30) == 0)
            close(fd)
            let e = #expect(throws: FileError.self) { try UntrustedFile.read(p, limit: 1 << 20, what: "replay") }
            #expect(e?.description.contains("too large") == true)
        }
    }

    @Test func refusesAFIFOWithoutBlocking() throws {
        try withTempDir { dir in
            let p = dir + "/fifo"
            #expect(mkfifo(p, 0o600) == 0)
            let e = #expect(throws: FileError.self) { try UntrustedFile.read(p, limit: 100, what: "journal") }
            #expect(e?.description.contains("FIFO") == true)
        }
    }

    @Test func refusesADirectoryAndADevice() throws {
        try withTempDir { dir in
            #expect(throws: FileError.self) { try UntrustedFile.read(dir, limit: 100, what: "map") }
        }
        #expect(throws: FileError.self) { try UntrustedFile.read("/dev/zero", limit: 100, what: "map") }
    }

    @Test func refusesInvalidUTF8Text() throws {
        try withTempDir { dir in
            let p = dir + "/t"
            _ = FileManager.default.createFile(atPath: p, contents: Data([0x61, 0xff, 0x62]))
            #expect(throws: FileError.self) { try UntrustedFile.readText(p, limit: 100, what: "config") }
        }
    }
}

@Suite struct DurableFileTests {
    @Test func refusesToReplaceANonRegularTarget() throws {
        try withTempDir { dir in
            let link = dir + "/link"
            let victim = dir + "/victim"
            _ = FileManager.default.createFile(atPath: victim, contents: Data([9]))
            #expect(symlink(victim, link) == 0)
            #expect(throws: FileError.self) { try DurableFile.write([1], to: link, overwrite: true) }
            #expect(FileManager.default.contents(atPath: victim) == Data([9]))
            let fifo = dir + "/fifo"
            #expect(mkfifo(fifo, 0o600) == 0)
            #expect(throws: FileError.self) { try DurableFile.write([1], to: fifo, overwrite: true) }
        }
        #expect(throws: FileError.self) { try DurableFile.checkTarget("/dev/null", overwrite: true) }
    }

    @Test func replacesAnExistingRegularFileOnlyWhenAsked() throws {
        try withTempDir { dir in
            let p = dir + "/out"
            try DurableFile.write([1], to: p, overwrite: false)
            let e = #expect(throws: FileError.self) { try DurableFile.write([2], to: p, overwrite: false) }
            #expect(e?.description.contains("--force") == true)
            #expect(FileManager.default.contents(atPath: p) == Data([1]))
            try DurableFile.write([2], to: p, overwrite: true)
            #expect(FileManager.default.contents(atPath: p) == Data([2]))
            let names = try FileManager.default.contentsOfDirectory(atPath: dir)
            #expect(names == ["out"])
        }
    }

    @Test func createNewNeverReplaces() throws {
        try withTempDir { dir in
            let a = try DurableFile.createNew([1], base: dir + "/m", ext: "x")
            let b = try DurableFile.createNew([2], base: dir + "/m", ext: "x")
            #expect(a == dir + "/m.x")
            #expect(b == dir + "/m-2.x")
            #expect(FileManager.default.contents(atPath: a) == Data([1]))
        }
    }
}

@Suite struct XDGPathsTests {
    @Test func followsTheSpecification() {
        let p = XDGPaths(environment: ["HOME": "/h", "XDG_STATE_HOME": "/s", "XDG_CONFIG_HOME": "relative"])
        #expect(p.state == "/s/turf")
        #expect(p.config == "/h/.config/turf")
        #expect(p.replays == "/s/turf/replays")
        #expect(XDGPaths(environment: ["HOME": "/h"]).state == "/h/.local/state/turf")
    }
}

@Suite struct OptionalAndCheckedFilesTests {
    /// Absent is nil; present but unusable (a FIFO, bad UTF-8) is an error, never nil.
    @Test func readIfPresentTellsAbsentFromUnreadable() throws {
        try withTempDir { (dir: String) throws in
            #expect(try UntrustedFile.readTextIfPresent(dir + "/none", limit: 10, what: "conf") == nil)
            _ = FileManager.default.createFile(atPath: dir + "/ok", contents: Data("a\r\nb".utf8))
            #expect(try UntrustedFile.readTextIfPresent(dir + "/ok", limit: 10, what: "conf") == "a\r\nb")
            _ = FileManager.default.createFile(atPath: dir + "/bad", contents: Data([0xFF]))
            #expect(throws: FileError.self) {
                try UntrustedFile.readTextIfPresent(dir + "/bad", limit: 10, what: "conf")
            }
            #expect(mkfifo(dir + "/fifo", 0o600) == 0)
            #expect(throws: FileError.self) { try UntrustedFile.readIfPresent(dir + "/fifo", limit: 10, what: "conf") }
        }
    }

    /// A directory that cannot take a file is found out before the work, with the real reason.
    @Test func checkWritableDirectory() throws {
        try withTempDir { (dir: String) throws in
            try DurableFile.checkWritableDirectory(dir + "/new/replays")
            #expect(
                try FileManager.default.contentsOfDirectory(atPath: dir + "/new/replays").isEmpty,
                "the probe is removed"
            )
            _ = FileManager.default.createFile(atPath: dir + "/file", contents: Data([1]))
            #expect(throws: FileError("\(dir)/file is not a directory (it is a regular file)")) {
                try DurableFile.checkWritableDirectory(dir + "/file")
            }
            #expect(throws: FileError.self) { try DurableFile.checkWritableDirectory(dir + "/file/below") }
        }
    }

    /// The DHT's files follow the same XDG rules as every other turf path.
    @Test func dhtPathsFollowXDG() {
        let p = XDGPaths(environment: ["HOME": "/h", "XDG_STATE_HOME": "relative/s"])
        #expect(p.dhtState(port: 0) == "/h/.local/state/turf/dht.state")
        #expect(p.dhtState(port: 6881) == "/h/.local/state/turf/dht-6881.state")
        #expect(p.dhtConfig == "/h/.config/turf/dht.conf")
    }
}

/// The log file is opened through `DurableFile.openForAppend`: it used to be opened with
/// FileHandle(forWritingAtPath:), which blocked forever on a FIFO and wrote through a symlink.
@Suite struct AppendFileTests {
    @Test func appendsToARegularFileItCreatesOrOwns() throws {
        try withTempDir { dir in
            let p = dir + "/turf.log"
            for line in ["one\n", "two\n"] {
                let fd = try DurableFile.openForAppend(p)
                try DurableFile.writeAll(fd, Array(line.utf8))
                close(fd)
            }
            let text = try String(contentsOfFile: p, encoding: .utf8)
            #expect(text == "one\ntwo\n")
            var st = stat()
            #expect(stat(p, &st) == 0 && st.st_mode & 0o077 == 0)
        }
    }

    @Test func refusesAFIFOWithoutBlocking() throws {
        try withTempDir { dir in
            let p = dir + "/turf.log"
            #expect(mkfifo(p, 0o600) == 0)
            let e = #expect(throws: FileError.self) { _ = try DurableFile.openForAppend(p) }
            #expect(e?.description.contains("a FIFO") == true)
        }
    }

    @Test func neverWritesThroughASymlink() throws {
        try withTempDir { dir in
            let victim = dir + "/victim"
            _ = FileManager.default.createFile(atPath: victim, contents: Data("precious".utf8))
            #expect(symlink(victim, dir + "/turf.log") == 0)
            let e = #expect(throws: FileError.self) { _ = try DurableFile.openForAppend(dir + "/turf.log") }
            #expect(e?.description.contains("symbolic link") == true)
            let text = try String(contentsOfFile: victim, encoding: .utf8)
            #expect(text == "precious")
        }
    }

    @Test func refusesADevice() throws {
        #expect(throws: FileError.self) { _ = try DurableFile.openForAppend("/dev/null") }
    }
}

@Suite struct UntrustedDirectoryTests {
    private func touch(_ path: String, secondsAgo: Double) {
        _ = FileManager.default.createFile(atPath: path, contents: Data([1]))
        let t = Date().timeIntervalSince1970 - secondsAgo
        let spec = timespec(tv_sec: Int(t), tv_nsec: 0)
        _ = utimensat(AT_FDCWD, path, [spec, spec], AT_SYMLINK_NOFOLLOW)
    }

    /// The newest files of a kind, newest first; dot files and other kinds are not listed, a
    /// dangling link is listed last with no time, and only `keep` are kept of all that matched.
    @Test func listsTheNewestOfAKindBounded() throws {
        try withTempDir { dir in
            touch(dir + "/old.r", secondsAgo: 300)
            touch(dir + "/new.r", secondsAgo: 10)
            touch(dir + "/mid.r", secondsAgo: 100)
            touch(dir + "/.tmp.r", secondsAgo: 0)
            touch(dir + "/other.txt", secondsAgo: 0)
            #expect(symlink(dir + "/nowhere", dir + "/dangling.r") == 0)
            let all = try UntrustedDirectory.newest(in: dir, suffix: ".r", keep: 10)
            #expect(all.entries.map(\.name) == ["new.r", "mid.r", "old.r", "dangling.r"])
            #expect(all.entries.last?.modified == nil && all.entries.last?.size == nil)
            #expect(all.entries.first?.path == dir + "/new.r" && all.entries.first?.size == 1)
            #expect(all.matched == 4 && !all.scanStopped)
            let two = try UntrustedDirectory.newest(in: dir, suffix: ".r", keep: 2)
            #expect(two.entries.map(\.name) == ["new.r", "mid.r"] && two.matched == 4)
            let few = try UntrustedDirectory.newest(in: dir, suffix: ".r", keep: 10, scanLimit: 3)
            #expect(few.scanStopped && few.entries.count <= 3)
            let none = try UntrustedDirectory.newest(in: dir + "/missing", suffix: ".r", keep: 10)
            #expect(none.entries.isEmpty && none.matched == 0)
            #expect(throws: FileError.self) { try UntrustedDirectory.newest(in: dir + "/new.r", suffix: ".r", keep: 1) }
        }
    }

    /// Removing takes the name away (a link itself, never its target) and refuses a directory.
    @Test func removeTakesTheNameNotTheTarget() throws {
        try withTempDir { dir in
            touch(dir + "/target", secondsAgo: 0)
            #expect(symlink(dir + "/target", dir + "/link") == 0)
            try DurableFile.remove(dir + "/link")
            #expect(FileManager.default.fileExists(atPath: dir + "/target"))
            try DurableFile.remove(dir + "/target")
            #expect(!FileManager.default.fileExists(atPath: dir + "/target"))
            #expect(throws: FileError.self) { try DurableFile.remove(dir + "/target") }
            try FileManager.default.createDirectory(atPath: dir + "/sub", withIntermediateDirectories: false)
            #expect(throws: FileError.self) { try DurableFile.remove(dir + "/sub") }
            #expect(FileManager.default.fileExists(atPath: dir + "/sub"))
        }
    }
}
