import Dispatch
import Foundation
import NetPOSIX
import NetSim
import Testing

@testable import NetCore

/// The crossing point between the UI thread and the network loop, used from both at once: the
/// test's thread plays the UI, a real UDPHost's event loop the network (no datagrams are sent).
@Suite struct NetworkMailboxTests {
    /// UI → loop → UI, many times while both threads run: each closure posted from the test thread
    /// runs on the loop, in posting order, and the event it posts back arrives once, in order,
    /// while the test thread keeps draining concurrently.
    @Test func closuresRunOnTheLoopAndEventsComeBackInOrder() throws {
        let host = try UDPHost.bind(PeerAddress(127, 0, 0, 1, port: 0))
        defer { host.close() }
        let mailbox = NetworkMailbox<Int>(loop: host, capacity: 1 << 20)
        let n = 20_000
        var got: [Int] = []
        got.reserveCapacity(n)
        for i in 0..<n {
            // -1 marks a closure that ran anywhere but on the loop.
            mailbox.onLoop { mailbox.post(host.isInLoop ? i : -1) }
            if i % 64 == 0 { got += mailbox.drain() }
        }
        // A bound against a hang only: the loop finishes in milliseconds.
        let deadline = Date().addingTimeInterval(30)
        while got.count < n && Date() < deadline {
            let batch = mailbox.drain()
            if batch.isEmpty { usleep(200) } else { got += batch }
        }
        #expect(got == Array(0..<n))
        #expect(mailbox.drain().isEmpty)
        #expect(mailbox.dropped == 0)
        #expect(!host.isInLoop, "the test's own thread is not the loop")
    }

    /// Posts from several threads at once (the loop and plain threads): nothing is lost or
    /// duplicated, and each thread's events keep their order.
    @Test func concurrentPostsAreNeitherLostNorReordered() throws {
        let host = try UDPHost.bind(PeerAddress(127, 0, 0, 1, port: 0))
        defer { host.close() }
        let mailbox = NetworkMailbox<Posted>(loop: host, capacity: 1 << 20)
        let threads = 4
        let each = 5_000
        let loopDone = DispatchSemaphore(value: 0)
        mailbox.onLoop {
            for i in 0..<each { mailbox.post(Posted(thread: threads, index: i)) }
            loopDone.signal()
        }
        var drained: [Posted] = []
        DispatchQueue.concurrentPerform(iterations: threads + 1) { t in
            if t == threads { return }  // this slot's work runs on the loop, above
            for i in 0..<each { mailbox.post(Posted(thread: t, index: i)) }
        }
        #expect(loopDone.wait(timeout: .now() + 30) == .success)
        drained += mailbox.drain()
        #expect(drained.count == (threads + 1) * each)
        for t in 0...threads {
            #expect(drained.filter { $0.thread == t }.map(\.index) == Array(0..<each), "thread \(t)")
        }
    }

    /// A full mailbox drops what is posted to it and counts it; draining makes room again.
    @Test func aFullMailboxDropsAndCounts() throws {
        let host = try UDPHost.bind(PeerAddress(127, 0, 0, 1, port: 0))
        defer { host.close() }
        let mailbox = NetworkMailbox<Int>(loop: host, capacity: 3)
        let accepted = (0..<5).map { mailbox.post($0) }
        #expect(accepted == [true, true, true, false, false])
        #expect(mailbox.dropped == 2)
        #expect(mailbox.drain() == [0, 1, 2])
        #expect(mailbox.post(9))
        #expect(mailbox.drain() == [9])
    }

    /// `wait` blocks the UI thread until the loop posts an event, and returns it at once; with
    /// nothing posted it returns empty once the timeout has passed (never early, even with stale
    /// wake-ups left by events an earlier `drain` took).
    @Test func waitWakesForAnEventAndOtherwiseTimesOut() throws {
        let host = try UDPHost.bind(PeerAddress(127, 0, 0, 1, port: 0))
        defer { host.close() }
        let mailbox = NetworkMailbox<Int>(loop: host)
        // Posted from the loop: the wait (up to two minutes) returns it when it comes; a wait that
        // missed the wake-up would only find it at its deadline.
        let t0 = DispatchTime.now().uptimeNanoseconds
        mailbox.onLoop { mailbox.post(7) }
        #expect(mailbox.wait(120) == [7])
        #expect(DispatchTime.now().uptimeNanoseconds - t0 < 60_000_000_000, "the wait missed the loop's wake-up")
        // Three events taken by `drain` leave three signals behind: `wait` still waits its time.
        for i in 0..<3 { mailbox.post(i) }
        #expect(mailbox.drain() == [0, 1, 2])
        let t1 = DispatchTime.now().uptimeNanoseconds
        #expect(mailbox.wait(0.05) == [])
        #expect(DispatchTime.now().uptimeNanoseconds - t1 >= 45_000_000)
    }

    /// A datagram flood fills only the datagram lane: control events posted during it all arrive,
    /// in order; the datagrams beyond the lane's bound are dropped and counted (per drain and in
    /// all); datagrams never wake `wait`.
    @Test func aDatagramFloodNeverPushesOutControlEvents() throws {
        let host = try UDPHost.bind(PeerAddress(127, 0, 0, 1, port: 0))
        defer { host.close() }
        let mailbox = NetworkMailbox<Int>(loop: host, capacity: 8, datagramCapacity: 16)
        let done = DispatchSemaphore(value: 0)
        mailbox.onLoop {
            for i in 0..<10_000 {
                mailbox.postDatagram(MailboxDatagram(link: 1, bytes: [UInt8(i & 0xFF)], at: UInt64(i)))
                if i % 2_000 == 0 { mailbox.post(i / 2_000) }
            }
            done.signal()
        }
        #expect(done.wait(timeout: .now() + 30) == .success)
        #expect(mailbox.drain() == [0, 1, 2, 3, 4])
        #expect(mailbox.dropped == 0)
        let (datagrams, dropped) = mailbox.drainDatagrams()
        #expect(datagrams.map(\.at) == (0..<16).map { UInt64($0) })
        #expect(dropped == 10_000 - 16)
        #expect(mailbox.droppedDatagrams == 10_000 - 16)
        // Counted once: the next drain reports none dropped since, and the lane has room again.
        #expect(mailbox.postDatagram(MailboxDatagram(link: 2, bytes: [], at: 1)))
        let again = mailbox.drainDatagrams()
        #expect(again.datagrams.map(\.link) == [2])
        #expect(again.dropped == 0)
        // Datagrams alone do not wake a waiting UI thread.
        mailbox.postDatagram(MailboxDatagram(link: 3, bytes: [], at: 2))
        let t0 = DispatchTime.now().uptimeNanoseconds
        #expect(mailbox.wait(0.05) == [])
        #expect(DispatchTime.now().uptimeNanoseconds - t0 >= 45_000_000)
        #expect(mailbox.drainDatagrams().datagrams.count == 1)
    }

    /// `requeue` hands events taken mid-batch back, ahead of what arrived since, in their order.
    @Test func requeuedEventsComeBackFirst() throws {
        let host = try UDPHost.bind(PeerAddress(127, 0, 0, 1, port: 0))
        defer { host.close() }
        let mailbox = NetworkMailbox<Int>(loop: host, capacity: 4)
        for i in 0..<3 { mailbox.post(i) }
        let batch = mailbox.drain()
        mailbox.post(3)
        mailbox.requeue(Array(batch[1...]))
        #expect(mailbox.wait(1) == [1, 2, 3])
    }

    /// The loop checks components call: true on the event loop, false off it.
    @Test func udpHostKnowsItsLoop() throws {
        let host = try UDPHost.bind(PeerAddress(127, 0, 0, 1, port: 0))
        defer { host.close() }
        #expect(!host.isInLoop)
        #expect(try host.sync { host.isInLoop })
    }

    #if DEBUG
        /// SimNetwork's loop is the thread inside `run`: while one runs, another thread is off the loop.
        @Test func simNetworkLoopIsTheThreadRunningIt() throws {
            let net = SimNetwork(seed: 1)
            let socket = net.bind(PeerAddress(10, 0, 0, 1, port: 1))
            #expect(socket.isInLoop, "no run in progress: the holder is the driver")
            let inside = DispatchSemaphore(value: 0)
            let checked = DispatchSemaphore(value: 0)
            let finished = DispatchSemaphore(value: 0)
            // nonisolated(unsafe): written by the run on the other thread before `inside` is
            // signalled, read here after waiting for it.
            nonisolated(unsafe) var onRunner = false
            net.schedule(after: 1) {
                onRunner = socket.isInLoop
                inside.signal()
                _ = checked.wait(timeout: .now() + 30)
            }
            // nonisolated(unsafe): the network is handed to the other thread, and this one touches
            // only `isInLoop` (thread-safe) until that thread has finished.
            nonisolated(unsafe) let handed = net
            Thread {
                _ = handed.runUntilIdle()
                finished.signal()
            }.start()
            #expect(inside.wait(timeout: .now() + 30) == .success)
            let offLoop = socket.isInLoop
            checked.signal()
            #expect(finished.wait(timeout: .now() + 30) == .success)
            #expect(onRunner)
            #expect(!offLoop, "the test's thread while another runs the network")
            #expect(socket.isInLoop, "the run is over")
        }
    #endif
}

struct Posted: Sendable, Equatable {
    var thread: Int
    var index: Int
}

/// The wake descriptor the UI thread polls together with the terminal (`NetworkMailbox.wakeFD`).
@Suite struct MailboxWakeDescriptorTests {
    static func readable(_ fd: Int32) -> Bool { FDWait.poll([fd], timeoutNanos: 0).ready[0] }

    /// A post to an empty lane (event or datagram) makes it readable; `clearWake` takes that;
    /// more posts to a lane not yet drained write nothing more (a flood wakes the UI once).
    @Test func readableOnAPostToAnEmptyLaneAndClearedBeforeDraining() throws {
        let host = try UDPHost.bind(PeerAddress(127, 0, 0, 1, port: 0))
        defer { host.close() }
        let mailbox = NetworkMailbox<Int>(loop: host)
        #expect(!Self.readable(mailbox.wakeFD))
        mailbox.post(1)
        #expect(Self.readable(mailbox.wakeFD))
        mailbox.clearWake()
        #expect(!Self.readable(mailbox.wakeFD))
        mailbox.post(2)  // the event lane was not drained: no new wake-up
        #expect(!Self.readable(mailbox.wakeFD))
        #expect(mailbox.drain() == [1, 2])
        mailbox.post(3)
        #expect(Self.readable(mailbox.wakeFD))
        mailbox.clearWake()
        _ = mailbox.drain()

        let d = MailboxDatagram(link: 1, bytes: [7], at: 0)
        mailbox.postDatagram(d)
        #expect(Self.readable(mailbox.wakeFD))
        mailbox.clearWake()
        for _ in 0..<100 { mailbox.postDatagram(d) }
        #expect(!Self.readable(mailbox.wakeFD), "a flood into an undrained lane wrote again")
        #expect(mailbox.drainDatagrams().datagrams.count == 101)
        mailbox.postDatagram(d)
        #expect(Self.readable(mailbox.wakeFD))
        mailbox.requeue([])
        mailbox.clearWake()
        mailbox.requeue([4])
        #expect(Self.readable(mailbox.wakeFD))
    }

    /// A poll on the descriptor, as the match loop's wait does, returns when the network loop
    /// posts (long before its two-minute timeout, which a missed wake-up would hit: `ready` false).
    @Test func aPollReturnsWhenTheLoopPosts() throws {
        let host = try UDPHost.bind(PeerAddress(127, 0, 0, 1, port: 0))
        defer { host.close() }
        let mailbox = NetworkMailbox<Int>(loop: host)
        for lane in ["event", "datagram"] {
            mailbox.onLoop {
                if lane == "event" {
                    mailbox.post(42)
                } else {
                    mailbox.postDatagram(MailboxDatagram(link: 3, bytes: [1], at: 0))
                }
            }
            let r = FDWait.poll([mailbox.wakeFD], timeoutNanos: 120_000_000_000)
            #expect(r.ready == [true], "\(lane)")
            mailbox.clearWake()
            if lane == "event" {
                #expect(mailbox.drain() == [42])
            } else {
                #expect(mailbox.drainDatagrams().datagrams.map(\.link) == [3])
            }
        }
    }

    /// `wait(_:alsoWatching:)` returns for input on the watched descriptor (a key on the
    /// terminal) with nothing queued, and ignores a watched descriptor that hung up.
    @Test func waitReturnsForInputAndIgnoresAHungUpInput() throws {
        let host = try UDPHost.bind(PeerAddress(127, 0, 0, 1, port: 0))
        defer { host.close() }
        let mailbox = NetworkMailbox<Int>(loop: host)
        var ends: [Int32] = [0, 0]
        #expect(pipe(&ends) == 0)
        defer { close(ends[0]) }
        var key: UInt8 = 0x61
        #expect(write(ends[1], &key, 1) == 1)
        let t0 = DispatchTime.now().uptimeNanoseconds
        #expect(mailbox.wait(120, alsoWatching: ends[0]).isEmpty)
        // Hung up (the writer closed, nothing left to read once taken): the wait goes on until an event.
        var byte: UInt8 = 0
        #expect(read(ends[0], &byte, 1) == 1)
        close(ends[1])
        mailbox.onLoop { mailbox.post(5) }
        #expect(mailbox.wait(120, alsoWatching: ends[0]) == [5])
        #expect(DispatchTime.now().uptimeNanoseconds - t0 < 60_000_000_000, "a wait outlived its key or event")
    }
}
