import CVfsvmURing
import Glibc
import Synchronization
import VfsvmFUSE
import VfsvmMemory
import VfsvmSys

/// FUSE over io_uring (Linux 6.14+, `enable_uring` set on the fuse
/// module): the request channel of a host mount. Each ring registers
/// entries (a header buffer and a payload buffer) for one kernel queue;
/// the kernel queues a request on the queue of the CPU its caller runs on,
/// copies it into an available entry and completes that entry's command;
/// the reply goes back with the command that fetches the next request
/// (COMMIT_AND_FETCH): one system call per request instead of a read and
/// a write of /dev/fuse.
///
/// The kernel wants every queue (one per possible CPU) registered before
/// it switches over; until then, and for FORGET and INTERRUPT always,
/// requests still come through /dev/fuse reads, so those readers keep
/// running. The rings are made before the mount (`make`): INIT offers
/// FUSE_OVER_IO_URING only when they exist, since once it is agreed the
/// kernel holds new requests until the queues are registered or a
/// registration fails.
///
/// Entries are all registered up front and never added: the kernel puts a
/// request that finds no free entry on its queue's pending list and hands
/// that list out only when an entry commits a reply (COMMIT_AND_FETCH); an
/// entry registered later just waits for the next new request. So a queue
/// whose every entry holds a lock wait (SETLKW, deferred to a waiter thread
/// until the lock is granted) never commits, and the UNLOCK they wait for,
/// pending behind them, is never served: the waiters hung for good (4 of 30
/// fresh mounts with 8 waiters, when each wait registered a new entry).
/// Each queue's lock waits are therefore bounded (`QueueBudget`) to one
/// less than its entries: one entry at least is always serving or free,
/// and the next commit takes the pending list's head. A wait past the
/// bound is answered ENOLCK, as past the server's own waiter budget. The
/// entries' payload buffers are mapped lazily, so the spare ones cost
/// address space, not memory, until a large request uses them.
public final class HostFUSEURing: @unchecked Sendable {
    // @unchecked: `rings` is fixed at init; each ring is used by the one
    // thread `start` gives it.

    /// Why the channel is /dev/fuse reads, in words for the log.
    public struct Unavailable: Error, CustomStringConvertible {
        public let description: String
    }

    public let queues: Int
    public let ringsPerQueue: Int
    /// Entries each ring registers (and keeps: none are ever added).
    public let entriesPerRing: Int
    private let rings: [OpaquePointer]
    /// Lock waits held, per kernel queue (shared by the queue's rings).
    private let budgets: [QueueBudget]
    private let started = Atomic(false)
    private let running = Atomic(false)
    private let failed = Atomic(false)
    private let log: @Sendable (String) -> Void

    /// Entries per kernel queue, split among its rings: a queue holds at
    /// most one less than this many lock waits at once (past that ENOLCK:
    /// the waiters of one CPU, as the kernel queues by the caller's CPU),
    /// and each entry maps a payload buffer of max_pages (1 MiB) that costs
    /// memory only where requests write to it (the kernel hands out the
    /// entry it got back last first, so the spare ones stay untouched).
    public static let entriesPerQueue = 64

    /// The module parameter, when it can be read: "Y" or "N".
    public static let kernelParameter = "/sys/module/fuse/parameters/enable_uring"

    /// Rings for every possible CPU's queue, `ringsPerQueue` each (one
    /// serving thread per ring), or why not: the kernel has FUSE over
    /// io_uring off or lacks it, or io_uring itself is unavailable.
    public static func make(ringsPerQueue: Int, log: @escaping @Sendable (String) -> Void = { logLine($0) })
        -> Result<HostFUSEURing, Unavailable>
    {
        let fd = Glibc.open(kernelParameter, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else {
            return .failure(Unavailable(description: "this kernel has no FUSE over io_uring (\(kernelParameter) is missing)"))
        }
        var byte: UInt8 = 0
        let n = Glibc.read(fd, &byte, 1)
        Glibc.close(fd)
        guard n == 1, byte == UInt8(ascii: "Y") else {
            return .failure(Unavailable(description: "FUSE over io_uring is off in the kernel (\(kernelParameter) is N; set it to Y to enable)"))
        }
        let queues = possibleCPUs()
        let perQueue = max(1, ringsPerQueue)
        let entries = max(2, (entriesPerQueue + perQueue - 1) / perQueue)
        // In flight at once: every entry's command and the eventfd read.
        let completions = 2 * max(RingWorker.sqEntries, entries + 1)
        var rings: [OpaquePointer] = []
        for _ in 0..<(queues * perQueue) {
            var ring: OpaquePointer?
            let e = vfsvm_fuse_ring_create(UInt32(RingWorker.sqEntries), UInt32(completions), &ring)
            guard e == 0, let ring else {
                for r in rings { vfsvm_fuse_ring_destroy(r) }
                return .failure(Unavailable(description: "cannot set up an io_uring ring with 128-byte entries (\(Errno(rawValue: -e)))"))
            }
            rings.append(ring)
        }
        return .success(HostFUSEURing(queues: queues, ringsPerQueue: perQueue, entriesPerRing: entries, rings: rings, log: log))
    }

    private init(queues: Int, ringsPerQueue: Int, entriesPerRing: Int, rings: [OpaquePointer],
                 log: @escaping @Sendable (String) -> Void) {
        self.queues = queues
        self.ringsPerQueue = ringsPerQueue
        self.entriesPerRing = entriesPerRing
        self.rings = rings
        budgets = (0..<queues).map { _ in QueueBudget(limit: ringsPerQueue * entriesPerRing - 1) }
        self.log = log
    }

    /// True once a request has come through a ring.
    public var isRunning: Bool { running.load(ordering: .relaxed) }

    /// The number of CPUs the kernel may ever run (cpu_possible_mask):
    /// the fuse ring has one queue for each and needs all registered.
    public static func possibleCPUs() -> Int {
        // "0-1", "0", "0-3,5": the highest index + 1.
        let fd = Glibc.open("/sys/devices/system/cpu/possible", O_RDONLY | O_CLOEXEC)
        if fd >= 0 {
            var buf = [UInt8](repeating: 0, count: 256)
            let n = Glibc.read(fd, &buf, buf.count)
            Glibc.close(fd)
            if n > 0 {
                let text = String(decoding: buf[0..<n], as: UTF8.self)
                let numbers = text.split(whereSeparator: { !$0.isNumber }).compactMap { Int($0) }
                if let last = numbers.max() { return last + 1 }
            }
        }
        return max(1, sysconf(Int32(_SC_NPROCESSORS_CONF)))
    }

    private struct Go { var device: FileDescriptor?; var maxPayload = 0 }
    private let go = Mutex(Go())
    private var gate: (read: FileDescriptor, write: FileDescriptor)?

    /// Starts one thread per ring, each on its queue's CPU (the kernel puts
    /// a request on the queue of the CPU its caller runs on, so the reply
    /// comes from a thread already there: measured 0.13 → 0.18 of native
    /// on create+stat+unlink), waiting for `start`. Called before the
    /// seccomp filter, which does not allow setting a thread's CPUs.
    public func spawn(handler: some FUSERequestHandler) throws(SystemError) {
        let gate = try makePipe()
        self.gate = gate
        // Each thread says when it is pinned: the filter (applied to every
        // thread) must not come before.
        let pinnedPipe = try makePipe()
        for i in rings.indices {
            let qid = UInt16(i / ringsPerQueue)
            try OSThread(name: "vfsvm-uring-\(i)") { [self] in
                let pinned = vfsvm_fuse_ring_pin_thread(UInt32(qid))
                if pinned != 0, i == 0 { log("vfsvm mount: cannot keep the io_uring threads on their queues' CPUs (\(Errno(rawValue: -pinned)))") }
                var byte: UInt8 = 1
                _ = Glibc.write(pinnedPipe.write.rawValue, &byte, 1)
                // Blocks until `start` (or for good when INIT never agrees).
                guard Glibc.read(gate.read.rawValue, &byte, 1) == 1 else { return }
                let g = go.withLock { $0 }
                guard let device = g.device else { return }
                let worker = RingWorker(ring: rings[i], device: device, qid: qid, entries: entriesPerRing,
                                        payloadSize: max(g.maxPayload, 8192), budget: budgets[Int(qid)], channel: self)
                worker.run(handler)
            }.detach()
        }
        var waiting = rings.count
        var buf = [UInt8](repeating: 0, count: 64)
        while waiting > 0 {
            let n = Glibc.read(pinnedPipe.read.rawValue, &buf, min(waiting, buf.count))
            if n < 0, errno == EINTR { continue }
            guard n > 0 else { throw SystemError("read(ring threads' pipe)", .current) }
            waiting -= n
        }
    }

    /// Lets the threads register their entries. Called once, after the INIT
    /// reply (the kernel refuses registration before it) that agreed on
    /// FUSE_OVER_IO_URING; `maxPayload` is that reply's max(max_write,
    /// max_pages × page size).
    func start(device: FileDescriptor, maxPayload: Int) {
        guard !started.exchange(true, ordering: .relaxed), let gate else { return }
        go.withLock { $0 = Go(device: device, maxPayload: maxPayload) }
        let bytes = [UInt8](repeating: 1, count: rings.count)
        do { try gate.write.writeAll(bytes) } catch { registrationFailed("waking the ring threads: \(error)") }
    }

    func registrationFailed(_ why: String) {
        guard !failed.exchange(true, ordering: .relaxed) else { return }
        log("vfsvm mount: request channel: /dev/fuse reads (registering FUSE over io_uring failed: \(why))")
    }

    func firstRequest() {
        guard !running.exchange(true, ordering: .relaxed) else { return }
        log("vfsvm mount: request channel: FUSE over io_uring (\(queues) queues, \(ringsPerQueue) rings of \(entriesPerRing) entries each; -o no_uring for /dev/fuse reads)")
    }
}

/// The lock waits one kernel queue's entries may hold: at most `limit`, one
/// less than the queue's entries, so that one is always left to commit a
/// reply and take the next pending request (see `HostFUSEURing`).
final class QueueBudget: Sendable {
    let limit: Int
    private let count = Atomic(0)

    init(limit: Int) { self.limit = limit }

    /// One more wait, unless the queue is at its limit.
    func take() -> Bool {
        var n = count.load(ordering: .relaxed)
        while n < limit {
            let (done, now) = count.compareExchange(expected: n, desired: n + 1, ordering: .relaxed)
            if done { return true }
            n = now
        }
        return false
    }

    /// A wait's entry committed its reply: back in the kernel's hands.
    func give() { count.subtract(1, ordering: .relaxed) }
}

/// One ring and its entries, served by one thread.
private final class RingWorker: @unchecked Sendable {
    // @unchecked: everything but `late` is touched by the ring's thread
    // only; `late` is behind its mutex.

    /// An entry: [0, 288) the kernel's header buffer, payload at
    /// `payloadOffset` with the 16 bytes before it free for the reply's
    /// fuse_out_header, so a reply is laid out in place (no copy).
    final class Entry {
        let buffer: HostBuffer
        let iov: UnsafeMutablePointer<iovec>
        var commitID: UInt64 = 0
        init(payloadSize: Int) {
            let count = RingWorker.payloadOffset + payloadSize
            buffer = HostBuffer(mappedCount: count) ?? HostBuffer(count: count)
            iov = .allocate(capacity: 2)
            let base = buffer.segments[0].base
            iov[0] = iovec(iov_base: base, iov_len: MemoryLayout<vfsvm_fuse_uring_req_header>.size)
            iov[1] = iovec(iov_base: base + RingWorker.payloadOffset, iov_len: payloadSize)
        }
        deinit { iov.deallocate() }
    }

    static let payloadOffset = 512
    static let inHeaderSize = 40
    static let outHeaderSize = 16
    static let opInOffset = 128
    static let commitIDOffset = 264
    static let payloadSizeOffset = 272
    static let eventTag = UInt64.max
    /// Submission queue size (a fuller one is submitted early).
    static let sqEntries = 64
    static let maxCompletions = 32

    let ring: OpaquePointer
    let device: FileDescriptor
    let qid: UInt16
    let entryCount: Int
    let payloadSize: Int
    let budget: QueueBudget
    unowned let channel: HostFUSEURing
    var entries: [Entry] = []
    /// The request as one piece: header + op struct + payload, copied
    /// out of the entry so the reply may overwrite the payload buffer.
    let request: HostBuffer
    /// Commands of ours the kernel holds (registered or committed
    /// entries).
    var live = 0
    /// Entries of this ring held by lock waits: none of the kernel's, yet
    /// the ring goes on while their late replies may come, until a command
    /// comes back with an error (unmounted): then the thread ends with the
    /// last of `live`, whatever waiters still hold.
    var held = 0
    var ending = false

    struct Late { var pending: [(entry: Int, bytes: [UInt8])] = []; var closed = false }
    let late = Mutex(Late())
    let wake: EventFD?
    /// Where the kernel reads the eventfd's counter into (a stable address).
    let wakeCounter = UnsafeMutablePointer<UInt64>.allocate(capacity: 1)

    init(ring: OpaquePointer, device: FileDescriptor, qid: UInt16, entries: Int, payloadSize: Int,
         budget: QueueBudget, channel: HostFUSEURing) {
        self.ring = ring
        self.device = device
        self.qid = qid
        entryCount = entries
        self.payloadSize = payloadSize
        self.budget = budget
        self.channel = channel
        request = HostBuffer(count: Self.inHeaderSize + 128 + payloadSize)
        wake = try? EventFD()
    }

    func run(_ handler: some FUSERequestHandler) {
        defer { shutDown() }
        guard let wake else {
            channel.registrationFailed("cannot make an eventfd for ring replies")
            return
        }
        // All of them now, before any request can be pending (see
        // `HostFUSEURing`): one submission, while the kernel still sends
        // requests through /dev/fuse reads until every queue has one.
        for _ in 0..<entryCount { register(Entry(payloadSize: payloadSize)) }
        armWake(wake)
        var tags = [UInt64](repeating: 0, count: Self.maxCompletions)
        var results = [Int32](repeating: 0, count: Self.maxCompletions)
        while live > 0 || (held > 0 && !ending) {
            let n = vfsvm_fuse_ring_submit_and_wait(ring, &tags, &results, UInt32(Self.maxCompletions))
            if n < 0 {
                logLine("vfsvm mount: io_uring wait on queue \(qid) failed: \(Errno(rawValue: -n)); the queue stops")
                return
            }
            for i in 0..<Int(n) {
                if tags[i] == Self.eventTag {
                    sendLateReplies()
                    armWake(wake)
                    continue
                }
                let index = Int(tags[i])
                let res = results[i]
                live -= 1
                if res < 0 {
                    ending = true
                    let e = Errno(rawValue: -res)
                    // ENOTCONN/ECONNABORTED: unmounted. Anything else on a
                    // queue that never served is a refused registration.
                    if e != .ENOTCONN, e.rawValue != Glibc.ECONNABORTED, !channel.isRunning {
                        channel.registrationFailed("\(e)")
                    }
                    continue
                }
                channel.firstRequest()
                serve(entry: index, handler)
            }
        }
    }

    private func shutDown() {
        late.withLock { $0.closed = true; $0.pending = [] }
    }

    private func register(_ entry: Entry) {
        entries.append(entry)
        queue(VFSVM_FUSE_IO_URING_CMD_REGISTER, entry: entries.count - 1, commitID: 0)
    }

    private func queue(_ op: UInt32, entry index: Int, commitID: UInt64) {
        var e = vfsvm_fuse_ring_queue_cmd(ring, device.rawValue, op, entries[index].iov, qid, commitID, UInt64(index))
        if e == -EBUSY {
            // A burst of late replies: hand what is queued to the kernel first.
            _ = vfsvm_fuse_ring_submit(ring)
            e = vfsvm_fuse_ring_queue_cmd(ring, device.rawValue, op, entries[index].iov, qid, commitID, UInt64(index))
        }
        precondition(e == 0, "FUSE ring submission queue full after a submit")
        live += 1
    }

    private func armWake(_ wake: EventFD) {
        var e = vfsvm_fuse_ring_queue_read(ring, wake.fd.rawValue, wakeCounter, 8, Self.eventTag)
        if e == -EBUSY {
            _ = vfsvm_fuse_ring_submit(ring)
            e = vfsvm_fuse_ring_queue_read(ring, wake.fd.rawValue, wakeCounter, 8, Self.eventTag)
        }
        precondition(e == 0, "FUSE ring submission queue full after a submit")
    }

    /// The request the kernel put in entry `index`, answered and committed.
    private func serve(entry index: Int, _ handler: some FUSERequestHandler) {
        let entry = entries[index]
        let length = entry.buffer.withUnsafeMutableBytes { raw -> Int in
            let len = Int(raw.load(fromByteOffset: 0, as: UInt32.self))
            let payload = Int(raw.load(fromByteOffset: Self.payloadSizeOffset, as: UInt32.self))
            entry.commitID = raw.load(fromByteOffset: Self.commitIDOffset, as: UInt64.self)
            let op = len - Self.inHeaderSize - payload
            guard op >= 0, op <= 128, payload <= payloadSize else { return -1 }
            request.withUnsafeMutableBytes { dst in
                let d = dst.baseAddress!, s = raw.baseAddress!
                d.copyMemory(from: s, byteCount: Self.inHeaderSize)
                d.advanced(by: Self.inHeaderSize).copyMemory(from: s + Self.opInOffset, byteCount: op)
                d.advanced(by: Self.inHeaderSize + op).copyMemory(from: s + Self.payloadOffset, byteCount: payload)
            }
            return len
        }
        guard length >= 0 else {
            logLine("vfsvm mount: a request from the kernel's ring does not add up (queue \(qid)); answered EIO")
            commitError(entry: index, .EIO)
            return
        }
        let reply = entry.buffer.window(offset: Self.payloadOffset - Self.outHeaderSize, length: Self.outHeaderSize + payloadSize)
        switch handler.handle(request: request.window(offset: 0, length: length), reply: reply,
                              deferral: RingDeferral(worker: self, entry: index)) {
        case let .replied(n):
            if n >= Self.outHeaderSize { commit(entry: index, length: n) } else { commitError(entry: index, .EIO) }
        case .deferred:
            // The entry waits for its late reply (`RingDeferral` took a
            // place in the queue's budget: others keep it fetching).
            held += 1
        }
    }

    /// Commits the reply laid out at the payload minus 16 bytes.
    private func commit(entry index: Int, length: Int) {
        let entry = entries[index]
        entry.buffer.withUnsafeMutableBytes { raw in
            let b = raw.baseAddress!
            b.copyMemory(from: b + Self.payloadOffset - Self.outHeaderSize, byteCount: Self.outHeaderSize)
            raw.storeBytes(of: UInt32(length - Self.outHeaderSize), toByteOffset: Self.payloadSizeOffset, as: UInt32.self)
        }
        queue(VFSVM_FUSE_IO_URING_CMD_COMMIT_AND_FETCH, entry: index, commitID: entry.commitID)
    }

    private func commitError(entry index: Int, _ e: Errno) {
        let entry = entries[index]
        entry.buffer.withUnsafeMutableBytes { raw in
            raw.storeBytes(of: UInt32(Self.outHeaderSize), toByteOffset: 0, as: UInt32.self)
            raw.storeBytes(of: -e.rawValue, toByteOffset: 4, as: Int32.self)
            raw.storeBytes(of: entry.commitID, toByteOffset: 8, as: UInt64.self)
            raw.storeBytes(of: 0, toByteOffset: Self.payloadSizeOffset, as: UInt32.self)
        }
        queue(VFSVM_FUSE_IO_URING_CMD_COMMIT_AND_FETCH, entry: index, commitID: entry.commitID)
    }

    /// From a waiter's thread: hands the reply to the ring's thread.
    func lateReply(entry: Int, _ bytes: [UInt8]) {
        late.withLock { l in
            guard !l.closed else { return }
            l.pending.append((entry, bytes))
            try? wake?.signal()
        }
    }

    private func sendLateReplies() {
        let pending = late.withLock { l in
            let p = l.pending
            l.pending = []
            return p
        }
        for (index, bytes) in pending {
            let entry = entries[index]
            // Committed below, so fetching again: its place is free.
            defer { budget.give(); held -= 1 }
            guard bytes.count >= Self.outHeaderSize, bytes.count <= Self.outHeaderSize + payloadSize else {
                commitError(entry: index, .EIO)
                continue
            }
            entry.buffer.withUnsafeMutableBytes { raw in
                bytes.withUnsafeBytes { src in
                    (raw.baseAddress! + Self.payloadOffset - Self.outHeaderSize).copyMemory(from: src.baseAddress!, byteCount: src.count)
                }
            }
            commit(entry: index, length: bytes.count)
        }
    }
}

/// A deferred request's reply, committed on its entry by the ring's thread;
/// admitted only while the queue keeps an entry free of waits.
private struct RingDeferral: FUSEReplyDeferral, FUSELateReply {
    let worker: RingWorker
    let entry: Int
    func admitsWait() -> Bool { worker.budget.take() }
    func deferReply() -> RingDeferral { self }
    func send(_ reply: [UInt8]) { worker.lateReply(entry: entry, reply) }
}
