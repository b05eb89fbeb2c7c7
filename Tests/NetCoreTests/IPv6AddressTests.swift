import NetCore
import Testing

/// IPv6 text (RFC 4291 in, RFC 5952 out), compact forms (BEP 32) and the dual-family address.
struct IPv6AddressTests {
    @Test(arguments: [
        ("::", "::"),
        ("::1", "::1"),
        ("2001:DB8:0:0:0:0:0:1", "2001:db8::1"),
        ("2001:db8:0:0:1:0:0:1", "2001:db8::1:0:0:1"),  // the first of two equal runs
        ("2001:0db8:0000:0000:0000:ff00:0042:8329", "2001:db8::ff00:42:8329"),
        ("2001:db8:0:1:1:1:1:1", "2001:db8:0:1:1:1:1:1"),  // a single zero group stays
        ("fe80::1:2", "fe80::1:2"),
        ("::ffff:192.0.2.1", "::ffff:192.0.2.1"),
        ("64:ff9b::192.0.2.33", "64:ff9b::c000:221"),
        ("1:2:3:4:5:6:7::", "1:2:3:4:5:6:7:0"),
    ])
    func parsesAndPrintsCanonicalText(input: String, canonical: String) throws {
        let a = try #require(IPv6Address(input))
        #expect(a.description == canonical)
        #expect(IPv6Address(canonical) == a)
        #expect(IPv6Address(bytes: a.bytes) == a)
    }

    @Test(arguments: [
        "", ":", ":::", "1:::2", "1::2::3", "12345::", "g::1", "1:2:3:4:5:6:7:8:9", "1:2:3:4:5:6:7",
        "::1.2.3", "::1.2.3.256", "[::1]", "::1%eth0", "1:2:3:4:5:6:7:8::",
    ])
    func refusesMalformedText(input: String) {
        #expect(IPv6Address(input) == nil)
    }

    @Test func classifiesScopes() throws {
        #expect(try #require(IPv6Address("fe80::1")).isLinkLocal)
        #expect(try #require(IPv6Address("febf::1")).isLinkLocal)
        #expect(try #require(IPv6Address("fec0::1")).isLinkLocal == false)
        #expect(try #require(IPv6Address("fd12:3456::1")).isUniqueLocal)
        #expect(try #require(IPv6Address("ff02::1")).isMulticast)
        #expect(try #require(IPv6Address("2001:db8::5")).isDocumentation)
        // The lab's documentation prefix stands for the public internet: not private.
        #expect(PeerAddress("[2001:db8::5]:7000")?.isPrivate == false)
        #expect(PeerAddress("[fd00::5]:7000")?.isPrivate == true)
        #expect(PeerAddress("[::1]:7000")?.isLoopback == true)
    }

    @Test func peerAddressesOfBothFamilies() throws {
        let v6 = try #require(PeerAddress("[2001:db8::7]:6881"))
        #expect(v6.isIPv6 && v6.port == 6881 && v6.ip == 0)
        #expect(v6.description == "[2001:db8::7]:6881")
        #expect(v6.compact.count == 18 && PeerAddress(compact: v6.compact) == v6)
        let v4 = PeerAddress(192, 0, 2, 1, port: 80)
        #expect(v4.compact.count == 6 && PeerAddress(compact: v4.compact) == v4)
        // An IPv4 peer seen through a dual-stack socket is the same peer.
        #expect(PeerAddress(ip6: IPv6Address(mapping: v4.ip), port: 80) == v4)
        #expect(PeerAddress("[::ffff:192.0.2.1]:80") == v4)
        #expect(PeerAddress(compact: [UInt8](repeating: 0, count: 17)) == nil)
        #expect(PeerAddress("[2001:db8::7]6881") == nil)
        #expect(PeerAddress("2001:db8::7:6881") == nil)
        #expect(PeerAddress(host: "[2001:db8::7]", port: 1) == PeerAddress("[2001:db8::7]:1"))
        #expect(v4 < v6)
        // Per-source limits count an IPv6 /64 as one source, apart from every IPv4 address.
        let sibling = try #require(PeerAddress("[2001:db8::ffff:1]:1"))
        #expect(v6.sourceKey == sibling.sourceKey)
        #expect(v6.sourceKey != PeerAddress("[2001:db8:0:1::7]:6881")?.sourceKey)
        #expect(v6.sourceKey > UInt64(UInt32.max))
    }
}
