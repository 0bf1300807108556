import Synchronization
import Testing
import VfsvmMemory
import VfsvmTestSupport
import VfsvmVirtio

/// A toy device written against the `VirtioDevice` protocol: it answers
/// each request with the request bytes reversed. Shows the shape a real
/// device (virtio-fs) takes: queues and interrupt arrive at activation, a
/// kick drains the queue, a fatal ring error marks the device broken.
final class ReverseDevice: VirtioDevice {
    struct Active {
        var memory: GuestMemory
        var queues: [ActivatedQueue]
        var interrupt: any VirtioInterrupt
    }
    let state = Mutex<Active?>(nil)
    let broken = Mutex<VirtqueueError?>(nil)
    let config: [UInt8] = [0x76, 0x66, 0x73, 0x76, 0x6d, 0, 1, 0]

    var deviceType: UInt32 { 0xFFFF }
    var offeredFeatures: VirtioFeatures { [.version1, .ringPacked, .eventIndex, .indirectDescriptors] }
    var queueMaxSizes: [UInt16] { [16] }

    func readConfig(offset: Int, into: inout [UInt8]) { readConfigBytes(config, offset: offset, into: &into) }
    func writeConfig(offset: Int, bytes: [UInt8]) {}

    func activate(memory: GuestMemory, features: VirtioFeatures, queues: [ActivatedQueue], interrupt: any VirtioInterrupt) throws {
        state.withLock { $0 = Active(memory: memory, queues: queues, interrupt: interrupt) }
    }

    func reset() { state.withLock { $0 = nil } }

    /// What a worker does when queue `index` is kicked.
    func kicked(_ index: Int) throws {
        try state.withLock { active throws in
            guard var a = active else { return }
            let memory = a.memory
            do {
                let result = try a.queues[index].queue.drain(memory) { chain in
                    guard let request = try? chain.readableBuffers(memory).bytes(at: 0, count: chain.readableLength),
                          let out = try? chain.writableBuffers(memory) else { return 0 }
                    let reply = Array(request.reversed().prefix(out.byteCount))
                    guard (try? out.write(reply, at: 0)) != nil else { return 0 }
                    return UInt32(reply.count)
                }
                active = a
                if result.interrupt { try a.interrupt.signalQueue(index) }
            } catch let error as VirtqueueError {
                guard error.isFatal else { return }
                broken.withLock { $0 = error }
                try a.interrupt.signalConfigChange()
            }
        }
    }
}

@Suite struct DeviceTests {
    func activated(_ layout: RingLayout, features: VirtioFeatures = [.version1, .indirectDescriptors])
        throws -> (ReverseDevice, MockDriver, RecordingInterrupt) {
        let device = ReverseDevice()
        let driver = try MockDriver(layout: layout, queueSize: device.queueMaxSizes[0], features: features)
        let interrupt = RecordingInterrupt()
        try device.activate(memory: driver.memory, features: driver.features,
                            queues: [ActivatedQueue(index: 0, queue: try driver.makeQueue())], interrupt: interrupt)
        return (device, driver, interrupt)
    }

    @Test func configReadsPastTheEndAreZero() {
        let d = ReverseDevice()
        var buf = [UInt8](repeating: 0xAA, count: 4)
        d.readConfig(offset: 6, into: &buf)
        #expect(buf == [1, 0, 0, 0])
        d.readConfig(offset: Int.max, into: &buf)
        #expect(buf == [0, 0, 0, 0])
        d.readConfig(offset: -2, into: &buf)
        #expect(buf == [0, 0, 0x76, 0x66])
    }

    /// One kick, several requests: each answered, one interrupt for the batch.
    @Test(arguments: RingLayout.allCases)
    func requestsAnsweredWithOneInterrupt(_ layout: RingLayout) throws {
        let (device, driver, interrupt) = try activated(layout)
        for i in 0..<3 { try driver.post(request: [1, 2, UInt8(i)], replyCapacity: 8, indirect: i == 1) }
        try device.kicked(0)
        let done = try driver.collect()
        #expect(done.map(\.reply) == [[0, 2, 1], [1, 2, 1], [2, 2, 1]])
        #expect(interrupt.queueSignals(0) == 1)
        // The reply is cut to the writable space.
        try driver.post(request: [1, 2, 3, 4], replyCapacity: 2)
        try device.kicked(0)
        #expect(try driver.collect().map(\.reply) == [[4, 3]])
        #expect(interrupt.queueSignals(0) == 2)
    }

    /// A refused chain is completed with length 0 between good ones.
    @Test(arguments: RingLayout.allCases)
    func refusedChainCompletedEmpty(_ layout: RingLayout) throws {
        let (device, driver, interrupt) = try activated(layout)
        try driver.post(request: [1], replyCapacity: 4)
        try driver.addChain([MockSegment(address: GuestAddress(1 << 40), length: 4, writable: false)])
        try driver.post(request: [2], replyCapacity: 4)
        try device.kicked(0)
        #expect(try driver.collect().map(\.length) == [1, 0, 1])
        #expect(interrupt.queueSignals(0) == 1 && device.broken.withLock { $0 } == nil)
    }

    /// A broken ring: the device records the fatal error and sends a
    /// configuration change (the transport then shows DEVICE_NEEDS_RESET).
    @Test func fatalErrorBreaksTheDevice() throws {
        let (device, driver, interrupt) = try activated(.split)
        try driver.writeAvailIndex(100)
        try device.kicked(0)
        #expect(device.broken.withLock { $0 } == .availIndexJump(next: 0, published: 100, size: 16))
        #expect(interrupt.configSignals == 1 && interrupt.queueSignals(0) == 0)
    }

    /// drain's re-check: buffers that arrive while notifications are off
    /// are not lost, and `limit` stops early leaving kicks off.
    @Test(arguments: RingLayout.allCases)
    func drainLimitAndRecheck(_ layout: RingLayout) throws {
        var h = try Harness(layout, size: 16, features: [.version1, .eventIndex])
        for _ in 0..<5 { try h.driver.post(request: [1], replyCapacity: 1) }
        _ = try h.driver.deviceWantsKick()
        var r = try h.queue.drain(h.memory, limit: 2) { _ in 1 }
        #expect(r.completed == 2)
        // Kicks stay off: a new buffer needs none.
        try h.driver.post(request: [1], replyCapacity: 1)
        #expect(try !h.driver.deviceWantsKick())
        r = try h.queue.drain(h.memory) { _ in 1 }
        #expect(r.completed == 4 && r.refused.isEmpty)
        #expect(try h.driver.collect().count == 6)
        try h.driver.post(request: [1], replyCapacity: 1)
        #expect(try h.driver.deviceWantsKick())
    }
}
