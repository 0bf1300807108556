import Testing
import VfsvmMemory
@testable import VfsvmBoot

@Suite struct MPTableTests {
    @Test func floatingPointerAndConfigurationTable() throws {
        let memory = try guestMemory(64 << 20)
        try writeMPTable(cpus: 2, into: memory)
        let floating = try peek(memory, 0xF_0000, 16)
        #expect(floating == [
            0x5F, 0x4D, 0x50, 0x5F,          // "_MP_"
            0x10, 0x00, 0x0F, 0x00,          // configuration table at 0xF0010
            0x01,                            // length: one paragraph
            0x04,                            // spec revision 1.4
            floating[10],                    // checksum
            0x00,                            // feature 1: table present, no default configuration
            0x00,                            // feature 2: virtual wire mode (no IMCR)
            0x00, 0x00, 0x00,
        ])
        #expect(zeroSumChecksum(floating) == 0)

        let header = try peek(memory, 0xF_0010, 44)
        let length = Int(le(UInt16.self, header, 4))
        let table = try peek(memory, 0xF_0010, length)
        #expect(zeroSumChecksum(table) == 0)
        #expect(Array(header[0..<4]) == Array("PCMP".utf8))          // signature
        #expect(header[6] == 4)                                      // spec revision
        #expect(Array(header[8..<16]) == Array("VFSVM   ".utf8))     // OEM ID
        #expect(Array(header[16..<28]) == Array("VFSVM       ".utf8))  // product ID
        #expect(le(UInt32.self, header, 36) == 0xFEE0_0000)          // local APIC address
        // 2 processors, ISA bus, IOAPIC, ExtINT + 15 ISA IRQs, 2 local interrupts.
        #expect(le(UInt16.self, header, 34) == 2 + 1 + 1 + 16 + 2)
        #expect(length == 44 + 2 * 20 + 8 + 8 + 16 * 8 + 2 * 8)

        #expect(Array(table[44..<64]) == [
            0x00,                            // processor entry
            0x00,                            // local APIC ID 0
            0x14,                            // local APIC version
            0x03,                            // EN | BP: the bootstrap processor
            0x00, 0x06, 0x00, 0x00,          // CPU signature: family 6
            0x01, 0x02, 0x00, 0x00,          // features: FPU, APIC
            0, 0, 0, 0, 0, 0, 0, 0,
        ])
        #expect(Array(table[64..<68]) == [0x00, 0x01, 0x14, 0x01])   // APIC ID 1: EN only
        #expect(Array(table[84..<100]) == [
            0x01, 0x00, 0x49, 0x53, 0x41, 0x20, 0x20, 0x20,   // bus 0 "ISA   "
            0x02, 0x00, 0x11, 0x01, 0x00, 0x00, 0xC0, 0xFE,   // IOAPIC ID 0, version 0x11, EN, 0xFEC00000
        ])
        #expect(Array(table[100..<124]) == [
            0x03, 0x03, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,   // I/O interrupt: ExtINT, ISA IRQ 0 → INTIN 0
            0x03, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x02,   // INT, ISA IRQ 0 → INTIN 2 (the override)
            0x03, 0x00, 0x00, 0x00, 0x00, 0x01, 0x00, 0x01,   // INT, ISA IRQ 1 → INTIN 1
        ])
        #expect(Array(table[(length - 16)..<length]) == [
            0x04, 0x03, 0x00, 0x00, 0x00, 0x00, 0xFF, 0x00,   // local interrupt: ExtINT → LINT0, all CPUs
            0x04, 0x01, 0x00, 0x00, 0x00, 0x00, 0xFF, 0x01,   // NMI → LINT1, all CPUs
        ])
        // Entries are sorted by type, as the spec requires.
        var types: [UInt8] = []
        var at = 44
        while at < length { types.append(table[at]); at += table[at] == 0 ? 20 : 8 }
        #expect(types == types.sorted() && types.count == 22)
    }

    @Test func pciInterruptsGetAPCIBus() throws {
        let memory = try guestMemory(64 << 20)
        try writeMPTable(cpus: 1, pciInterrupts: [PCIInterrupt(slot: 3, gsi: 10)], into: memory)
        let length = Int(le(UInt16.self, try peek(memory, 0xF_0010, 8), 4))
        let table = try peek(memory, 0xF_0010, length)
        #expect(zeroSumChecksum(table) == 0)
        #expect(Array(table[64..<80]) == [
            0x01, 0x00, 0x50, 0x43, 0x49, 0x20, 0x20, 0x20,   // bus 0 "PCI   " (ID = PCI bus number)
            0x01, 0x01, 0x49, 0x53, 0x41, 0x20, 0x20, 0x20,   // bus 1 "ISA   "
        ])
        let entries = stride(from: 88, to: length, by: 8).map { Array(table[$0..<($0 + 8)]) }
        // PCI device 3 INTA#: source IRQ 3 << 2 on bus 0 → INTIN 10; ISA IRQ 10 is left out.
        #expect(entries.contains([0x03, 0x00, 0x00, 0x00, 0x00, 0x0C, 0x00, 0x0A]))
        #expect(!entries.contains { $0[0] == 3 && $0[4] == 1 && $0[5] == 10 })
        #expect(entries.filter { $0[0] == 3 }.count == 1 + 14 + 1)
    }

    @Test func refusesBadCounts() throws {
        let memory = try guestMemory(64 << 20)
        #expect(throws: BootError.tooManyCPUs(300, maximum: 254)) { try writeMPTable(cpus: 300, into: memory) }
        #expect(throws: BootError.badDeviceConfig("PCI slot 3 uses GSI 30, but the IOAPIC has pins 0-23")) {
            try writeMPTable(cpus: 1, pciInterrupts: [PCIInterrupt(slot: 3, gsi: 30)], into: memory)
        }
        // 254 CPUs still fit the 64 KiB area.
        try writeMPTable(cpus: 254, into: memory)
        #expect(le(UInt16.self, try peek(memory, 0xF_0010, 36), 34) == 254 + 1 + 1 + 16 + 2)
    }
}
