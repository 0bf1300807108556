import Glibc
import Testing
import VfsvmFUSE
import VfsvmFUSETestSupport
import VfsvmMemory
import VfsvmPassthroughFS
import VfsvmSys
import VfsvmTestSupport
import VfsvmVirtio
@testable import VfsvmVirtioFS

/// A reply as the driver reads it from the writable buffers:
/// fuse_out_header (len, error, unique) and the body after it.
struct QueueReply {
    let completion: MockCompletion
    var bytes: [UInt8] { completion.reply }
    var headerLength: UInt32 { var d = Decoder(bytes); return d.u32() }
    var error: Int32 { var d = Decoder(bytes, at: 4); return Int32(bitPattern: d.u32()) }
    var unique: UInt64 { var d = Decoder(bytes, at: 8); return d.u64() }
    /// A little-endian u32 / u64 at `offset` of the body (after the 16-byte header).
    func u32(_ offset: Int) -> UInt32 { var d = Decoder(bytes, at: 16 + offset); return d.u32() }
    func u64(_ offset: Int) -> UInt64 { var d = Decoder(bytes, at: 16 + offset); return d.u64() }
}

/// A device over a temporary host directory and mock drivers for its hiprio
/// and first request queue.
private final class Fixture {
    let dir: String
    let device: VirtioFSDevice
    private(set) var hiprio: MockDriver
    private(set) var requests: MockDriver
    let interrupt = RecordingInterrupt()
    let kicks: [EventFD]
    /// Builds request headers (fresh `unique`s) for the queues.
    let client: Client

    let memory: GuestMemory
    let features: VirtioFeatures

    init(layout: RingLayout, poolThreads: Int = 2, options: FUSEServerOptions = FUSEServerOptions()) throws {
        var template = Array("/tmp/vfsvm-fs-test.XXXXXX".utf8CString)
        dir = template.withUnsafeMutableBufferPointer { String(cString: mkdtemp($0.baseAddress!)) }
        let server = FUSEServer(fileSystem: try PassthroughFileSystem(root: dir), options: options)
        client = Client(server)
        device = try VirtioFSDevice(tag: "myfs", requestQueues: 1, queueSize: 64, server: server, poolThreads: poolThreads)
        memory = try GuestMemory.anonymous(size: 8 << 20)
        var features: VirtioFeatures = [.version1, .eventIndex, .indirectDescriptors]
        if layout == .packed { features.insert(.ringPacked) }
        self.features = features
        kicks = [try EventFD(nonBlocking: true), try EventFD(nonBlocking: true)]
        (hiprio, requests) = try Self.rings(memory, layout, features)
        try activate()
    }

    /// Two rings in one guest memory, each in its own part, as a driver
    /// lays them out after a reset.
    private static func rings(_ memory: GuestMemory, _ layout: RingLayout, _ features: VirtioFeatures) throws -> (MockDriver, MockDriver) {
        (try MockDriver(memory: memory, layout: layout, queueSize: 16, features: features,
                        ringBase: GuestAddress(0x1000), arena: (1 << 20)..<(4 << 20)),
         try MockDriver(memory: memory, layout: layout, queueSize: 64, features: features,
                        ringBase: GuestAddress(0x8000), arena: (4 << 20)..<(8 << 20)))
    }

    private func activate() throws {
        try device.activate(ActivationContext(memory: memory, features: features, queues: [
            ActivatedQueue(index: 0, queue: try hiprio.makeQueue(), kick: kicks[0]),
            ActivatedQueue(index: 1, queue: try requests.makeQueue(), kick: kicks[1]),
        ], interrupt: interrupt) { index, error in Issue.record("queue \(index) failed: \(error)") })
    }

    /// The driver resets the device and sets it up again on fresh rings
    /// (the FUSE session goes on: no DESTROY, no INIT).
    func resetAndReactivate() throws {
        device.reset()
        (hiprio, requests) = try Self.rings(memory, requests.layout, features)
        try activate()
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

    /// fuse_in_header for `op` followed by `body`.
    func request(_ op: FUSEOpcode, node: UInt64 = 1, _ body: Bytes = Bytes(), len: UInt32? = nil) -> [UInt8] {
        client.header(op.rawValue, node: node, bodyLength: body.b.count, lenOverride: len) + body.b
    }

    /// FUSE_INIT, protocol 7.38, max_pages and init_ext.
    func initSession() throws -> QueueReply {
        let flags = UInt32(truncatingIfNeeded: FUSEInitFlag.maxPages | FUSEInitFlag.initExt)
        return try roundTrip(requests, queue: 1, request(.`init`, node: 0, Bytes().u32(7).u32(38).u32(128 << 10).u32(flags).zeros(48)))
    }

    /// After INIT, creates a file "l" and returns a builder of lock requests
    /// (SETLK/SETLKW/GETLK) on bytes 0...99 of it, through its open handle.
    func lockFile() throws -> (_ op: FUSEOpcode, _ owner: UInt64, _ type: Int32) -> [UInt8] {
        _ = try initSession()
        let created = try roundTrip(requests, queue: 1,
                                    request(.create, Bytes().u32(UInt32(O_RDWR)).u32(0o644).u32(0).u32(0).name("l")))
        #expect(created.error == 0)
        let node = created.u64(0), fh = created.u64(128)
        return { [self] op, owner, type in
            request(op, node: node, Bytes().u64(fh).u64(owner).u64(0).u64(99).u32(UInt32(type)).u32(1).u32(0).u32(0))
        }
    }

    /// Posts `bytes` on `driver`, kicks, waits for the completion.
    func roundTrip(_ driver: MockDriver, queue: Int, _ bytes: [UInt8], replyCapacity: Int = 4096,
                   writableSplit: [UInt32]? = nil) throws -> QueueReply {
        if let split = writableSplit {
            try driver.add(readable: [bytes], writable: split)
        } else {
            try driver.post(request: bytes, replyCapacity: replyCapacity)
        }
        try kicks[queue].signal()
        for _ in 0..<500 {
            if let c = try driver.collect().first { return QueueReply(completion: c) }
            usleep(5000)
        }
        throw MockDriverError.other("no completion within 2.5 s")
    }
}

@Suite struct VirtioFSDeviceTests {
    @Test func configSpaceHoldsTagAndQueueCount() throws {
        let fs = try PassthroughFileSystem(root: "/tmp")
        let d = try VirtioFSDevice(tag: "myfs", requestQueues: 3, server: FUSEServer(fileSystem: fs, options: FUSEServerOptions()))
        let all = d.readConfig(offset: 0, count: 44)
        #expect(Array(all[0..<4]) == Array("myfs".utf8) && all[4..<36].allSatisfy { $0 == 0 })
        var config = Decoder(all, at: 36)
        #expect(config.u32() == 3, "num_request_queues")
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

        let initReply = try f.initSession()
        #expect(initReply.error == 0 && initReply.u32(0) == 7, "no error, major version 7")
        #expect(initReply.completion.length == initReply.headerLength, "used length = fuse_out_header.len")

        let lookup = try f.roundTrip(f.requests, queue: 1, f.request(.lookup, Bytes().name("hello")))
        #expect(lookup.error == 0)
        let node = lookup.u64(0)
        #expect(node > 1)
        #expect(lookup.u64(40 + 8) == 10_000, "fuse_entry_out (40 bytes), then fuse_attr.ino, fuse_attr.size")

        let opened = try f.roundTrip(f.requests, queue: 1, f.request(.open, node: node, Bytes().u32(UInt32(O_RDONLY)).u32(0)))
        #expect(opened.error == 0)
        let fh = opened.u64(0)

        // READ 10,000 bytes into three writable descriptors: header and data
        // land across them as one byte stream.
        let readBody = Bytes().u64(fh).u64(0).u32(10_000).u32(0).u64(0).u32(UInt32(O_RDONLY)).u32(0)
        let read = try f.roundTrip(f.requests, queue: 1, f.request(.read, node: node, readBody), writableSplit: [10, 4000, 8000])
        #expect(read.error == 0)
        #expect(read.completion.length == 16 + 10_000)
        #expect(Array(read.bytes[16..<(16 + 10_000)]) == content)

        // FORGET on hiprio has no reply: used length 0.
        let forgot = try f.roundTrip(f.hiprio, queue: 0, f.request(.forget, node: node, Bytes().u64(1)), replyCapacity: 0)
        #expect(forgot.completion.length == 0)
        #expect(f.device.fatalError == nil)
    }

    @Test func replyLargerThanTheWritableBuffersIsAnErrorNotAnOverflow() throws {
        let f = try Fixture(layout: .split)
        _ = try f.initSession()
        // GETATTR's reply is 16 + 104 bytes; offer 40.
        let r = try f.roundTrip(f.requests, queue: 1, f.request(.getattr, Bytes().zeros(16)), replyCapacity: 40)
        #expect(r.completion.length == 16, "only an error header")
        #expect(r.error == -EIO)
    }

    /// Waiting lock requests (SETLKW) must not occupy the queue: inline or
    /// with one worker thread, three requests wait for a lock and the
    /// holder's unlock arrives after them on the same queue. If a waiter
    /// held the thread, the unlock would never run and the queue would hang.
    @Test(arguments: [0, 1])
    func waitingLockRequestsDoNotStallTheQueue(poolThreads: Int) throws {
        let f = try Fixture(layout: .split, poolThreads: poolThreads)
        let lk = try f.lockFile()
        let held = try f.roundTrip(f.requests, queue: 1, lk(.setlk, 1, F_WRLCK))
        #expect(held.error == 0)
        let waiters = [lk(.setlkw, 2, F_RDLCK), lk(.setlkw, 3, F_RDLCK), lk(.setlkw, 4, F_RDLCK)]
        try f.post(waiters)
        usleep(100_000)
        let unlock = lk(.setlk, 1, F_UNLCK)
        try f.post([unlock])
        let done = try f.collect(count: 4).map(QueueReply.init)
        let uniques = (waiters + [unlock]).map { var d = Decoder($0, at: 8); return d.u64() }
        #expect(Set(done.map(\.unique)) == Set(uniques), "every request completed")
        #expect(done.allSatisfy { $0.error == 0 }, "the unlock succeeded and every waiter got its read lock")
    }

    /// The attack of issue 8 on the lock-waiter budget: it was one per queue
    /// runner, and the waiters of a stopped runner were forgotten, so
    /// "queue waiters, reset the device, repeat" grew threads without bound.
    /// Now the budget is the FUSE server's, shared by every queue and
    /// counted until a waiter's thread really ends: after a reset the
    /// abandoned waiters still count, and one more SETLKW gets ENOLCK.
    @Test func lockWaitersShareOneBudgetAcrossDeviceResets() throws {
        var options = FUSEServerOptions()
        options.maxLockWaiters = 2
        // A name of this test's own: other suites in this process run lock
        // waiters of their own at the same time.
        options.lockWaiterThreadName = "lk-budget-test"
        let f = try Fixture(layout: .split, poolThreads: 0, options: options)
        let lk = try f.lockFile()
        #expect(try f.roundTrip(f.requests, queue: 1, lk(.setlk, 1, F_WRLCK)).error == 0)
        #expect(try threadCount(named: options.lockWaiterThreadName) == 0)

        try f.post([lk(.setlkw, 2, F_RDLCK), lk(.setlkw, 3, F_RDLCK), lk(.setlkw, 4, F_RDLCK)])
        let third = try f.collect(count: 1).map(QueueReply.init)
        #expect(third.map(\.error) == [-ENOLCK], "two wait, the third is refused at once")
        for _ in 0..<200 where f.client.server.lockWaiters < 2 { usleep(5000) }
        #expect(f.client.server.lockWaiters == 2)

        for round in 1...3 {
            try f.resetAndReactivate()
            let again = try f.roundTrip(f.requests, queue: 1, lk(.setlkw, 10 + UInt64(round), F_RDLCK))
            #expect(again.error == -ENOLCK, "round \(round): the abandoned waiters still hold the budget")
        }
        #expect(try threadCount(named: options.lockWaiterThreadName) == 2, "no waiter threads beyond the budget")

        // Releasing the lock lets the abandoned waiters end (their replies
        // go nowhere: their queue is gone); the budget is free again.
        #expect(try f.roundTrip(f.requests, queue: 1, lk(.setlk, 1, F_UNLCK)).error == 0)
        for _ in 0..<400 where f.client.server.lockWaiters > 0 { usleep(5000) }
        #expect(f.client.server.lockWaiters == 0)
        usleep(50_000)
        #expect(try f.requests.collect().isEmpty, "no late reply reached the new rings")
    }

    @Test func lyingLengthFieldGetsEINVAL() throws {
        let f = try Fixture(layout: .packed)
        _ = try f.initSession()
        let getattr = f.request(.getattr, Bytes().zeros(16), len: 4000)
        let r = try f.roundTrip(f.requests, queue: 1, getattr)
        var d = Decoder(getattr, at: 8)
        #expect(r.error == -EINVAL && r.unique == d.u64())
    }
}

/// Threads of this process now (/proc/self/task).
private func threadCount(named name: String) throws -> Int {
    guard let dir = opendir("/proc/self/task") else { throw MockDriverError.other("cannot read /proc/self/task") }
    defer { closedir(dir) }
    var n = 0
    while let e = readdir(dir) {
        let tid = withUnsafeBytes(of: e.pointee.d_name) { String(decoding: $0.prefix { $0 != 0 }, as: UTF8.self) }
        guard tid != "." && tid != "..", let file = fopen("/proc/self/task/\(tid)/comm", "r") else { continue }
        defer { fclose(file) }
        var line = [CChar](repeating: 0, count: 32)
        guard fgets(&line, 32, file) != nil else { continue }
        let comm = String(decoding: line.prefix { $0 != 0 && $0 != 10 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
        if comm == name { n += 1 }
    }
    return n
}
