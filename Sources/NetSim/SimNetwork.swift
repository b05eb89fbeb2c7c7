import Determinism
import NetCore

#if canImport(Glibc)
    import Glibc
#elseif canImport(Darwin)
    import Darwin
#endif

/// Loss, duplication, reordering and latency for datagrams on a simulated link.
package struct LinkConditions: Sendable, Equatable {
    /// Probability that a datagram is dropped.
    package var loss: Double
    /// Probability that a delivered datagram is delivered twice.
    package var duplicate: Double
    /// Probability that a datagram is held back by an extra `reorderDelay`, so later ones overtake it.
    package var reorder: Double
    package var latency: Nanos
    /// Uniform extra delay in 0...jitter.
    package var jitter: Nanos
    package var reorderDelay: Nanos

    package init(
        loss: Double = 0,
        duplicate: Double = 0,
        reorder: Double = 0,
        latency: Nanos = .milliseconds(1),
        jitter: Nanos = 0,
        reorderDelay: Nanos = .milliseconds(20)
    ) {
        self.loss = loss
        self.duplicate = duplicate
        self.reorder = reorder
        self.latency = latency
        self.jitter = jitter
        self.reorderDelay = reorderDelay
    }

    package static let perfect = LinkConditions(latency: 0)
}

/// An in-memory network with virtual time: sockets bound to addresses, a seeded link conditioner,
/// partitions, and an event queue that runs in (time, insertion) order. Same seed, same run.
///
/// Single-threaded: everything runs on the thread that calls `run`. It has no thread of its own,
/// so its "loop" is whichever thread is inside `run` now; while one is, `isInLoop` is false on every
/// other thread (tracked in debug builds only, where components assert it).
package final class SimNetwork: Scheduler {
    package struct Stats: Sendable, Equatable {
        package var sent: UInt64 = 0
        package var delivered: UInt64 = 0
        package var lost: UInt64 = 0
        package var duplicated: UInt64 = 0
        package var partitioned: UInt64 = 0
        package var unreachable: UInt64 = 0
        package var bytesSent: UInt64 = 0
        /// Sends larger than `maxDatagram`, dropped at the sender (as `UDPHost` drops them).
        package var oversized: UInt64 = 0
        /// Dropped by a NAT or firewall (`SimNAT`): no mapping, filtered, or no hairpinning.
        package var filtered: UInt64 = 0
    }

    package private(set) var now: Nanos = 0
    package var conditions: LinkConditions
    /// Conditions per datagram from its (public, translated) source and its destination, in
    /// place of `conditions` (`bench internet`'s latency and loss model); `setConditions`
    /// overrides still win. Must be a pure function of its arguments, for determinism.
    package var linkModel: ((PeerAddress, PeerAddress) -> LinkConditions)?
    package private(set) var stats = Stats()
    /// Largest datagram a socket bound from now on may send (`SimSocket.maxDatagram`); larger
    /// ones are dropped at the sender and counted in `stats.oversized`. Defaults to what `UDPHost`
    /// sends (1472 bytes, one unfragmented IPv4 datagram on a 1500-byte MTU); tests of a protocol
    /// with a stricter budget (turf's sessions: 1200 bytes) lower it so a violation shows up as a
    /// lost datagram and a count, and a test's attacker raises its own socket's limit to send
    /// what a raw socket could.
    package var maxDatagram = maxUDPDatagram
    private var rng: SplitMix64
    private let seed: UInt64
    private var sockets: [PeerAddress: SimSocket] = [:]
    private var linkOverrides: [Pair: LinkConditions] = [:]
    private var group: [UInt32: Int] = [:]  // ip -> partition group; absent = group 0
    private var queue = EventHeap()
    private var sequence: UInt64 = 0
    private var nextEphemeralPort: UInt16 = 40000
    /// NATs (SimNAT.swift): by the inside hosts' addresses (port 0), and by their public IPs.
    var natInside: [PeerAddress: SimNAT] = [:]
    var natPublic: [PeerAddress: SimNAT] = [:]

    private struct Pair: Hashable {
        var from: UInt32
        var to: UInt32
    }

    #if DEBUG
        /// The thread inside `run`, if any. Read from any thread (by `isInLoop`), hence the lock.
        private let driver = Locked<pthread_t?>(nil)
    #endif

    package init(seed: UInt64, conditions: LinkConditions = LinkConditions()) {
        rng = SplitMix64(seed: seed, stream: 0x5E7)
        self.seed = seed
        self.conditions = conditions
    }

    // MARK: sockets

    /// Binds a socket at `address`; port 0 picks a free ephemeral port.
    package func bind(_ address: PeerAddress) -> SimSocket {
        var a = address
        if a.port == 0 {
            repeat {
                a.port = nextEphemeralPort
                nextEphemeralPort = nextEphemeralPort == 65535 ? 40000 : nextEphemeralPort + 1
            } while sockets[a] != nil
        }
        precondition(sockets[a] == nil, "address \(a) already bound")
        let s = SimSocket(network: self, address: a)
        s.maxDatagram = maxDatagram
        sockets[a] = s
        return s
    }

    func countOversized() { stats.oversized += 1 }

    func unbind(_ socket: SimSocket) {
        if sockets[socket.localAddress] === socket { sockets[socket.localAddress] = nil }
    }

    package var boundCount: Int { sockets.count }

    // MARK: link conditions and partitions

    /// Conditions for datagrams from hosts with IP `from` to hosts with IP `to` (one direction).
    package func setConditions(_ c: LinkConditions?, from: UInt32, to: UInt32) {
        linkOverrides[Pair(from: from, to: to)] = c
    }

    /// Puts each listed host IP into partition group `id`. Hosts in different groups cannot talk.
    package func partition(_ ips: [UInt32], into id: Int) { for ip in ips { group[ip] = id } }

    /// Removes all partitions.
    package func heal() { group.removeAll() }

    // MARK: scheduling

    /// True on the thread inside `run`, and on every thread while none is (the caller that holds the
    /// network between runs is its driver). Always true in release builds, where it is not tracked.
    package var isInLoop: Bool {
        #if DEBUG
            let current = pthread_self()
            return driver.withLock { d in d.map { pthread_equal($0, current) != 0 } ?? true }
        #else
            return true
        #endif
    }

    /// Marks the calling thread as the one running events; returns the previous driver for `leave`.
    @inline(__always)
    private func enter() -> pthread_t? {
        #if DEBUG
            let current = pthread_self()
            return driver.withLock { d in
                if let other = d {
                    precondition(pthread_equal(other, current) != 0, "SimNetwork run from two threads at once")
                }
                defer { d = current }
                return d
            }
        #else
            return nil
        #endif
    }

    @inline(__always)
    private func leave(_ previous: pthread_t?) {
        #if DEBUG
            driver.withLock { $0 = previous }
        #endif
    }

    @discardableResult
    package func schedule(after delay: Nanos, _ action: @escaping () -> Void) -> TimerToken {
        let token = TimerToken()
        push(at: now &+ delay, Event(token: token, action: action))
        return token
    }

    private func push(at time: Nanos, _ e: Event) {
        sequence += 1
        queue.push(time: time, seq: sequence, e)
    }

    /// Runs events until virtual time `deadline` (inclusive); time then stands at `deadline`.
    /// `maxEvents` bounds the work so a runaway protocol cannot hang a test.
    @discardableResult
    package func run(until deadline: Nanos, maxEvents: Int = 50_000_000) -> Int {
        let previous = enter()
        defer { leave(previous) }
        var n = 0
        while n < maxEvents, let t = queue.peekTime, t <= deadline {
            let e = queue.pop()
            now = max(now, t)
            if e.token?.isCancelled == true { continue }
            e.action()
            n += 1
        }
        if n < maxEvents { now = max(now, deadline) }
        return n
    }

    package func run(for duration: Nanos, maxEvents: Int = 50_000_000) -> Int {
        run(until: now &+ duration, maxEvents: maxEvents)
    }

    /// Runs until no events remain (or the bound is hit); returns the number of events run.
    @discardableResult
    package func runUntilIdle(maxEvents: Int = 50_000_000) -> Int {
        run(until: .max, maxEvents: maxEvents)
    }

    /// Runs until `condition` holds, time passes `deadline`, or the event bound is hit.
    /// Returns whether the condition held.
    package func run(until deadline: Nanos, maxEvents: Int = 50_000_000, while keepGoing: () -> Bool) -> Bool {
        let previous = enter()
        defer { leave(previous) }
        var n = 0
        while keepGoing() {
            guard n < maxEvents, let t = queue.peekTime, t <= deadline else { return !keepGoing() }
            let e = queue.pop()
            now = max(now, t)
            if e.token?.isCancelled == true { continue }
            e.action()
            n += 1
        }
        return true
    }

    package var pendingEvents: Int { queue.count }

    // MARK: delivery

    func transmit(_ payload: [UInt8], from origin: PeerAddress, to destination: PeerAddress) {
        stats.sent += 1
        stats.bytesSent += UInt64(payload.count)
        var source = origin
        if !natInside.isEmpty, let nat = natInside[origin.with(port: 0)],
            natInside[destination.with(port: 0)] !== nat
        {
            if nat.owns(destination) {
                nat.countHairpin(dropped: !nat.hairpin)
                guard nat.hairpin else {
                    stats.filtered += 1
                    return
                }
            }
            source = nat.outbound(from: origin, to: destination, now: now)
        }
        let c =
            linkOverrides.isEmpty
            ? (linkModel?(source, destination) ?? conditions)
            : linkOverrides[Pair(from: source.ip, to: destination.ip)] ?? conditions
        // With a link model, each datagram's fate is drawn from a hash of the datagram (its
        // endpoints, size and send time) instead of the network's one stream: the order in which
        // same-instant sends happen (a dictionary's iteration order, which Swift seeds per
        // process and per instance) then cannot shift every later draw, and a run repeats.
        var draws = linkModel == nil ? nil : datagramDraws(source, destination, payload.count)
        func unit() -> Double {
            guard var d = draws else { return rng.unit() }
            defer { draws = d }
            return d.unit()
        }
        func below(_ n: UInt64) -> UInt64 {
            guard var d = draws else { return rng.below(n) }
            defer { draws = d }
            return d.below(n)
        }
        if c.loss > 0 && unit() < c.loss {
            stats.lost += 1
            return
        }
        let copies = (c.duplicate > 0 && unit() < c.duplicate) ? 2 : 1
        if copies == 2 { stats.duplicated += 1 }
        for _ in 0..<copies {
            var delay = c.latency
            if c.jitter > 0 { delay &+= below(c.jitter &+ 1) }
            if c.reorder > 0 && unit() < c.reorder { delay &+= c.reorderDelay }
            push(
                at: now &+ delay,
                Event(token: nil) { [weak self] in
                    self?.deliver(payload, from: source, to: destination)
                }
            )
        }
    }

    /// A generator seeded by one datagram (see `transmit`).
    private func datagramDraws(_ s: PeerAddress, _ d: PeerAddress, _ size: Int) -> SplitMix64 {
        let h = StableHash.of(
            seed,
            s.sourceKey,
            UInt64(s.port) << 16 | UInt64(d.port),
            d.sourceKey,
            now,
            UInt64(size)
        )
        return SplitMix64(seed: h, stream: 0xD6)
    }

    private func deliver(_ payload: [UInt8], from source: PeerAddress, to outside: PeerAddress) {
        var destination = outside
        if !natPublic.isEmpty, let nat = natPublic[outside.with(port: 0)],
            natInside[source.with(port: 0)] !== nat || nat.owns(outside)
        {
            guard let inside = nat.inbound(from: source, to: outside, now: now) else {
                stats.filtered += 1
                return
            }
            destination = inside
        }
        // Partitions are checked at delivery, so a partition also eats datagrams in flight.
        if group[source.ip, default: 0] != group[destination.ip, default: 0] {
            stats.partitioned += 1
            return
        }
        guard let s = sockets[destination], let h = s.onReceive else {
            stats.unreachable += 1
            return
        }
        stats.delivered += 1
        h(payload, source)
    }

    // MARK: event heap

    private struct Event {
        var token: TimerToken?
        var action: () -> Void
    }

    /// A binary min-heap on (time, insertion order). One array of entries, so a sift moves one
    /// value instead of three (the 10,000-node DHT simulation pops tens of millions of events).
    /// A binary min-heap of (time, sequence) keys; the events sit in a side table, so sifting
    /// moves plain integers only (moving the events themselves, closures and byte arrays, cost
    /// a retain and a release per step: about 8% of `bench internet`'s time).
    private struct EventHeap {
        private struct Entry {
            var time: Nanos
            var seq: UInt64
            var slot: Int
            @inline(__always) func less(_ o: Entry) -> Bool { time < o.time || (time == o.time && seq < o.seq) }
        }
        private var entries: [Entry] = []
        private var events: [Event?] = []
        private var free: [Int] = []
        var count: Int { entries.count }
        var peekTime: Nanos? { entries.first?.time }

        mutating func push(time: Nanos, seq: UInt64, _ e: Event) {
            let slot: Int
            if let f = free.popLast() {
                slot = f
                events[f] = e
            } else {
                slot = events.count
                events.append(e)
            }
            let new = Entry(time: time, seq: seq, slot: slot)
            entries.append(new)
            // Sift up by moving parents down into the hole, then place the new entry once.
            var i = entries.count - 1
            while i > 0 {
                let p = (i - 1) / 2
                guard new.less(entries[p]) else { break }
                entries[i] = entries[p]
                i = p
            }
            entries[i] = new
        }

        mutating func pop() -> Event {
            let slot = entries[0].slot
            let top = events[slot].take()!
            free.append(slot)
            let last = entries.removeLast()
            let n = entries.count
            guard n > 0 else { return top }
            // Sift the former last entry down from the root through the hole.
            var i = 0
            while true {
                let l = 2 * i + 1
                guard l < n else { break }
                let r = l + 1
                let m = (r < n && entries[r].less(entries[l])) ? r : l
                guard entries[m].less(last) else { break }
                entries[i] = entries[m]
                i = m
            }
            entries[i] = last
            return top
        }
    }
}

/// A socket on a `SimNetwork`. It is also a `NetworkHost`: its scheduler is the network's clock.
package final class SimSocket: NetworkHost {
    package let localAddress: PeerAddress
    package var onReceive: (([UInt8], PeerAddress) -> Void)?
    package private(set) weak var network: SimNetwork?
    /// Sends larger than this are dropped and counted (`SimNetwork.Stats.oversized`), as
    /// `UDPHost` drops them. Set from `SimNetwork.maxDatagram` when bound.
    package var maxDatagram = maxUDPDatagram

    init(network: SimNetwork, address: PeerAddress) {
        self.network = network
        localAddress = address
    }

    package func send(_ payload: [UInt8], to destination: PeerAddress) {
        guard payload.count <= maxDatagram else {
            network?.countOversized()
            return
        }
        network?.transmit(payload, from: localAddress, to: destination)
    }

    /// How far this host's clock reads ahead of the network's virtual time (wrapping: a "negative"
    /// offset is a large one). Hosts' monotonic clocks start at unrelated points; a test of clock
    /// estimation gives a peer its own. Timers are relative, so they are unaffected.
    package var clockOffset: Nanos = 0

    package var now: Nanos { (network?.now ?? 0) &+ clockOffset }

    package var isInLoop: Bool { network?.isInLoop ?? true }

    @discardableResult
    package func schedule(after delay: Nanos, _ action: @escaping () -> Void) -> TimerToken {
        guard let network else { return TimerToken() }
        return network.schedule(after: delay, action)
    }

    /// Unbinds: datagrams to this address are then counted as unreachable (a node leaving).
    package func close() {
        onReceive = nil
        network?.unbind(self)
    }
}
