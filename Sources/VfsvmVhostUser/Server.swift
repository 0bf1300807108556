import Glibc
import Synchronization
import VfsvmMemory
import VfsvmSys

/// A vhost-user back-end: accepts front-end connections (QEMU,
/// cloud-hypervisor, libvirt) on a listening unix socket and serves one at
/// a time, driving a `VhostUserDevice`.
///
/// A malformed or unsupported message ends the connection: the server logs
/// one line saying what the front-end sent, closes its fds, resets the
/// device and drops the guest memory. It never trusts a size, index, count
/// or address from the socket.
public final class VhostUserBackendServer: Sendable {
    public let device: any VhostUserDevice
    private let listener: FileDescriptor?
    private let stopEvent: EventFD
    /// The connection being served, so `stop()` can cut a read that a
    /// stalling front-end left half done.
    private let current = Mutex<FileDescriptor?>(nil)
    private let log: @Sendable (String) -> Void
    /// Protocol features offered (a subset of `VhostUserProtocolFeature.supported`).
    public let protocolFeatures: UInt64

    /// How `run` treats connections.
    public enum Policy: Sendable {
        /// Return when the first connection ends (virtiofsd's behaviour,
        /// which libvirt relies on).
        case oneConnection
        /// Wait for the next front-end after each disconnect, until `stop()`.
        case untilStopped
    }

    /// Why a connection ended.
    public enum Disconnect: Equatable, Sendable {
        /// The front-end closed the socket.
        case peerClosed
        /// `stop()` was called.
        case stopped
        /// The front-end sent something the server refused.
        case protocolError(VhostUserError)
    }

    /// Serves on `listener`, a socket already listening (or none: only
    /// `serve(connection:)` is then usable). `protocolFeatures` is the offer
    /// made in GET_PROTOCOL_FEATURES; bits this back-end does not implement
    /// are dropped from it.
    public init(device: any VhostUserDevice, listener: FileDescriptor?,
                protocolFeatures: UInt64 = VhostUserProtocolFeature.supported,
                log: @escaping @Sendable (String) -> Void = VhostUserBackendServer.logToStandardError) throws(VhostUserError) {
        if let listener, !UnixSocket.isListening(listener) {
            throw .system(SystemError("vhost-user: \(listener) is not a listening socket", .EINVAL))
        }
        self.device = device
        self.listener = listener
        self.protocolFeatures = protocolFeatures & VhostUserProtocolFeature.supported
        self.log = log
        // Before any sandbox or seccomp filter: the SIGBUS guard for guest
        // memory files the front-end might shrink.
        do { try GuestMemory.installTruncationGuard() } catch { throw .system(error) }
        do {
            stopEvent = try EventFD(nonBlocking: true)
        } catch {
            throw .system(error)
        }
    }

    /// Creates the listening socket at `path` (`--socket-path`), replacing a
    /// stale socket file.
    public convenience init(device: any VhostUserDevice, socketPath path: String,
                            protocolFeatures: UInt64 = VhostUserProtocolFeature.supported,
                            log: @escaping @Sendable (String) -> Void = VhostUserBackendServer.logToStandardError) throws(VhostUserError) {
        let fd: FileDescriptor
        do { fd = try UnixSocket.listen(path: path) } catch { throw .system(error) }
        try self.init(device: device, listener: fd, protocolFeatures: protocolFeatures, log: log)
    }

    /// Serves on an inherited listening fd (`--fd N`, passed by libvirt).
    /// Takes ownership of `rawFD`.
    public convenience init(device: any VhostUserDevice, inheritedFD rawFD: Int32,
                            protocolFeatures: UInt64 = VhostUserProtocolFeature.supported,
                            log: @escaping @Sendable (String) -> Void = VhostUserBackendServer.logToStandardError) throws(VhostUserError) {
        guard rawFD >= 0 else { throw .system(SystemError("vhost-user: --fd \(rawFD)", .EBADF)) }
        try self.init(device: device, listener: FileDescriptor(owning: rawFD), protocolFeatures: protocolFeatures, log: log)
    }

    public static let logToStandardError: @Sendable (String) -> Void = { line in
        logLine("vfsvm: " + line)
    }

    /// Makes `run` and `serve(connection:)` return (from any thread),
    /// dropping the current connection cleanly. Stays in effect.
    public func stop() {
        // An eventfd write fails only when the counter would overflow, and
        // then the server is woken already.
        try? stopEvent.signal()
        current.withLock { $0?.shutdownSocket() }
    }

    private var stopRequested: Bool {
        (try? pollReadable([stopEvent.fd], timeoutMilliseconds: 0)) == [true]
    }

    /// Accepts front-ends and serves them one at a time, per `policy`.
    /// Returns the last connection's end (nil when stopped before any).
    @discardableResult
    public func run(_ policy: Policy) throws(VhostUserError) -> Disconnect? {
        guard let listener else {
            throw .system(SystemError("vhost-user: no listening socket", .EBADF))
        }
        var last: Disconnect?
        while true {
            let ready: [Bool]
            do { ready = try pollReadable([listener, stopEvent.fd]) } catch { throw .system(error) }
            if ready[1] { return last ?? .stopped }
            guard ready[0] else { continue }
            let connection: FileDescriptor
            do {
                connection = try listener.accept()
            } catch where error.errno == Errno(rawValue: ECONNABORTED) || error.errno == .EAGAIN {
                continue
            } catch {
                throw .system(error)
            }
            let end = serve(connection: connection)
            last = end
            if end == .stopped || policy == .oneConnection { return end }
        }
    }

    /// Serves one connected front-end until it disconnects, sends something
    /// refused, or `stop()` is called. The device is reset and the memory
    /// dropped before this returns.
    public func serve(connection: FileDescriptor) -> Disconnect {
        let session = VhostUserSession(device: device, protocolFeatures: protocolFeatures)
        current.withLock { $0 = connection }
        // stop() may have come before the connection was published.
        if stopRequested { connection.shutdownSocket() }
        var end = loop(session, connection)
        current.withLock { $0 = nil }
        if stopRequested { end = .stopped }
        session.resetDevice()
        connection.shutdownSocket()
        switch end {
        case .peerClosed: log("vhost-user: front-end disconnected")
        case .stopped: log("vhost-user: stopped")
        case let .protocolError(e): log("vhost-user: dropping front-end: \(e)")
        }
        return end
    }

    private func loop(_ session: VhostUserSession, _ connection: FileDescriptor) -> Disconnect {
        while true {
            do {
                let ready = try pollReadable([connection, stopEvent.fd])
                if ready[1] { return .stopped }
                guard ready[0] else { continue }
            } catch {
                return .protocolError(.system(error))
            }
            let message: VhostUserMessage
            do {
                guard let m = try readMessage(connection) else { return .peerClosed }
                message = m
            } catch {
                return .protocolError(error)
            }
            do {
                switch try session.handle(message) {
                case .none:
                    if message.needsReply && session.replyAckNegotiated {
                        try send(connection, message.request, ack(success: true))
                    }
                case let .reply(payload):
                    try send(connection, message.request, payload)
                case let .refused(why):
                    log("vhost-user: refused \(message.request): \(why)")
                    if message.needsReply && session.replyAckNegotiated {
                        try send(connection, message.request, ack(success: false))
                    }
                }
            } catch {
                if message.needsReply && session.replyAckNegotiated {
                    // Best effort: the connection is dropped either way.
                    try? send(connection, message.request, ack(success: false))
                }
                return .protocolError(error)
            }
        }
    }

    // MARK: - Wire

    /// Reads one message: header (with any fds), checks, payload. Nil when
    /// the front-end closed the socket between messages.
    private func readMessage(_ connection: FileDescriptor) throws(VhostUserError) -> VhostUserMessage? {
        var header: [UInt8]
        let first: ReceivedMessage
        do {
            (header, first) = try connection.receive(upTo: VhostUserConstants.headerSize,
                                                     maxFDs: VhostUserConstants.maxMemoryRegions)
        } catch {
            throw .system(error)
        }
        if first.count == 0 { return nil }
        if first.count < VhostUserConstants.headerSize {
            let rest: [UInt8]?
            do { rest = try connection.readExactly(VhostUserConstants.headerSize - first.count) } catch { throw .system(error) }
            guard let rest else { throw .truncatedMessage("connection closed inside a header") }
            header += rest
        }
        var r = PayloadReader(header)
        let rawRequest = r.u32(), flags = r.u32(), size = r.u32()

        guard flags & VhostUserFlags.versionMask == VhostUserFlags.version else { throw .badVersion(flags: flags) }
        guard flags & ~(VhostUserFlags.versionMask | VhostUserFlags.needReply) == 0 else {
            throw .badFlags(request: rawRequest, flags: flags)
        }
        guard let request = VhostUserRequest(rawValue: rawRequest) else { throw .unknownRequest(rawRequest) }
        guard !first.fdsTruncated else { throw .tooManyFDs(request) }
        guard size <= UInt32(VhostUserConstants.maxPayloadSize) else {
            throw .payloadTooLarge(request: rawRequest, size: size)
        }
        var payload: [UInt8] = []
        if size > 0 {
            let bytes: [UInt8]?
            do { bytes = try connection.readExactly(Int(size)) } catch { throw .system(error) }
            guard let bytes else { throw .truncatedMessage("connection closed before the \(size)-byte payload of \(request)") }
            payload = bytes
        }
        return VhostUserMessage(request: request, flags: flags, payload: payload, fds: first.fds)
    }

    private func send(_ connection: FileDescriptor, _ request: VhostUserRequest, _ payload: [UInt8]) throws(VhostUserError) {
        let bytes = encodeMessage(request: request.rawValue, flags: VhostUserFlags.version | VhostUserFlags.reply,
                                  payload: payload)
        do { try connection.send(bytes) } catch { throw .system(error) }
    }

    private func ack(success: Bool) -> [UInt8] {
        var w = PayloadWriter()
        w.u64(success ? 0 : 1)
        return w.bytes
    }
}
