import Glibc
import Synchronization
import Testing
import VfsvmMemory
import VfsvmSys
import VfsvmTestSupport
@testable import VfsvmVirtio

/// A driver thread that keeps misbehaving until told to stop.
final class HostileDriverThread: Sendable {
    private let running = Atomic(true)
    private let thread = Mutex<OSThread?>(nil)

    /// Calls `step` in a loop on a thread of its own.
    init(_ step: @escaping @Sendable () -> Void) throws {
        let t = try OSThread(name: "hostile-driver") { [self] in
            while running.load(ordering: .relaxed) { step() }
        }
        thread.withLock { $0 = t }
    }

    func stop() {
        running.store(false, ordering: .relaxed)
        thread.withLock { t in t?.join(); t = nil }
    }
}

/// Resident set size of this process, in bytes (/proc/self/statm, field 2).
func residentBytes() -> Int {
    let fd = open("/proc/self/statm", O_RDONLY)
    guard fd >= 0 else { return 0 }
    defer { close(fd) }
    var buffer = [UInt8](repeating: 0, count: 128)
    let n = read(fd, &buffer, buffer.count)
    guard n > 0 else { return 0 }
    let fields = String(decoding: buffer[0..<n], as: UTF8.self).split(separator: " ")
    guard fields.count > 1, let pages = Int(fields[1]) else { return 0 }
    return pages * Int(sysconf(Int32(_SC_PAGESIZE)))
}

/// User + system CPU time of this process's threads called `name`
/// (/proc/self/task/TID/stat, fields 14 and 15, in clock ticks).
func threadCPUTime(named name: String) -> Duration {
    guard let dir = opendir("/proc/self/task") else { return .zero }
    defer { closedir(dir) }
    var ticks = 0
    while let e = readdir(dir) {
        let tid = withUnsafeBytes(of: e.pointee.d_name) { String(decoding: $0.prefix { $0 != 0 }, as: UTF8.self) }
        guard tid != "." && tid != "..", let file = fopen("/proc/self/task/\(tid)/stat", "r") else { continue }
        defer { fclose(file) }
        var line = [CChar](repeating: 0, count: 1024)
        guard fgets(&line, 1024, file) != nil else { continue }
        let text = String(decoding: line.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
        // "TID (comm) state ...": the name is between the first "(" and the last ")".
        guard let open = text.firstIndex(of: "("), let close = text.lastIndex(of: ")"),
              text[text.index(after: open)..<close] == name else { continue }
        let fields = text[text.index(after: close)...].split(separator: " ")
        // After the comm: state is field 3, utime 14, stime 15.
        guard fields.count > 12, let user = Int(fields[11]), let system = Int(fields[12]) else { continue }
        ticks += user + system
    }
    return .milliseconds(Int64(ticks) * 1000 / Int64(sysconf(Int32(_SC_CLK_TCK))))
}

/// Runs `body` on another thread and waits up to `seconds` for it; returns
/// how long it took, or nil when it had not returned by then (it is left
/// running).
final class Counter: Sendable {
    private let value = Atomic(0)
    func add(_ n: Int) { value.add(n, ordering: .relaxed) }
    var count: Int { value.load(ordering: .relaxed) }
}

func timed(within seconds: Double, _ body: @escaping @Sendable () -> Void) throws -> Duration? {
    let done = Counter()
    let clock = ContinuousClock()
    let start = clock.now
    let t = try OSThread(name: "timed") {
        body()
        done.add(1)
    }
    while done.count == 0 {
        if clock.now - start > .seconds(seconds) {
            t.detach()
            return nil
        }
        usleep(1000)
    }
    t.join()
    return clock.now - start
}

/// Attacks on the queue runner from a driver that never stops publishing
/// (issue 8, "Livelocks, hangs and unbounded growth").
@Suite(.serialized) struct HostileRunnerTests {
    /// The driver keeps avail.idx = used.idx + size with every chain
    /// pointing outside guest memory: each refused chain is completed and
    /// at once published again. The runner must still stop promptly,
    /// keep its memory, and log the storm a bounded number of times.
    @Test(.timeLimit(.minutes(1)))
    func aRefusalStormDoesNotHoldTheQueueGrowMemoryOrFloodTheLog() throws {
        let size: UInt16 = 1024
        let driver = try MockDriver(layout: .split, queueSize: size, features: [.version1])
        let memory = driver.memory
        for i in 0..<size {
            try driver.writeSplitDescriptor(index: i, address: GuestAddress(1 << 40), length: 16, flags: 0, next: 0)
            try memory.store(i.littleEndian, at: driver.driverArea.unchecked(plus: 4 + 2 * UInt64(i)))
        }
        let usedIdx = driver.deviceArea.unchecked(plus: 2), availIdx = driver.driverArea.unchecked(plus: 2)
        let lines = Counter()
        let kick = try EventFD(nonBlocking: true)
        let runner = try QueueRunner(
            index: 1, queue: try driver.makeQueue(), memory: memory, kick: kick, interrupt: RecordingInterrupt(),
            handler: { _, _ in 0 }, log: { _ in lines.add(1) }, onFatal: { _ in })
        let before = residentBytes()
        let attacker = try HostileDriverThread {
            let used = (try? memory.loadAcquireUInt16(at: usedIdx)) ?? 0
            try? memory.storeReleaseUInt16(used &+ size, at: availIdx)
            try? kick.signal()
        }
        try runner.start()
        try kick.signal()
        usleep(500_000)
        let grown = residentBytes() - before
        let stopTime = try timed(within: 3) { runner.stop() }
        attacker.stop()
        if stopTime == nil { _ = try timed(within: 30) { runner.stop() } }
        #expect(stopTime.map { $0 < .seconds(1) } == true, "stop() returned in \(String(describing: stopTime)), within 1 s")
        #expect(grown < 32 << 20, "resident memory grew by \(grown >> 20) MiB during the storm")
        #expect(lines.count <= 5, "\(lines.count) log lines for the storm")
        let completed = try memory.loadAcquireUInt16(at: usedIdx)
        #expect(completed != 0, "the runner did serve (refuse) chains during the storm")
    }

    /// With a worker pool, EVENT_IDX lets a driver republish faster than
    /// the workers drain: it reads avail_event (the device's next index) and
    /// publishes a whole ring beyond it, over and over, while every request
    /// waits. The chains the device takes on must stay bounded by the ring.
    @Test(.timeLimit(.minutes(1)))
    func chainsInFlightOnAPoolAreBoundedByTheRingSize() throws {
        let size: UInt16 = 16
        let driver = try MockDriver(layout: .split, queueSize: size, features: [.version1, .eventIndex])
        let memory = driver.memory
        let buffer = try driver.allocate(8)
        for i in 0..<size {
            try driver.writeSplitDescriptor(index: i, address: buffer, length: 8, flags: 0, next: 0)
            try memory.store(i.littleEndian, at: driver.driverArea.unchecked(plus: 4 + 2 * UInt64(i)))
        }
        let availEvent = driver.deviceArea.unchecked(plus: 4 + 8 * UInt64(size))
        let availIdx = driver.driverArea.unchecked(plus: 2)
        let gate = Mutex(false)
        let kick = try EventFD(nonBlocking: true)
        let runner = try QueueRunner(
            index: 1, queue: try driver.makeQueue(), memory: memory, kick: kick, interrupt: RecordingInterrupt(),
            poolThreads: 2,
            handler: { _, _ in
                while !gate.withLock({ $0 }) { usleep(1000) }
                return 0
            },
            onFatal: { _ in Issue.record("no fatal error expected") })
        // The chains the device took, as the driver sees them: how far
        // avail_event moved (summed, so 16-bit wrapping does not hide it).
        let taken = Counter()
        let last = Mutex<UInt16>(0)
        let attacker = try HostileDriverThread {
            let event = UInt16(littleEndian: (try? memory.load(UInt16.self, at: availEvent)) ?? 0)
            let delta = last.withLock { l in defer { l = event }; return event &- l }
            taken.add(Int(delta))
            try? memory.storeReleaseUInt16(event &+ size, at: availIdx)
            try? kick.signal()
        }
        try runner.start()
        try kick.signal()
        usleep(300_000)
        let inFlight = taken.count
        // Released, the queue goes on serving: more than a ring's worth
        // completes (a throttled runner wakes when chains complete).
        gate.withLock { $0 = true }
        let usedIdx = driver.deviceArea.unchecked(plus: 2)
        var completed = 0
        for _ in 0..<500 where completed <= Int(size) {
            usleep(10_000)
            completed = Int(try memory.loadAcquireUInt16(at: usedIdx))
        }
        attacker.stop()
        runner.stop()
        #expect(inFlight <= Int(size), "\(inFlight) chains taken on while none completed (ring size \(size))")
        #expect(completed > Int(size), "the queue kept serving once requests completed (\(completed) used)")
    }

    /// A kick fd that hangs up (a pipe whose writer closed, as a hostile
    /// vhost-user front-end could pass) is always "readable": the runner
    /// must give up on it instead of spinning a core.
    @Test(.timeLimit(.minutes(1)))
    func aKickFDThatHangsUpDoesNotSpinTheQueueThread() throws {
        let driver = try MockDriver(layout: .split, queueSize: 8)
        let readEnd = try makePipe().read  // the write end is closed at once: the read end hangs up
        let lines = Mutex<[String]>([])
        let runner = try QueueRunner(
            index: 57, queue: try driver.makeQueue(), memory: driver.memory, kick: EventFD(adopting: readEnd),
            interrupt: RecordingInterrupt(), handler: { _, _ in 0 },
            log: { line in lines.withLock { $0.append(line) } }, onFatal: { _ in })
        try runner.start()
        usleep(50_000)
        // The runner's own thread (other suites run in this process at the
        // same time, so the process's CPU time would measure them too).
        let before = threadCPUTime(named: "vfsvm-queue57")
        usleep(300_000)
        let used = threadCPUTime(named: "vfsvm-queue57") - before
        runner.stop()
        #expect(used < .milliseconds(100), "the queue thread used \(used) of CPU in 300 ms with a hung-up kick fd")
        #expect(lines.withLock { $0 } == ["queue 57: the kick fd keeps waking without a kick (hung up?); the queue no longer listens for kicks"])
    }

    /// An interrupt that always fails (a call fd that is no eventfd) is
    /// logged once, not once per completion.
    @Test func aFailingInterruptIsLoggedOnce() throws {
        struct Broken: Error {}
        final class FailingInterrupt: VirtioInterrupt {
            func signalQueue(_ index: Int) throws { throw Broken() }
            func signalConfigChange() throws { throw Broken() }
        }
        let driver = try MockDriver(layout: .split, queueSize: 8)
        let lines = Mutex<[String]>([])
        let runner = try QueueRunner(
            index: 0, queue: try driver.makeQueue(), memory: driver.memory, kick: try EventFD(nonBlocking: true),
            interrupt: FailingInterrupt(), handler: { _, _ in 0 },
            log: { line in lines.withLock { $0.append(line) } }, onFatal: { _ in })
        var completed = 0
        for _ in 0..<10 {
            try driver.post(request: [1], replyCapacity: 1)
            runner.processAvailable()
            completed += try driver.collect().count
        }
        #expect(completed == 10)
        #expect(lines.withLock { $0.count } == 1)
    }
}
