import CVfsvmLinux
import Glibc
import Testing
import VfsvmKVM
import VfsvmMemory
import VfsvmSys

/// Real guests under /dev/kvm: a few real-mode instructions each, so the
/// exits, ioeventfds and irqfds are KVM's own, not a model of them.
@Suite(.serialized) struct KVMTests {
    @Test func openingKVMChecksTheAPIVersionAndCapabilities() throws {
        let kvm = try KVM()
        #expect(kvm.checkExtension(.irqchip) > 0)
        #expect(kvm.vcpuMapSize >= 4096)
        let bogus = KVMCapability(0x7fff_0000, "KVM_CAP_FROM_THE_FUTURE")
        #expect(throws: KVMError.missingCapability(bogus)) { try KVM(requiring: [bogus]) }
        #expect(KVMError.missingCapability(bogus).description == "this host's KVM lacks KVM_CAP_FROM_THE_FUTURE, which vfsvm needs")
        #expect(throws: KVMError.self) { try KVM(path: "/nonexistent/kvm") }
    }

    @Test func anOutThenHltExitsWithThePortTheValueAndTheRegisters() throws {
        // mov al, 0x42; mov dx, 0x3f8; out dx, al; mov bx, 0x1234; hlt
        let g = try TinyGuest(code: [0xb0, 0x42, 0xba, 0xf8, 0x03, 0xee, 0xbb, 0x34, 0x12, 0xf4])
        let first = try g.vcpu.run()
        #expect(first == .io(IOExit(direction: .out, port: 0x3f8, size: 1, count: 1)))
        #expect(g.vcpu.ioValue() == 0x42)
        #expect(try g.vcpu.run() == .hlt)
        let regs = try g.vcpu.registers()
        #expect(regs.rbx & 0xffff == 0x1234)
        #expect(regs.rax & 0xff == 0x42)
        #expect(regs.rip == TinyGuest.codeAddress + 10)
    }

    @Test func anInReceivesTheValueTheVMMStores() throws {
        // mov dx, 0x71; in al, dx; mov bl, al; hlt
        let g = try TinyGuest(code: [0xba, 0x71, 0x00, 0xec, 0x88, 0xc3, 0xf4])
        #expect(try g.vcpu.run() == .io(IOExit(direction: .in, port: 0x71, size: 1, count: 1)))
        g.vcpu.setIOValue(0xa5)
        #expect(try g.vcpu.run() == .hlt)
        #expect(try g.vcpu.registers().rbx & 0xff == 0xa5)
    }

    @Test func accessesOutsideEveryMemorySlotAreMMIOExits() throws {
        // mov ax, 0x2000; mov ds, ax; mov byte [0x10], 0x5a; mov bl, [0x10]; hlt
        let g = try TinyGuest(code: [0xb8, 0x00, 0x20, 0x8e, 0xd8, 0xc6, 0x06, 0x10, 0x00, 0x5a, 0x8a, 0x1e, 0x10, 0x00, 0xf4])
        #expect(try g.vcpu.run() == .mmio(MMIOExit(address: TinyGuest.mmioBase + 0x10, length: 1, isWrite: true)))
        #expect(g.vcpu.mmioValue() == 0x5a)
        #expect(try g.vcpu.run() == .mmio(MMIOExit(address: TinyGuest.mmioBase + 0x10, length: 1, isWrite: false)))
        g.vcpu.setMMIOValue(0x77)
        #expect(try g.vcpu.run() == .hlt)
        #expect(try g.vcpu.registers().rbx & 0xff == 0x77)
    }

    @Test func anIOEventFDWithDataMatchFiresWithoutAnExit() throws {
        // mov dx, 0x600; mov al, 7; out dx, al          (matches: no exit)
        // mov ax, 0x2000; mov ds, ax; mov word [0x20], 3 (matches: no exit)
        // mov al, 8; out dx, al                          (no match: exits)
        // hlt
        let g = try TinyGuest(code: [
            0xba, 0x00, 0x06, 0xb0, 0x07, 0xee, 0xb8, 0x00, 0x20, 0x8e, 0xd8,
            0xc7, 0x06, 0x20, 0x00, 0x03, 0x00, 0xb0, 0x08, 0xee, 0xf4,
        ])
        let pio = try EventFD(nonBlocking: true)
        let mmio = try EventFD(nonBlocking: true)
        try g.vm.registerIOEventFD(pio, address: 0x600, length: 1, dataMatch: 7, pio: true)
        try g.vm.registerIOEventFD(mmio, address: TinyGuest.mmioBase + 0x20, length: 2, dataMatch: 3)
        let exits = try g.run { $0 == .hlt }
        #expect(exits == [.io(IOExit(direction: .out, port: 0x600, size: 1, count: 1)), .hlt])
        #expect(try pio.drain() == 1)
        #expect(try mmio.drain() == 1)
        #expect(throws: KVMError.self) { try g.vm.registerIOEventFD(pio, address: 0x601, length: 3, pio: true) }
    }

    @Test func anUnregisteredIOEventFDLetsTheWriteExitAgain() throws {
        // mov dx, 0x600; mov al, 7; out dx, al; hlt
        let g = try TinyGuest(code: [0xba, 0x00, 0x06, 0xb0, 0x07, 0xee, 0xf4])
        let kick = try EventFD(nonBlocking: true)
        try g.vm.registerIOEventFD(kick, address: 0x600, length: 1, dataMatch: 7, pio: true)
        try g.vm.unregisterIOEventFD(kick, address: 0x600, length: 1, dataMatch: 7, pio: true)
        #expect(try g.run { $0 == .hlt } == [.io(IOExit(direction: .out, port: 0x600, size: 1, count: 1)), .hlt])
        #expect(try kick.drain() == 0)
    }

    /// The guest programs the in-kernel PIC (vector base 0x20, only IRQ 5
    /// unmasked), says it is ready on port 0x10 and halts; a write to an
    /// irqfd on GSI 5 wakes it into its handler, which reports on port 0x11.
    static let interruptGuest: [UInt8] = [
        0xfa, 0x31, 0xc0, 0x8e, 0xd8,  // cli; xor ax, ax; mov ds, ax
        0xc7, 0x06, 0x94, 0x00, 0x37, 0x10, 0xc7, 0x06, 0x96, 0x00, 0x00, 0x00,  // IVT[0x25] = 0000:1037
        0xc7, 0x06, 0xc0, 0x00, 0x37, 0x10, 0xc7, 0x06, 0xc2, 0x00, 0x00, 0x00,  // IVT[0x30] = 0000:1037
        0xb0, 0x11, 0xe6, 0x20, 0xb0, 0x20, 0xe6, 0x21,  // ICW1, ICW2 = 0x20
        0xb0, 0x04, 0xe6, 0x21, 0xb0, 0x01, 0xe6, 0x21,  // ICW3, ICW4
        0xb0, 0xdf, 0xe6, 0x21,  // OCW1: unmask IRQ 5
        0xe6, 0x10,  // out 0x10: ready
        0xfb, 0xf4, 0xeb, 0xfd,  // sti; 1: hlt; jmp 1b
        // handler at 0x1037: inc bx; mov al, bl; out 0x11, al; EOI to the PIC; iret
        0x43, 0x88, 0xd8, 0xe6, 0x11, 0xb0, 0x20, 0xe6, 0x20, 0xcf,
    ]

    @Test func anIRQFDOnAPICLineInterruptsTheHaltedGuest() throws {
        let g = try TinyGuest(code: Self.interruptGuest, irqchip: true)
        try g.vcpu.configureLINTs()
        let irq = try EventFD()
        try g.vm.registerIRQFD(irq, gsi: 5)
        let ready = try g.run { $0 == .io(IOExit(direction: .out, port: 0x10, size: 1, count: 1)) }
        #expect(ready.last == .io(IOExit(direction: .out, port: 0x10, size: 1, count: 1)))
        try irq.signal()
        let handled = try g.run { if case .io = $0 { true } else { false } }
        #expect(handled == [.io(IOExit(direction: .out, port: 0x11, size: 1, count: 1))])
        #expect(g.vcpu.ioValue() == 1)
    }

    @Test func anMSIRouteDeliversThroughTheLocalAPIC() throws {
        let g = try TinyGuest(code: Self.interruptGuest, irqchip: true)
        // Software-enable the local APIC (SVR bit 8, spurious vector 0xFF):
        // the real-mode guest cannot reach its MMIO page itself.
        var apic = try g.vcpu.localAPIC()
        apic[register: 0xf0] = 0x1ff
        try g.vcpu.setLocalAPIC(apic)
        let msi = try EventFD()
        try g.vm.setGSIRouting(GSIRoute.defaultIRQChipRoutes + [.msi(gsi: 24, address: 0xfee0_0000, data: 0x30)])
        try g.vm.registerIRQFD(msi, gsi: 24)
        _ = try g.run { $0 == .io(IOExit(direction: .out, port: 0x10, size: 1, count: 1)) }
        try msi.signal()
        #expect(try g.run { if case .io = $0 { true } else { false } } == [.io(IOExit(direction: .out, port: 0x11, size: 1, count: 1))])
        #expect(g.vcpu.ioValue() == 1)
        // KVM_SIGNAL_MSI: the same vector without a route. The handler
        // above did not EOI the local APIC, so do it for the guest.
        apic = try g.vcpu.localAPIC()
        apic[register: 0xb0] = 0
        try g.vcpu.setLocalAPIC(apic)
        try g.vm.signalMSI(address: 0xfee0_0000, data: 0x30)
        #expect(try g.run { if case .io = $0 { true } else { false } } == [.io(IOExit(direction: .out, port: 0x11, size: 1, count: 1))])
        #expect(g.vcpu.ioValue() == 2)
    }

    @Test func kickStopsASpinningVCPU() throws {
        let g = try TinyGuest(code: [0xeb, 0xfe])  // jmp $
        let exits = try g.run(seconds: 0.2) { _ in false }
        #expect(exits.last == .interrupted)
        #expect(g.vcpu.isKicked)
        #expect(try g.vcpu.run() == .interrupted)
    }

    @Test func cpuidForAVCPUCarriesItsAPICIDAndTheKVMSignature() throws {
        let kvm = try KVM()
        let table = try kvm.supportedCPUID().forVCPU(index: 3, count: 4)
        let leaf1 = try #require(table.entry(1))
        #expect(leaf1.ebx >> 24 == 3)
        #expect(leaf1.ebx >> 16 & 0xff == 4)
        #expect(leaf1.ecx & (1 << 31) != 0)
        let hv = try #require(table.entry(0x4000_0000))
        let signature = [hv.ebx, hv.ecx, hv.edx].flatMap { w in (0..<4).map { UInt8(truncatingIfNeeded: w >> (8 * $0)) } }
        #expect(String(decoding: signature.prefix(9), as: UTF8.self) == "KVMKVMKVM")
        if let topo = table.entry(0xb, 1) {
            #expect(topo.ebx == 4)
            #expect(topo.edx == 3)
        }
    }

    @Test func bootMSRsAreAcceptedAndReadBack() throws {
        let g = try TinyGuest(code: [0xf4], irqchip: true)
        try g.vcpu.configureForBoot(cpuid: try g.kvm.supportedCPUID(), count: 1)
        let msrs = try g.vcpu.msrs([VCPU.msrMiscEnable, VCPU.msrLSTAR, VCPU.msrMTRRDefType])
        #expect(msrs[VCPU.msrMiscEnable].map { $0 & 1 } == 1)
        #expect(msrs[VCPU.msrLSTAR] == 0)
        #expect(msrs[VCPU.msrMTRRDefType] == VCPU.mtrrDefaultWriteBack)
        let apic = try g.vcpu.localAPIC()
        #expect(apic[register: LocalAPICState.lvtLINT0] & 0x700 == LocalAPICState.deliveryExtINT)
        #expect(apic[register: LocalAPICState.lvtLINT1] & 0x700 == LocalAPICState.deliveryNMI)
    }
}

/// The `--accel auto` measurement: the calibration guest runs to its `hlt`
/// and the figure is what a user sees on stderr.
@Suite(.serialized) struct KVMCalibrationTests {
    @Test func theCalibrationGuestRunsToItsHaltAndIsTimed() throws {
        let r = try KVMCalibration.measure()
        #expect(!r.timedOut)
        #expect(r.elapsed > .zero && r.elapsed < KVMCalibration.limit)
        #expect(r.description.hasPrefix("the 40002-instruction calibration guest took "))
        #expect(r.description.hasSuffix(" ms under KVM"))
        // Printed for the record (the threshold's justification).
        print("calibration: \(r.milliseconds), hardware speed: \(r.isHardwareSpeed)")
    }

    @Test func aMissingKVMDeviceIsOneSentence() {
        #expect(throws: KVMError.self) { try KVMCalibration.measure(path: "/nonexistent/kvm") }
    }

    @Test func theFigureIsFormattedInMilliseconds() {
        #expect(KVMCalibration.Result(elapsed: .microseconds(412), timedOut: false).milliseconds == "0.412 ms")
        #expect(KVMCalibration.Result(elapsed: .microseconds(23_005), timedOut: false).milliseconds == "23.005 ms")
        #expect(KVMCalibration.Result(elapsed: .microseconds(412), timedOut: false).isHardwareSpeed)
        #expect(!KVMCalibration.Result(elapsed: .milliseconds(30), timedOut: false).isHardwareSpeed)
        #expect(!KVMCalibration.Result(elapsed: .microseconds(10), timedOut: true).isHardwareSpeed)
    }
}
