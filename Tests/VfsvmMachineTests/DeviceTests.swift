import Synchronization
import Testing
import VfsvmMachine
import VfsvmKVM
import VfsvmTransport

/// Counts triggers, for the devices' interrupt lines.
final class CountingLine: InterruptLine {
    let count = Atomic<Int>(0)
    func trigger() throws { count.add(1, ordering: .relaxed) }
    var value: Int { count.load(ordering: .relaxed) }
}

final class Recorder: Sendable {
    let bytes = Mutex<[UInt8]>([])
    let stops = Mutex<[MachineStop]>([])
    var output: @Sendable (UInt8) -> Void { { b in self.bytes.withLock { $0.append(b) } } }
    var stop: @Sendable (MachineStop) -> Void { { s in self.stops.withLock { $0.append(s) } } }
}

@Suite struct SerialTests {
    @Test func transmittedBytesReachTheConsoleAndTheTransmitterIsAlwaysEmpty() {
        let r = Recorder()
        let uart = Serial8250(line: CountingLine(), output: r.output)
        for b in Array("hi\n".utf8) { uart.write(offset: 0, size: 1, value: UInt32(b)) }
        #expect(r.bytes.withLock { $0 } == Array("hi\n".utf8))
        #expect(uart.read(offset: 5, size: 1) & 0x60 == 0x60)  // THRE | TEMT
        #expect(uart.read(offset: 5, size: 1) & 0x01 == 0)  // no data
    }

    @Test func inputSetsDataReadyAndInterruptsWhenEnabled() {
        let line = CountingLine()
        let uart = Serial8250(line: line, output: { _ in })
        uart.receive([0x61])
        #expect(line.value == 0)  // IER clear: no interrupt
        #expect(uart.read(offset: 2, size: 1) & 0x0f == 0x01)  // IIR: none pending
        uart.write(offset: 1, size: 1, value: 0x01)  // IER: received data
        #expect(line.value == 1)  // enabling with data waiting interrupts at once
        #expect(uart.read(offset: 2, size: 1) & 0x0f == 0x04)  // IIR: received data
        uart.receive([0x62])
        #expect(line.value == 2)
        #expect(uart.read(offset: 5, size: 1) & 0x01 == 1)
        #expect(uart.read(offset: 0, size: 1) == 0x61)
        #expect(uart.read(offset: 0, size: 1) == 0x62)
        #expect(uart.read(offset: 5, size: 1) & 0x01 == 0)
        #expect(uart.read(offset: 2, size: 1) & 0x0f == 0x01)
    }

    @Test func transmitterEmptyInterruptFollowsEachByteAndClearsOnIIRRead() {
        let line = CountingLine()
        let uart = Serial8250(line: line, output: { _ in })
        uart.write(offset: 1, size: 1, value: 0x02)  // IER: THRI
        #expect(line.value == 1)
        #expect(uart.read(offset: 2, size: 1) & 0x0f == 0x02)
        #expect(uart.read(offset: 2, size: 1) & 0x0f == 0x01)  // reading IIR cleared it
        uart.write(offset: 0, size: 1, value: 0x41)
        #expect(line.value == 2)
    }

    @Test func divisorLatchAndScratchAndLoopback() {
        let r = Recorder()
        let uart = Serial8250(line: CountingLine(), output: r.output)
        uart.write(offset: 3, size: 1, value: 0x83)  // DLAB
        uart.write(offset: 0, size: 1, value: 0x01)
        uart.write(offset: 1, size: 1, value: 0x00)
        #expect(uart.read(offset: 0, size: 1) == 0x01)
        uart.write(offset: 3, size: 1, value: 0x03)
        #expect(uart.read(offset: 1, size: 1) == 0)  // IER, not DLM
        uart.write(offset: 7, size: 1, value: 0x5a)
        #expect(uart.read(offset: 7, size: 1) == 0x5a)
        // Linux's probe: MCR = LOOP | OUT2 | RTS must read MSR = DCD | CTS.
        uart.write(offset: 4, size: 1, value: 0x1a)
        #expect(uart.read(offset: 6, size: 1) & 0xf0 == 0x90)
        uart.write(offset: 0, size: 1, value: 0x55)
        #expect(r.bytes.withLock { $0 }.isEmpty)  // looped back, not transmitted
        #expect(uart.read(offset: 0, size: 1) == 0x55)
    }
}

@Suite struct LegacyDeviceTests {
    @Test func debugExitStatusIsTheValueShiftedWithTheLowBitSet() {
        let r = Recorder()
        DebugExit(stop: r.stop).write(offset: 0, size: 1, value: 0x21)
        #expect(r.stops.withLock { $0 } == [.debugExit(0x21)])
        #expect(MachineStop.debugExit(0x21).exitStatus == 67)
        #expect(MachineStop.debugExit(0).exitStatus == 1)
        #expect(MachineStop.powerOff.exitStatus == 0)
        #expect(MachineStop.reboot("triple fault").exitStatus == 0)
        #expect(MachineStop.failure("x").exitStatus != 0)
    }

    @Test func i8042ResetCommandRebootsAndSelfTestAnswers() {
        let r = Recorder()
        let kbc = I8042(stop: r.stop)
        #expect(kbc.read(offset: 4, size: 1) & 0x01 == 0)
        kbc.write(offset: 4, size: 1, value: 0xaa)
        #expect(kbc.read(offset: 4, size: 1) & 0x01 == 1)
        #expect(kbc.read(offset: 0, size: 1) == 0x55)
        #expect(r.stops.withLock { $0 }.isEmpty)
        kbc.write(offset: 4, size: 1, value: 0xfe)
        #expect(r.stops.withLock { $0 } == [.reboot("i8042 reset")])
    }

    @Test func cmosClockReadsTheHostTimeInBCDOrBinary() {
        // 2026-12-01 22:33:44 UTC, a Tuesday.
        let rtc = CMOSClock(now: { 1_796_164_424 })
        func reg(_ i: UInt32) -> UInt32 {
            rtc.write(offset: 0, size: 1, value: i)
            return rtc.read(offset: 1, size: 1)
        }
        #expect(reg(0x0a) & 0x80 == 0)  // UIP clear
        #expect(reg(0x0d) == 0x80)  // valid
        #expect([reg(0), reg(2), reg(4), reg(7), reg(8), reg(9), reg(0x32)] == [0x44, 0x33, 0x22, 0x01, 0x12, 0x26, 0x20])
        rtc.write(offset: 0, size: 1, value: 0x0b)
        rtc.write(offset: 1, size: 1, value: 0x06)  // binary, 24-hour
        #expect([reg(0), reg(2), reg(4), reg(9)] == [44, 33, 22, 26])
        rtc.write(offset: 0, size: 1, value: 0x0b)
        rtc.write(offset: 1, size: 1, value: 0x04)  // binary, 12-hour
        #expect(reg(4) == 0x80 | 10)  // 10 pm
        rtc.write(offset: 0, size: 1, value: 0x40)
        rtc.write(offset: 1, size: 1, value: 0x99)  // CMOS RAM
        #expect(reg(0x40) == 0x99)
    }

    @Test func pm1aControlWithS5AndSleepEnablePowersOff() {
        let r = Recorder()
        let pm = ACPIPowerManagement(stop: r.stop)
        #expect(pm.read(offset: 4, size: 2) & 1 == 1)  // SCI_EN: ACPI mode
        pm.write(offset: 4, size: 2, value: 5 << 10)  // SLP_TYP without SLP_EN
        #expect(r.stops.withLock { $0 }.isEmpty)
        pm.write(offset: 4, size: 2, value: 1 << 13 | 3 << 10)  // S3: not power-off
        #expect(r.stops.withLock { $0 }.isEmpty)
        pm.write(offset: 4, size: 2, value: 1 << 13 | 5 << 10)
        #expect(r.stops.withLock { $0 } == [.powerOff])
        let t1 = pm.read(offset: 8, size: 4)
        var t2 = t1
        for _ in 0..<1_000_000 where t2 == t1 { t2 = pm.read(offset: 8, size: 4) }
        #expect(t2 != t1)  // the PM timer ticks
        #expect(t2 <= 0xff_ffff)
    }

    @Test func pciHostBridgeAnswersForSlotZeroAndMasterAbortsElsewhere() {
        let bridge = PCIHostBridge()
        func config(_ slot: UInt32, _ reg: UInt32, size: Int = 4, at: UInt16 = 0) -> UInt32 {
            bridge.write(offset: 0, size: 4, value: 0x8000_0000 | slot << 11 | reg)
            return bridge.read(offset: 4 + at, size: size)
        }
        #expect(config(0, 0) == 0x0d57_8086)
        #expect(config(0, 8) >> 16 == 0x0600)  // class: host bridge
        #expect(config(0, 0, size: 2, at: 2) == 0x0d57)
        #expect(config(3, 0) == 0xffff_ffff)  // nothing in slot 3
        bridge.write(offset: 0, size: 4, value: 0x0000_0000)  // enable bit clear
        #expect(bridge.read(offset: 4, size: 4) == 0xffff_ffff)
        #expect(config(0, 0, size: 2, at: 1) == 0xffff_ffff)  // misaligned
    }
}

@Suite struct MSIRoutesTests {
    @Test func vectorsGetGSIsFrom24AndRoutesFollowTheGuestsMessages() throws {
        let vm = try VfsvmKVM.KVM().createVM()
        try vm.createIRQChip()
        let routes = MSIRoutes(vm: vm)
        let a = try routes.allocate()
        let b = try routes.allocate()
        #expect(a.gsi == 24 && b.gsi == 25)
        try routes.program(gsi: a.gsi, message: (0xfee0_0000, 0x30))
        try routes.program(gsi: b.gsi, message: (0xfee0_0000, 0x31))
        #expect(routes.routed == 2)
        try routes.program(gsi: a.gsi, message: nil)
        #expect(routes.routed == 1)
        try a.irqfd.signal()  // no route: delivers nothing, fails nothing
    }
}
