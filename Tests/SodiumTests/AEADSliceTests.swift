import Testing

@testable import Sodium

@Suite struct AEADSliceTests {
    /// The transport's pattern: header written, then sealed in place after it with the header as
    /// associated data; opened from slices of the packet.
    @Test(arguments: [0, 1, 100])
    func sealAfterHeaderAndOpenSlices(size: Int) {
        let key = SecretBytes.random(32)
        let payload = [UInt8](repeating: 7, count: size)
        var packet: [UInt8] = []
        packet.reserveCapacity(64 + size)
        packet += [5, 1, 2, 3, 4, 0, 9, 0, 0, 0, 0, 0, 0, 0]
        let header = packet
        ChaChaPoly.seal(key: key, counter: 9, ad: header, plaintext: payload, appendingTo: &packet)
        #expect(packet.count == 14 + size + 16)
        #expect(Array(packet[0..<14]) == header)
        let whole = ChaChaPoly.seal(key: key, counter: 9, ad: header, plaintext: payload)
        #expect(Array(packet[14...]) == whole)
        var out: [UInt8] = []
        let ok = ChaChaPoly.open(key: key, counter: 9, ad: packet[0..<14], ciphertext: packet[14...], appendingTo: &out)
        #expect(ok)
        #expect(out == payload)
        #expect(ChaChaPoly.open(key: key, counter: 9, ad: header, ciphertext: whole) == payload)
    }
}

@Suite struct AEADPacketTests {
    @Test(arguments: [0, 1, 100, 1170])
    func sealAppendingAuthenticatesHeader(size: Int) {
        let key = SecretBytes.random(32)
        let payload = (0..<size).map { UInt8(truncatingIfNeeded: $0) }
        let header: [UInt8] = [5, 1, 2, 3, 4, 0, 9, 0, 0, 0, 0, 0, 0, 0]
        var packet = header
        ChaChaPoly.sealAppending(key: key, counter: 3, plaintext: payload, to: &packet)
        #expect(Array(packet[0..<14]) == header)
        #expect(Array(packet[14...]) == ChaChaPoly.seal(key: key, counter: 3, ad: header, plaintext: payload))
        var out: [UInt8] = [42]
        #expect(ChaChaPoly.openPacket(key: key, counter: 3, packet: packet, headerLength: 14, appendingTo: &out))
        #expect(out == [42] + payload)
        var bad = packet
        bad[2] ^= 1  // header is authenticated
        out = []
        #expect(!ChaChaPoly.openPacket(key: key, counter: 3, packet: bad, headerLength: 14, appendingTo: &out))
        #expect(out.isEmpty)
        #expect(!ChaChaPoly.openPacket(key: key, counter: 4, packet: packet, headerLength: 14, appendingTo: &out))
        #expect(
            !ChaChaPoly.openPacket(
                key: key,
                counter: 3,
                packet: Array(packet.prefix(20)),
                headerLength: 14,
                appendingTo: &out
            )
        )
    }
}
