import Glibc
import Synchronization
import Testing
import VfsvmMemory
import VfsvmSys
import VfsvmTestSupport
@testable import VfsvmVirtio

/// The queue runner end to end over the mock driver: kicks through a real
/// eventfd, completions and interrupts as a driver sees them.
@Suite struct QueueRunnerTests {
    static let reverser = ReversingDevice.reverse

    /// One kick, several requests: each answered, one interrupt for the batch.
    @Test(arguments: RingLayout.allCases)
    func requestsOfOneKickShareOneInterrupt(_ layout: RingLayout) throws {
        let driver = try MockDriver(layout: layout, queueSize: 16, features: [.version1, .indirectDescriptors])
        let interrupt = RecordingInterrupt()
        let runner = try QueueRunner(
            index: 0, queue: try driver.makeQueue(), memory: driver.memory, kick: try EventFD(nonBlocking: true),
            interrupt: interrupt, handler: Self.reverser, onFatal: { _ in Issue.record("no fatal error expected") })
        for i in 0..<3 { try driver.post(request: [1, 2, UInt8(i)], replyCapacity: 8, indirect: i == 1) }
        runner.processAvailable()
        #expect(try driver.collect().map(\.reply) == [[0, 2, 1], [1, 2, 1], [2, 2, 1]])
        #expect(interrupt.queueSignals(0) == 1)
        // The reply is cut to the writable space.
        try driver.post(request: [1, 2, 3, 4], replyCapacity: 2)
        runner.processAvailable()
        #expect(try driver.collect().map(\.reply) == [[4, 3]])
        #expect(interrupt.queueSignals(0) == 2)
    }

    /// No lost wake-up (2.7.10 / 2.8.10): a request the driver publishes
    /// while the runner is busy is either served in the same drain or the
    /// driver is asked to kick for it.
    @Test(arguments: RingLayout.allCases)
    func aRequestPublishedDuringADrainIsServedOrKicked(_ layout: RingLayout) throws {
        let driver = try MockDriver(layout: layout, queueSize: 16, features: [.version1, .eventIndex])
        let posted = Mutex(false)
        nonisolated(unsafe) let unsafeDriver = driver  // used by the handler only while processAvailable runs on this thread
        let runner = try QueueRunner(
            index: 0, queue: try driver.makeQueue(), memory: driver.memory, kick: try EventFD(nonBlocking: true),
            interrupt: RecordingInterrupt(),
            handler: { chain, memory in
                let first = posted.withLock { p in defer { p = true }; return !p }
                if first { _ = try? unsafeDriver.post(request: [42], replyCapacity: 1) }
                return Self.reverser(chain, memory)
            },
            onFatal: { _ in Issue.record("no fatal error expected") })
        for _ in 0..<5 { try driver.post(request: [1], replyCapacity: 1) }
        _ = try driver.deviceWantsKick()
        runner.processAvailable()
        var done = try driver.collect()
        let kickWanted = try driver.deviceWantsKick()
        #expect(done.count == 6 || (done.count == 5 && kickWanted))
        if kickWanted { runner.processAvailable() }
        done += try driver.collect()
        #expect(done.map(\.reply).last == [42])
        // Notifications are back on once the queue is drained.
        try driver.post(request: [1], replyCapacity: 1)
        #expect(try driver.deviceWantsKick())
    }

    @Test func refusedChainCompletesWithZeroLength() throws {
        let driver = try MockDriver(layout: .split, queueSize: 16)
        let queue = try driver.makeQueue()
        // Readable after writable is refused (2.7.4.2: device-writable descriptors follow device-readable ones).
        let w = try driver.allocate(8), r = try driver.allocate(8)
        try driver.addChain([MockSegment(address: w, length: 8, writable: true), MockSegment(address: r, length: 8, writable: false)])
        try driver.post(request: [9], replyCapacity: 4)
        let interrupt = RecordingInterrupt()
        let runner = try QueueRunner(
            index: 0, queue: queue, memory: driver.memory, kick: try EventFD(nonBlocking: true),
            interrupt: interrupt, handler: Self.reverser, onFatal: { _ in Issue.record("no fatal error expected") })
        runner.processAvailable()
        let done = try driver.collect()
        #expect(done.map(\.length) == [0, 1])
        #expect(done.last?.reply == [9])
    }

    @Test func fatalQueueErrorStopsTheQueueAndIsReported() throws {
        let driver = try MockDriver(layout: .split, queueSize: 8)
        let fatal = Mutex<VirtqueueError?>(nil)
        let runner = try QueueRunner(
            index: 0, queue: try driver.makeQueue(), memory: driver.memory, kick: try EventFD(nonBlocking: true),
            interrupt: RecordingInterrupt(), handler: Self.reverser, onFatal: { e in fatal.withLock { $0 = e } })
        // avail idx jumps by more than the queue size (2.7.6: the driver MUST NOT).
        try driver.memory.store(UInt16(100).littleEndian, at: driver.driverArea.unchecked(plus: 2))
        runner.processAvailable()
        #expect(fatal.withLock { $0 }?.isFatal == true)
        // Later buffers are ignored: the queue stays stopped until reset.
        try driver.memory.store(UInt16(0).littleEndian, at: driver.driverArea.unchecked(plus: 2))
        try driver.post(request: [1], replyCapacity: 1)
        runner.processAvailable()
        #expect(try driver.collect().isEmpty)
    }

    @Test func stopReturnsTheRingPosition() throws {
        let driver = try MockDriver(layout: .packed, queueSize: 8)
        let runner = try QueueRunner(
            index: 0, queue: try driver.makeQueue(), memory: driver.memory, kick: try EventFD(nonBlocking: true),
            interrupt: RecordingInterrupt(), handler: Self.reverser, onFatal: { _ in })
        for _ in 0..<3 { try driver.post(request: [1, 2], replyCapacity: 2) }
        runner.processAvailable()
        let q = runner.stop()
        // Three 2-descriptor chains: next avail slot 6, avail wrap counter
        // still 1 (bit 15, QEMU's GET_VRING_BASE encoding).
        #expect(q.availState == 0x8000 | 6)
    }

    /// Requests that may block get threads of their own up to the limit;
    /// past it they are refused at once instead of running on the queue's
    /// thread, where they could stall every request behind them.
    @Test func blockingRequestsPastTheLimitAreRefusedNotRunInline() throws {
        let driver = try MockDriver(layout: .split, queueSize: 16)
        let (gateRead, gateWrite) = try makePipe()
        let runner = try QueueRunner(
            index: 1, queue: try driver.makeQueue(), memory: driver.memory, kick: try EventFD(nonBlocking: true),
            interrupt: RecordingInterrupt(),
            handler: { _, _ in
                var b: UInt8 = 0
                _ = read(gateRead.rawValue, &b, 1)  // waits like a SETLKW
                return 1
            },
            mayBlock: { _, _ in true }, blockingLimit: 2, refuseBlocking: { _, _ in 0 },
            onFatal: { _ in Issue.record("no fatal error expected") })
        for i in 0..<3 { try driver.post(request: [UInt8(i)], replyCapacity: 4) }
        runner.processAvailable()  // returns: nothing runs on this thread
        let refused = try collect(driver, count: 1)
        #expect(refused.map(\.length) == [0], "the third waiter is refused at once")
        try gateWrite.writeAll([1, 1])
        let released = try collect(driver, count: 2)
        #expect(released.map(\.length) == [1, 1], "the two waiting requests complete when released")
        runner.stop()
    }
}
