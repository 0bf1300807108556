import Glibc
import VfsvmMemory
import VfsvmSys
import VfsvmVhostUser
import VfsvmVirtio

// The front-end's half of the vhost-user protocol, for tests and for the
// bench-backend load generator: real messages on a unix socket (fds as
// SCM_RIGHTS), memfd guest RAM, message payload builders.

/// One message read back from the back-end.
public struct VhostUserReply: Equatable, Sendable {
    public var request: UInt32
    public var flags: UInt32
    public var payload: [UInt8]

    public init(request: UInt32, flags: UInt32, payload: [UInt8]) {
        self.request = request
        self.flags = flags
        self.payload = payload
    }
}

/// What went wrong talking to a back-end, in one sentence.
public struct FrontendError: Error, CustomStringConvertible {
    public let description: String
    public init(_ description: String) { self.description = description }
}

/// The front-end's side: sends real vhost-user messages (fds as
/// SCM_RIGHTS) and reads replies.
public final class MockFrontend {
    public let socket: FileDescriptor

    public init(socket: FileDescriptor) { self.socket = socket }

    public func send(_ request: UInt32, flags: UInt32 = 0x1, payload: [UInt8] = [], fds: [FileDescriptor] = [],
                     announcedSize: UInt32? = nil) throws {
        var bytes = le32(request) + le32(flags) + le32(announcedSize ?? UInt32(payload.count))
        bytes += payload
        try socket.send(bytes, fds: fds)
    }

    public func send(_ request: VhostUserRequest, needReply: Bool = false, payload: [UInt8] = [],
                     fds: [FileDescriptor] = []) throws {
        try send(request.rawValue, flags: needReply ? 0x9 : 0x1, payload: payload, fds: fds)
    }

    /// The next reply, or nil when the back-end closed the connection.
    public func reply() throws -> VhostUserReply? {
        guard let header = try socket.readExactly(12) else { return nil }
        let size = Int(u32(header, 8))
        let payload = size == 0 ? [] : (try socket.readExactly(size) ?? [])
        return VhostUserReply(request: u32(header, 0), flags: u32(header, 4), payload: payload)
    }

    /// Sends `request` and returns the u64 in its reply.
    public func getU64(_ request: VhostUserRequest) throws -> UInt64? {
        try send(request)
        guard let r = try reply(), r.request == request.rawValue, r.flags == 0x5, r.payload.count == 8 else { return nil }
        return u64(r.payload, 0)
    }

    /// Sends `request` with NEED_REPLY and returns the REPLY_ACK value.
    public func acked(_ request: VhostUserRequest, payload: [UInt8] = [], fds: [FileDescriptor] = []) throws -> UInt64? {
        try send(request, needReply: true, payload: payload, fds: fds)
        guard let r = try reply(), r.request == request.rawValue, r.flags == 0x5, r.payload.count == 8 else { return nil }
        return u64(r.payload, 0)
    }

    /// Sends `request`, with NEED_REPLY when `ack`, and throws unless the
    /// back-end acknowledged it with 0.
    public func expectAck(_ request: VhostUserRequest, ack: Bool = true, payload: [UInt8] = [],
                          fds: [FileDescriptor] = []) throws {
        guard ack else { return try send(request, payload: payload, fds: fds) }
        let value = try acked(request, payload: payload, fds: fds)
        guard value == 0 else {
            throw FrontendError("the back-end answered \(request) with \(value.map { String($0) } ?? "no valid REPLY_ACK")")
        }
    }

    /// True when the back-end has closed the connection (EOF on read).
    public func sawDisconnect() throws -> Bool {
        try reply() == nil
    }

    /// The usual opening: owner, protocol features with REPLY_ACK, features.
    public func negotiate(features: VirtioFeatures, protocolFeatures: UInt64 = VhostUserProtocolFeature.replyAck
                          | VhostUserProtocolFeature.mq | VhostUserProtocolFeature.config) throws {
        try send(.setOwner)
        try expectAck(.setProtocolFeatures, payload: le64(protocolFeatures))
        try expectAck(.setFeatures, payload: le64(features.rawValue))
    }

    public func close() { socket.shutdownSocket() }
}

/// A memfd the front-end shares as guest RAM, mapped on its side too (as
/// a `GuestMemory` at 0, so offsets are file offsets).
public struct SharedRAM {
    public let fd: FileDescriptor
    /// The front-end's own view of the file.
    public let view: GuestMemory

    public init(size: Int) throws {
        try self.init(fd: try MemFD.create(name: "frontend-ram", size: size), size: size)
    }

    /// Shares `fd` (already `size` bytes long).
    public init(fd: FileDescriptor, size: Int) throws {
        self.fd = fd
        view = try GuestMemory(regions: [GuestRegion(start: GuestAddress(0), mapping: MemoryMapping(fd: fd, count: size))])
    }

    /// Writes through the front-end's own mapping.
    public func write(_ bytes: [UInt8], at offset: Int) throws {
        try view.writeBytes(bytes, at: GuestAddress(UInt64(offset)))
    }

    public func read(at offset: Int, count: Int) throws -> [UInt8] {
        try view.readBytes(at: GuestAddress(UInt64(offset)), count: count)
    }
}

public func le32(_ v: UInt32) -> [UInt8] { (0..<4).map { UInt8(truncatingIfNeeded: v >> (8 * $0)) } }
public func le64(_ v: UInt64) -> [UInt8] { (0..<8).map { UInt8(truncatingIfNeeded: v >> (8 * $0)) } }
public func u32(_ b: [UInt8], _ o: Int) -> UInt32 { (0..<4).reduce(0) { $0 | UInt32(b[o + $1]) << (8 * $1) } }
public func u64(_ b: [UInt8], _ o: Int) -> UInt64 { UInt64(u32(b, o)) | UInt64(u32(b, o + 4)) << 32 }

/// `u32 index, u32 num`.
public func vringState(_ index: UInt32, _ num: UInt32) -> [UInt8] { le32(index) + le32(num) }

/// `u32 index, u32 flags, u64 desc, u64 used, u64 avail, u64 log`.
public func vringAddr(_ index: UInt32, flags: UInt32 = 0, desc: UInt64, used: UInt64, avail: UInt64) -> [UInt8] {
    le32(index) + le32(flags) + le64(desc) + le64(used) + le64(avail) + le64(0)
}

/// `u32 nregions, u32 padding, {u64 gpa, u64 size, u64 uaddr, u64 mmap_offset}...`.
public func memTable(_ regions: [VhostUserMemoryRegion]) -> [UInt8] {
    var b = le32(UInt32(regions.count)) + le32(0)
    for r in regions { b += le64(r.guestAddress) + le64(r.size) + le64(r.userAddress) + le64(r.mmapOffset) }
    return b
}
