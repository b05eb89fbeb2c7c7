import Determinism
import Engine
import Foundation
import Keys
import Lobby
import NetCore
import NetStack
import Testing
import Transport
import TurfRules

#if canImport(Glibc)
    import Glibc
#endif

/// A hostile peer over a real Noise session on loopback (an in-process `LivePeer`, nothing
/// mocked) against a real `turf host` and a real member: malformed lobby messages, a hello claiming
/// another peer's key, a name of 10,000 combining marks, then (as a spectator, so its datagrams reach
/// the host's NetMatch) a flood of garbage datagrams and of packets with ops for players that do
/// not exist or that it does not own, and a flood of lobby `ops` messages. Everything is dropped,
/// bounded or escaped and counted; nobody crashes and the match completes on both players.
@Suite(.serialized) struct NetPlayHostileTests {
    /// The attacker's session: touched only on its LivePeer's event loop.
    final class SessionBox: @unchecked Sendable {  // every access runs inside live.execute/sync
        var session: Session?
    }

    @Test func hostileInputOverALiveSessionIsDroppedAndCountedAndTheMatchCompletes() throws {
        let lab = try NetPlayTests.Lab()
        let host = try lab.start("host", ["host", "--topic", "siege", "--seconds", "5", "--start-when", "2"])
        let lobby = try #require(lab.waitForEvent("host", "lobby"))
        let keyText = try #require(lobby["key"] as? String)
        let addressText = try #require(lobby["address"] as? String)
        let hostKey = try #require(PeerKey(text: keyText))
        let hostAddress = try #require(PeerAddress(addressText))

        let attacker = try LivePeer.bind(PeerAddress("127.0.0.1:0")!, identity: Identity.generate())
        defer { attacker.close() }
        let box = SessionBox()
        attacker.execute { peer in box.session = peer.sessions?.connect(to: hostAddress, mode: .knownKey(hostKey)) }
        let deadline = Date().addingTimeInterval(20)
        while !((try? attacker.sync { _ in box.session?.isEstablished ?? false }) ?? false) {
            try #require(Date() < deadline, "the attacker's session never came up")
            usleep(20_000)
        }
        func reliable(_ messages: [[UInt8]]) {
            attacker.execute { _ in for m in messages { try? box.session?.reliable.send(m) } }
        }
        func datagrams(_ messages: [[UInt8]]) {
            attacker.execute { _ in for m in messages { try? box.session?.unreliable.send(m) } }
        }
        var rng = SplitMix64(seed: 0xBAD)
        // Malformed lobby messages: random bytes, a wrong version, a truncated hello.
        var junk: [[UInt8]] = (0..<50).map { _ in (0..<rng.below(80)).map { _ in UInt8(truncatingIfNeeded: rng.next()) }
        }
        junk.append([99, 1, 2, 3])
        junk.append([LobbyMessage.protocolVersion, 1, 5])
        reliable(junk)
        // A hello claiming the host's own key, and one whose name is 10,000 combining marks.
        let commit = SeedMix.commit(SeedMix.contribution())
        let me = try attacker.sync { $0.sessions!.identity.publicKey.bytes }
        reliable([
            LobbyMessage.hello(.init(name: "Mallory", key: hostKey.bytes, commit: commit)).encode(),
            LobbyMessage.hello(
                .init(name: "Z" + String(repeating: "\u{301}", count: 10_000), key: me, commit: commit, spectate: true)
            ).encode(),
        ])
        // Then in as a spectator, with control characters in its name.
        reliable([
            LobbyMessage.hello(.init(name: "Eve\u{1b}[2J\u{7}\u{202e}", key: me, commit: commit, spectate: true))
                .encode()
        ])
        _ = try #require(
            waitForLine(lab.outPath("host"), containing: "\"state\":\"spectating\"", timeout: 30),
            "the attacker never got in as a spectator: \(lab.events("host"))"
        )

        let member = try lab.start("member", ["join", hostKey.text])
        _ = try #require(lab.waitForEvent("host", "start"), "the match did not start")
        // In the match: garbage datagrams, packets with ops for player 7 (there are 2) and for
        // player 1 (the member's, not ours), and a flood of lobby `ops` messages.
        let theirs = Op<TurfOp>(player: 1, seq: 0, tick: 1, payload: .move(cell: 3))
        let nobody = Op<TurfOp>(player: 7, seq: 0, tick: 1, payload: .move(cell: 3))
        // The match's tag (its number in the series: 1), then the packet: statements 0, finals 0,
        // equivocators 0, time cuts 0, retracted 0, no settle report.
        func packet(_ op: Op<TurfOp>) -> [UInt8] {
            [1, 0xA7, 1, 0] + OpCodec<TurfWorld>.encodeBatch([op]) + [0, 0, 0, 0, 0, 0]
        }
        for _ in 0..<10 {
            datagrams((0..<500).map { _ in (0..<rng.below(200)).map { _ in UInt8(truncatingIfNeeded: rng.next()) } })
            datagrams(Array(repeating: packet(nobody), count: 50) + Array(repeating: packet(theirs), count: 5))
            reliable((0..<20).map { _ in LobbyMessage.ops(OpCodec<TurfWorld>.encodeBatch([theirs])).encode() })
            usleep(100_000)
        }

        #expect(lab.wait(member) == 0, "\(lab.events("member"))")
        #expect(lab.wait(host) == 0, "\(lab.events("host"))")
        try NetPlayTests().expectConverged(lab, ["host", "member"], expectNoRejections: false)
        let end = try #require(lab.event("host", "end"))
        #expect((end["dropped_messages"] as? Int ?? 0) >= 50, "\(end)")
        #expect((end["dropped_datagrams"] as? Int ?? 0) >= 500, "\(end)")
        #expect((end["rejected_ops"] as? Int ?? 0) >= 1, "the spectator's ops were not refused: \(end)")
        #expect(lab.event("member", "end")?["rejected_ops"] as? Int == 0)
        // Nothing the attacker sent reached the host's output raw.
        let out = try String(contentsOfFile: lab.outPath("host"), encoding: .utf8)
        #expect(!out.unicodeScalars.contains { $0.value < 0x20 && $0 != "\n" || $0 == "\u{202e}" || $0 == "\u{301}" })
        #expect(out.contains("Eve"), "the spectator's name is not shown at all")
    }
}
