import NIOCore
import NIOPosix
import NetCore

#if canImport(Glibc)
    import Glibc
#elseif canImport(Darwin)
    import Darwin
#endif

private func sysBind(_ fd: CInt, _ a: UnsafePointer<sockaddr>, _ len: socklen_t) -> CInt { bind(fd, a, len) }
private func sysClose(_ fd: CInt) { _ = close(fd) }

/// The sockets of one multicast group pair (BEP 14's 239.192.152.143:6771 and
/// [ff15::efc0:988f]:6771, docs/nat.md "LAN parties") on an event loop: what local service
/// discovery sends and hears, beside a `UDPHost`'s one unicast socket.
///
/// - **Receivers**: one socket per family bound to the group's port on every address, with
///   SO_REUSEADDR and SO_REUSEPORT, so that several processes on one machine (two turf players,
///   a BitTorrent client) all listen at once; each joins the group on every chosen interface
///   (SwiftNIO's `MulticastChannel.joinGroup(_:device:)`).
/// - **Senders**: one socket per chosen interface and family, its outgoing interface set
///   (`IP_MULTICAST_IF` / `IPV6_MULTICAST_IF`) and multicast loopback on, so a message goes out
///   of every LAN the machine is on (a LAN with no default route included) and other processes on
///   this machine hear it too. The TTL stays 1: the message never leaves the link.
///
/// Interfaces: by default every interface that supports multicast and is not loopback (at most
/// `maxInterfaces` per family); with none, loopback, so that two players on one offline machine
/// still find each other. `Config.interfaces` names them instead (tests use `lo`: nothing leaves
/// the machine). IPv6 is joined on interfaces with an IPv6 address, never on loopback (Linux has
/// no IPv6 multicast there). Anything that fails to open or join is counted and skipped; `open`
/// fails only when nothing could be opened at all.
///
/// Threads: `open` blocks (it is not called on the loop); everything else — `onReceive`, `send`,
/// `stats`, `close` — on the event loop.
// @unchecked Sendable: mutable state is touched only on `eventLoop` (asserted in debug builds).
public final class MulticastGroup: @unchecked Sendable {
    public struct Config: Sendable {
        /// The groups (nil: not that family).
        public var group4: PeerAddress?
        public var group6: PeerAddress?
        /// Interface names to use; nil: every multicast-capable non-loopback one (loopback if none).
        public var interfaces: [String]?
        /// Only the interface holding this address (a socket bound to one address is reachable
        /// there only: `--bind 127.0.0.1` means loopback).
        public var address: PeerAddress?

        public init(
            group4: PeerAddress?,
            group6: PeerAddress?,
            interfaces: [String]? = nil,
            address: PeerAddress? = nil
        ) {
            self.group4 = group4
            self.group6 = group6
            self.interfaces = interfaces
            self.address = address
        }
    }

    public struct Stats: Sendable, Equatable {
        public var received: UInt64 = 0
        public var sent: UInt64 = 0
        public var sendFailures: UInt64 = 0
        /// Datagrams on a sender socket (nobody should send there): dropped.
        public var strays: UInt64 = 0
        public var channelErrors: UInt64 = 0

        public init() {}
    }

    public static let maxInterfaces = 8

    public let eventLoop: EventLoop
    public let config: Config
    /// The interfaces joined, as `name` (IPv4) or `name/v6`.
    public let joined: [String]
    /// Joins and sender sockets that failed while opening.
    public let openFailures: Int
    /// Called on the loop for every datagram a receiver gets, with its source address.
    public var onReceive: (([UInt8], PeerAddress) -> Void)? {
        didSet { eventLoop.assertInEventLoop() }
    }
    public internal(set) var stats = Stats()
    private var receivers: [Channel] = []
    private var senders: [(channel: Channel, group: PeerAddress)] = []
    private var closed = false

    private init(
        eventLoop: EventLoop,
        config: Config,
        joined: [String],
        openFailures: Int,
        receivers: [Channel],
        senders: [(channel: Channel, group: PeerAddress)]
    ) {
        self.eventLoop = eventLoop
        self.config = config
        self.joined = joined
        self.openFailures = openFailures
        self.receivers = receivers
        self.senders = senders
    }

    public enum OpenError: Error, CustomStringConvertible {
        case nothingOpened(String)
        public var description: String {
            switch self {
            case .nothingOpened(let why): "no multicast socket could be opened (\(why))"
            }
        }
    }

    /// One interface to use: its name, index and an address of the family.
    struct Interface {
        var name: String
        var index: Int
        var address: SocketAddress
        var device: NIONetworkDevice
    }

    /// The interfaces to use per family, from what the system lists.
    static func choose(_ devices: [NIONetworkDevice], names: [String]?, address: PeerAddress?, v6: Bool) -> [Interface]
    {
        var out: [Interface] = []
        var seen = Set<Int>()
        func loopback(_ a: SocketAddress) -> Bool { PeerAddress(socketAddress: a)?.isLoopback ?? false }
        let candidates = devices.compactMap { d -> Interface? in
            guard let a = d.address else { return nil }
            switch a {
            case .v4 where !v6, .v6 where v6:
                return Interface(name: d.name, index: d.interfaceIndex, address: a, device: d)
            default: return nil
            }
        }
        let picked: [Interface]
        if let address {
            picked = candidates.filter { PeerAddress(socketAddress: $0.address)?.ipString == address.ipString }
        } else if let names {
            picked = candidates.filter { names.contains($0.name) && !(v6 && loopback($0.address)) }
        } else {
            let real = candidates.filter { $0.device.multicastSupported && !loopback($0.address) }
            picked = real.isEmpty && !v6 ? candidates.filter { loopback($0.address) } : real
        }
        for i in picked where out.count < maxInterfaces && seen.insert(i.index).inserted { out.append(i) }
        return out
    }

    /// Opens the receivers and senders on `loop` (blocking; not from the loop).
    public static func open(on loop: EventLoop, config: Config) throws -> MulticastGroup {
        precondition(!loop.inEventLoop, "MulticastGroup.open blocks: not on the event loop")
        let devices = (try? System.enumerateDevices()) ?? []
        let families: [(group: PeerAddress, ifaces: [Interface])] =
            (config.group4.map { [($0, choose(devices, names: config.interfaces, address: config.address, v6: false))] }
                ?? [])
            + (config.group6.map {
                [($0, choose(devices, names: config.interfaces, address: config.address, v6: true))]
            }
                ?? [])
        let handler = GroupHandler()
        var receivers: [Channel] = []
        var senders: [(Channel, PeerAddress)] = []
        var joined: [String] = []
        var failures = 0
        var lastError = "no interface"
        for (group, ifaces) in families where !ifaces.isEmpty {
            let receiver: Channel
            do {
                receiver = try channel(on: loop, fd: socket(bound: .any(like: group), reuse: true), handler: handler)
            } catch {
                failures += 1
                lastError = "\(error)"
                continue
            }
            let provider = receiver as? SocketOptionProvider
            var any = false
            for i in ifaces {
                do {
                    if i.device.multicastSupported {
                        try (receiver as? MulticastChannel)?.joinGroup(socketAddress(group), device: i.device).wait()
                    } else if case .v4(let g) = socketAddress(group), case .v4(let ia) = i.address {
                        // Loopback has no IFF_MULTICAST, which NIO's joinGroup refuses; Linux
                        // delivers a group joined there all the same (players on one machine).
                        let mreq = ip_mreq(imr_multiaddr: g.address.sin_addr, imr_interface: ia.address.sin_addr)
                        try provider?.unsafeSetSocketOption(level: .ip, name: .ip_add_membership, value: mreq).wait()
                    } else {
                        continue
                    }
                } catch {
                    failures += 1
                    lastError = "join on \(i.name): \(error)"
                    continue
                }
                do {
                    let sender = try channel(
                        on: loop,
                        fd: socket(bound: senderAddress(i, group: group), reuse: false),
                        handler: handler
                    )
                    if let p = sender as? SocketOptionProvider {
                        switch i.address {
                        case .v4(let ia):
                            try p.setIPMulticastIF(ia.address.sin_addr).wait()
                            try p.setIPMulticastLoop(1).wait()
                        default:
                            try p.setIPv6MulticastIF(CUnsignedInt(i.index)).wait()
                            try p.setIPv6MulticastLoop(1).wait()
                        }
                    }
                    senders.append((sender, group))
                    any = true
                    joined.append(group.isIPv6 ? "\(i.name)/v6" : i.name)
                } catch {
                    failures += 1
                    lastError = "sender on \(i.name): \(error)"
                }
            }
            if any { receivers.append(receiver) } else { try? receiver.close().wait() }
        }
        guard !receivers.isEmpty else {
            for (s, _) in senders { try? s.close().wait() }
            throw OpenError.nothingOpened(lastError)
        }
        let g = MulticastGroup(
            eventLoop: loop,
            config: config,
            joined: joined,
            openFailures: failures,
            receivers: receivers,
            senders: senders
        )
        let senderIDs = Set(senders.map { ObjectIdentifier($0.0) })
        try loop.submit {
            handler.owner = g
            handler.senders = senderIDs
        }.wait()
        return g
    }

    /// Sends `payload` to the group out of every interface (both families). On the loop.
    public func send(_ payload: [UInt8]) {
        eventLoop.assertInEventLoop()
        guard !closed, payload.count <= maxUDPDatagram else { return }
        for (ch, group) in senders {
            var buffer = ch.allocator.buffer(capacity: payload.count)
            buffer.writeBytes(payload)
            stats.sent += 1
            let promise = eventLoop.makePromise(of: Void.self)
            promise.futureResult.whenFailure { [weak self] _ in self?.stats.sendFailures += 1 }
            ch.writeAndFlush(
                AddressedEnvelope(remoteAddress: Self.socketAddress(group), data: buffer),
                promise: promise
            )
        }
    }

    /// Closes every socket; idempotent. On the loop.
    public func close() {
        eventLoop.assertInEventLoop()
        guard !closed else { return }
        closed = true
        onReceive = nil
        for ch in receivers { ch.close(promise: nil) }
        for (ch, _) in senders { ch.close(promise: nil) }
        receivers = []
        senders = []
    }

    fileprivate func received(_ bytes: [UInt8], from source: PeerAddress) {
        guard !closed else { return }
        stats.received += 1
        onReceive?(bytes, source)
    }

    static func socketAddress(_ a: PeerAddress) -> SocketAddress { UDPHost.socketAddress(a, mapped: false) }

    /// Where an interface's sender binds: its IPv4 address (so the source is that address), or
    /// `[::]` (an IPv6 link-local address would need its scope; IPV6_MULTICAST_IF picks the link).
    static func senderAddress(_ i: Interface, group: PeerAddress) -> PeerAddress {
        guard !group.isIPv6, let a = PeerAddress(socketAddress: i.address) else { return .any(like: group) }
        return a.with(port: 0)
    }

    /// A UDP socket bound to `address`, close-on-exec; with `reuse`, SO_REUSEADDR and
    /// SO_REUSEPORT (set before the bind, as they must be), so others may bind the port too. An
    /// IPv6 socket is IPv6 only (the IPv4 group has its own socket).
    static func socket(bound address: PeerAddress, reuse: Bool) throws -> CInt {
        let family = address.isIPv6 ? AF_INET6 : AF_INET
        #if os(Linux)
            let fd = Glibc.socket(family, Int32(SOCK_DGRAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        #else
            let fd = Darwin.socket(family, SOCK_DGRAM, 0)
            if fd >= 0 { _ = fcntl(fd, F_SETFD, FD_CLOEXEC) }
        #endif
        guard fd >= 0 else { throw IOError(errnoCode: errno, reason: "socket") }
        var one: CInt = 1
        let size = socklen_t(MemoryLayout<CInt>.size)
        if reuse {
            _ = setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, size)
            _ = setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, size)
        }
        if address.isIPv6 { _ = setsockopt(fd, CInt(IPPROTO_IPV6), IPV6_V6ONLY, &one, size) }
        let rc = UDPHost.withSockaddr(address) { sysBind(fd, $0, $1) }
        guard rc == 0 else {
            let e = errno
            sysClose(fd)
            throw IOError(errnoCode: e, reason: "bind \(address)")
        }
        return fd
    }

    static func channel(on loop: EventLoop, fd: CInt, handler: GroupHandler) throws -> Channel {
        try UDPHost.datagramChannel(on: loop, fd: fd, handler: handler).wait()
    }
}

extension PeerAddress {
    /// The unspecified address of `other`'s family, at its port.
    fileprivate static func any(like other: PeerAddress) -> PeerAddress {
        other.isIPv6 ? PeerAddress(ip6: .any, port: other.port) : PeerAddress(ip: 0, port: other.port)
    }
}

/// Hands the receivers' datagrams to the group and swallows every error (one shared instance;
/// NIO runs its callbacks on the loop).
// @unchecked Sendable: `owner` and `senders` are written once on the loop before the group is
// handed out, and read only in the callbacks, on the loop.
final class GroupHandler: ChannelInboundHandler, @unchecked Sendable {
    typealias InboundIn = AddressedEnvelope<ByteBuffer>
    weak var owner: MulticastGroup?
    var senders = Set<ObjectIdentifier>()

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        context.eventLoop.assertInEventLoop()
        guard let owner else { return }
        guard !senders.contains(ObjectIdentifier(context.channel)) else {
            owner.stats.strays += 1
            return
        }
        let envelope = unwrapInboundIn(data)
        guard let source = PeerAddress(socketAddress: envelope.remoteAddress) else { return }
        owner.received(
            envelope.data.getBytes(at: envelope.data.readerIndex, length: envelope.data.readableBytes) ?? [],
            from: source
        )
    }

    func errorCaught(context: ChannelHandlerContext, error: Error) {
        context.eventLoop.assertInEventLoop()
        owner?.stats.channelErrors += 1
    }
}
