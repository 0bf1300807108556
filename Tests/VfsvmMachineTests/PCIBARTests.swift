import Synchronization
import Testing
import VfsvmKVM
import VfsvmSys
@testable import VfsvmMachine

/// A PCI function with one 64-bit memory BAR (BAR0/1, 16 KiB) and the
/// standard sizing protocol (PCI 3.0, 6.2.5.1): writing all ones reads back
/// the size mask. Its BAR reads return the offset's low byte.
final class FakeEndpoint: PCIEndpoint {
    static let barSize: UInt64 = 0x4000
    private let regs = Mutex((command: UInt16(0), bar: UInt64(0)))
    let kick: EventFD

    init() throws { kick = try EventFD(nonBlocking: true) }

    var barRequests: [PCIBARRequest] { [PCIBARRequest(index: 0, size: Self.barSize, is64: true, prefetchable: true)] }
    var barNotifications: [BARNotification] { [BARNotification(bar: 0, offset: 0x100, length: 2, dataMatch: 1, eventfd: kick)] }

    func assignBAR(_ index: Int, address: UInt64) {
        regs.withLock { $0.bar = address; $0.command |= 0x2 }  // as firmware leaves it: decoding on
    }

    func decodedBAR(_ index: Int) -> UInt64? {
        regs.withLock { r in
            r.command & 0x2 != 0 && r.bar & (Self.barSize - 1) == 0 && r.bar != ~(Self.barSize - 1) ? r.bar : nil
        }
    }

    func readConfig(offset: Int, size: Int) -> UInt32 {
        regs.withLock { r in
            switch offset {
            case 0: 0x1234_1af4
            case 4: UInt32(r.command)
            case 0x10: UInt32(truncatingIfNeeded: r.bar) | 0xc  // 64-bit, prefetchable
            case 0x14: UInt32(truncatingIfNeeded: r.bar >> 32)
            default: 0
            }
        }
    }

    func writeConfig(offset: Int, size: Int, value: UInt32) {
        regs.withLock { r in
            switch offset {
            case 4: r.command = UInt16(truncatingIfNeeded: value)
            case 0x10: r.bar = r.bar & 0xffff_ffff_0000_0000 | UInt64(value) & ~(Self.barSize - 1) & 0xffff_ffff
            case 0x14: r.bar = r.bar & 0xffff_ffff | UInt64(value) << 32
            default: break
            }
        }
    }

    func readBAR(_ index: Int, offset: UInt64, into data: UnsafeMutableRawBufferPointer) {
        for i in data.indices { data[i] = UInt8(truncatingIfNeeded: offset + UInt64(i)) }
    }

    func writeBAR(_ index: Int, offset: UInt64, bytes data: UnsafeRawBufferPointer) {}
}

@Suite(.serialized) struct PCIBARTests {
    func config(_ bridge: PCIHostBridge, slot: UInt32, _ reg: UInt32) -> UInt32 {
        bridge.write(offset: 0, size: 4, value: 0x8000_0000 | slot << 11 | reg)
        return bridge.read(offset: 4, size: 4)
    }

    func setConfig(_ bridge: PCIHostBridge, slot: UInt32, _ reg: UInt32, _ value: UInt32) {
        bridge.write(offset: 0, size: 4, value: 0x8000_0000 | slot << 11 | reg)
        bridge.write(offset: 4, size: 4, value: value)
    }

    @Test func barsArePlacedAlignedInTheWindowsAndBadOnesRefused() throws {
        var a = PCIBARAllocator(mem32: 0xc000_0000...0xcfff_ffff, mem64: 0x1_0000_0000...0x1_ffff_ffff)
        #expect(try a.place(PCIBARRequest(index: 0, size: 0x1000, is64: true, prefetchable: false)) == 0x1_0000_0000)
        #expect(try a.place(PCIBARRequest(index: 2, size: 0x4000, is64: true, prefetchable: false)) == 0x1_0000_4000)
        #expect(try a.place(PCIBARRequest(index: 1, size: 0x2000, is64: false, prefetchable: false)) == 0xc000_0000)
        #expect(throws: MachineError.self) { try a.place(PCIBARRequest(index: 3, size: 0x3000, is64: true, prefetchable: false)) }
        #expect(throws: MachineError.self) { try a.place(PCIBARRequest(index: 4, size: 1 << 40, is64: true, prefetchable: false)) }
    }

    @Test func theBoardMapsAssignedBARsAndFollowsTheGuestWhenItMovesOne() throws {
        let vm = try VfsvmKVM.KVM().createVM()
        let mmio = MMIOBus()
        let bridge = PCIHostBridge()
        var allocator = PCIBARAllocator(mem32: 0xc000_0000...0xcfff_ffff, mem64: 0x1_0000_0000...0x1_ffff_ffff)
        let endpoint = try FakeEndpoint()
        let placed = try bridge.attach(endpoint, slot: 1, name: "fake", allocator: &allocator, vm: vm, mmio: mmio)
        #expect(placed == [0: 0x1_0000_0000])
        // The address is in config space before the guest's first instruction.
        #expect(config(bridge, slot: 1, 0x10) == 0x0000_000c && config(bridge, slot: 1, 0x14) == 1)
        let (device, offset) = try #require(mmio.find(0x1_0000_0010))
        #expect(offset == 0x10)
        var byte: [UInt8] = [0]
        byte.withUnsafeMutableBytes { device.read(offset: offset, into: $0) }
        #expect(byte == [0x10])

        // Linux sizes the BAR with decoding off, then moves it.
        setConfig(bridge, slot: 1, 0x04, 0)
        #expect(mmio.find(0x1_0000_0010) == nil)
        setConfig(bridge, slot: 1, 0x10, 0xffff_ffff)
        #expect(config(bridge, slot: 1, 0x10) == 0xffff_c00c)  // size mask: 16 KiB
        setConfig(bridge, slot: 1, 0x10, 0x0002_0000)
        setConfig(bridge, slot: 1, 0x14, 1)
        setConfig(bridge, slot: 1, 0x04, 2)
        #expect(mmio.find(0x1_0000_0010) == nil)
        #expect(mmio.find(0x1_0002_3fff).map { $0.offset } == 0x3fff)
    }
}
