/// Anti-replay sliding window over 64-bit packet counters, as in RFC 6479: a ring of 64-bit
/// blocks, so sliding forward clears whole blocks instead of shifting bits.
///
/// With 128 blocks the window is 127 × 64 = 8128 packets (WireGuard's size): a packet up to 8128
/// counters behind the newest one seen is accepted once; older packets and repeats are rejected.
public struct ReplayWindow: Sendable {
    public static let blocks = 128
    public static let size: UInt64 = UInt64(blocks - 1) * 64

    private var bitmap = [UInt64](repeating: 0, count: blocks)
    /// One more than the highest counter accepted; 0 when nothing was accepted yet.
    private var top: UInt64 = 0

    public init() {}

    /// Whether `counter` would be accepted; does not change the window. Checked before the
    /// (expensive) decryption so replays cost nothing.
    @inline(__always)
    public func wouldAccept(_ counter: UInt64) -> Bool {
        guard counter < UInt64.max else { return false }
        let c = counter + 1
        if c > top { return true }
        if top - c >= ReplayWindow.size { return false }
        let block = Int((c >> 6) & UInt64(ReplayWindow.blocks - 1))
        return bitmap[block] & (1 << (c & 63)) == 0
    }

    /// Records `counter` after the packet authenticated. Returns false for a replay.
    @inline(__always)
    public mutating func accept(_ counter: UInt64) -> Bool {
        guard counter < UInt64.max else { return false }
        let c = counter + 1
        let index = c >> 6
        if c > top {
            let current = top >> 6
            let diff = min(index - current, UInt64(ReplayWindow.blocks))
            var i: UInt64 = 1
            while i <= diff {
                bitmap[Int((current + i) & UInt64(ReplayWindow.blocks - 1))] = 0
                i += 1
            }
            top = c
        } else if top - c >= ReplayWindow.size {
            return false
        }
        let block = Int(index & UInt64(ReplayWindow.blocks - 1))
        let bit: UInt64 = 1 << (c & 63)
        if bitmap[block] & bit != 0 { return false }
        bitmap[block] |= bit
        return true
    }

    /// The highest counter accepted so far, if any.
    public var highest: UInt64? { top == 0 ? nil : top - 1 }
}
