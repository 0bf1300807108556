import Glibc
import Synchronization
import Testing
import VfsvmFUSE
import VfsvmFUSETestSupport
import VfsvmMemory
import VfsvmPassthroughFS
import VfsvmSys
import VfsvmTestSupport
import VfsvmVirtio
import VfsvmVirtioFS
@testable import VfsvmTransport

/// Counts interrupts the transport raised.
final class CountingLine: InterruptLine {
    private let count = Mutex(0)
    func trigger() throws { count.withLock { $0 += 1 } }
    var triggers: Int { count.withLock { $0 } }
}

/// A virtio-fs device behind the virtio-mmio register file, driven the way
/// Linux's virtio_mmio driver initializes a device (virtio 1.2, 3.1.1 and
/// 4.2.3), with rings laid out by the mock driver.
final class MMIOFixture: VirtioFSRings<VirtioMMIOTransport> {
    let line: CountingLine

    init(sharedMemory: (base: UInt64, length: UInt64)? = nil) throws {
        let line = CountingLine()
        self.line = line
        try super.init(tag: "mmiofs") { try VirtioMMIOTransport(device: $0, memory: $1, line: line, sharedMemory: sharedMemory) }
    }

    /// FUSE_INIT on the request queue, kicked through QueueNotify; the reply bytes.
    func initRoundTrip() throws -> [UInt8] {
        let body = Bytes().u32(7).u32(38).u32(0).u32(0).zeros(48).b
        try requests.post(request: client.header(FUSEOpcode.`init`.rawValue, node: 0, bodyLength: body.count) + body,
                          replyCapacity: 256)
        transport.write32(0x050, 1)
        var done: [MockCompletion] = []
        for _ in 0..<500 where done.isEmpty {
            done = try requests.collect()
            if done.isEmpty { usleep(5000) }
        }
        #expect(done.count == 1)
        return done.first?.reply ?? []
    }

    deinit { transport.write32(0x070, 0) }

    func read32(_ offset: UInt64) -> UInt32 { transport.read32(offset) }

    /// Queue setup through QueueSel/QueueNum/addresses/QueueReady.
    func setUpQueue(_ index: UInt32, _ driver: MockDriver, descriptorTable: GuestAddress? = nil) {
        transport.write32(0x030, index)
        #expect(read32(0x034) >= UInt32(driver.queueSize))
        transport.write32(0x038, UInt32(driver.queueSize))
        let desc = descriptorTable ?? driver.descriptorTable
        transport.write32(0x080, UInt32(truncatingIfNeeded: desc.rawValue))
        transport.write32(0x084, UInt32(desc.rawValue >> 32))
        transport.write32(0x090, UInt32(truncatingIfNeeded: driver.driverArea.rawValue))
        transport.write32(0x094, UInt32(driver.driverArea.rawValue >> 32))
        transport.write32(0x0a0, UInt32(truncatingIfNeeded: driver.deviceArea.rawValue))
        transport.write32(0x0a4, UInt32(driver.deviceArea.rawValue >> 32))
        transport.write32(0x044, 1)
    }

    /// 3.1.1 steps 1-6: reset, ACKNOWLEDGE, DRIVER, features, FEATURES_OK.
    func negotiate(_ features: VirtioFeatures) {
        transport.write32(0x070, 0)
        transport.write32(0x070, 1)
        transport.write32(0x070, 3)
        transport.write32(0x024, 0)
        transport.write32(0x020, features.word(0))
        transport.write32(0x024, 1)
        transport.write32(0x020, features.word(1))
        transport.write32(0x070, 11)
    }
}

extension VirtioMMIOTransport {
    /// A read of `count` bytes, as a vCPU exit does it (the buffer starts
    /// filled with 0xAA, so bytes the transport leaves alone show).
    func read(offset: UInt64, count: Int) -> [UInt8] {
        var b = [UInt8](repeating: 0xAA, count: count)
        b.withUnsafeMutableBytes { read(offset: offset, into: $0) }
        return b
    }
    func write(offset: UInt64, bytes: [UInt8]) {
        bytes.withUnsafeBytes { write(offset: offset, bytes: $0) }
    }
    func read32(_ offset: UInt64) -> UInt32 {
        read(offset: offset, count: 4).enumerated().reduce(0) { $0 | UInt32($1.element) << (8 * $1.offset) }
    }
    func write32(_ offset: UInt64, _ value: UInt32) {
        write(offset: offset, bytes: withUnsafeBytes(of: value.littleEndian, Array.init))
    }
}

@Suite struct VirtioMMIOTests {
    @Test func identityRegistersAndConfigSpace() throws {
        let f = try MMIOFixture()
        #expect(f.read32(0x000) == 0x7472_6976, "MagicValue 'virt'")
        #expect(f.read32(0x004) == 2, "Version 2 (no legacy)")
        #expect(f.read32(0x008) == 26, "DeviceID: file system")
        // Device features, both words: VERSION_1 (bit 32), RING_PACKED (34), EVENT_IDX (29).
        f.transport.write32(0x014, 1)
        #expect(f.read32(0x010) & 0b101 == 0b101)
        f.transport.write32(0x014, 0)
        #expect(f.read32(0x010) & (1 << 29) != 0)
        // Config space: tag then num_request_queues; past the end reads 0.
        #expect(f.transport.read(offset: 0x100, count: 6) == Array("mmiofs".utf8))
        #expect(f.read32(0x100 + 36) == 1)
        #expect(f.read32(0x100 + 60) == 0)
        // Non-config registers need aligned 32-bit accesses (4.2.2.2).
        #expect(f.transport.read(offset: 0x000, count: 2) == [0, 0])
        #expect(f.transport.read(offset: 0x001, count: 4) == [0, 0, 0, 0])
    }

    @Test func initializeKickAndInterrupt() throws {
        let f = try MMIOFixture()
        f.negotiate([.version1, .eventIndex])
        #expect(f.read32(0x070) == 11, "FEATURES_OK accepted and read back")
        f.setUpQueue(0, f.hiprio)
        f.setUpQueue(1, f.requests)
        f.transport.write32(0x070, 15)  // DRIVER_OK
        #expect(f.transport.status.contains(.driverOK) && !f.transport.status.contains(.deviceNeedsReset))

        var reply = Decoder(try f.initRoundTrip(), at: 4)
        #expect(reply.u32() == 0, "INIT answered without an error")
        reply.skip(8)
        #expect(reply.u32() == 7, "fuse_init_out.major")
        #expect(f.read32(0x060) & 1 == 1, "InterruptStatus: used buffer")
        #expect(f.line.triggers >= 1)
        f.transport.write32(0x064, 1)  // InterruptACK
        #expect(f.read32(0x060) == 0)
    }

    @Test func unofferedFeaturesAreNotAccepted() throws {
        let f = try MMIOFixture()
        f.negotiate([.version1, .bit(60)])
        #expect(f.read32(0x070) == 3, "FEATURES_OK stays clear (3.1.1 step 6)")
        f.negotiate([.eventIndex])  // no VERSION_1: a legacy driver
        #expect(f.read32(0x070) == 3)
    }

    @Test func badQueueLayoutSetsNeedsResetWithAConfigInterrupt() throws {
        let f = try MMIOFixture()
        f.negotiate([.version1])
        f.setUpQueue(0, f.hiprio)
        f.setUpQueue(1, f.requests, descriptorTable: GuestAddress(0x8008))  // not 16-byte aligned (2.7)
        f.transport.write32(0x070, 15)
        #expect(f.transport.status.contains(.deviceNeedsReset))
        #expect(f.read32(0x060) & 2 == 2, "InterruptStatus: configuration change")
        #expect(f.line.triggers == 1)
        // A reset clears it all; queue registers return to their defaults.
        f.transport.write32(0x070, 0)
        #expect(f.read32(0x070) == 0 && f.read32(0x060) == 0)
        f.transport.write32(0x030, 1)
        #expect(f.read32(0x044) == 0, "QueueReady cleared by reset")
    }

    /// 2.1.2: a ring the driver broke (avail idx more than the queue size
    /// ahead, 2.7.6) makes the device set DEVICE_NEEDS_RESET and send a
    /// configuration change interrupt; after a reset it works again.
    @Test func aBrokenRingSetsNeedsResetAndRaisesTheConfigInterrupt() throws {
        let f = try MMIOFixture()
        f.negotiate([.version1, .eventIndex])
        f.setUpQueue(0, f.hiprio)
        f.setUpQueue(1, f.requests)
        f.transport.write32(0x070, 15)
        try f.requests.writeAvailIndex(f.requests.queueSize + 1)
        f.transport.write32(0x050, 1)  // QueueNotify
        for _ in 0..<500 where !f.transport.status.contains(.deviceNeedsReset) { usleep(5000) }
        #expect(f.read32(0x070) & 0x40 != 0, "Status: DEVICE_NEEDS_RESET")
        #expect(f.read32(0x060) & 2 == 2, "InterruptStatus: configuration change")
        #expect(f.line.triggers == 1, "the interrupt line fired once")
        #expect(f.read32(0x0fc) == 1, "ConfigGeneration moved")

        // The driver resets and initializes again on fresh rings.
        f.transport.write32(0x070, 0)
        #expect(f.read32(0x070) == 0 && f.read32(0x060) == 0)
        try f.freshRings()
        f.negotiate([.version1, .eventIndex])
        f.setUpQueue(0, f.hiprio)
        f.setUpQueue(1, f.requests)
        f.transport.write32(0x070, 15)
        #expect(f.read32(0x070) == 15, "DRIVER_OK without NEEDS_RESET")
        var reply = Decoder(try f.initRoundTrip(), at: 4)
        #expect(reply.u32() == 0, "FUSE INIT answered after the reset")
        reply.skip(8)
        #expect(reply.u32() == 7)
    }

    /// The seam: one ioeventfd per queue at QueueNotify with data match =
    /// the queue index, and a QueueNotify write that reaches the transport
    /// signals the same eventfd.
    @Test func theTransportListsOneQueueNotificationPerQueue() throws {
        let f = try MMIOFixture()
        let n = f.transport.notifications
        #expect(n.map(\.queue) == [0, 1])
        #expect(n.allSatisfy { $0.bar == nil && $0.offset == 0x050 && $0.length == 4 })
        #expect(n.map(\.dataMatch) == [0, 1])
        #expect(n[1].eventfd === f.transport.kicks[1])
        f.transport.write32(0x050, 1)
        #expect(try n[1].eventfd.drain() == 1 && n[0].eventfd.drain() == 0)
        f.transport.write32(0x050, 7)  // no such queue: ignored
        #expect(try n[0].eventfd.drain() == 0 && n[1].eventfd.drain() == 0)
    }

    /// Reads fill exactly the caller's buffer: wrong widths and offsets
    /// past the window read as zero, config reads past the end too.
    @Test func readsFillTheCallersBuffer() throws {
        let f = try MMIOFixture()
        #expect(f.transport.read(offset: 0x070, count: 1) == [0])
        #expect(f.transport.read(offset: 0x200, count: 4) == [0, 0, 0, 0], "past the window")
        #expect(f.transport.read(offset: 0x1fe, count: 2) == [0, 0], "past the configuration")
        #expect(f.transport.read(offset: 0x100 + 36, count: 2) == [1, 0], "num_request_queues, 16 bits")
        f.transport.write(offset: 0x070, bytes: [1])  // a 1-byte status write is ignored
        #expect(f.read32(0x070) == 0)
    }

    /// Queue address halves are assembled in one place (shared with virtio-pci).
    @Test func queueAddressHalvesReplaceOneWord() {
        let a = GuestAddress(0x1111_2222_3333_4444)
        #expect(a.replacing(.low, with: 0xAAAA_BBBB) == GuestAddress(0x1111_2222_AAAA_BBBB))
        #expect(a.replacing(.high, with: 0xAAAA_BBBB) == GuestAddress(0xAAAA_BBBB_3333_4444))
        #expect(a.half(.low) == 0x3333_4444 && a.half(.high) == 0x1111_2222)
        var q = Virtqueue(maxSize: 8)
        q.setAddress(.driverArea, .high, to: 1)
        q.setAddress(.driverArea, .low, to: 0x40)
        #expect(q.driverArea == GuestAddress(0x1_0000_0040) && q.address(.driverArea, .high) == 1)
    }

    @Test func queueRegistersAreFrozenAfterDriverOK() throws {
        let f = try MMIOFixture()
        f.negotiate([.version1])
        f.setUpQueue(0, f.hiprio)
        f.setUpQueue(1, f.requests)
        f.transport.write32(0x070, 15)
        f.transport.write32(0x030, 1)
        f.transport.write32(0x044, 0)
        #expect(f.read32(0x044) == 1, "QueueReady cannot be cleared while the device runs")
        f.transport.write32(0x030, 99)
        #expect(f.read32(0x034) == 0, "QueueNumMax of a queue that does not exist is 0")
    }

    /// virtio 1.2, 4.2.2: SHMSel (0x0ac) picks a shared-memory region,
    /// SHMLenLow/High (0x0b0/0x0b4) and SHMBaseLow/High (0x0b8/0x0bc)
    /// describe it; a region that does not exist has length -1.
    @Test func sharedMemoryRegistersNameTheDAXWindowAsRegion0() throws {
        let f = try MMIOFixture(sharedMemory: (base: 0x1_2340_0000, length: 0x4_0000_0000))
        #expect(f.read32(0x0b0) == 0 && f.read32(0x0b4) == 4, "region 0: 16 GiB")
        #expect(f.read32(0x0b8) == 0x2340_0000 && f.read32(0x0bc) == 1, "region 0 at 0x1_2340_0000")
        f.transport.write32(0x0ac, 1)
        #expect([0x0b0, 0x0b4, 0x0b8, 0x0bc].map { f.read32($0) } == [UInt32](repeating: 0xffff_ffff, count: 4), "region 1 does not exist")
        f.transport.write32(0x0ac, 0)
        #expect(f.read32(0x0b8) == 0x2340_0000, "selected again")
        let plain = try MMIOFixture()
        #expect(plain.read32(0x0b0) == 0xffff_ffff && plain.read32(0x0b4) == 0xffff_ffff, "without a window region 0 does not exist")
    }
}
