import Testing
import VfsvmMemory
@testable import VfsvmBoot

@Suite struct ACPITests {
    static let config = ACPIConfig(
        cpus: 2,
        mmioDevices: [MMIODevice(base: 0xD000_0000, gsi: 5), MMIODevice(base: 0xD000_1000, gsi: 6)],
        pci: PCIHostBridge(ecam: 0xE000_0000, mem64: X86Layout.pciMem64(memorySize: 128 << 20),
                           interrupts: [PCIInterrupt(slot: 1, gsi: 10), PCIInterrupt(slot: 2, gsi: 11)]))

    /// Each table's bytes, found the way an OS finds them: the RSDP by the
    /// legacy scan of 0xE0000–0xFFFFF on 16-byte boundaries, then the XSDT,
    /// then the FADT's DSDT and FACS pointers.
    struct Found {
        var rsdp: UInt64
        var tables: [String: [UInt8]] = [:]
    }

    static func find(in memory: GuestMemory) throws -> Found? {
        let area = try peek(memory, 0xE_0000, 0x2_0000)
        var at = 0
        while at < area.count - 36 {
            if Array(area[at..<(at + 8)]) == Array("RSD PTR ".utf8), zeroSumChecksum(area[at..<(at + 20)]) == 0 { break }
            at += 16
        }
        guard at < area.count - 36 else { return nil }
        let rsdp = Array(area[at..<(at + 36)])
        var found = Found(rsdp: 0xE_0000 + UInt64(at))
        func table(_ address: UInt64) throws -> [UInt8] {
            let length = le(UInt32.self, try peek(memory, address, 8), 4)
            return try peek(memory, address, Int(length))
        }
        let xsdt = try table(le(UInt64.self, rsdp, 24))
        found.tables["XSDT"] = xsdt
        for i in stride(from: 36, to: xsdt.count, by: 8) {
            let t = try table(le(UInt64.self, xsdt, i))
            found.tables[String(decoding: t[0..<4], as: UTF8.self)] = t
        }
        if let fadt = found.tables["FACP"] {
            found.tables["DSDT"] = try table(le(UInt64.self, fadt, 140))        // X_DSDT
            found.tables["FACS"] = try peek(memory, UInt64(le(UInt32.self, fadt, 36)), 64)   // FIRMWARE_CTRL
        }
        return found
    }

    @Test func rsdpIsFoundByTheLegacyScanAndChecksums() throws {
        let memory = try guestMemory(128 << 20)
        let rsdp = try writeACPI(Self.config, into: memory)
        #expect(rsdp == 0xE_0000)
        guard let found = try Self.find(in: memory) else { Issue.record("no RSDP in 0xE0000-0xFFFFF"); return }
        #expect(found.rsdp == rsdp)
        let bytes = try peek(memory, rsdp, 36)
        let xsdt = found.tables["XSDT"].map { _ in le(UInt64.self, bytes, 24) } ?? 0
        #expect(Array(bytes[0..<8]) == Array("RSD PTR ".utf8))     // Signature
        #expect(zeroSumChecksum(bytes[0..<20]) == 0)                // Checksum over the ACPI 1.0 part
        #expect(Array(bytes[9..<15]) == Array("VFSVM ".utf8))       // OEMID
        #expect(bytes[15] == 2)                                     // Revision: ACPI 2.0+, XSDT valid
        #expect(le(UInt32.self, bytes, 16) == 0)                    // RsdtAddress: none
        #expect(le(UInt32.self, bytes, 20) == 36)                   // Length
        #expect(xsdt >= 0xE_0000 && xsdt < 0xF_0000)                // XsdtAddress inside the ACPI area
        #expect(zeroSumChecksum(bytes) == 0)                        // Extended Checksum over all 36
        #expect(Array(bytes[33..<36]) == [0, 0, 0])                 // Reserved

        #expect(Set(found.tables.keys) == ["XSDT", "FACP", "APIC", "MCFG", "DSDT", "FACS"])
        for (signature, table) in found.tables where signature != "FACS" {
            #expect(zeroSumChecksum(table) == 0, "\(signature) checksum")
            #expect(Array(table[10..<16]) == Array("VFSVM ".utf8), "\(signature) OEMID")
            #expect(Array(table[28..<32]) == Array("VFSV".utf8), "\(signature) creator")
        }
        #expect(found.tables["XSDT"]?.count == 36 + 3 * 8)          // FADT, MADT, MCFG
        #expect(found.tables["FACP"]?.count == 276 && found.tables["FACP"]?[8] == 6)   // FADT 6.x
        #expect(found.tables["DSDT"]?[8] == 2)                      // DSDT revision 2: 64-bit AML integers
        #expect(found.tables["APIC"]?[8] == 5)
        // The tables lie in the e820 ACPI range.
        let acpi = X86Layout.e820(memorySize: 128 << 20).first { $0.type == .acpi }!
        #expect(acpi.address == 0xE_0000 && acpi.size == 0x1_0000)
    }

    @Test func headerFixture() {
        let t = ACPITables.table("TEST", revision: 3, body: [0xAA, 0xBB])
        #expect(t == [
            0x54, 0x45, 0x53, 0x54,                              // Signature "TEST"
            38, 0, 0, 0,                                          // Length: 36 + 2
            3,                                                    // Revision
            zeroSumChecksum(t[0..<9] + [0] + t[10...]),           // Checksum
            0x56, 0x46, 0x53, 0x56, 0x4D, 0x20,                   // OEMID "VFSVM "
            0x56, 0x46, 0x53, 0x56, 0x4D, 0x54, 0x45, 0x53,       // OEM Table ID "VFSVMTES"
            1, 0, 0, 0,                                           // OEM Revision
            0x56, 0x46, 0x53, 0x56,                               // Creator ID "VFSV"
            1, 0, 0, 0,                                           // Creator Revision
            0xAA, 0xBB,
        ])
        #expect(zeroSumChecksum(t) == 0)
    }

    @Test func fadtDescribesPM1aPowerOffAndTheResetRegister() throws {
        let memory = try guestMemory(128 << 20)
        _ = try writeACPI(Self.config, into: memory)
        guard let fadt = try Self.find(in: memory)?.tables["FACP"] else { Issue.record("no FADT"); return }
        #expect(le(UInt16.self, fadt, 46) == 9)                     // SCI_INT
        #expect(le(UInt32.self, fadt, 48) == 0)                     // SMI_CMD: no mode switch
        #expect(le(UInt32.self, fadt, 56) == 0x600)                 // PM1a_EVT_BLK
        #expect(le(UInt32.self, fadt, 64) == 0x604)                 // PM1a_CNT_BLK
        #expect(fadt[88] == 4 && fadt[89] == 2)                     // PM1_EVT_LEN, PM1_CNT_LEN
        #expect(le(UInt32.self, fadt, 112) & (1 << 20) == 0)        // not HW_REDUCED_ACPI
        #expect(Array(fadt[116..<129]) == [1, 8, 0, 1, 0x64, 0, 0, 0, 0, 0, 0, 0, 0xFE])   // RESET_REG: SystemIO byte 0x64, value 0xFE
        #expect(Array(fadt[148..<160]) == [1, 32, 0, 2, 0x00, 0x06, 0, 0, 0, 0, 0, 0])      // X_PM1a_EVT_BLK
        #expect(Array(fadt[172..<184]) == [1, 16, 0, 2, 0x04, 0x06, 0, 0, 0, 0, 0, 0])      // X_PM1a_CNT_BLK
        // What the board decodes: S5 = SLP_TYP 5 with SLP_EN.
        #expect(ACPIPM.isPowerOff(pm1aControl: 5 << 10 | 1 << 13))
        #expect(!ACPIPM.isPowerOff(pm1aControl: 5 << 10))           // first write, SLP_TYP only
        #expect(!ACPIPM.isPowerOff(pm1aControl: 1 << 10 | 1 << 13)) // S1

        guard let asl = IASL.decompile(fadt, name: "facp") else { return }
        for line in ["SCI Interrupt : 0009", "PM1A Event Block Address : 00000600", "PM1A Control Block Address : 00000604",
                     "PM1 Event Block Length : 04", "PM1 Control Block Length : 02", "Hardware Reduced (V5) : 0",
                     "Reset Register Supported (V2) : 1", "Value to cause reset : FE", "Address : 0000000000000064",
                     "Control Method Power Button (V1) : 1", "8042 Present on ports 60/64 (V2) : 0",
                     "DSDT Address : 00000000000E0080"] {
            #expect(asl.contains(line), "FADT: missing \(line)")
        }
    }

    @Test func madtListsCPUsIOAPICAndOverrides() throws {
        let memory = try guestMemory(128 << 20)
        var config = Self.config
        config.cpus = 3
        _ = try writeACPI(config, into: memory)
        guard let madt = try Self.find(in: memory)?.tables["APIC"] else { Issue.record("no MADT"); return }
        #expect(Array(madt[36..<44]) == [0x00, 0x00, 0xE0, 0xFE, 0x01, 0, 0, 0])   // LAPIC address, PCAT_COMPAT
        #expect(Array(madt[44..<68]) == [
            0, 8, 0, 0, 1, 0, 0, 0,                 // Processor Local APIC: UID 0, APIC ID 0, enabled
            0, 8, 1, 1, 1, 0, 0, 0,                 // UID 1, APIC ID 1
            0, 8, 2, 2, 1, 0, 0, 0,                 // UID 2, APIC ID 2
        ])
        #expect(Array(madt[68..<80]) == [1, 12, 0, 0, 0x00, 0x00, 0xC0, 0xFE, 0, 0, 0, 0])   // IOAPIC ID 0 at 0xFEC00000, GSI base 0
        #expect(Array(madt[80..<100]) == [
            2, 10, 0, 0, 2, 0, 0, 0, 0x00, 0x00,    // ISO: ISA IRQ 0 → GSI 2, bus default flags
            2, 10, 0, 9, 9, 0, 0, 0, 0x0D, 0x00,    // ISO: ISA IRQ 9 → GSI 9, active high, level (the SCI)
        ])
        #expect(Array(madt[100..<106]) == [4, 6, 0xFF, 0x05, 0x00, 1])   // LAPIC NMI: all CPUs, edge/high, LINT1
        #expect(madt.count == 106)

        guard let asl = IASL.decompile(madt, name: "apic") else { return }
        for line in ["Local Apic ID : 02", "I/O Apic ID : 00", "Address : FEC00000", "Interrupt : 00000002",
                     "Source : 09", "Interrupt Input LINT : 01", "PC-AT Compatibility : 1"] {
            #expect(asl.contains(line), "MADT: missing \(line)")
        }
    }

    @Test func mcfgOnlyWithECAM() throws {
        let memory = try guestMemory(128 << 20)
        _ = try writeACPI(Self.config, into: memory)
        guard let mcfg = try Self.find(in: memory)?.tables["MCFG"] else { Issue.record("no MCFG"); return }
        #expect(Array(mcfg[36..<60]) == [
            0, 0, 0, 0, 0, 0, 0, 0,                 // Reserved
            0, 0, 0, 0xE0, 0, 0, 0, 0,              // Base Address 0xE0000000
            0, 0,                                   // PCI Segment Group 0
            0, 0xFF,                                // buses 0-255
            0, 0, 0, 0,                             // Reserved
        ])
        if let asl = IASL.decompile(mcfg, name: "mcfg") {
            #expect(asl.contains("Base Address : 00000000E0000000") && asl.contains("End Bus Number : FF"))
        }
        var noECAM = Self.config
        noECAM.pci?.ecam = nil
        _ = try writeACPI(noECAM, into: memory)
        let found = try Self.find(in: memory)
        #expect(found?.tables["MCFG"] == nil)
        #expect(found?.tables["XSDT"]?.count == 36 + 2 * 8)
        let dsdt = found?.tables["DSDT"] ?? []
        if let asl = IASL.decompile(dsdt, name: "dsdt") {
            // Without ECAM the bridge is plain PCI (Linux then uses 0xCF8 only).
            #expect(asl.contains("Name (_HID, EisaId (\"PNP0A03\")"))
            #expect(!asl.contains("PNP0A08"))
        }
    }

    @Test func dsdtDescribesEveryDevice() throws {
        let memory = try guestMemory(128 << 20)
        _ = try writeACPI(Self.config, into: memory)
        guard let dsdt = try Self.find(in: memory)?.tables["DSDT"] else { Issue.record("no DSDT"); return }
        guard let asl = IASL.decompile(dsdt, name: "dsdt") else { return }
        let expected = [
            "Name (\\_S5, Package (0x04)", "0x05, \n        0x05, \n        Zero, \n        Zero",
            "Scope (\\_SB)",
            "Device (COM1)", "Name (_HID, EisaId (\"PNP0501\")", "Name (_UID, One)",
            "IO (Decode16,\n                    0x03F8,             // Range Minimum\n                    0x03F8,             // Range Maximum\n                    0x01,               // Alignment\n                    0x08,               // Length",
            "Interrupt (ResourceConsumer, Edge, ActiveHigh, Exclusive, ,, )\n                {\n                    0x00000004,",
            "Device (VR00)", "Device (VR01)", "Name (_HID, \"LNRO0005\")",
            "Memory32Fixed (ReadWrite,\n                    0xD0000000,         // Address Base\n                    0x00000200,         // Address Length",
            "Memory32Fixed (ReadWrite,\n                    0xD0001000,",
            "Interrupt (ResourceConsumer, Edge, ActiveHigh, Exclusive, ,, )\n                {\n                    0x00000005,",
            "Interrupt (ResourceConsumer, Edge, ActiveHigh, Exclusive, ,, )\n                {\n                    0x00000006,",
            "Device (PCI0)", "Name (_HID, EisaId (\"PNP0A08\")", "Name (_CID, EisaId (\"PNP0A03\")",
            "Name (_SEG, Zero)", "Name (_BBN, Zero)", "Name (_UID, Zero)",
            "WordBusNumber (ResourceProducer, MinFixed, MaxFixed, PosDecode,", "0x00FF,             // Range Maximum",
            "0x0CF8,             // Range Minimum\n                    0x0CF8,             // Range Maximum",
            "WordIO (ResourceProducer, MinFixed, MaxFixed, PosDecode, EntireRange,", "0x0CF7,             // Range Maximum",
            "0x0D00,             // Range Minimum\n                    0xFFFF,             // Range Maximum",
            "DWordMemory (ResourceProducer, PosDecode, MinFixed, MaxFixed, NonCacheable, ReadWrite,",
            "0xC0000000,         // Range Minimum\n                    0xCFFFFFFF,         // Range Maximum",
            "QWordMemory (ResourceProducer, PosDecode, MinFixed, MaxFixed, Prefetchable, ReadWrite,",
            "0x0000000100000000, // Range Minimum\n                    0x00000010FFFFFFFF, // Range Maximum",
            "Name (_PRT, Package (0x02)",
            "0x0001FFFF, \n                    Zero, \n                    Zero, \n                    0x0A",
            "0x0002FFFF, \n                    Zero, \n                    Zero, \n                    0x0B",
        ]
        for line in expected { #expect(asl.contains(line), "DSDT: missing \(line)") }
    }

    @Test func refusesConfigurationsTheTablesCannotDescribe() throws {
        let memory = try guestMemory(128 << 20)
        func refuse(_ config: ACPIConfig, _ message: String, sourceLocation: SourceLocation = #_sourceLocation) {
            do {
                _ = try writeACPI(config, into: memory)
                Issue.record("accepted", sourceLocation: sourceLocation)
            } catch {
                #expect(error.description == message, sourceLocation: sourceLocation)
            }
        }
        refuse(ACPIConfig(cpus: 0), "0 vCPUs requested; the MADT and MP table describe at most 254")
        refuse(ACPIConfig(cpus: 255), "255 vCPUs requested; the MADT and MP table describe at most 254")
        refuse(ACPIConfig(cpus: 1, mmioDevices: [MMIODevice(base: 0xD000_0000, gsi: 4)]),
               "firmware tables: virtio-mmio device 0 and the serial port both use GSI 4")
        refuse(ACPIConfig(cpus: 1, mmioDevices: [MMIODevice(base: 0xD000_0000, gsi: 24)]),
               "firmware tables: virtio-mmio device 0 uses GSI 24, but the IOAPIC has pins 0-23")
        refuse(ACPIConfig(cpus: 1, mmioDevices: [MMIODevice(base: 0x10_0000, gsi: 5)]),
               "firmware tables: virtio-mmio device 0 at 0x100000 (512 bytes) is not inside the 32-bit MMIO hole")
        refuse(ACPIConfig(cpus: 1, mmioDevices: [MMIODevice(base: 0xFFFF_FF00, gsi: 5)]),
               "firmware tables: virtio-mmio device 0 at 0xffffff00 (512 bytes) is not inside the 32-bit MMIO hole")
        refuse(ACPIConfig(cpus: 1, mmioDevices: [MMIODevice(base: 0xD000_0000, gsi: 5), MMIODevice(base: 0xD000_0100, gsi: 6)]),
               "firmware tables: virtio-mmio devices 0 and 1 overlap at 0xd0000100")
        refuse(ACPIConfig(cpus: 1, mmioDevices: [MMIODevice(base: 0xD000_0000, gsi: 9)]),
               "firmware tables: virtio-mmio device 0 and the ACPI SCI both use GSI 9")
        let pci = PCIHostBridge(mem64: X86Layout.pciMem64(memorySize: 1 << 30), interrupts: [PCIInterrupt(slot: 32, gsi: 10)])
        refuse(ACPIConfig(cpus: 1, pci: pci), "firmware tables: PCI slot 32 does not exist (bus 0 has slots 0-31)")
        refuse(ACPIConfig(cpus: 1, pci: PCIHostBridge(ecam: 0xE800_0000, mem64: pci.mem64)),
               "firmware tables: the PCI ECAM base 0xe8000000 is not a 256 MiB-aligned address below 4 GiB")
        refuse(ACPIConfig(cpus: 1, pci: PCIHostBridge(mem64: 0x8000_0000...0x9000_0000)),
               "firmware tables: the 64-bit PCI window starts at 0x80000000, below 4 GiB")
        // Guest memory that does not reach the ACPI area: a guest-memory error naming the range.
        let tiny = try GuestMemory.anonymous(size: 0x8_0000)
        #expect(throws: BootError.guestMemory(.outOfRange(address: GuestAddress(0xE_0000), length: UInt64(ACPITables.build(ACPIConfig(cpus: 1)).bytes.count)))) {
            try writeACPI(ACPIConfig(cpus: 1), into: tiny)
        }
    }
}
