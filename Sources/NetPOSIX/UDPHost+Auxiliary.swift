import NIOCore
import NIOPosix
import NetCore

/// An extra UDP socket on a `UDPHost`'s event loop, for a short while: the birthday method's
/// random side opens many of them so that its NAT maps many ports towards one peer (docs/nat.md).
///
/// It has no demultiplexer of its own: whoever opens it passes what it receives on (the birthday
/// code hands it to the host's one demultiplexer, so sessions keep one receive path), and once a
/// destination is routed through it (`UDPHost.route(_:via:)`) everything the host sends there
/// leaves through this socket, from its NAT mapping. Confined to the host's event loop.
public final class AuxiliarySocket {
    public typealias Receiver = (_ payload: [UInt8], _ source: PeerAddress, _ socket: AuxiliarySocket) -> Void

    /// The bound address (port resolved).
    public let localAddress: PeerAddress
    let channel: Channel
    var dualStack: Bool { localAddress.ip6?.isUnspecified == true }
    public private(set) var isClosed = false
    public private(set) var received: UInt64 = 0
    public private(set) var sent: UInt64 = 0

    init(channel: Channel, localAddress: PeerAddress) {
        self.channel = channel
        self.localAddress = localAddress
    }

    /// Sends one datagram from this socket (dropped when closed or larger than `UDPHost.maxDatagram`).
    public func send(_ payload: [UInt8], to destination: PeerAddress) {
        channel.eventLoop.assertInEventLoop()
        guard !isClosed, payload.count <= UDPHost.maxDatagram else { return }
        var buffer = channel.allocator.buffer(capacity: payload.count)
        buffer.writeBytes(payload)
        sent += 1
        channel.writeAndFlush(
            AddressedEnvelope(remoteAddress: UDPHost.socketAddress(destination, mapped: dualStack), data: buffer),
            promise: nil
        )
    }

    /// Closes the socket; idempotent.
    public func close() {
        channel.eventLoop.assertInEventLoop()
        guard !isClosed else { return }
        isClosed = true
        channel.close(promise: nil)
    }

    fileprivate func countReceived() { received += 1 }
}

extension UDPHost {
    /// Opens an auxiliary socket on this host's IP, any free port, on the event loop. `done` runs
    /// on the loop with the socket, or nil when it could not be bound (out of descriptors, say).
    /// `onReceive` runs on the loop for every datagram the socket receives while open.
    public func openAuxiliary(onReceive: @escaping AuxiliarySocket.Receiver, done: @escaping (AuxiliarySocket?) -> Void)
    {
        assertInLoop()
        let fd: CInt
        do { fd = try UDPHost.boundSocket(localAddress.with(port: 0)) } catch {
            done(nil)
            return
        }
        let handler = AuxiliaryHandler(onReceive: onReceive)
        let loop = eventLoop
        UDPHost.datagramChannel(on: eventLoop, fd: fd, handler: handler)
            .hop(to: loop)
            .assumeIsolated()
            .whenComplete { result in
                guard case .success(let ch) = result,
                    let bound = ch.localAddress.flatMap(PeerAddress.init(socketAddress:))
                else {
                    if case .success(let ch) = result { ch.close(promise: nil) }
                    done(nil)
                    return
                }
                let socket = AuxiliarySocket(channel: ch, localAddress: bound)
                handler.socket = socket
                done(socket)
            }
    }

    /// From now on, datagrams to `destination` leave through `socket` (nil: the main socket
    /// again). A closed socket's routes fall back to the main socket. On the event loop.
    public func route(_ destination: PeerAddress, via socket: AuxiliarySocket?) {
        assertInLoop()
        routes[destination] = socket
    }

    /// The channel `send` uses for `destination`, when it is routed through an open auxiliary socket.
    func routedChannel(_ destination: PeerAddress) -> Channel? {
        guard !routes.isEmpty, let s = routes[destination] else { return nil }
        guard !s.isClosed else {
            routes[destination] = nil
            return nil
        }
        return s.channel
    }
}

/// Passes an auxiliary socket's datagrams on and swallows its errors (a closed auxiliary socket
/// is never rebound: it only lives for a punch).
// @unchecked Sendable: created and used only on the host's event loop (NIO runs the callbacks there).
private final class AuxiliaryHandler: ChannelInboundHandler, @unchecked Sendable {
    typealias InboundIn = AddressedEnvelope<ByteBuffer>
    let onReceive: AuxiliarySocket.Receiver
    var socket: AuxiliarySocket?

    init(onReceive: @escaping AuxiliarySocket.Receiver) { self.onReceive = onReceive }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        context.eventLoop.assertInEventLoop()
        let envelope = unwrapInboundIn(data)
        guard let socket, !socket.isClosed, let source = PeerAddress(socketAddress: envelope.remoteAddress) else {
            return
        }
        socket.countReceived()
        onReceive(
            envelope.data.getBytes(at: envelope.data.readerIndex, length: envelope.data.readableBytes) ?? [],
            source,
            socket
        )
    }

    func errorCaught(context: ChannelHandlerContext, error: Error) {}
}
