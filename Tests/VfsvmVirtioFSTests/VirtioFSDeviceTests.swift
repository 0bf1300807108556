import Glibc
import Testing
import VfsvmFUSE
import VfsvmMemory
import VfsvmPassthroughFS
import VfsvmSys
import VfsvmTestSupport
import VfsvmVirtio
@testable import VfsvmVirtioFS

// FUSE opcodes and sizes (linux/fuse.h).
private let FUSE_LOOKUP: UInt32 = 1, FUSE_FORGET: UInt32 = 2, FUSE_GETATTR: UInt32 = 3
private let FUSE_OPEN: UInt32 = 14, FUSE_READ: UInt32 = 15, FUSE_INIT: UInt32 = 26
private let FUSE_SETLK: UInt32 = 32, FUSE_SETLKW: UInt32 = 33, FUSE_CREATE: UInt32 = 35

/// Little-endian byte building for FUSE requests.
private struct Bytes {
    var b: [UInt8] = []
    mutating func u16(_ v: UInt16) { b += withUnsafeBytes(of: v.littleEndian, Array.init) }
    mutating func u32(_ v: UInt32) { b += withUnsafeBytes(of: v.littleEndian, Array.init) }
    mutating func u64(_ v: UInt64) { b += withUnsafeBytes(of: v.littleEndian, Array.init) }
}

/// fuse_in_header (40 bytes) + body, with `len` filled in unless given.
private func request(_ opcode: UInt32, unique: UInt64, node: UInt64 = 1, body: [UInt8] = [], len: UInt32? = nil) -> [UInt8] {
    var h = Bytes()
    h.u32(len ?? UInt32(40 + body.count)); h.u32(opcode); h.u64(unique); h.u64(node)
    h.u32(0); h.u32(0); h.u32(1); h.u16(0); h.u16(0)
    return h.b + body
}

private func initRequest(unique: UInt64) -> [UInt8] {
    var b = Bytes()
    b.u32(7); b.u32(38); b.u32(128 << 10); b.u32(UInt32(truncatingIfNeeded: FUSEInitFlag.maxPages | FUSEInitFlag.initExt))
    b.u32(0); for _ in 0..<11 { b.u32(0) }
    return request(FUSE_INIT, unique: unique, body: b.b)
}

private func u32(_ bytes: [UInt8], _ at: Int) -> UInt32 {
    bytes[at..<at + 4].enumerated().reduce(0) { $0 | UInt32($1.element) << (8 * $1.offset) }
}
private func i32(_ bytes: [UInt8], _ at: Int) -> Int32 { Int32(bitPattern: u32(bytes, at)) }
private func u64(_ bytes: [UInt8], _ at: Int) -> UInt64 { UInt64(u32(bytes, at)) | UInt64(u32(bytes, at + 4)) << 32 }

/// A device over a temporary host directory and mock drivers for its hiprio
/// and first request queue.
private final class Fixture {
    let dir: String
    let device: VirtioFSDevice
    let hiprio: MockDriver
    let requests: MockDriver
    let interrupt = RecordingInterrupt()
    let kicks: [EventFD]

    init(layout: RingLayout, poolThreads: Int = 2) throws {
        var template = Array("/tmp/vfsvm-fs-test.XXXXXX".utf8CString)
        dir = template.withUnsafeMutableBufferPointer { String(cString: mkdtemp($0.baseAddress!)) }
        let fs = try PassthroughFileSystem(root: dir)
        device = try VirtioFSDevice(tag: "myfs", requestQueues: 1, queueSize: 64,
                                    server: FUSEServer(fileSystem: fs, options: FUSEServerOptions()), poolThreads: poolThreads)
        let memory = try GuestMemory.anonymous(size: 8 << 20)
        var features: VirtioFeatures = [.version1, .eventIndex, .indirectDescriptors]
        if layout == .packed { features.insert(.ringPacked) }
        // Two rings in one guest memory, each in its own part.
        hiprio = try MockDriver(memory: memory, layout: layout, queueSize: 16, features: features,
                                ringBase: GuestAddress(0x1000), arena: (1 << 20)..<(4 << 20))
        requests = try MockDriver(memory: memory, layout: layout, queueSize: 64, features: features,
                                  ringBase: GuestAddress(0x8000), arena: (4 << 20)..<(8 << 20))
        kicks = [try EventFD(nonBlocking: true), try EventFD(nonBlocking: true)]
        try device.activate(ActivationContext(memory: memory, features: features, queues: [
            ActivatedQueue(index: 0, queue: try hiprio.makeQueue(), kick: kicks[0]),
            ActivatedQueue(index: 1, queue: try requests.makeQueue(), kick: kicks[1]),
        ], interrupt: interrupt) { index, error in Issue.record("queue \(index) failed: \(error)") })
    }

    deinit {
        device.reset()
        _ = system("rm -rf '\(dir)'")
    }

    /// Posts requests on the request queue and kicks once, without waiting.
    func post(_ requests: [[UInt8]]) throws {
        for r in requests { try requests_.post(request: r, replyCapacity: 4096) }
        try kicks[1].signal()
    }
    private var requests_: MockDriver { requests }

    /// Waits until `count` completions arrived on the request queue (or 5 s).
    func collect(count: Int) throws -> [MockCompletion] {
        var got: [MockCompletion] = []
        for _ in 0..<1000 where got.count < count {
            got += try requests.collect()
            if got.count < count { usleep(5000) }
        }
        return got
    }

    /// Posts `bytes` on `driver`, kicks, waits for the completion.
    func roundTrip(_ driver: MockDriver, queue: Int, _ bytes: [UInt8], replyCapacity: Int = 4096,
                   writableSplit: [UInt32]? = nil) throws -> MockCompletion {
        if let split = writableSplit {
            try driver.add(readable: [bytes], writable: split)
        } else {
            try driver.post(request: bytes, replyCapacity: replyCapacity)
        }
        try kicks[queue].signal()
        for _ in 0..<500 {
            if let c = try driver.collect().first { return c }
            usleep(5000)
        }
        throw MockDriverError.unknownUsedID(0xffff)
    }
}

@Suite struct VirtioFSDeviceTests {
    @Test func configSpaceHoldsTagAndQueueCount() throws {
        let fs = try PassthroughFileSystem(root: "/tmp")
        let d = try VirtioFSDevice(tag: "myfs", requestQueues: 3, server: FUSEServer(fileSystem: fs, options: FUSEServerOptions()))
        let all = d.readConfig(offset: 0, count: 44)
        #expect(Array(all[0..<4]) == Array("myfs".utf8) && all[4..<36].allSatisfy { $0 == 0 })
        #expect(u32(all, 36) == 3)
        // Past the end reads zero (4.1.4.3 / Firecracker convention).
        #expect(all[40..<44].allSatisfy { $0 == 0 })
        #expect(d.deviceType == 26 && d.queueMaxSizes.count == 4)
        #expect(d.offeredFeatures.contains([.version1, .ringPacked]))
        #expect(throws: VirtioFSError.badTag(String(repeating: "x", count: 37))) {
            try VirtioFSDevice(tag: String(repeating: "x", count: 37), server: FUSEServer(fileSystem: fs, options: FUSEServerOptions()))
        }
    }

    @Test(arguments: [RingLayout.split, .packed])
    func initLookupOpenReadOverTheQueues(layout: RingLayout) throws {
        let f = try Fixture(layout: layout)
        let content = (0..<10_000).map { UInt8(truncatingIfNeeded: $0 * 7) }
        let fd = open(f.dir + "/hello", O_CREAT | O_WRONLY, 0o644)
        #expect(fd >= 0)
        _ = content.withUnsafeBytes { write(fd, $0.baseAddress, $0.count) }
        close(fd)

        let initReply = try f.roundTrip(f.requests, queue: 1, initRequest(unique: 1))
        #expect(i32(initReply.reply, 4) == 0 && u64(initReply.reply, 8) == 1)
        #expect(u32(initReply.reply, 16) == 7, "major version 7")
        #expect(initReply.length == u32(initReply.reply, 0), "used length = fuse_out_header.len")

        let lookup = try f.roundTrip(f.requests, queue: 1, request(FUSE_LOOKUP, unique: 2, body: Array("hello".utf8) + [0]))
        #expect(i32(lookup.reply, 4) == 0)
        let node = u64(lookup.reply, 16)
        #expect(node > 1)
        #expect(u64(lookup.reply, 16 + 40 + 8) == 10_000, "fuse_entry_out (40 bytes), then fuse_attr.ino, fuse_attr.size")

        var openBody = Bytes(); openBody.u32(UInt32(O_RDONLY)); openBody.u32(0)
        let opened = try f.roundTrip(f.requests, queue: 1, request(FUSE_OPEN, unique: 3, node: node, body: openBody.b))
        #expect(i32(opened.reply, 4) == 0)
        let fh = u64(opened.reply, 16)

        // READ 10,000 bytes into three writable descriptors: header and data
        // land across them as one byte stream.
        var readBody = Bytes(); readBody.u64(fh); readBody.u64(0); readBody.u32(10_000); readBody.u32(0)
        readBody.u64(0); readBody.u32(UInt32(O_RDONLY)); readBody.u32(0)
        let read = try f.roundTrip(f.requests, queue: 1, request(FUSE_READ, unique: 4, node: node, body: readBody.b),
                                   writableSplit: [10, 4000, 8000])
        #expect(i32(read.reply, 4) == 0)
        #expect(read.length == 16 + 10_000)
        #expect(Array(read.reply[16..<(16 + 10_000)]) == content)

        // FORGET on hiprio has no reply: used length 0.
        var forget = Bytes(); forget.u64(1)
        let forgot = try f.roundTrip(f.hiprio, queue: 0, request(FUSE_FORGET, unique: 5, node: node, body: forget.b), replyCapacity: 0)
        #expect(forgot.length == 0)
        #expect(f.device.fatalError == nil)
    }

    @Test func replyLargerThanTheWritableBuffersIsAnErrorNotAnOverflow() throws {
        let f = try Fixture(layout: .split)
        _ = try f.roundTrip(f.requests, queue: 1, initRequest(unique: 1))
        // GETATTR's reply is 16 + 104 bytes; offer 40.
        let r = try f.roundTrip(f.requests, queue: 1, request(FUSE_GETATTR, unique: 2, body: [UInt8](repeating: 0, count: 16)),
                                replyCapacity: 40)
        #expect(r.length == 16, "only an error header")
        #expect(i32(r.reply, 4) == -EIO)
    }

    /// Waiting lock requests (SETLKW) must not occupy the queue: inline or
    /// with one worker thread, three requests wait for a lock and the
    /// holder's unlock arrives after them on the same queue. If a waiter
    /// held the thread, the unlock would never run and the queue would hang.
    @Test(arguments: [0, 1])
    func waitingLockRequestsDoNotStallTheQueue(poolThreads: Int) throws {
        let f = try Fixture(layout: .split, poolThreads: poolThreads)
        _ = try f.roundTrip(f.requests, queue: 1, initRequest(unique: 1))
        var create = Bytes(); create.u32(UInt32(O_RDWR)); create.u32(0o644); create.u32(0); create.u32(0)
        let created = try f.roundTrip(f.requests, queue: 1, request(FUSE_CREATE, unique: 2, body: create.b + Array("l".utf8) + [0]))
        #expect(i32(created.reply, 4) == 0)
        let node = u64(created.reply, 16), fh = u64(created.reply, 16 + 128)
        func lk(_ op: UInt32, unique: UInt64, owner: UInt64, type: UInt32) -> [UInt8] {
            var b = Bytes(); b.u64(fh); b.u64(owner); b.u64(0); b.u64(99); b.u32(type); b.u32(1); b.u32(0); b.u32(0)
            return request(op, unique: unique, node: node, body: b.b)
        }
        let held = try f.roundTrip(f.requests, queue: 1, lk(FUSE_SETLK, unique: 3, owner: 1, type: UInt32(F_WRLCK)))
        #expect(i32(held.reply, 4) == 0)
        try f.post([
            lk(FUSE_SETLKW, unique: 10, owner: 2, type: UInt32(F_RDLCK)),
            lk(FUSE_SETLKW, unique: 11, owner: 3, type: UInt32(F_RDLCK)),
            lk(FUSE_SETLKW, unique: 12, owner: 4, type: UInt32(F_RDLCK)),
        ])
        usleep(100_000)
        try f.post([lk(FUSE_SETLK, unique: 13, owner: 1, type: UInt32(F_UNLCK))])
        let done = try f.collect(count: 4)
        #expect(Set(done.map { u64($0.reply, 8) }) == [10, 11, 12, 13], "every request completed")
        #expect(done.allSatisfy { i32($0.reply, 4) == 0 }, "the unlock succeeded and every waiter got its read lock")
    }

    @Test func lyingLengthFieldGetsEINVAL() throws {
        let f = try Fixture(layout: .packed)
        _ = try f.roundTrip(f.requests, queue: 1, initRequest(unique: 1))
        let r = try f.roundTrip(f.requests, queue: 1, request(FUSE_GETATTR, unique: 9, body: [UInt8](repeating: 0, count: 16), len: 4000))
        #expect(i32(r.reply, 4) == -EINVAL && u64(r.reply, 8) == 9)
    }
}
