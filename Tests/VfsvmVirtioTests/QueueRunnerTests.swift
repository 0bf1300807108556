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

    // MARK: - Deferred completion

    /// Keeps every chain's token instead of answering.
    final class Deferrer: Sendable {
        let tokens = Mutex<[(ChainCompletion, [UInt8])]>([])
        var handler: DeferringChainHandler {
            { [self] request in
                let bytes = (try? request.chain.readableBuffers(request.memory).bytes(at: 0, count: request.chain.readableLength)) ?? []
                // Write the answer now; the token says when it is done.
                if let out = try? request.chain.writableBuffers(request.memory) { try? out.write(bytes.reversed(), at: 0) }
                let token = request.deferCompletion()
                tokens.withLock { $0.append((token, bytes)) }
                return .deferred
            }
        }
        var count: Int { tokens.withLock { $0.count } }
        func take() -> [(ChainCompletion, [UInt8])] { tokens.withLock { t in defer { t = [] }; return t } }
    }

    /// Deferred chains complete from another thread in any order; the
    /// driver sees each exactly when its token completes.
    @Test(arguments: [RingLayout.split, .packed], [0, 2])
    func deferredChainsCompleteFromAnotherThreadOutOfOrder(_ layout: RingLayout, poolThreads: Int) throws {
        let driver = try MockDriver(layout: layout, queueSize: 16, features: [.version1, .eventIndex])
        let deferrer = Deferrer()
        let interrupt = RecordingInterrupt()
        let kick = try EventFD(nonBlocking: true)
        let runner = try QueueRunner(
            index: 1, queue: try driver.makeQueue(), memory: driver.memory, kick: kick, interrupt: interrupt,
            poolThreads: poolThreads, requestHandler: deferrer.handler, onFatal: { _ in Issue.record("no fatal error expected") })
        try runner.start()
        for i in 0..<4 { try driver.post(request: [UInt8(i), 0xF0], replyCapacity: 4) }
        try kick.signal()
        for _ in 0..<500 where deferrer.count < 4 { usleep(10_000) }
        #expect(try driver.collect().isEmpty, "nothing is completed before its token")
        let tokens = deferrer.take().sorted { $0.1[0] > $1.1[0] }  // newest first
        let completer = try OSThread {
            for (token, request) in tokens { _ = token.complete(length: UInt32(request.count)) }
        }
        completer.join()
        let done = try collect(driver, count: 4)
        #expect(done.map(\.reply) == [[0xF0, 3], [0xF0, 2], [0xF0, 1], [0xF0, 0]], "completed in the order the tokens were")
        #expect(interrupt.queueSignals(1) >= 1)
        runner.stop()
    }

    /// A completion after the queue stopped (GET_VRING_BASE, a reset) is
    /// dropped: the ring may already belong to someone else.
    @Test func aCompletionAfterStopIsDropped() throws {
        let driver = try MockDriver(layout: .split, queueSize: 8)
        let deferrer = Deferrer()
        let runner = try QueueRunner(
            index: 0, queue: try driver.makeQueue(), memory: driver.memory, kick: try EventFD(nonBlocking: true),
            interrupt: RecordingInterrupt(), requestHandler: deferrer.handler, onFatal: { _ in })
        try driver.post(request: [1, 2], replyCapacity: 2)
        runner.processAvailable()
        let q = runner.stop()
        let (token, _) = try #require(deferrer.take().first)
        #expect(!token.complete(length: 2), "dropped")
        #expect(try driver.collect().isEmpty)
        #expect(try driver.memory.load(UInt16.self, at: driver.deviceArea.unchecked(plus: 2)) == 0, "used idx untouched")
        #expect(q.availState == 1)
    }

    /// Only the first completion of a token counts.
    @Test func aTokenCompletesItsChainOnlyOnce() throws {
        let driver = try MockDriver(layout: .packed, queueSize: 8)
        let deferrer = Deferrer()
        let runner = try QueueRunner(
            index: 0, queue: try driver.makeQueue(), memory: driver.memory, kick: try EventFD(nonBlocking: true),
            interrupt: RecordingInterrupt(), requestHandler: deferrer.handler, onFatal: { _ in Issue.record("no fatal error expected") })
        try driver.post(request: [1, 2], replyCapacity: 2)
        try driver.post(request: [3, 4], replyCapacity: 2)
        runner.processAvailable()
        let tokens = deferrer.take()
        #expect(tokens.count == 2)
        #expect(tokens[0].0.complete(length: 2))
        #expect(!tokens[0].0.complete(length: 1), "a second completion does nothing")
        #expect(try driver.collect().map(\.reply) == [[2, 1]])
        #expect(tokens[1].0.complete(length: 2))
        #expect(try driver.collect().map(\.reply) == [[4, 3]], "the ring is not corrupted by the repeat")
        runner.stop()
    }

    /// A token dropped without completing still gives the driver its
    /// buffer back (length 0), and says so.
    @Test func aDroppedTokenCompletesItsChainEmpty() throws {
        let driver = try MockDriver(layout: .split, queueSize: 8)
        let deferrer = Deferrer()
        let lines = Mutex<[String]>([])
        let runner = try QueueRunner(
            index: 0, queue: try driver.makeQueue(), memory: driver.memory, kick: try EventFD(nonBlocking: true),
            interrupt: RecordingInterrupt(), requestHandler: deferrer.handler,
            log: { line in lines.withLock { $0.append(line) } }, onFatal: { _ in })
        try driver.post(request: [1], replyCapacity: 1)
        runner.processAvailable()
        _ = deferrer.take()  // the last reference goes
        #expect(try driver.collect().map(\.length) == [0])
        #expect(lines.withLock { $0 } == ["queue 0: chain 0 was deferred and never completed; completed empty"])
        runner.stop()
    }
}
