import Glibc
import Synchronization
import Testing
import VfsvmMemory
import VfsvmSys
import VfsvmVirtio
@testable import VfsvmVhostUser

/// A device that records every call the server makes.
final class RecordingDevice: VhostUserDevice {
    enum Call: Equatable {
        case start(VhostUserVring, features: VirtioFeatures, hasCall: Bool)
        case stop(Int)
        case callChanged(Int, hasCall: Bool)
        case memoryChanged
        case reset
    }

    struct Started {
        var memory: GuestMemory
        var kick: EventFD
        var call: EventFD?
    }

    private let offered: VirtioFeatures
    private let featureReads = Mutex(0)
    /// Counts GET_FEATURES (and the session's feature checks) so a test can
    /// see a real front-end got that far.
    var deviceFeatures: VirtioFeatures {
        featureReads.withLock { $0 += 1 }
        return offered
    }
    var featureReadCount: Int { featureReads.withLock { $0 } }
    let queueCount: Int
    let maxQueueSize: UInt16
    let config: [UInt8]
    /// What stopQueue returns.
    let stopValue: UInt32
    let refuseStart: Bool
    private let state = Mutex<(calls: [Call], started: [Int: Started], memory: GuestMemory?)>(([], [:], nil))

    init(features: VirtioFeatures = [.version1, .accessPlatform], queues: Int = 2, maxQueueSize: UInt16 = 1024,
         config: [UInt8] = Array("myfs".utf8) + [UInt8](repeating: 0, count: 32) + [1, 0, 0, 0],
         stopValue: UInt32 = 0x1234, refuseStart: Bool = false) {
        offered = features
        queueCount = queues
        self.maxQueueSize = maxQueueSize
        self.config = config
        self.stopValue = stopValue
        self.refuseStart = refuseStart
    }

    var calls: [Call] { state.withLock { $0.calls } }
    func started(_ i: Int) -> Started? { state.withLock { $0.started[i] } }
    var latestMemory: GuestMemory? { state.withLock { $0.memory } }

    func readConfig(offset: Int, count: Int) -> [UInt8] {
        guard offset < config.count else { return [] }
        return Array(config[offset..<min(config.count, offset + count)])
    }

    struct Refused: Error {}

    func startQueue(_ vring: VhostUserVring, features: VirtioFeatures, memory: GuestMemory, kick: EventFD, call: EventFD?,
                    error: EventFD?) throws {
        if refuseStart { throw Refused() }
        state.withLock {
            $0.calls.append(.start(vring, features: features, hasCall: call != nil))
            $0.started[vring.index] = Started(memory: memory, kick: kick, call: call)
            $0.memory = memory
        }
    }

    func stopQueue(_ index: Int) -> UInt32 {
        state.withLock {
            $0.calls.append(.stop(index))
            $0.started[index] = nil
        }
        return stopValue
    }

    func callChanged(_ index: Int, call: EventFD?) {
        state.withLock {
            $0.calls.append(.callChanged(index, hasCall: call != nil))
            $0.started[index]?.call = call
        }
    }

    func memoryChanged(_ memory: GuestMemory) {
        state.withLock {
            $0.calls.append(.memoryChanged)
            $0.memory = memory
        }
    }

    func reset() {
        state.withLock {
            $0.calls.append(.reset)
            $0.started = [:]
            $0.memory = nil
        }
    }
}

struct Reply: Equatable {
    var request: UInt32
    var flags: UInt32
    var payload: [UInt8]
}

/// The front-end's side: sends real vhost-user messages (fds as
/// SCM_RIGHTS) and reads replies.
final class MockFrontend {
    let socket: FileDescriptor

    init(socket: FileDescriptor) { self.socket = socket }

    func send(_ request: UInt32, flags: UInt32 = 0x1, payload: [UInt8] = [], fds: [FileDescriptor] = [],
              announcedSize: UInt32? = nil) throws {
        var bytes = le32(request) + le32(flags) + le32(announcedSize ?? UInt32(payload.count))
        bytes += payload
        try socket.send(bytes, fds: fds)
    }

    func send(_ request: VhostUserRequest, needReply: Bool = false, payload: [UInt8] = [],
              fds: [FileDescriptor] = []) throws {
        try send(request.rawValue, flags: needReply ? 0x9 : 0x1, payload: payload, fds: fds)
    }

    /// The next reply, or nil when the back-end closed the connection.
    func reply() throws -> Reply? {
        guard let header = try socket.readExactly(12) else { return nil }
        let size = Int(u32(header, 8))
        let payload = size == 0 ? [] : (try socket.readExactly(size) ?? [])
        return Reply(request: u32(header, 0), flags: u32(header, 4), payload: payload)
    }

    /// Sends `request` and returns the u64 in its reply.
    func getU64(_ request: VhostUserRequest) throws -> UInt64? {
        try send(request)
        guard let r = try reply(), r.request == request.rawValue, r.flags == 0x5, r.payload.count == 8 else { return nil }
        return u64(r.payload, 0)
    }

    /// Sends `request` with NEED_REPLY and returns the REPLY_ACK value.
    func acked(_ request: VhostUserRequest, payload: [UInt8] = [], fds: [FileDescriptor] = []) throws -> UInt64? {
        try send(request, needReply: true, payload: payload, fds: fds)
        guard let r = try reply(), r.request == request.rawValue, r.flags == 0x5, r.payload.count == 8 else { return nil }
        return u64(r.payload, 0)
    }

    /// True when the back-end has closed the connection (EOF on read).
    func sawDisconnect() throws -> Bool {
        try reply() == nil
    }

    /// The usual opening: features, protocol features with REPLY_ACK.
    func negotiate(features: VirtioFeatures, protocolFeatures: UInt64 = VhostUserProtocolFeature.replyAck
                   | VhostUserProtocolFeature.mq | VhostUserProtocolFeature.config) throws {
        try send(.setOwner)
        #expect(try acked(.setProtocolFeatures, payload: le64(protocolFeatures)) == 0)
        #expect(try acked(.setFeatures, payload: le64(features.rawValue)) == 0)
    }

    func close() { socket.shutdownSocket() }
}

/// A memfd the front-end shares as guest RAM, mapped on its side too (as
/// a `GuestMemory` at 0, so offsets are file offsets).
struct SharedRAM {
    let fd: FileDescriptor
    /// The front-end's own view of the file.
    let view: GuestMemory

    init(size: Int) throws {
        try self.init(fd: try MemFD.create(name: "frontend-ram", size: size), size: size)
    }

    /// Shares `fd` (already `size` bytes long).
    init(fd: FileDescriptor, size: Int) throws {
        self.fd = fd
        view = try GuestMemory(regions: [GuestRegion(start: GuestAddress(0), mapping: MemoryMapping(fd: fd, count: size))])
    }

    /// Writes through the front-end's own mapping.
    func write(_ bytes: [UInt8], at offset: Int) throws {
        try view.writeBytes(bytes, at: GuestAddress(UInt64(offset)))
    }

    func read(at offset: Int, count: Int) throws -> [UInt8] {
        try view.readBytes(at: GuestAddress(UInt64(offset)), count: count)
    }
}

/// Runs a server on one end of a socketpair in its own thread, hands the
/// other end to `body` as a front-end, then closes it and returns how the
/// server saw the connection end.
func withServer(_ device: any VhostUserDevice, protocolFeatures: UInt64 = VhostUserProtocolFeature.supported,
                _ body: (MockFrontend) throws -> Void) throws -> VhostUserBackendServer.Disconnect? {
    let (ours, theirs) = try UnixSocket.pair()
    let server = try VhostUserBackendServer(device: device, listener: nil, protocolFeatures: protocolFeatures, log: { _ in })
    let result = Mutex<VhostUserBackendServer.Disconnect?>(nil)
    let thread = try OSThread {
        let end = server.serve(connection: theirs)
        result.withLock { $0 = end }
    }
    let frontend = MockFrontend(socket: ours)
    do {
        try body(frontend)
    } catch {
        frontend.close()
        thread.join()
        throw error
    }
    frontend.close()
    thread.join()
    return result.withLock { $0 }
}

func le32(_ v: UInt32) -> [UInt8] { (0..<4).map { UInt8(truncatingIfNeeded: v >> (8 * $0)) } }
func le64(_ v: UInt64) -> [UInt8] { (0..<8).map { UInt8(truncatingIfNeeded: v >> (8 * $0)) } }
func u32(_ b: [UInt8], _ o: Int) -> UInt32 { (0..<4).reduce(0) { $0 | UInt32(b[o + $1]) << (8 * $1) } }
func u64(_ b: [UInt8], _ o: Int) -> UInt64 { UInt64(u32(b, o)) | UInt64(u32(b, o + 4)) << 32 }

/// `u32 index, u32 num`.
func vringState(_ index: UInt32, _ num: UInt32) -> [UInt8] { le32(index) + le32(num) }

/// `u32 index, u32 flags, u64 desc, u64 used, u64 avail, u64 log`.
func vringAddr(_ index: UInt32, flags: UInt32 = 0, desc: UInt64, used: UInt64, avail: UInt64) -> [UInt8] {
    le32(index) + le32(flags) + le64(desc) + le64(used) + le64(avail) + le64(0)
}

/// `u32 nregions, u32 padding, {u64 gpa, u64 size, u64 uaddr, u64 mmap_offset}...`.
func memTable(_ regions: [VhostUserMemoryRegion]) -> [UInt8] {
    var b = le32(UInt32(regions.count)) + le32(0)
    for r in regions { b += le64(r.guestAddress) + le64(r.size) + le64(r.userAddress) + le64(r.mmapOffset) }
    return b
}
