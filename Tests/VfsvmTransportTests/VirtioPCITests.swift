import CVfsvmLinux
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

/// Records what the transport asked of the VMM's MSI-X side.
final class RecordingMSIX: MSIXVectorSink {
    private let log = Mutex<(routes: [Int: (UInt64, UInt32)], triggers: [Int])>(([:], []))
    func route(vector: Int, address: UInt64, data: UInt32) { log.withLock { $0.routes[vector] = (address, data) } }
    func trigger(vector: Int) throws { log.withLock { $0.triggers.append(vector) } }
    var triggers: [Int] { log.withLock { $0.triggers } }
    func route(_ v: Int) -> (UInt64, UInt32)? { log.withLock { $0.routes[v] } }
}

/// A virtio-fs device (hiprio + 1 request queue) behind virtio-pci, driven
/// as Linux's virtio_pci_modern driver does (virtio 1.2, 3.1.1 and 4.1.5).
final class PCIFixture: VirtioFSRings<VirtioPCITransport> {
    let line: CountingLine
    let msix: RecordingMSIX

    init(sharedMemory: SharedMemoryWindow? = nil) throws {
        let line = CountingLine(), msix = RecordingMSIX()
        (self.line, self.msix) = (line, msix)
        try super.init(tag: "pcifs") { try VirtioPCITransport(device: $0, memory: $1, intx: line, msix: msix, sharedMemory: sharedMemory) }
    }

    deinit { transport.bar(0x14, 1, 0) }

    func cfg(_ offset: Int, _ size: Int = 4) -> UInt32 { transport.readConfig(offset: offset, size: size) }
    func setCfg(_ offset: Int, _ size: Int, _ value: UInt32) { transport.writeConfig(offset: offset, size: size, value: value) }
    var status: UInt64 { transport.bar(0x14, 1) }

    /// 3.1.1 steps 1-6 through the common configuration structure.
    func negotiate(_ features: VirtioFeatures) {
        transport.bar(0x14, 1, 0)
        transport.bar(0x14, 1, 1)
        transport.bar(0x14, 1, 3)
        transport.bar(0x08, 4, 0)
        transport.bar(0x0c, 4, UInt64(features.word(0)))
        transport.bar(0x08, 4, 1)
        transport.bar(0x0c, 4, UInt64(features.word(1)))
        transport.bar(0x14, 1, 11)
    }

    /// queue_select, queue_size, the vector, the three addresses (64-bit
    /// writes, as the test guest does), queue_enable.
    func setUpQueue(_ index: UInt16, _ driver: MockDriver, vector: UInt16? = nil, descriptorTable: GuestAddress? = nil) {
        transport.bar(0x16, 2, UInt64(index))
        #expect(transport.bar(0x18, 2) >= UInt64(driver.queueSize), "queue_size reads the maximum before setup")
        transport.bar(0x18, 2, UInt64(driver.queueSize))
        if let vector { transport.bar(0x1a, 2, UInt64(vector)) }
        transport.bar(0x20, 8, (descriptorTable ?? driver.descriptorTable).rawValue)
        transport.bar(0x28, 4, UInt64(UInt32(truncatingIfNeeded: driver.driverArea.rawValue)))
        transport.bar(0x2c, 4, driver.driverArea.rawValue >> 32)
        transport.bar(0x30, 8, driver.deviceArea.rawValue)
        transport.bar(0x1c, 2, 1)
    }

    /// Both queues up and DRIVER_OK.
    func start(vectors: Bool = false) {
        negotiate([.version1, .eventIndex])
        setUpQueue(0, hiprio, vector: vectors ? 1 : nil)
        setUpQueue(1, requests, vector: vectors ? 2 : nil)
        transport.bar(0x14, 1, 15)
    }

    /// FUSE_INIT on the request queue, kicked at its notify address.
    func initRoundTrip() throws -> [UInt8] {
        let body = Bytes().u32(7).u32(38).u32(0).u32(0).zeros(48).b
        try requests.post(request: client.header(FUSEOpcode.`init`.rawValue, node: 0, bodyLength: body.count) + body,
                          replyCapacity: 256)
        transport.bar(0x3000 + 1 * 4, 2, 1)
        var done: [MockCompletion] = []
        for _ in 0..<500 where done.isEmpty {
            done = try requests.collect()
            if done.isEmpty { usleep(5000) }
        }
        #expect(done.count == 1)
        return done.first?.reply ?? []
    }

    /// Writes MSI-X table entry `v` (address, data, control) with DWORDs.
    func programVector(_ v: UInt64, address: UInt64, data: UInt32, masked: Bool) {
        let e = 0x4000 + 16 * v
        transport.bar(e, 4, address & 0xffff_ffff)
        transport.bar(e + 4, 4, address >> 32)
        transport.bar(e + 8, 4, UInt64(data))
        transport.bar(e + 12, 4, masked ? 1 : 0)
    }

    /// MSI-X Message Control (capability at 0x98, register at +2).
    func setMSIXControl(enable: Bool, maskAll: Bool) {
        setCfg(0x9a, 2, (enable ? 0x8000 : 0) | (maskAll ? 0x4000 : 0))
    }
}

extension VirtioPCITransport {
    /// A BAR0 read of `width` bytes, as a vCPU exit does it.
    func bar(_ offset: UInt64, _ width: Int) -> UInt64 {
        var b = [UInt8](repeating: 0xAA, count: width)
        b.withUnsafeMutableBytes { readBAR(offset: offset, into: $0) }
        return b.enumerated().reduce(0) { $0 | UInt64($1.element) << (8 * UInt64($1.offset)) }
    }
    func bar(_ offset: UInt64, _ width: Int, _ value: UInt64) {
        let b = (0..<width).map { UInt8(truncatingIfNeeded: value >> (8 * UInt64($0))) }
        b.withUnsafeBytes { writeBAR(offset: offset, bytes: $0) }
    }
}

@Suite struct VirtioPCITests {
    @Test func idsHeaderAndCapabilityWalk() throws {
        let f = try PCIFixture()
        #expect(f.cfg(0x00, 2) == 0x1af4, "vendor: Red Hat / virtio")
        #expect(f.cfg(0x02, 2) == 0x1040 + 26, "device: 0x1040 + VIRTIO_ID_FS (modern)")
        #expect(f.cfg(0x08, 1) == 1, "revision 1: non-transitional")
        #expect(f.cfg(0x08) >> 8 == 0x01_80_00, "class: storage, other")
        #expect(f.cfg(0x0e, 1) == 0, "header type 0")
        #expect(f.cfg(0x2c, 2) == 0x1af4 && f.cfg(0x2e, 2) == 0x105a, "subsystem ids")
        #expect(f.cfg(0x06, 2) & 0x10 != 0, "status: capability list")
        #expect(f.cfg(0x3d, 1) == 1, "interrupt pin INTA#")
        #expect(f.cfg(0x100, 4) == 0 && f.cfg(0xff, 2) == 0, "past the 256 bytes reads zero")

        // Walk the list as Linux's virtio_pci_find_capability does.
        var types: [UInt32: (bar: UInt32, offset: UInt32, length: UInt32)] = [:]
        var msixCap: Int?
        var cap = Int(f.cfg(0x34, 1))
        var steps = 0
        while cap != 0 && steps < 48 {
            switch f.cfg(cap, 1) {
            case 0x09: types[f.cfg(cap + 3, 1)] = (f.cfg(cap + 4, 1), f.cfg(cap + 8), f.cfg(cap + 12))
            case 0x11: msixCap = cap
            default: Issue.record("unexpected capability \(f.cfg(cap, 1)) at \(cap)")
            }
            cap = Int(f.cfg(cap + 1, 1))
            steps += 1
        }
        #expect(steps == 6, "common, notify, ISR, device, PCI_CFG, MSI-X")
        #expect(types[1].map { $0 == (0, 0x0000, 0x40) } == true, "common config at BAR0 + 0")
        #expect(types[2].map { $0 == (0, 0x3000, 8) } == true, "notify: 2 queues × 4 bytes at BAR0 + 0x3000")
        #expect(f.cfg(0x50 + 16) == 4, "notify_off_multiplier")
        #expect(types[3].map { $0 == (0, 0x1000, 1) } == true, "ISR at BAR0 + 0x1000")
        #expect(types[4].map { $0 == (0, 0x2000, 0x1000) } == true, "device config at BAR0 + 0x2000")
        #expect(types[5] != nil, "PCI_CFG access window")
        let m = try #require(msixCap)
        #expect(f.cfg(m + 2, 2) & 0x7ff == 2, "MSI-X table size 3 (config + 2 queues), N-1 encoded")
        #expect(f.cfg(m + 4) == 0x4000 && f.cfg(m + 8) == 0x5000, "table and PBA in BAR0")

        // Device config through BAR0: the tag, then num_request_queues.
        let tag = (0..<5).map { UInt8(f.transport.bar(0x2000 + UInt64($0), 1)) }
        #expect(tag == Array("pcifs".utf8))
        #expect(f.transport.bar(0x2000 + 36, 4) == 1)
        #expect(f.transport.bar(0x12, 2) == 2, "num_queues")
    }

    @Test func barSizingAndMemoryEnable() throws {
        let f = try PCIFixture()
        f.transport.assignBAR0(0x10_0000_0000)
        #expect(f.cfg(0x10) == 0x0000_000c, "64-bit prefetchable memory BAR, low address bits")
        #expect(f.cfg(0x14) == 0x10)
        #expect(f.transport.decodedBAR0 == nil, "memory decoding is off at reset")
        f.setCfg(0x04, 2, 0x2)
        #expect(f.transport.decodedBAR0 == 0x10_0000_0000)
        // Sizing: all ones, read back, restore (with decoding off, as Linux does).
        f.setCfg(0x04, 2, 0)
        f.setCfg(0x10, 4, 0xffff_ffff)
        f.setCfg(0x14, 4, 0xffff_ffff)
        let size = ~(UInt64(f.cfg(0x14)) << 32 | UInt64(f.cfg(0x10) & ~0xf)) &+ 1
        #expect(size == 0x8000)
        f.setCfg(0x10, 4, 0x2000_0000)
        f.setCfg(0x14, 4, 0x1)
        f.setCfg(0x04, 2, 0x6)
        #expect(f.transport.decodedBAR0 == 0x1_2000_0000, "the guest's new address, decoded")
        #expect(f.cfg(0x04, 2) == 0x6)
        f.setCfg(0x04, 2, 0xffff)
        #expect(f.cfg(0x04, 2) == 0x406, "only memory, bus master and INTx disable are writable")
        f.setCfg(0x00, 4, 0)
        #expect(f.cfg(0x00, 2) == 0x1af4, "IDs are read only")
        f.setCfg(0x10, 4, 0x2000_1234)
        #expect(f.cfg(0x10) == 0x2000_000c, "address bits below the size stay zero")
    }

    @Test func noWindowMeansNoBAR2AndNoSharedMemoryCapability() throws {
        let f = try PCIFixture()
        f.transport.assignBAR2(0x20_0000_0000)
        f.setCfg(0x18, 4, 0xffff_ffff)
        f.setCfg(0x1c, 4, 0xffff_ffff)
        #expect(f.cfg(0x18) == 0 && f.cfg(0x1c) == 0, "BAR2 not implemented: reads zero after sizing")
        f.setCfg(0x04, 2, 0x2)
        #expect(f.transport.decodedBAR2 == nil)
        #expect(f.cfg(0x98 + 1, 1) == 0, "MSI-X ends the capability list")
    }

    @Test func sharedMemoryWindowCapabilityAndBAR2Sizing() throws {
        // 8 GiB: the length needs length_hi (virtio_pci_cap64).
        let window = try SharedMemoryWindow(size: 8 << 30)
        let f = try PCIFixture(sharedMemory: window)
        var shm: [Int] = []
        var cap = Int(f.cfg(0x34, 1)), steps = 0
        while cap != 0 && steps < 48 {
            if f.cfg(cap, 1) == 0x09 && f.cfg(cap + 3, 1) == 8 { shm.append(cap) }
            cap = Int(f.cfg(cap + 1, 1))
            steps += 1
        }
        #expect(steps == 7, "common, notify, ISR, device, PCI_CFG, MSI-X, shared memory")
        let c = try #require(shm.first)
        #expect(shm.count == 1)
        #expect(f.cfg(c + 2, 1) == 24, "cap_len: struct virtio_pci_cap64")
        #expect(f.cfg(c + 4, 1) == 2, "in BAR2")
        #expect(f.cfg(c + 5, 1) == 0, "shmid 0: VIRTIO_FS_SHMCAP_ID_CACHE")
        #expect(f.cfg(c + 8) == 0 && f.cfg(c + 16) == 0, "offset 0 (both halves)")
        #expect(UInt64(f.cfg(c + 20)) << 32 | UInt64(f.cfg(c + 12)) == 8 << 30, "length 8 GiB (length_hi:length)")

        f.transport.assignBAR2(0x20_0000_0000)
        #expect(f.cfg(0x18) == 0xc && f.cfg(0x1c) == 0x20, "64-bit prefetchable, at the board's address")
        #expect(f.transport.decodedBAR2 == nil, "memory decoding is off at reset")
        f.setCfg(0x04, 2, 0x2)
        #expect(f.transport.decodedBAR2 == 0x20_0000_0000)
        f.setCfg(0x04, 2, 0)
        f.setCfg(0x18, 4, 0xffff_ffff)
        f.setCfg(0x1c, 4, 0xffff_ffff)
        let size = ~(UInt64(f.cfg(0x1c)) << 32 | UInt64(f.cfg(0x18) & ~0xf)) &+ 1
        #expect(size == 8 << 30, "sizing BAR2 gives the window's size")
        f.setCfg(0x04, 2, 0x2)
        #expect(f.transport.decodedBAR2 == nil, "all ones (mid-sizing) is no address")
        f.setCfg(0x18, 4, 0x4000_0000)  // below the size's alignment: dropped
        f.setCfg(0x1c, 4, 0x4)
        #expect(f.transport.decodedBAR2 == 0x4_0000_0000, "the guest's new address, aligned to the size")
        #expect(f.transport.decodedBAR0 != f.transport.decodedBAR2)
    }

    @Test func featureNegotiation() throws {
        let f = try PCIFixture()
        f.transport.bar(0x00, 4, 1)
        #expect(f.transport.bar(0x04, 4) & 0b101 == 0b101, "VERSION_1 and RING_PACKED in word 1")
        f.transport.bar(0x00, 4, 0)
        #expect(f.transport.bar(0x04, 4) & (1 << 29) != 0, "EVENT_IDX in word 0")
        f.negotiate([.version1, .eventIndex])
        #expect(f.status == 11, "FEATURES_OK accepted")
        f.transport.bar(0x08, 4, 1)
        #expect(f.transport.bar(0x0c, 4) == 1, "driver features read back")
        f.negotiate([.version1, .bit(60)])
        #expect(f.status == 3, "an unoffered feature: FEATURES_OK stays clear")
        #expect(f.transport.bar(0x04, 2) == 0 && f.transport.bar(0x14, 4) == 0, "wrong widths read zero")
    }

    @Test func queueSetupNotifyAndFUSE() throws {
        let f = try PCIFixture()
        let n = f.transport.notifications
        #expect(n.map(\.offset) == [0x3000, 0x3004] && n.allSatisfy { $0.bar == 0 && $0.length == 0 && $0.dataMatch == nil })
        // A notification reaching the transport kicks the queue's eventfd.
        f.transport.bar(0x3004, 2, 1)
        #expect(try f.transport.kicks[1].drain() == 1)
        #expect(try f.transport.kicks[0].drain() == 0)

        f.start()
        #expect(f.status == 15 && !f.transport.status.contains(.deviceNeedsReset))
        f.transport.bar(0x16, 2, 1)
        #expect(f.transport.bar(0x1e, 2) == 1, "queue_notify_off")
        #expect(f.transport.bar(0x18, 2) == 64 && f.transport.bar(0x1c, 2) == 1)
        #expect(f.transport.bar(0x20, 8) == f.requests.descriptorTable.rawValue, "queue_desc reads back")
        f.transport.bar(0x16, 2, 7)
        #expect(f.transport.bar(0x18, 2) == 0, "a queue that does not exist has size 0")
        var reply = Decoder(try f.initRoundTrip(), at: 4)
        #expect(reply.u32() == 0)
        reply.skip(8)
        #expect(reply.u32() == 7, "fuse_init_out.major")
    }

    @Test func msixMaskPendingAndUnmask() throws {
        let f = try PCIFixture()
        f.setCfg(0x04, 2, 0x6)  // memory space and bus mastering, as Linux's pci_set_master
        f.negotiate([.version1, .eventIndex])
        #expect(f.transport.bar(0x400c, 4) == 1, "entries come out of reset masked")
        f.programVector(1, address: 0xfee0_0000, data: 0x41, masked: true)
        #expect(f.msix.route(1).map { $0 == (0xfee0_0000, 0x41) } == true, "the new message is routed")
        f.setMSIXControl(enable: true, maskAll: false)
        f.transport.bar(0x10, 2, 0)
        #expect(f.transport.bar(0x10, 2) == 0, "msix_config vector 0 accepted")
        f.transport.bar(0x16, 2, 1)
        f.transport.bar(0x1a, 2, 9)
        #expect(f.transport.bar(0x1a, 2) == 0xffff, "a vector past the table reads back NO_VECTOR")
        f.transport.bar(0x1a, 2, 1)
        #expect(f.transport.bar(0x1a, 2) == 1)

        // Masked: nothing sent, the pending bit is set; unmasking sends it.
        try f.transport.signalQueue(1)
        #expect(f.msix.triggers.isEmpty && f.line.triggers == 0)
        #expect(f.transport.bar(0x5000, 8) == 0b10, "PBA: vector 1 pending")
        f.transport.bar(0x4010 + 12, 4, 0)
        #expect(f.msix.triggers == [1], "delivered on unmask")
        #expect(f.transport.bar(0x5000, 8) == 0)
        try f.transport.signalQueue(1)
        #expect(f.msix.triggers == [1, 1])

        // The function mask holds every vector; clearing it delivers.
        f.setMSIXControl(enable: true, maskAll: true)
        try f.transport.signalQueue(1)
        #expect(f.msix.triggers.count == 2 && f.transport.bar(0x5000, 4) == 0b10)
        f.setMSIXControl(enable: true, maskAll: false)
        #expect(f.msix.triggers == [1, 1, 1])
        f.transport.bar(0x5000, 8, 0)
        #expect(f.transport.bar(0x5000, 8) == 0, "PBA writes ignored")

        // Configuration changes go to msix_config (vector 0, masked: pending).
        try f.transport.signalConfigChange()
        #expect(f.transport.bar(0x5000, 8) == 0b01)
        f.programVector(0, address: 0xfee0_0000, data: 0x42, masked: false)
        #expect(f.msix.triggers == [1, 1, 1, 0])
        // Queue 0 has no vector: no interrupt at all.
        try f.transport.signalQueue(0)
        #expect(f.msix.triggers.count == 4 && f.line.triggers == 0)
        // QWORD table access; bad widths ignored.
        #expect(f.transport.bar(0x4010, 8) == 0xfee0_0000)
        f.transport.bar(0x4011, 2, 0xffff)
        #expect(f.transport.bar(0x4010, 4) == 0xfee0_0000)
        // A reset returns the vectors to NO_VECTOR.
        f.transport.bar(0x14, 1, 0)
        #expect(f.transport.bar(0x10, 2) == 0xffff)
    }

    /// Attack: a driver that never set (or cleared) Bus Master Enable still
    /// got MSI-X messages, memory writes the function may not make. They
    /// stay pending until bus mastering is on.
    @Test func msixWaitsForBusMastering() throws {
        let f = try PCIFixture()
        f.setCfg(0x04, 2, 0x2)  // memory space only
        f.negotiate([.version1, .eventIndex])
        f.programVector(1, address: 0xfee0_0000, data: 0x41, masked: false)
        f.setMSIXControl(enable: true, maskAll: false)
        f.transport.bar(0x16, 2, 1)
        f.transport.bar(0x1a, 2, 1)
        try f.transport.signalQueue(1)
        #expect(f.msix.triggers.isEmpty && f.line.triggers == 0, "no message without bus mastering")
        #expect(f.transport.bar(0x5000, 8) == 0b10, "PBA: vector 1 pending")
        f.setCfg(0x04, 2, 0x6)
        #expect(f.msix.triggers == [1], "delivered once bus mastering is enabled")
        f.setCfg(0x04, 2, 0x2)
        try f.transport.signalQueue(1)
        #expect(f.msix.triggers == [1], "held again after bus mastering is cleared")
    }

    @Test func intxAndISRReadToClear() throws {
        let f = try PCIFixture()
        f.setCfg(0x3c, 1, 10)
        #expect(f.cfg(0x3c, 1) == 10, "interrupt line is writable")
        try f.transport.signalQueue(1)
        #expect(f.line.triggers == 1 && f.msix.triggers.isEmpty)
        #expect(f.transport.intxAsserted)
        #expect(f.cfg(0x06, 2) & 0x08 != 0, "status: interrupt pending")
        #expect(f.transport.bar(0x1000, 1) == 1, "ISR: queue interrupt")
        #expect(f.transport.bar(0x1000, 1) == 0, "reading ISR cleared it")
        #expect(!f.transport.intxAsserted && f.cfg(0x06, 2) & 0x08 == 0)
        try f.transport.signalConfigChange()
        #expect(f.transport.bar(0x1000, 1) == 2, "ISR: configuration change")
        // INTx disabled in the command register: no line.
        f.setCfg(0x04, 2, 0x400)
        try f.transport.signalQueue(1)
        #expect(f.line.triggers == 2 && !f.transport.intxAsserted)
    }

    @Test func badQueueLayoutSetsNeedsResetWithAConfigInterrupt() throws {
        let f = try PCIFixture()
        f.negotiate([.version1])
        f.setUpQueue(0, f.hiprio)
        f.setUpQueue(1, f.requests, descriptorTable: GuestAddress(0x8008))  // not 16-byte aligned (2.7)
        f.transport.bar(0x14, 1, 15)
        #expect(f.transport.status.contains(.deviceNeedsReset))
        #expect(f.status & 0x40 != 0, "device_status: DEVICE_NEEDS_RESET")
        #expect(f.line.triggers == 1 && f.transport.bar(0x1000, 1) == 2, "configuration change over INTx")
        f.transport.bar(0x14, 1, 0)
        #expect(f.status == 0)
        f.transport.bar(0x16, 2, 1)
        #expect(f.transport.bar(0x1c, 2) == 0, "queue_enable cleared by reset")
    }

    @Test func pciCfgWindowReachesBAR0() throws {
        let f = try PCIFixture()
        f.negotiate([.version1])
        // bar 0, offset 0x14 (device_status), length 1.
        f.setCfg(0x84 + 4, 1, 0)
        f.setCfg(0x84 + 8, 4, 0x14)
        f.setCfg(0x84 + 12, 4, 1)
        #expect(f.cfg(0x84 + 16) == 11, "device_status through the window")
        f.setCfg(0x84 + 16, 4, 0)
        #expect(f.status == 0, "a write through the window reset the device")
        f.setCfg(0x84 + 12, 4, 3)
        #expect(f.cfg(0x84 + 16) == 0, "length 3: ignored")
    }

    /// Firmware drivers (SeaBIOS, OVMF) reach BAR0 through the PCI_CFG
    /// window with accesses as wide as the field: a one- or two-byte
    /// access to pci_cfg_data must reach the BAR as well, never be lost.
    @Test func pciCfgWindowNarrowAccesses() throws {
        let f = try PCIFixture()
        f.negotiate([.version1])
        // device_status (BAR0 + 0x14), one byte, written with a 1-byte access.
        f.setCfg(0x84 + 4, 1, 0)
        f.setCfg(0x84 + 8, 4, 0x14)
        f.setCfg(0x84 + 12, 4, 1)
        #expect(f.cfg(0x84 + 16, 1) == 11, "a 1-byte read of pci_cfg_data reads device_status")
        f.setCfg(0x84 + 16, 1, 0)
        #expect(f.status == 0, "a 1-byte write through the window reset the device")
        // queue_select (BAR0 + 0x16), two bytes, written with a 2-byte access.
        f.negotiate([.version1])
        f.setCfg(0x84 + 8, 4, 0x16)
        f.setCfg(0x84 + 12, 4, 2)
        f.setCfg(0x84 + 16, 2, 1)
        #expect(f.transport.bar(0x16, 2) == 1, "a 2-byte write through the window selected queue 1")
        #expect(f.cfg(0x84 + 16, 2) == 1, "a 2-byte read through the window reads it back")
        f.transport.bar(0x16, 2, 0)
        #expect(f.cfg(0x84 + 16, 2) == 0, "each read goes to the BAR, not to the stored bytes")
    }

    /// Every offset of config space and BAR0 at every width, with values
    /// that vary: nothing crashes or hangs, and after a reset the device
    /// initializes and serves FUSE again.
    @Test func hostileGarbageEverywhere() throws {
        let f = try PCIFixture()
        // xorshift64 with a fixed seed: the same garbage every run.
        var seed: UInt64 = 0x9e37_79b9_7f4a_7c15
        func next() -> UInt64 {
            seed ^= seed << 13
            seed ^= seed >> 7
            seed ^= seed << 17
            return seed
        }
        for width in [1, 2, 4] {
            for offset in stride(from: 0, to: 0x100, by: width) {
                _ = f.cfg(offset, width)
                f.setCfg(offset, width, UInt32(truncatingIfNeeded: next()))
            }
        }
        for width in [1, 2, 4, 8, 3] {
            for offset in stride(from: UInt64(0), to: 0x8100, by: 1) {
                _ = f.transport.bar(offset, width)
                let value: UInt64 = [0, .max, next()][Int(offset) % 3]
                f.transport.bar(offset, width, value)
            }
        }
        // Config space back to sane values, the device reset and driven again.
        f.setMSIXControl(enable: false, maskAll: false)
        f.setCfg(0x04, 2, 0x6)
        f.transport.bar(0x14, 1, 0)
        #expect(f.status == 0)
        try f.freshRings()
        f.start()
        #expect(f.status == 15)
        var reply = Decoder(try f.initRoundTrip(), at: 4)
        #expect(reply.u32() == 0, "INIT answered after the abuse")
    }
}
