import NetCore

public enum ChannelError: Error, Equatable, CustomStringConvertible {
    case messageTooLarge(Int, limit: Int)
    case notEstablished
    case sessionClosed

    public var description: String {
        switch self {
        case .messageTooLarge(let n, let limit): return "message of \(n) bytes exceeds the channel limit of \(limit)"
        case .notEstablished: return "the session is not established yet"
        case .sessionClosed: return "the session is closed"
        }
    }
}

/// Game traffic: each message has a sequence number and the receiver only ever moves forward
/// (latest wins; stale or duplicate messages are dropped). Instead of retransmitting, each packet
/// repeats up to `redundancy` of the previous messages, so a lost packet's message usually arrives
/// with the next one (the netcode approach).
public final class UnreliableChannel {
    /// Largest message that fits one datagram with its frame header and a piggybacked ack.
    public static let maxMessageSize = Wire.maxTransportPayload - 7 - 13
    public var redundancy = 1
    public var onReceive: (([UInt8]) -> Void)?
    public private(set) var delivered: UInt64 = 0
    public private(set) var droppedStale: UInt64 = 0

    weak var session: Session?
    private var nextSeq: UInt32 = 0
    private var recent: [(UInt32, [UInt8])] = []
    private var latestReceived: UInt32?

    init() {}

    /// Sends `message` now, with up to `redundancy` earlier messages if they fit.
    public func send(_ message: [UInt8]) throws {
        guard message.count <= UnreliableChannel.maxMessageSize else {
            throw ChannelError.messageTooLarge(message.count, limit: UnreliableChannel.maxMessageSize)
        }
        guard let session, !session.isClosed else { throw ChannelError.sessionClosed }
        guard session.isEstablished else { throw ChannelError.notEstablished }
        let seq = nextSeq
        nextSeq &+= 1
        let recent = self.recent
        session.sendBuilt { payload in
            Frame.appendUnreliable(seq: seq, data: message, to: &payload)
            for (s, d) in recent.reversed() {
                guard payload.count + 7 + d.count <= Wire.maxTransportPayload else { break }
                Frame.appendUnreliable(seq: s, data: d, to: &payload)
            }
        }
        if redundancy > 0 {
            self.recent.append((seq, message))
            if self.recent.count > redundancy { self.recent.removeFirst(self.recent.count - redundancy) }
        } else if !self.recent.isEmpty {
            self.recent.removeAll()
        }
    }

    /// Frames from one packet, delivered oldest first and only if newer than anything delivered.
    func receive(_ messages: [(UInt32, [UInt8])]) {
        for (seq, data) in messages.sorted(by: { $0.0 < $1.0 }) { receive(seq, data) }
    }

    func receive(_ seq: UInt32, _ data: [UInt8]) {
        if let latest = latestReceived, Int32(bitPattern: seq &- latest) <= 0 {
            droppedStale += 1
            return
        }
        latestReceived = seq
        delivered += 1
        onReceive?(data)
    }
}

/// Lobby, control and state sync: every message delivered exactly once and in order. Messages are
/// cut into segments of at most `segmentSize` bytes, each with its own sequence number; the
/// receiver acknowledges cumulatively plus a 64-bit selective bitmap, and the sender retransmits a
/// segment when its timeout (from the session's RTT, doubling per retry, capped) runs out.
public final class ReliableChannel {
    public static let segmentSize = 1100
    public static let maxMessageSize = 1 << 20
    /// Segments in flight at most; more wait in the send queue.
    public static let sendWindow = 256
    /// Segments the receiver buffers beyond the next expected one.
    public static let receiveWindow = 1024
    /// Bytes charged per buffered segment on top of its data, so that empty segments cost too.
    static let segmentOverhead = 64
    /// Default receive budget: the largest message being assembled plus a full send window of
    /// segments buffered out of order. A peer running this code never exceeds it (its sender keeps
    /// at most `sendWindow` segments beyond our next expected one).
    public static let defaultReceiveBudget = maxMessageSize + sendWindow * (segmentSize + segmentOverhead)
    public static let minRTO: Nanos = .milliseconds(50)
    public static let maxRTO: Nanos = .milliseconds(1000)

    public var onReceive: (([UInt8]) -> Void)?
    public struct Stats: Sendable, Equatable {
        public var messagesSent: UInt64 = 0
        public var messagesDelivered: UInt64 = 0
        public var segmentsSent: UInt64 = 0
        public var retransmissions: UInt64 = 0
        public var duplicatesDropped: UInt64 = 0
        public var outOfWindowDropped: UInt64 = 0
        /// Messages over `maxMessageSize` whose segments were discarded (never delivered).
        public var oversizedDropped: UInt64 = 0
    }
    public private(set) var stats = Stats()

    weak var session: Session?

    private struct Outgoing {
        var data: [UInt8]
        var last: Bool
        var lastSent: Nanos = 0
        var sends: Int = 0
        var acked = false
    }

    // Sender: segments [sendBase, nextSeq) are kept until acked; those from `nextToSend` on are unsent.
    private var outgoing: [UInt32: Outgoing] = [:]
    private var sendBase: UInt32 = 0
    private var nextToSend: UInt32 = 0
    private var nextSeq: UInt32 = 0

    // Receiver.
    private var receiveNext: UInt32 = 0
    private var buffered: [UInt32: (Bool, [UInt8])] = [:]
    private var assembling: [UInt8] = []
    /// Set while the rest of an oversized message is being thrown away, up to its last segment.
    private var discarding = false
    /// Bytes held for the receiver: buffered segments (with `segmentOverhead` each) plus
    /// `assembling`. Limited by `receiveBudget`.
    public private(set) var bufferedBytes = 0
    /// Most bytes `bufferedBytes` may reach; a segment that would exceed it calls `onOverBudget`
    /// (the session closes) and is dropped.
    var receiveBudget = ReliableChannel.defaultReceiveBudget
    var onOverBudget: (() -> Void)?
    private(set) var ackPending = false

    init() {}

    /// Segments not yet acknowledged (including unsent ones).
    public var unacknowledged: Int { Int(nextSeq &- sendBase) }

    public func send(_ message: [UInt8]) throws {
        guard message.count <= ReliableChannel.maxMessageSize else {
            throw ChannelError.messageTooLarge(message.count, limit: ReliableChannel.maxMessageSize)
        }
        guard let session, !session.isClosed else { throw ChannelError.sessionClosed }
        var offset = 0
        repeat {
            let end = min(offset + ReliableChannel.segmentSize, message.count)
            outgoing[nextSeq] = Outgoing(data: Array(message[offset..<end]), last: end == message.count)
            nextSeq &+= 1
            offset = end
        } while offset < message.count
        stats.messagesSent += 1
        session.requestFlush()
    }

    /// The ack frame to send, if one is owed.
    func takeAck() -> Frame? {
        guard ackPending else { return nil }
        ackPending = false
        return ackFrame
    }

    var ackFrame: Frame {
        var bits: UInt64 = 0
        for i in 0..<64 where buffered[receiveNext &+ 1 &+ UInt32(i)] != nil { bits |= 1 << UInt64(i) }
        return .ack(next: receiveNext, bits: bits)
    }

    /// Segments to transmit now: retransmissions that are due, then new ones within the window.
    func dueSegments(now: Nanos, rto: Nanos) -> [Frame] {
        guard session?.isEstablished == true else { return [] }
        var frames: [Frame] = []
        var seq = sendBase
        while seq != nextToSend {
            if var o = outgoing[seq], !o.acked {
                let backoff = min(ReliableChannel.maxRTO, rto << UInt64(min(o.sends - 1, 5)))
                if now &- o.lastSent >= backoff {
                    o.lastSent = now
                    o.sends += 1
                    outgoing[seq] = o
                    stats.retransmissions += 1
                    frames.append(.segment(seq: seq, last: o.last, data: o.data))
                }
            }
            seq &+= 1
        }
        while nextToSend != nextSeq, Int(nextToSend &- sendBase) < ReliableChannel.sendWindow {
            var o = outgoing[nextToSend]!  // `!`: every seq in sendBase..<nextSeq has an entry
            o.lastSent = now
            o.sends = 1
            outgoing[nextToSend] = o
            frames.append(.segment(seq: nextToSend, last: o.last, data: o.data))
            nextToSend &+= 1
        }
        stats.segmentsSent += UInt64(frames.count)
        return frames
    }

    /// Whether any sent segment is waiting for an ack (the session then keeps its timer short).
    var hasInFlight: Bool { sendBase != nextToSend || nextToSend != nextSeq }

    func handleAck(next: UInt32, bits: UInt64) {
        // Ignore acks for segments never sent (hostile or corrupt).
        guard next &- sendBase <= nextToSend &- sendBase else { return }
        while sendBase != next {
            outgoing[sendBase] = nil
            sendBase &+= 1
        }
        if bits != 0 {
            for i in 0..<64 where bits & (1 << UInt64(i)) != 0 {
                let s = next &+ 1 &+ UInt32(i)
                if Int32(bitPattern: nextToSend &- s) > 0 { outgoing[s]?.acked = true }
            }
        }
        if hasInFlight { session?.requestFlush() }
    }

    func handleSegment(seq: UInt32, last: Bool, data: [UInt8]) {
        ackPending = true
        let ahead = seq &- receiveNext
        if Int32(bitPattern: ahead) < 0 || buffered[seq] != nil {
            stats.duplicatesDropped += 1
            return
        }
        guard ahead < UInt32(ReliableChannel.receiveWindow) else {
            stats.outOfWindowDropped += 1
            return
        }
        let cost = data.count + ReliableChannel.segmentOverhead
        guard bufferedBytes + cost <= receiveBudget else {
            onOverBudget?()
            return
        }
        buffered[seq] = (last, data)
        bufferedBytes += cost
        while let (isLast, d) = buffered.removeValue(forKey: receiveNext) {
            receiveNext &+= 1
            bufferedBytes -= d.count + ReliableChannel.segmentOverhead
            if !discarding && assembling.count + d.count > ReliableChannel.maxMessageSize {
                // Too large: drop what was assembled and everything up to the message's last
                // segment, so no part of it is ever delivered as a message of its own.
                stats.oversizedDropped += 1
                bufferedBytes -= assembling.count
                assembling = []
                discarding = true
            }
            if discarding {
                if isLast { discarding = false }
                continue
            }
            assembling += d
            bufferedBytes += d.count
            if isLast {
                let message = assembling
                bufferedBytes -= assembling.count
                assembling = []
                stats.messagesDelivered += 1
                onReceive?(message)
            }
        }
    }
}
