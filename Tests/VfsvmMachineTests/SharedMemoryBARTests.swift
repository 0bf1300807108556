import Glibc
import Testing
import VfsvmKVM
import VfsvmMemory
import VfsvmSys
import VfsvmTestSupport
import VfsvmTransport
@testable import VfsvmMachine

/// MSI-X messages nobody needs here.
final class NoMSIX: MSIXVectorSink {
    func route(vector: Int, address: UInt64, data: UInt32) {}
    func trigger(vector: Int) throws {}
}

/// The virtio-pci shared-memory window (BAR2) as a KVM memory slot: placed
/// by the board, moved and deleted as the guest reprograms or disables the
/// BAR. Whether a guest-physical range holds a slot is asked of KVM itself:
/// it refuses a second slot over an existing one (EEXIST).
@Suite(.serialized) struct SharedMemoryBARTests {
    func setConfig(_ bridge: PCIHostBridge, _ reg: UInt32, _ value: UInt32) {
        bridge.write(offset: 0, size: 4, value: 0x8000_0000 | 1 << 11 | reg)
        bridge.write(offset: 4, size: 4, value: value)
    }

    func config(_ bridge: PCIHostBridge, _ reg: UInt32) -> UInt32 {
        bridge.write(offset: 0, size: 4, value: 0x8000_0000 | 1 << 11 | reg)
        return bridge.read(offset: 4, size: 4)
    }

    /// Whether KVM has a slot over `address`: a probe window fits there
    /// only if not (it is deleted again at once).
    func slotThere(_ vm: VirtualMachine, _ probe: SharedMemoryWindow, _ slot: UInt32, _ address: UInt64) throws -> Bool {
        do { try vm.mapWindow(probe, slot: slot, at: address) } catch { return true }
        try vm.unmapSlot(slot)
        return false
    }

    @Test func theWindowIsASlotWhereBAR2DecodesAndFollowsTheGuest() throws {
        guard access("/dev/kvm", R_OK | W_OK) == 0 else {
            Issue.record("/dev/kvm is not usable here (errno \(errno)): the window cannot be mapped")
            return
        }
        let vm = try VfsvmKVM.KVM().createVM()
        let memory = try GuestMemory.anonymous(size: 16 << 20)
        try vm.map(memory)
        let mmio = MMIOBus(), bridge = PCIHostBridge()
        var allocator = PCIBARAllocator(mem32: 0xc000_0000...0xcfff_ffff, mem64: 0x1_0000_0000...0x1_ffff_ffff)
        let window = try SharedMemoryWindow(size: 2 << 20)
        let t = try VirtioPCITransport(device: ReversingDevice(), memory: memory, intx: CountingLine(), msix: NoMSIX(), sharedMemory: window)
        let placed = try bridge.attach(t, slot: 1, name: "fs", allocator: &allocator, vm: vm, mmio: mmio)
        #expect(placed == [0: 0x1_0000_0000, 2: 0x1_0020_0000], "BAR0 first, BAR2 aligned to its 2 MiB")
        #expect(config(bridge, 0x18) == 0x0020_000c && config(bridge, 0x1c) == 1, "BAR2: 64-bit prefetchable at the placement")

        let probe = try SharedMemoryWindow(size: 2 << 20)
        let probeSlot = vm.allocateSlot()
        #expect(try !slotThere(vm, probe, probeSlot, 0x1_0020_0000), "memory decoding off: no slot yet")
        setConfig(bridge, 0x04, 0x2)
        #expect(try slotThere(vm, probe, probeSlot, 0x1_0020_0000), "decoding on: the window is KVM's slot at BAR2")
        #expect(try !slotThere(vm, probe, probeSlot, 0x1_0040_0000))

        // Linux sizes with decoding off and may move the BAR.
        setConfig(bridge, 0x04, 0)
        #expect(try !slotThere(vm, probe, probeSlot, 0x1_0020_0000), "decoding off deletes the slot")
        setConfig(bridge, 0x18, 0xffff_ffff)
        setConfig(bridge, 0x1c, 0xffff_ffff)
        #expect(config(bridge, 0x18) == 0xffe0_000c && config(bridge, 0x1c) == 0xffff_ffff, "size mask: 2 MiB")
        setConfig(bridge, 0x18, 0x0040_0000)
        setConfig(bridge, 0x1c, 1)
        setConfig(bridge, 0x04, 0x2)
        #expect(try slotThere(vm, probe, probeSlot, 0x1_0040_0000), "the slot follows the BAR")
        #expect(try !slotThere(vm, probe, probeSlot, 0x1_0020_0000), "and leaves the old address")

        // A hostile guest puts the window over its RAM: KVM refuses, the
        // BAR stays unmapped (no MMIO range either) and RAM is untouched.
        setConfig(bridge, 0x18, 0x0020_0000)
        setConfig(bridge, 0x1c, 0)
        #expect(mmio.find(0x20_0000) == nil)
        #expect(try !slotThere(vm, probe, probeSlot, 0x1_0040_0000), "nothing left at the previous address")
        // Back to a free address: mapped again.
        setConfig(bridge, 0x1c, 1)
        #expect(try slotThere(vm, probe, probeSlot, 0x1_0020_0000))
    }
}
