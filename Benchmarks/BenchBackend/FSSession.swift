import Glibc
import VfsvmFUSE
import VfsvmFUSETestSupport
import VfsvmMemory
import VfsvmSys
import VfsvmTestSupport
import VfsvmVhostUser
import VfsvmVhostUserTestSupport
import VfsvmVirtio

/// One FUSE request as the Linux driver lays it out: the in-header and the
/// operation's arguments in one readable buffer, then any data (WRITE) in a
/// second; a writable out-header, then the reply's arguments or data.
struct FUSERequest {
    var readable: [[UInt8]]
    var writable: [UInt32]
}

/// A reply as the front-end saw it: the used length and the bytes.
struct FUSEReplyBytes {
    var length: UInt32
    var bytes: [UInt8]
    /// fuse_out_header.error (0 or a negative errno).
    var error: Int32 { bytes.count >= 8 ? Int32(bitPattern: u32(bytes, 4)) : -EPROTO }
    var headerLength: UInt32 { bytes.count >= 4 ? u32(bytes, 0) : 0 }
}

/// One request queue: its ring (MockDriver), kick and call eventfds, and
/// the FUSE unique ids it hands out. Used by one thread at a time.
final class RequestQueue: @unchecked Sendable {
    let driver: MockDriver
    let kick: EventFD
    let call: EventFD
    let timeoutMilliseconds: Int32
    /// Post the in-header and the out-header in buffers of their own, as
    /// Linux's virtio_fs_enqueue_req does (then the arguments in one
    /// buffer, then any data pages), instead of each merged with the
    /// arguments that follow it.
    let linuxLayout: Bool
    private var unique: UInt64

    init(index: Int, driver: MockDriver, kick: EventFD, call: EventFD, linuxLayout: Bool = false, timeoutMilliseconds: Int32) {
        self.driver = driver
        self.linuxLayout = linuxLayout
        self.kick = kick
        self.call = call
        self.timeoutMilliseconds = timeoutMilliseconds
        unique = UInt64(index) << 48
    }

    /// fuse_in_header (40 bytes) followed by `args`.
    func request(_ op: FUSEOpcode, node: UInt64, _ args: Bytes = Bytes(), data: [UInt8]? = nil) -> [[UInt8]] {
        unique += 2
        let h = Bytes()
        h.u32(UInt32(40 + args.b.count + (data?.count ?? 0))).u32(op.rawValue).u64(unique).u64(node)
        h.u32(0).u32(0).u32(UInt32(getpid())).u16(0).u16(0)
        return data.map { [h.b + args.b, $0] } ?? [h.b + args.b]
    }

    /// `buffers` with the first `header` bytes of the first buffer in one of
    /// their own (when more follow in it).
    static func headerApart(_ buffers: [[UInt8]], _ header: Int) -> [[UInt8]] {
        guard let first = buffers.first, first.count > header else { return buffers }
        return [Array(first[..<header]), Array(first[header...])] + buffers.dropFirst()
    }

    static func headerApart(_ sizes: [Int], _ header: Int) -> [Int] {
        guard let first = sizes.first, first > header else { return sizes }
        return [header, first - header] + sizes.dropFirst()
    }

    /// Posts `requests` (all in flight at once), kicks once, waits for every
    /// reply; `done(i, reply, latency)` sees each as it completes.
    func run(_ requests: [FUSERequest], _ done: (Int, FUSEReplyBytes, UInt64) throws -> Void) throws {
        var started: [UInt16: (index: Int, at: UInt64)] = [:]
        for (i, r) in requests.enumerated() {
            let id = linuxLayout
                ? try driver.add(readable: Self.headerApart(r.readable, 40), writable: Self.headerApart(r.writable.map { Int($0) }, 16).map { UInt32($0) })
                : try driver.add(readable: r.readable, writable: r.writable)
            started[id] = (i, nowNanoseconds())
        }
        // virtqueue_kick_prepare: VRING_USED_F_NO_NOTIFY / avail_event
        // (split) or the device event suppression structure (packed).
        if try driver.deviceWantsKick() { try kick.signal() }
        var waitForCall = true
        while !started.isEmpty {
            if waitForCall {
                guard try pollReadable([call.fd], timeoutMilliseconds: timeoutMilliseconds) == [true] else {
                    throw FrontendError("the backend did not answer \(started.count) request(s) within \(timeoutMilliseconds) ms")
                }
                _ = try call.drain()
            }
            let now = nowNanoseconds()
            // collect() moves used_event on (EVENT_IDX) after reading; like
            // Linux's virtqueue_enable_cb, look again before sleeping: an
            // element used before that store raised no interrupt.
            let completions = try driver.collect()
            waitForCall = completions.isEmpty
            for c in completions {
                guard let s = started.removeValue(forKey: c.id) else {
                    throw FrontendError("the backend completed chain \(c.id), which was not in flight")
                }
                try done(s.index, FUSEReplyBytes(length: c.length, bytes: c.reply), now - s.at)
            }
        }
    }

    /// One request, its reply.
    func roundTrip(_ readable: [[UInt8]], replyCapacity: UInt32) throws -> FUSEReplyBytes {
        var reply = FUSEReplyBytes(length: 0, bytes: [])
        try run([FUSERequest(readable: readable, writable: [replyCapacity])]) { _, r, _ in reply = r }
        return reply
    }
}

/// A vhost-user-fs session from the front-end's side: features, memfd guest
/// RAM, the hiprio queue and `queues` request queues (split or packed rings laid out
/// by MockDriver, as Linux's virtio_ring does), FUSE INIT.
final class FSSession {
    static let userBase: UInt64 = 0x7f00_0000_0000
    let frontend: MockFrontend
    let ram: SharedRAM
    let ramSize: Int
    private(set) var queues: [RequestQueue] = []
    private var hiprio: MockDriver?
    private var keep: [EventFD] = []
    private(set) var maxWrite: UInt32 = 0
    /// VIRTIO_RING_F_EVENT_IDX was negotiated.
    let eventIndex: Bool

    /// Request queue q's ring and buffers get `sliceBytes` (a multiple of
    /// 1 MiB) after the hiprio queue's first MiB.
    init(socket: FileDescriptor, queues count: Int, sliceBytes: Int, queueSize: UInt16, layout: RingLayout,
         eventIndex: Bool, linuxLayout: Bool = false, timeoutMilliseconds: Int32) throws {
        frontend = MockFrontend(socket: socket)
        let ramSize = (1 << 20) + count * sliceBytes
        self.ramSize = ramSize
        ram = try SharedRAM(size: ramSize)
        guard let offered = try frontend.getU64(.getFeatures) else {
            throw FrontendError("the backend did not answer GET_FEATURES")
        }
        let protocolBit = VirtioFeatures.vhostUserProtocolFeatures.rawValue
        let wantedRing = (layout == .packed ? VirtioFeatures.ringPacked.rawValue : 0)
            | (eventIndex ? VirtioFeatures.eventIndex.rawValue : 0)
        let features = VirtioFeatures(rawValue: offered & (VirtioFeatures.version1.rawValue | protocolBit | wantedRing))
        self.eventIndex = features.contains(.eventIndex)
        if layout == .packed && !features.contains(.ringPacked) {
            throw FrontendError("the backend does not offer VIRTIO_F_RING_PACKED")
        }
        guard features.contains(.version1) else { throw FrontendError("the backend does not offer VIRTIO_F_VERSION_1") }
        try frontend.send(.setOwner)
        var ack = false
        if features.contains(.vhostUserProtocolFeatures) {
            guard let proto = try frontend.getU64(.getProtocolFeatures) else {
                throw FrontendError("the backend did not answer GET_PROTOCOL_FEATURES")
            }
            let wanted = proto & (VhostUserProtocolFeature.replyAck | VhostUserProtocolFeature.mq)
            try frontend.send(.setProtocolFeatures, payload: le64(wanted))
            ack = wanted & VhostUserProtocolFeature.replyAck != 0
            if count > 1 {
                guard wanted & VhostUserProtocolFeature.mq != 0, let n = try frontend.getU64(.getQueueNum), n >= UInt64(count + 1) else {
                    throw FrontendError("the backend does not offer \(count) request queues (VHOST_USER_PROTOCOL_F_MQ, GET_QUEUE_NUM)")
                }
            }
        }
        if count > 1 && !features.contains(.vhostUserProtocolFeatures) {
            throw FrontendError("the backend does not offer \(count) request queues (no protocol features)")
        }
        try frontend.expectAck(.setFeatures, ack: ack, payload: le64(features.rawValue))
        let region = VhostUserMemoryRegion(guestAddress: 0, size: UInt64(ramSize), userAddress: Self.userBase, mmapOffset: 0)
        try frontend.expectAck(.setMemTable, ack: ack, payload: memTable([region]), fds: [ram.fd])
        let ringFeatures = features.subtracting(.vhostUserProtocolFeatures)
        // Queue 0 (hiprio, FORGET and INTERRUPT) in the first 1 MiB; the
        // request queue 1 and its buffers in the rest.
        let frontend = self.frontend, ram = self.ram
        func start(_ index: UInt32, base: UInt64, arena: Range<UInt64>, call: EventFD, kick: EventFD) throws -> MockDriver {
            let d = try MockDriver(memory: ram.view, layout: layout, queueSize: queueSize, features: ringFeatures,
                                   ringBase: GuestAddress(base), arena: arena)
            // Linux's packed ring with EVENT_IDX asks for interrupts in DESC
            // mode (off_wrap = next used slot), moved on after each read.
            if layout == .packed && ringFeatures.contains(.eventIndex) {
                try d.setPackedDriverEvent(flags: 2, offset: 0, wrap: true)
            }
            try frontend.expectAck(.setVringNum, ack: ack, payload: vringState(index, UInt32(queueSize)))
            // A fresh packed ring: both cursors at slot 0 with wrap counter 1 (QEMU's encoding).
            try frontend.expectAck(.setVringBase, ack: ack, payload: vringState(index, layout == .packed ? 0x8000_8000 : 0))
            try frontend.expectAck(.setVringAddr, ack: ack, payload: vringAddr(
                index, desc: Self.userBase + d.descriptorTable.rawValue, used: Self.userBase + d.deviceArea.rawValue,
                avail: Self.userBase + d.driverArea.rawValue))
            try frontend.expectAck(.setVringCall, ack: ack, payload: le64(UInt64(index)), fds: [call.fd])
            try frontend.expectAck(.setVringKick, ack: ack, payload: le64(UInt64(index)), fds: [kick.fd])
            if features.contains(.vhostUserProtocolFeatures) {
                try frontend.expectAck(.setVringEnable, ack: ack, payload: vringState(index, 1))
            }
            return d
        }
        let hiCall = try EventFD(nonBlocking: true), hiKick = try EventFD(nonBlocking: true)
        let hi = try start(0, base: 0, arena: 0x10000..<0x100000, call: hiCall, kick: hiKick)
        var made: [RequestQueue] = []
        for q in 0..<count {
            let base = UInt64((1 << 20) + q * sliceBytes)
            let call = try EventFD(nonBlocking: true), kick = try EventFD(nonBlocking: true)
            let d = try start(UInt32(1 + q), base: base, arena: (base + 0x10000)..<(base + UInt64(sliceBytes)), call: call, kick: kick)
            made.append(RequestQueue(index: q, driver: d, kick: kick, call: call, linuxLayout: linuxLayout, timeoutMilliseconds: timeoutMilliseconds))
        }
        queues = made
        hiprio = hi
        keep = [hiCall, hiKick]
        try initialize()
    }

    func close() { frontend.close() }

    // MARK: - Requests (on the first request queue)

    func request(_ op: FUSEOpcode, node: UInt64, _ args: Bytes = Bytes(), data: [UInt8]? = nil) -> [[UInt8]] {
        queues[0].request(op, node: node, args, data: data)
    }

    func roundTrip(_ readable: [[UInt8]], replyCapacity: UInt32) throws -> FUSEReplyBytes {
        try queues[0].roundTrip(readable, replyCapacity: replyCapacity)
    }

    /// FUSE_INIT as Linux 6.x sends it (7.38, the flags a virtio-fs mount
    /// asks for); records max_write.
    private func initialize() throws {
        let flags: UInt32 = 1 << 0 | 1 << 3 | 1 << 4 | 1 << 5 | 1 << 6 | 1 << 12 | 1 << 13 | 1 << 14 | 1 << 15 | 1 << 18 | 1 << 22
        let args = Bytes()
        args.u32(7).u32(38).u32(128 * 1024).u32(flags).u32(0).zeros(44)
        let r = try roundTrip(request(.`init`, node: 0, args), replyCapacity: 16 + 64)
        guard r.error == 0, r.bytes.count >= 16 + 24 else {
            throw FrontendError("FUSE_INIT failed: error \(r.error), reply of \(r.length) bytes")
        }
        maxWrite = u32(r.bytes, 16 + 20)
    }

    /// LOOKUP `name` in the root: the node id, or nil.
    func lookup(_ name: String) throws -> UInt64? {
        let args = Bytes()
        args.name(name)
        let r = try roundTrip(request(.lookup, node: 1, args), replyCapacity: 16 + 128)
        return r.error == 0 ? u64(r.bytes, 16) : nil
    }

    /// OPEN or OPENDIR `node`: the file handle, or nil.
    func open(_ node: UInt64, directory: Bool = false) throws -> UInt64? {
        let args = Bytes()
        args.u32(UInt32(directory ? O_RDONLY : O_RDWR)).u32(0)
        let r = try roundTrip(request(directory ? .opendir : .open, node: node, args), replyCapacity: 16 + 16)
        return r.error == 0 ? u64(r.bytes, 16) : nil
    }
}
