import Glibc
import Synchronization
import Testing
import VfsvmBoot
@testable import VfsvmMachine
import VfsvmSys
import VfsvmVirtioBlk

/// `--transport pci` on the board, before any guest runs: where the
/// functions, their BARs and their INTx GSIs are, as a guest finds them
/// through configuration mechanism #1.
@Suite(.serialized) struct VirtioPCIBoardTests {
    /// A pci board with two 1 MiB virtio-blk disks (slots 1 and 2), or nil
    /// (recorded) when /dev/kvm is not usable; the caller unlinks the images.
    static func twoDiskBoard() throws -> (Machine, [String])? {
        guard access("/dev/kvm", R_OK | W_OK) == 0 else {
            Issue.record("/dev/kvm is not usable here (errno \(errno)): the board cannot be built")
            return nil
        }
        var devices: [VirtioBlockDevice] = []
        var paths: [String] = []
        for i in 0..<2 {
            var template = Array("/tmp/vfsvm-pci-board.XXXXXX".utf8CString)
            let fd = template.withUnsafeMutableBufferPointer { mkstemp($0.baseAddress!) }
            try #require(fd >= 0)
            paths.append(template.withUnsafeBufferPointer { String(cString: $0.baseAddress!) })
            try #require(ftruncate(fd, 1 << 20) == 0)
            close(fd)
            devices.append(try VirtioBlockDevice(image: try BlockImage(path: paths[i], readOnly: false), serial: "disk\(i)"))
        }
        let machine = try Machine.build(MachineConfig(memorySize: memorySize, kernel: MachineTests.pvhImage([0xf4]), devices: devices,
                                                      transport: .pci, consoleOutput: { _ in }))
        return (machine, paths)
    }

    static let memorySize: UInt64 = 64 << 20

    @Test func twoDisksAreTwoFunctionsWithBARsAboveRAMAndAGSIEach() throws {
        guard let (machine, paths) = try Self.twoDiskBoard() else { return }
        defer { for p in paths { unlink(p) } }
        let bridge = try #require(machine.ports.all.first { $0.name == "PCI config" }?.device)
        func config(_ slot: UInt32, _ reg: UInt32, size: Int = 4) -> UInt32 {
            bridge.write(offset: 0, size: 4, value: 0x8000_0000 | slot << 11 | reg)
            return bridge.read(offset: 4 + UInt16(reg & 3), size: size)
        }
        func setConfig(_ slot: UInt32, _ reg: UInt32, _ value: UInt32, size: Int = 4) {
            bridge.write(offset: 0, size: 4, value: 0x8000_0000 | slot << 11 | reg)
            bridge.write(offset: 4 + UInt16(reg & 3), size: size, value: value)
        }

        let window = X86Layout.pciMem64(memorySize: Self.memorySize)
        var lines: Set<UInt32> = []
        for slot in UInt32(1)...2 {
            #expect(config(slot, 0) == 0x1042_1af4, "slot \(slot): virtio-blk, modern")
            let bar = UInt64(config(slot, 0x14)) << 32 | UInt64(config(slot, 0x10) & ~0xf)
            #expect(bar == window.lowerBound + UInt64(slot - 1) * 0x8000, "slot \(slot): BAR0 in the 64-bit window above RAM")
            lines.insert(config(slot, 0x3c, size: 1))
            #expect(config(slot, 0x3d, size: 1) == 1, "INTA#")
            // Decoding is off until the guest turns it on.
            #expect(machine.mmio.find(bar) == nil)
            setConfig(slot, 0x04, 0x6, size: 2)
            #expect(machine.mmio.find(bar + 0x12).map { $0.offset } == 0x12, "slot \(slot): BAR0 on the MMIO bus once decoding")
        }
        #expect(lines.count == 2 && lines.isSubset(of: [5, 6, 7, 10, 11]), "a GSI of its own each: \(lines)")
        #expect(config(3, 0) == 0xffff_ffff, "slot 3 is empty")

        // num_queues through BAR0's common configuration.
        let (bar1, offset) = try #require(machine.mmio.find(window.lowerBound + 0x12))
        var two: [UInt8] = [0, 0]
        two.withUnsafeMutableBytes { bar1.read(offset: offset, into: $0) }
        #expect(two == [1, 0], "one request queue")
    }

    /// A BAR whose notify ioeventfd KVM refuses at the new address (here
    /// another registration is already there, as a second device's would
    /// be in a race) is left off the bus entirely, and the function maps
    /// again when the guest moves it back; the other function is never
    /// touched. Before, the window stayed on the bus without its ioeventfds,
    /// was recorded as mapped, and every later move failed (ENOENT).
    @Test func aBARThatCannotBeMappedIsRolledBackAndMapsAgainLater() throws {
        guard let (machine, paths) = try Self.twoDiskBoard() else { return }
        defer { for p in paths { unlink(p) } }
        let bridge = try #require(machine.ports.all.first { $0.name == "PCI config" }?.device)
        func config(_ slot: UInt32, _ reg: UInt32) -> UInt32 {
            bridge.write(offset: 0, size: 4, value: 0x8000_0000 | slot << 11 | reg)
            return bridge.read(offset: 4, size: 4)
        }
        func setConfig(_ slot: UInt32, _ reg: UInt32, _ value: UInt32, size: Int = 4) {
            bridge.write(offset: 0, size: 4, value: 0x8000_0000 | slot << 11 | reg)
            bridge.write(offset: 4 + UInt16(reg & 3), size: size, value: value)
        }
        for slot in UInt32(1)...2 { setConfig(slot, 0x04, 0x6, size: 2) }
        let bar1 = UInt64(config(1, 0x14)) << 32 | UInt64(config(1, 0x10) & ~0xf)
        let bar2 = UInt64(config(2, 0x14)) << 32 | UInt64(config(2, 0x10) & ~0xf)
        let target = bar2 + 0x10000
        let note = try #require(machine.pciTransports[1].notifications.first)
        let squatter = try EventFD(nonBlocking: true)
        try machine.vm.registerIOEventFD(squatter, address: target + note.offset, length: note.length, dataMatch: note.dataMatch)

        setConfig(2, 0x10, UInt32(truncatingIfNeeded: target) | 0xc)
        #expect(machine.mmio.find(target) == nil, "a BAR KVM would not take notifications for is not on the bus")
        #expect(machine.mmio.find(bar2) == nil, "nor at its old address")
        #expect(machine.mmio.find(bar1)?.offset == 0, "the other function keeps its BAR0")

        setConfig(2, 0x10, UInt32(truncatingIfNeeded: bar2) | 0xc)
        #expect(machine.mmio.find(bar2 + 0x12)?.offset == 0x12, "moved back, BAR0 maps again")
        #expect(machine.mmio.find(bar1)?.offset == 0)
        try machine.vm.unregisterIOEventFD(squatter, address: target + note.offset, length: note.length, dataMatch: note.dataMatch)
    }

    /// Ranges overlap when any byte does, not just the first or the last;
    /// removal names the range, so a same-address range of another device
    /// survives.
    @Test func theBusRefusesAnyOverlapAndRemovesByName() {
        final class Dummy: VfsvmMachine.MMIODevice {
            func read(offset: UInt64, into data: UnsafeMutableRawBufferPointer) {}
            func write(offset: UInt64, bytes data: UnsafeRawBufferPointer) {}
        }
        let bus = MMIOBus()
        #expect(bus.tryInsert(Dummy(), base: 0x1000, size: 0x100, name: "small"))
        #expect(!bus.tryInsert(Dummy(), base: 0x0, size: 0x10000, name: "around"), "covers the small one entirely")
        #expect(!bus.tryInsert(Dummy(), base: 0x10ff, size: 1, name: "last byte"))
        #expect(!bus.tryInsert(Dummy(), base: UInt64.max - 1, size: 4, name: "wraps"))
        #expect(bus.tryInsert(Dummy(), base: 0x1100, size: 0x100, name: "next"))
        bus.remove(base: 0x1000, name: "another")
        #expect(bus.find(0x1000) != nil)
        bus.remove(base: 0x1000, name: "small")
        #expect(bus.find(0x1000) == nil && bus.find(0x1100) != nil)
    }
}

/// The INTx resampler without KVM: the test plays KVM's part and signals
/// the resample eventfd (as an EOI of the level interrupt would).
@Suite(.serialized) struct INTxResamplerTests {
    /// Waits up to 2 s for `condition` (the resampler runs on its own thread).
    func eventually(_ condition: () -> Bool) -> Bool {
        for _ in 0..<400 where !condition() { usleep(5000) }
        return condition()
    }

    @Test func aLineIsAssertedAgainAfterEOIOnlyWhileTheDeviceWantsIt() throws {
        let line = CountingLine()
        let wanted = Atomic(true)
        let resample = try EventFD(nonBlocking: true)
        let r = try INTxResampler([ResampledLine(resample: resample, line: line, name: "test") { wanted.load(ordering: .relaxed) }])
        let thread = try OSThread(name: "intx-test") { r.run() }
        defer {
            r.stop()
            thread.join()
        }
        // EOI while the ISR is still set: asserted again.
        try resample.signal()
        #expect(eventually { line.count.load(ordering: .relaxed) == 1 })
        // EOI after the driver read the ISR: left alone.
        wanted.store(false, ordering: .relaxed)
        try resample.signal()
        usleep(50_000)
        #expect(line.count.load(ordering: .relaxed) == 1)
        #expect(try resample.drain() == 0, "the resampler drained the eventfd")
        wanted.store(true, ordering: .relaxed)
        try resample.signal()
        #expect(eventually { line.count.load(ordering: .relaxed) == 2 })
    }
}
