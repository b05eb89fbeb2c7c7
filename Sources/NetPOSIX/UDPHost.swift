import NIOCore
import NIOPosix
import NetCore

#if canImport(Glibc)
    import Glibc
#elseif canImport(Darwin)
    import Darwin
#endif

// The C functions, where UDPHost's own `bind` and `close` hide them.
private func sysBind(_ fd: CInt, _ a: UnsafePointer<sockaddr>, _ len: socklen_t) -> CInt { bind(fd, a, len) }
private func sysClose(_ fd: CInt) { _ = close(fd) }

/// The real `NetworkHost`: one bound, unconnected UDP socket on a SwiftNIO event loop.
///
/// Bound to `[::]` (`PeerAddress.anyDualStack`) it is one dual-stack socket: IPv6 peers, and IPv4
/// peers as `::ffff:a.b.c.d`, which it hands on and takes as plain IPv4 addresses. Where the
/// system has no IPv6 it falls back to `0.0.0.0` (IPv4 only). Bound to one address it speaks that
/// address's family; a send to the other family is dropped and counted.
///
/// Everything a component does with the host happens on `eventLoop`: `onReceive` is called there,
/// timers fire there, and `send` from another thread hops there. Sends to closed ports, non-IPv4
/// datagrams and write failures are dropped and counted; none of them stops the receive loop.
///
/// Threads: `send`, `sync`, `execute`, `close` and the `let`s may be used from any thread; everything
/// else (`onReceive`, `stats`, `schedule`, `isActive`) on `eventLoop` only. Code on another thread
/// reaches loop-confined objects through `sync`/`execute` (or a `NetworkMailbox`).
// @unchecked Sendable: mutable state is touched only on `eventLoop` (asserted in debug builds);
// the methods meant for other threads hop there first.
public final class UDPHost: NetworkHost, LoopExecutor, @unchecked Sendable {
    public struct Stats: Sendable, Equatable {
        public var received: UInt64 = 0
        public var sent: UInt64 = 0
        /// Errors raised on the channel (ICMP port unreachable and the like), swallowed.
        public var channelErrors: UInt64 = 0
        /// Sends that failed (no route, buffer full, refused), swallowed.
        public var sendFailures: UInt64 = 0
        /// Datagrams from a source of no IP family, dropped.
        public var unsupportedSources: UInt64 = 0
        /// Sends to an address of a family the socket cannot reach (IPv6 from an IPv4 socket), dropped.
        public var unreachableFamily: UInt64 = 0
        /// Sends larger than `maxDatagram`, dropped.
        public var oversizedSends: UInt64 = 0
        /// IPv6 datagrams from an address this socket had not sent to lately: what a stateful
        /// firewall in front of it would have dropped, so one of them shows inbound IPv6 is open.
        public var unsolicitedIPv6: UInt64 = 0
        /// IPv4 datagrams from a public address this socket had not sent to lately: the NAT in front
        /// lets strangers in on our mapping (no NAT, or one that filters by nothing), so others
        /// can reach a relay here (docs/nat.md, "Players relay for each other").
        public var unsolicitedIPv4: UInt64 = 0
        /// Times the socket was closed by an error and bound again on the same address.
        public var rebinds: UInt64 = 0
        public var rebindFailures: UInt64 = 0
    }

    /// turf never sends datagrams larger than this, and the receive buffer is larger still, so
    /// nothing is silently truncated (NIO does not check MSG_TRUNC).
    public static let maxDatagram = maxUDPDatagram
    static let receiveBufferSize = 2048

    public let eventLoop: EventLoop
    public let localAddress: PeerAddress
    public var onReceive: (([UInt8], PeerAddress) -> Void)? {
        didSet { assertInLoop() }
    }
    /// Read only on the event loop.
    public internal(set) var stats = Stats()

    /// Replaced by a fresh socket on the same address if the channel ever closes under us.
    /// Internal for the rebind test.
    var channel: Channel
    private let group: EventLoopGroup
    private let ownedGroup: MultiThreadedEventLoopGroup?
    private var closing = false
    /// Destinations whose datagrams leave through an auxiliary socket instead (the birthday
    /// method's winning socket, docs/nat.md); see `route(_:via:)` in UDPHost+Auxiliary.swift.
    var routes: [PeerAddress: AuxiliarySocket] = [:]
    /// IPv6 addresses sent to lately (forgotten all at once past `maxContacted`), for
    /// `stats.unsolicitedIPv6`.
    private var contactedIPv6 = Set<PeerAddress>()
    static let maxContacted = 4096
    /// IPv4 addresses sent to lately, in two generations (the older one kept while the newer one
    /// fills up to `maxContacted`, so a late answer is not taken for a stranger), for
    /// `stats.unsolicitedIPv4`.
    private var contactedIPv4 = (now: Set<PeerAddress>(), before: Set<PeerAddress>())

    private init(
        channel: Channel,
        localAddress: PeerAddress,
        group: EventLoopGroup,
        ownedGroup: MultiThreadedEventLoopGroup?
    ) {
        self.channel = channel
        self.eventLoop = channel.eventLoop
        self.localAddress = localAddress
        self.group = group
        self.ownedGroup = ownedGroup
    }

    /// Binds a UDP socket on `address` (port 0 picks a free port). With no `group`, the host owns a
    /// one-thread event loop group and shuts it down in `close()`. Blocks until bound.
    ///
    /// The socket never sets IP_RECVERR: Linux then keeps ICMP errors (port unreachable after a
    /// send to a closed port) away from an unconnected socket, which is what a peer that talks to
    /// many addresses through one socket wants. With IP_RECVERR the kernel queues every ICMP error
    /// on the socket's error queue, which SwiftNIO never drains, so it closes the channel on the
    /// next poll: half of the sends to a dead peer would cost a rebind and lose queued datagrams.
    public static func bind(_ address: PeerAddress, group: EventLoopGroup? = nil) throws -> UDPHost {
        let owned: MultiThreadedEventLoopGroup?
        let g: EventLoopGroup
        if let group {
            owned = nil
            g = group
        } else {
            let own = MultiThreadedEventLoopGroup(numberOfThreads: 1)
            owned = own
            g = own
        }
        let handler = ReceiveHandler()
        do {
            let loop = g.next()
            let channel: Channel
            do {
                channel = try makeChannel(on: loop, address: address, handler: handler).wait()
            } catch let e as IOError
                where address == .anyDualStack(port: address.port)
                && [EAFNOSUPPORT, EADDRNOTAVAIL, EPROTONOSUPPORT].contains(e.errnoCode)
            {
                // No IPv6 here (a kernel without it, a namespace with it disabled): IPv4 alone.
                channel = try makeChannel(on: loop, address: PeerAddress(ip: 0, port: address.port), handler: handler)
                    .wait()
            }
            guard let local = channel.localAddress.flatMap(PeerAddress.init(socketAddress:)) else {
                try? channel.close().wait()
                throw UDPHostError.unbound
            }
            let host = UDPHost(channel: channel, localAddress: local, group: g, ownedGroup: owned)
            try channel.eventLoop.submit { handler.host = host }.wait()
            return host
        } catch {
            try? owned?.syncShutdownGracefully()
            throw error
        }
    }

    private static func makeChannel(
        on loop: EventLoop,
        address: PeerAddress,
        handler: ReceiveHandler
    ) -> EventLoopFuture<Channel> {
        // No SO_REUSEADDR: on Linux it would let another process bind the same UDP port and take
        // our unicast traffic. Rebinding after our own socket closed works without it (UDP has no
        // TIME_WAIT), as long as no child process inherited the socket: hence close-on-exec.
        let fd: CInt
        do { fd = try boundSocket(address) } catch { return loop.makeFailedFuture(error) }
        return datagramChannel(on: loop, fd: fd, handler: handler)
    }

    /// A SwiftNIO datagram channel on the bound socket `fd`, its receive buffer `receiveBufferSize`
    /// (larger than any datagram turf sends: NIO does not check MSG_TRUNC) and `handler` its only
    /// handler: the main socket, the birthday method's auxiliary ones, the LAN discovery groups.
    static func datagramChannel<H: ChannelInboundHandler & Sendable>(
        on loop: EventLoop,
        fd: CInt,
        handler: H
    ) -> EventLoopFuture<Channel> {
        DatagramBootstrap(group: loop)
            .channelOption(
                ChannelOptions.recvAllocator,
                value: FixedSizeRecvByteBufferAllocator(capacity: receiveBufferSize)
            )
            .channelInitializer { ch in
                ch.eventLoop.makeCompletedFuture { try ch.pipeline.syncOperations.addHandler(handler) }
            }
            .withBoundSocket(fd)
    }

    /// A UDP socket bound to `address`, close-on-exec (NIO's own sockets are not: a process the
    /// program starts would keep the port bound after we close it). An IPv6 socket bound to `::`
    /// is dual-stack (IPV6_V6ONLY off); bound to one IPv6 address it is IPv6 only.
    static func boundSocket(_ address: PeerAddress) throws -> CInt {
        let family = address.isIPv6 ? AF_INET6 : AF_INET
        #if os(Linux)
            let fd = socket(family, Int32(SOCK_DGRAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        #else
            let fd = socket(family, SOCK_DGRAM, 0)
            if fd >= 0 { _ = fcntl(fd, F_SETFD, FD_CLOEXEC) }
        #endif
        guard fd >= 0 else { throw IOError(errnoCode: errno, reason: "socket") }
        if let ip6 = address.ip6 {
            var v6only: CInt = ip6.isUnspecified ? 0 : 1
            _ = setsockopt(fd, CInt(IPPROTO_IPV6), IPV6_V6ONLY, &v6only, socklen_t(MemoryLayout<CInt>.size))
        }
        let rc = UDPHost.withSockaddr(address) { sysBind(fd, $0, $1) }
        guard rc == 0 else {
            let e = errno
            sysClose(fd)
            throw IOError(errnoCode: e, reason: "bind \(address)")
        }
        return fd
    }

    /// The channel closed without `close()`: bind a new socket on the same address and port.
    fileprivate func channelDied(_ handler: ReceiveHandler) {
        assertInLoop()
        guard !closing else { return }
        UDPHost.makeChannel(on: eventLoop, address: localAddress, handler: handler).whenComplete { result in
            switch result {
            case .success(let ch):
                if self.closing {
                    ch.close(promise: nil)
                    return
                }
                self.channel = ch
                self.stats.rebinds += 1
            case .failure:
                self.stats.rebindFailures += 1
            }
        }
    }

    // MARK: DatagramSocket

    public func send(_ payload: [UInt8], to destination: PeerAddress) {
        guard eventLoop.inEventLoop else {
            eventLoop.execute { self.send(payload, to: destination) }
            return
        }
        assertInLoop()
        guard payload.count <= UDPHost.maxDatagram else {
            stats.oversizedSends += 1
            return
        }
        guard isDualStack || destination.isIPv6 == localAddress.isIPv6 else {
            stats.unreachableFamily += 1
            return
        }
        if destination.isIPv6 {
            if contactedIPv6.count >= UDPHost.maxContacted { contactedIPv6.removeAll(keepingCapacity: true) }
            contactedIPv6.insert(destination)
        } else if !contactedIPv4.now.contains(destination) {
            if contactedIPv4.now.count >= UDPHost.maxContacted { contactedIPv4 = ([], contactedIPv4.now) }
            contactedIPv4.now.insert(destination)
        }
        let out = routedChannel(destination) ?? channel
        var buffer = out.allocator.buffer(capacity: payload.count)
        buffer.writeBytes(payload)
        let envelope = AddressedEnvelope(remoteAddress: socketAddress(destination), data: buffer)
        stats.sent += 1
        let promise = eventLoop.makePromise(of: Void.self)
        promise.futureResult.whenFailure { [weak self] _ in self?.stats.sendFailures += 1 }
        out.writeAndFlush(envelope, promise: promise)
    }

    /// Whether the socket is open (on the event loop).
    public var isActive: Bool { channel.isActive }

    // MARK: Scheduler

    /// Monotonic nanoseconds (CLOCK_MONOTONIC, via NIO's deadline clock).
    public var now: Nanos { monotonicNanos() }

    public var isInLoop: Bool { eventLoop.inEventLoop }

    /// On the event loop only (a precondition, in release builds too: `action` is not Sendable).
    @discardableResult
    public func schedule(after delay: Nanos, _ action: @escaping () -> Void) -> TimerToken {
        let clamped = Int64(min(delay, Nanos(Int64.max)))
        let task = eventLoop.assumeIsolated().scheduleTask(in: .nanoseconds(clamped)) { action() }
        return TimerToken { task.cancel() }
    }

    // MARK: life cycle

    /// Runs `body` on the host's event loop and waits for its result. Must not be called from the
    /// event loop itself. Loop-confined objects travel in and out of `body` in a `NIOLoopBound`.
    public func sync<T: Sendable>(_ body: @escaping @Sendable () throws -> T) throws -> T {
        try eventLoop.submit(body).wait()
    }

    /// Runs `body` on the host's event loop without waiting, after the work posted before it.
    public func execute(_ body: @escaping @Sendable () -> Void) {
        eventLoop.execute(body)
    }

    /// Closes the socket (and the owned event loop group, if any). Not from the event loop.
    public func close() {
        let ch = try? eventLoop.submit { () -> Channel in
            self.closing = true
            for s in self.routes.values { s.close() }
            self.routes = [:]
            return self.channel
        }.wait()
        try? ch?.close().wait()
        try? ownedGroup?.syncShutdownGracefully()
    }

    /// Whether the socket is a dual-stack IPv6 one (bound to `::`).
    public var isDualStack: Bool { localAddress.ip6?.isUnspecified == true }

    /// Where a datagram to `a` goes from this socket: IPv4 destinations of a dual-stack socket
    /// as `::ffff:a.b.c.d`.
    func socketAddress(_ a: PeerAddress) -> SocketAddress {
        UDPHost.socketAddress(a, mapped: isDualStack)
    }

    static func socketAddress(_ a: PeerAddress, mapped: Bool) -> SocketAddress {
        if a.isIPv6 || mapped {
            var sin6 = sockaddr_in6()
            sin6.sin6_family = sa_family_t(AF_INET6)
            sin6.sin6_port = a.port.bigEndian
            let bytes = (a.ip6 ?? IPv6Address(mapping: a.ip)).bytes
            withUnsafeMutableBytes(of: &sin6.sin6_addr) { raw in
                for (i, b) in bytes.enumerated() { raw[i] = b }
            }
            return SocketAddress(sin6, host: "")
        }
        var sin = sockaddr_in()
        sin.sin_family = sa_family_t(AF_INET)
        sin.sin_port = a.port.bigEndian
        sin.sin_addr.s_addr = a.ip.bigEndian
        return SocketAddress(sin, host: "")
    }

    /// Calls `body` with `a` as a `sockaddr` and its length (for `bind`).
    static func withSockaddr<T>(_ a: PeerAddress, _ body: (UnsafePointer<sockaddr>, socklen_t) -> T) -> T {
        switch socketAddress(a, mapped: false) {
        case .v6(let v6):
            var sin6 = v6.address
            return withUnsafePointer(to: &sin6) {
                $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                    body($0, socklen_t(MemoryLayout<sockaddr_in6>.size))
                }
            }
        case .v4(let v4):
            var sin = v4.address
            return withUnsafePointer(to: &sin) {
                $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                    body($0, socklen_t(MemoryLayout<sockaddr_in>.size))
                }
            }
        case .unixDomainSocket:
            preconditionFailure("a PeerAddress is never a Unix socket")
        }
    }

    fileprivate func received(_ envelope: AddressedEnvelope<ByteBuffer>) {
        assertInLoop()
        guard let source = PeerAddress(socketAddress: envelope.remoteAddress) else {
            stats.unsupportedSources += 1
            return
        }
        stats.received += 1
        if source.isIPv6 {
            if !contactedIPv6.contains(source) { stats.unsolicitedIPv6 += 1 }
        } else if !source.isPrivate, !contactedIPv4.now.contains(source), !contactedIPv4.before.contains(source) {
            // From the internet only: a LAN neighbour reaches us without crossing the NAT.
            stats.unsolicitedIPv4 += 1
        }
        let bytes = envelope.data.getBytes(at: envelope.data.readerIndex, length: envelope.data.readableBytes) ?? []
        onReceive?(bytes, source)
    }
}

public enum UDPHostError: Error, CustomStringConvertible {
    case unbound
    public var description: String { "the UDP socket is not bound to an IP address" }
}

extension PeerAddress {
    /// `[::]:port`: a dual-stack socket (`UDPHost.bind` falls back to `0.0.0.0:port` without IPv6).
    public static func anyDualStack(port: UInt16) -> PeerAddress { PeerAddress(ip6: .any, port: port) }

    /// A socket address as a peer address (IPv4-mapped IPv6 as IPv4); nil for a Unix socket.
    public init?(socketAddress: SocketAddress) {
        switch socketAddress {
        case .v4(let a):
            self.init(ip: UInt32(bigEndian: a.address.sin_addr.s_addr), port: UInt16(bigEndian: a.address.sin_port))
        case .v6(let a):
            var sin6 = a.address
            let bytes = withUnsafeBytes(of: &sin6.sin6_addr) { Array($0) }
            guard let ip6 = IPv6Address(bytes: bytes) else { return nil }
            self.init(ip6: ip6, port: UInt16(bigEndian: sin6.sin6_port))
        case .unixDomainSocket:
            return nil
        }
    }
}

/// Hands datagrams to the host and swallows every error, so the channel is never closed by one.
/// The same instance is added to each replacement channel (all made on the host's event loop).
// @unchecked Sendable: `host` is written once on the event loop before the first read, and read only
// in the handler callbacks, which NIO runs on that loop (asserted in debug builds).
private final class ReceiveHandler: ChannelInboundHandler, @unchecked Sendable {
    typealias InboundIn = AddressedEnvelope<ByteBuffer>
    weak var host: UDPHost?

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        context.eventLoop.assertInEventLoop()
        host?.received(unwrapInboundIn(data))
    }

    func channelInactive(context: ChannelHandlerContext) {
        context.eventLoop.assertInEventLoop()
        host?.channelDied(self)
    }

    func errorCaught(context: ChannelHandlerContext, error: Error) {
        context.eventLoop.assertInEventLoop()
        host?.stats.channelErrors += 1
        // Not forwarded: the tail of the pipeline would only log it, and nothing here should close.
    }
}
