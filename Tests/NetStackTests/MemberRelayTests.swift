import DHT
import NetCore
import NetSim
import Testing
import Transport

@testable import NetStack

/// Which relay a pair uses (docs/nat.md, "Players relay for each other"): the match's own members
/// first, then volunteers, then players relaying for strangers; never the process itself.
@Suite struct MemberRelayTests {
    let tag = RelayFrame.tag(topic: "members first")
    let member = PeerAddress(198, 51, 100, 21, port: 40_000)
    let volunteers = [PeerAddress(198, 51, 100, 11, port: 6881), PeerAddress(203, 0, 113, 11, port: 6881)]
    let players = [PeerAddress(203, 0, 113, 50, port: 5000), PeerAddress(192, 0, 2, 44, port: 5000)]
    let me = PeerAddress(192, 0, 2, 23, port: 7000)

    @Test func membersThenVolunteersThenPlayersNeverOneself() {
        let order = RelayFrame.order(
            members: [member],
            volunteers: volunteers + [me],
            players: players + [member, me],
            tag: tag,
            excluding: [me]
        )
        #expect(order.first == member)
        #expect(Set(order[1...2]) == Set(volunteers))
        #expect(Set(order[3...4]) == Set(players))
        #expect(order.count == 5)  // the member listed again as a player, and ourselves, are left out
        #expect(!order.contains(me))
        // Each class is ranked by rendezvous hashing: a host and a joiner that found the same
        // relays in another order try them in the same order.
        let again = RelayFrame.order(
            members: [member],
            volunteers: volunteers.reversed(),
            players: players.reversed(),
            tag: tag,
            excluding: [me]
        )
        #expect(again == order)
        // With no member and no volunteer, players carry the pair.
        #expect(
            Set(RelayFrame.order(members: [], volunteers: [], players: players, tag: tag, excluding: []))
                == Set(players)
        )
    }

    /// On the simulated network: a host and a joiner that cannot reach each other, a member of
    /// the lobby that relays (a player with its own session to the host) and a volunteer. The host
    /// registers at both, the member first; the joiner, which read the member from the lobby
    /// record, joins there first: the session runs through the member, the volunteer carries nothing.
    @Test func theHostRegistersAtAMemberAndTheJoinerUsesItBeforeAStranger() throws {
        let net = SimNetwork(seed: 7, conditions: LinkConditions(latency: .milliseconds(10)))
        let memberPeer = Peer(host: net.bind(member), identity: .generate())
        memberPeer.servePlayerRelay()
        let volunteer = Peer(host: net.bind(volunteers[0]))
        volunteer.serveRelay()
        let host = Peer(host: net.bind(PeerAddress(203, 0, 113, 2, port: 5000)), identity: .generate())
        let joiner = Peer(host: net.bind(PeerAddress(192, 0, 2, 3, port: 5000)), identity: .generate())
        let cut = LinkConditions(loss: 1.0)
        net.setConditions(cut, from: host.localAddress.ip, to: joiner.localAddress.ip)
        net.setConditions(cut, from: joiner.localAddress.ip, to: host.localAddress.ip)

        // The host's side: its member first, then the volunteer it found on the DHT.
        let hostOrder = RelayFrame.order(
            members: [member],
            volunteers: [volunteers[0]],
            players: [],
            tag: tag,
            excluding: [host.localAddress]
        )
        #expect(hostOrder == [member, volunteers[0]])
        try #require(host.relay).register(tag: tag, at: hostOrder)
        #expect(
            net.run(until: net.now + .seconds(3), while: { host.relay?.registeredAt.count != 2 }),
            "\(String(describing: host.relay?.registeredAt))"
        )
        #expect(memberPeer.relayServer?.hostCount == 1)
        #expect(volunteer.relayServer?.hostCount == 1)

        // The joiner's side: the record's member, then the volunteer; it joins the first.
        let joinOrder = RelayFrame.order(
            members: [member],
            volunteers: [volunteers[0]],
            players: [],
            tag: tag,
            excluding: [joiner.localAddress, host.localAddress]
        )
        #expect(joinOrder.first == member)
        var inbound: Session?
        host.sessions?.onInbound = { inbound = $0 }
        var virtual: PeerAddress??
        try #require(joiner.relay).join(tag: tag, relay: try #require(joinOrder.first)) { virtual = $0 }
        #expect(net.run(until: net.now + .seconds(5), while: { virtual == nil }))
        let address = try #require(virtual ?? nil)
        #expect(joiner.relay?.relay(of: address) == member)
        let s = try #require(joiner.sessions).connect(to: address, mode: .knownKey(host.sessions!.identity.publicKey))
        #expect(net.run(until: net.now + .seconds(10), while: { !(s.isEstablished && inbound?.isEstablished == true) }))
        var got: [[UInt8]] = []
        inbound?.reliable.onReceive = { got.append($0) }
        try s.reliable.send(Array("through a member".utf8))
        #expect(net.run(until: net.now + .seconds(5), while: { got.isEmpty }))
        #expect(got == [Array("through a member".utf8)])
        #expect((memberPeer.relayServer?.stats.framesForwarded ?? 0) > 0)
        #expect(volunteer.relayServer?.stats.framesForwarded == 0)
        #expect(volunteer.relayServer?.stats.channelsOpened == 0)
    }
}
