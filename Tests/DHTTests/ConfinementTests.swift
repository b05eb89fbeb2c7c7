import DHT
import Foundation
import NetCore
import NetPOSIX
import NetSim
import Testing

/// A node is confined to its host's loop, and a debug build proves it: a call from any other
/// thread traps at once instead of racing with the loop.
@Suite struct ConfinementTests {
    #if DEBUG
        @Test func aNodeMadeOffItsLoopTraps() async throws {
            let result = try await #require(processExitsWith: .failure, observing: [\.standardErrorContent]) {
                let host = try UDPHost.bind(PeerAddress(127, 0, 0, 1, port: 0))
                _ = DHTNode.alone(on: host)  // on the test's thread, not the host's event loop
            }
            #expect(String(decoding: result.standardErrorContent, as: UTF8.self).contains(Self.message))
        }

        /// What `LoopConfinement.assertInLoop` says when it traps.
        static let message = "called off the network loop"

        /// The same node made on its loop is fine (so the trap above is the thread, not the node).
        @Test func aNodeMadeOnItsLoopIsFine() throws {
            let host = try UDPHost.bind(PeerAddress(127, 0, 0, 1, port: 0))
            defer { host.close() }
            let id = try host.sync { () -> NodeID in
                let node = DHTNode.alone(on: host)
                defer { node.stop() }
                return node.id
            }
            #expect(id != NodeID.zero)
        }

        /// On the simulated network, a call from another thread while the network runs traps too.
        @Test func aSimulatedNodeCalledWhileAnotherThreadRunsTheNetworkTraps() async throws {
            let result = try await #require(processExitsWith: .failure, observing: [\.standardErrorContent]) {
                let net = SimNetwork(seed: 7)
                let node = DHTNode.alone(on: net.bind(PeerAddress(10, 0, 0, 1, port: 6881)))
                let started = DispatchSemaphore(value: 0)
                net.schedule(after: 1) {
                    started.signal()
                    Thread.sleep(forTimeInterval: 30)  // holds the run while the other thread calls in
                }
                // nonisolated(unsafe): handed to the other thread; this one only calls the node, which
                // is what must trap.
                nonisolated(unsafe) let handed = net
                Thread { _ = handed.runUntilIdle() }.start()
                started.wait()
                node.stop()
            }
            #expect(String(decoding: result.standardErrorContent, as: UTF8.self).contains(Self.message))
        }
    #endif
}
