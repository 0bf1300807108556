import Glibc
import Synchronization
import Testing
import VfsvmMemory
import VfsvmSys
import VfsvmTestSupport
import VfsvmVirtio

/// Records what a device reported through `ActivationContext.queueFailed`.
final class FailureLog: Sendable {
    private let entries = Mutex<[(Int, VirtqueueError)]>([])
    var handler: QueueFailureHandler { { [self] index, error in entries.withLock { $0.append((index, error)) } } }
    var all: [(queue: Int, error: VirtqueueError)] { entries.withLock { $0 } }
}

@Suite struct ActivationContractTests {
    struct Setup {
        let device: ReversingDevice
        let driver: MockDriver
        let kick: EventFD
        let interrupt = RecordingInterrupt()
        let failures = FailureLog()

        init(_ layout: RingLayout) throws {
            device = ReversingDevice()
            driver = try MockDriver(layout: layout, queueSize: 16, features: [.version1, .indirectDescriptors])
            kick = try EventFD(nonBlocking: true)
        }

        func context(queues: [ActivatedQueue]? = nil) throws -> ActivationContext {
            ActivationContext(memory: driver.memory, features: driver.features,
                              queues: try queues ?? [ActivatedQueue(index: 0, queue: driver.makeQueue(), kick: kick)],
                              interrupt: interrupt, queueFailed: failures.handler)
        }

        /// Posts `request`, kicks, and waits for its reply.
        func roundTrip(_ request: [UInt8]) throws -> [UInt8]? {
            try driver.post(request: request, replyCapacity: 8)
            try kick.signal()
            return try collect(driver, count: 1).first?.reply
        }
    }

    @Test func configReadsPastTheEndAreZero() {
        let d = ReversingDevice()
        #expect(d.readConfig(offset: 6, count: 4) == [1, 0, 0, 0])
        #expect(d.readConfig(offset: Int.max, count: 4) == [0, 0, 0, 0])
        #expect(d.readConfig(offset: -2, count: 4) == [0, 0, 0x76, 0x66])
        #expect(d.queueMaxSizes == [16] && d.state == .inactive)
    }

    @Test(arguments: RingLayout.allCases)
    func activationStartsTheQueuesAndResetMakesTheDeviceInactive(_ layout: RingLayout) throws {
        let s = try Setup(layout)
        #expect(s.device.state == .inactive)
        try s.device.activate(s.context())
        #expect(s.device.state == .active)
        #expect(try s.roundTrip([1, 2, 3]) == [3, 2, 1])
        #expect(s.interrupt.queueSignals(0) == 1)
        #expect(throws: DeviceActivationError.alreadyActive) { try s.device.activate(s.context()) }
        s.device.reset()
        #expect(s.device.state == .inactive && s.device.deviceQueues.runningQueues.isEmpty)
        // Inactive: nothing is served, and queue operations are refused.
        try s.driver.post(request: [9], replyCapacity: 1)
        try s.kick.signal()
        usleep(50_000)
        #expect(try s.driver.collect().isEmpty)
        #expect(throws: DeviceActivationError.notActive) {
            try s.device.startQueue(ActivatedQueue(index: 0, queue: s.driver.makeQueue(), kick: s.kick))
        }
        #expect(s.device.stopQueue(0) == nil)
    }

    /// vhost-user's per-queue stop and restart (GET_VRING_BASE, then a new
    /// kick fd): the queue's position survives, the device stays active.
    @Test(arguments: RingLayout.allCases)
    func aStoppedQueueRestartsWhereItStopped(_ layout: RingLayout) throws {
        let s = try Setup(layout)
        try s.device.activate(s.context())
        #expect(try s.roundTrip([1, 2]) == [2, 1])
        let stopped = try #require(s.device.stopQueue(0))
        #expect(s.device.state == .active && s.device.deviceQueues.runningQueues.isEmpty)
        // While stopped, a request waits on the ring.
        try s.driver.post(request: [5, 6, 7], replyCapacity: 8)
        try s.kick.signal()
        usleep(50_000)
        #expect(try s.driver.collect().isEmpty)
        let kick2 = try EventFD(nonBlocking: true)
        try s.device.startQueue(ActivatedQueue(index: 0, queue: stopped, kick: kick2))
        #expect(try collect(s.driver, count: 1).map(\.reply) == [[7, 6, 5]], "the waiting request is served on restart")
        try s.driver.post(request: [8, 9], replyCapacity: 8)
        try kick2.signal()
        #expect(try collect(s.driver, count: 1).map(\.reply) == [[9, 8]], "kicks now come on the new eventfd")
        #expect(throws: DeviceActivationError.noSuchQueue(3)) {
            try s.device.startQueue(ActivatedQueue(index: 3, queue: stopped, kick: kick2))
        }
    }

    /// New memory while a queue runs (vhost-user SET_MEM_TABLE): the queue
    /// continues on it from where it was.
    @Test func runningQueuesMoveToReplacedMemory() throws {
        let s = try Setup(.split)
        try s.device.activate(s.context())
        #expect(try s.roundTrip([1, 2]) == [2, 1])
        // The same pages under a second mapping: a new GuestMemory.
        let fd = try #require(s.driver.memory.regions.first?.mapping.fd)
        let remapped = try GuestMemory(regions: [GuestRegion(start: GuestAddress(0),
                                                              mapping: MemoryMapping(fd: fd, count: Int(s.driver.memory.size)))])
        s.device.replaceMemory(remapped)
        #expect(s.device.deviceQueues.runningQueues == [0])
        #expect(try s.roundTrip([3, 4]) == [4, 3])
    }

    /// A broken ring stops only its queue; the device reports it through
    /// the context, once, with the queue's index.
    @Test func aFatalQueueErrorIsReportedThroughTheContext() throws {
        let s = try Setup(.split)
        try s.device.activate(s.context())
        try s.driver.writeAvailIndex(100)  // 2.7.6: more than the queue size ahead
        try s.kick.signal()
        for _ in 0..<500 where s.failures.all.isEmpty { usleep(10_000) }
        let failures = s.failures.all
        #expect(failures.count == 1 && failures.first?.queue == 0)
        #expect(failures.first?.error == .availIndexJump(next: 0, published: 100, size: 16))
        #expect(s.device.deviceQueues.firstFailure == .availIndexJump(next: 0, published: 100, size: 16))
        #expect(s.interrupt.queueSignals(0) == 0)
        s.device.reset()
        #expect(s.device.deviceQueues.firstFailure == nil, "a reset forgets the failure")
    }
}
