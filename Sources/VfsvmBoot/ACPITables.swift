import VfsvmMemory

/// Writes the ACPI tables for `config` into the ACPI area of the layout
/// (`X86Layout.acpiTables`, 64 KiB, e820 type ACPI) and returns the RSDP's
/// address, for `BootConfig.rsdpAddress` (boot_params.acpi_rsdp_addr or
/// hvm_start_info.rsdp_paddr). The RSDP sits at the area's start, on a
/// 16-byte boundary inside 0xE0000–0xFFFFF, so the legacy scan finds it too.
///
/// Tables (ACPI 6.4): RSDP (revision 2) → XSDT → FADT (→ FACS, DSDT),
/// MADT, and MCFG when the PCI host bridge has ECAM. The FADT describes
/// full ACPI with the PM1a blocks of `ACPIPM` (not hardware-reduced: Linux
/// then keeps the PIT, the 8259 and the rest of the PC platform it expects
/// on x86).
public func writeACPI(_ config: ACPIConfig, into memory: GuestMemory) throws(BootError) -> UInt64 {
    try config.validate()
    let tables = ACPITables.build(config)
    guard tables.bytes.count <= Int(X86Layout.acpiTablesSize) else {
        throw .tablesTooLarge(what: "ACPI tables", size: tables.bytes.count, room: Int(X86Layout.acpiTablesSize))
    }
    try guest { () throws(GuestMemoryError) in try memory.writeBytes(tables.bytes, at: GuestAddress(X86Layout.acpiTables)) }
    return tables.rsdp
}

enum ACPITables {
    static let oemID = "VFSVM"
    static let creatorID = "VFSV"
    static let creatorRevision: UInt32 = 1
    static let headerSize = 36

    /// The area's bytes, laid out from `X86Layout.acpiTables`, and the RSDP's address.
    struct Built {
        var bytes: [UInt8]
        var rsdp: UInt64
    }

    static func build(_ config: ACPIConfig) -> Built {
        let base = X86Layout.acpiTables
        var area = ByteWriter(zeros: 36)     // RSDP first; filled in last
        func place(_ table: [UInt8], alignment: Int = 16) -> UInt64 {
            area.align(to: alignment)
            let address = base + UInt64(area.count)
            area.append(table)
            return address
        }
        let facs = place(facsTable(), alignment: 64)       // ACPI 6.4, 5.2.10: 64-byte aligned
        let dsdt = place(table("DSDT", revision: 2, body: DSDT.aml(config)))   // revision 2: 64-bit integers
        var entries = [place(fadt(facs: facs, dsdt: dsdt)), place(madt(config))]
        if let ecam = config.pci?.ecam { entries.append(place(mcfg(ecam: ecam))) }
        let xsdt = place(xsdtTable(entries))
        area.put(rsdp(xsdt: xsdt), at: 0)
        return Built(bytes: area.bytes, rsdp: base)
    }

    /// A system description table: the 36-byte header (ACPI 6.4, 5.2.6)
    /// and `body`, with the checksum set so all bytes sum to zero.
    static func table(_ signature: String, revision: UInt8, body: [UInt8]) -> [UInt8] {
        var w = ByteWriter()
        w.appendASCII(signature, length: 4)              // Signature
        w.append(UInt32(headerSize + body.count))        // Length
        w.append(revision)                               // Revision
        w.append(UInt8(0))                               // Checksum (below)
        w.appendASCII(oemID, length: 6)                  // OEMID
        w.appendASCII("VFSVM" + signature, length: 8)    // OEM Table ID
        w.append(UInt32(1))                              // OEM Revision
        w.appendASCII(creatorID, length: 4)              // Creator ID
        w.append(creatorRevision)                        // Creator Revision
        w.append(body)
        w.put(zeroSumChecksum(w.bytes), at: 9)
        return w.bytes
    }

    /// RSDP revision 2 (ACPI 6.4, 5.2.5.3): the first 20 bytes checksum to
    /// zero (ACPI 1.0 readers) and all 36 do (extended checksum).
    static func rsdp(xsdt: UInt64) -> [UInt8] {
        var w = ByteWriter()
        w.appendASCII("RSD PTR ", length: 8)             // Signature
        w.append(UInt8(0))                               // Checksum (first 20 bytes)
        w.appendASCII(oemID, length: 6)                  // OEMID
        w.append(UInt8(2))                               // Revision: ACPI 2.0+
        w.append(UInt32(0))                              // RsdtAddress: none, XSDT only
        w.append(UInt32(36))                             // Length
        w.append(xsdt)                                   // XsdtAddress
        w.append(UInt8(0))                               // Extended Checksum
        w.append([0, 0, 0])                              // Reserved
        w.put(zeroSumChecksum(w.bytes[0..<20]), at: 8)
        w.put(zeroSumChecksum(w.bytes), at: 32)
        return w.bytes
    }

    static func xsdtTable(_ entries: [UInt64]) -> [UInt8] {
        var w = ByteWriter()
        for e in entries { w.append(e) }
        return table("XSDT", revision: 1, body: w.bytes)
    }

    /// FACS (ACPI 6.4, 5.2.10): no checksum, no firmware waking vector (no S3).
    static func facsTable() -> [UInt8] {
        var w = ByteWriter()
        w.appendASCII("FACS", length: 4)                 // Signature
        w.append(UInt32(64))                             // Length
        w.append(UInt32(0))                              // Hardware Signature
        w.append(UInt32(0))                              // Firmware Waking Vector
        w.append(UInt32(0))                              // Global Lock
        w.append(UInt32(0))                              // Flags: no S4BIOS, no 64-bit wake
        w.append(UInt64(0))                              // X Firmware Waking Vector
        w.append(UInt8(2))                               // Version
        w.append([0, 0, 0])                              // Reserved
        w.append(UInt32(0))                              // OSPM Flags
        w.append([UInt8](repeating: 0, count: 24))       // Reserved
        return w.bytes
    }

    // FADT Flags (ACPI 6.4, Table 5.10).
    static let WBINVD: UInt32 = 1 << 0
    static let PROC_C1: UInt32 = 1 << 2
    static let PWR_BUTTON: UInt32 = 1 << 4        // power button is not a fixed feature
    static let SLP_BUTTON: UInt32 = 1 << 5        // nor the sleep button
    static let FIX_RTC: UInt32 = 1 << 6           // no RTC wake status in PM1
    static let RESET_REG_SUP: UInt32 = 1 << 10
    // IA-PC Boot Architecture Flags (Table 5.11): no VGA to probe, OS must
    // not enable ASPM. LEGACY_DEVICES and 8042 stay clear: no PnP BIOS, and
    // the i8042 is there for the reset command only (Linux then skips
    // probing it for a keyboard).
    static let VGA_NOT_PRESENT: UInt16 = 1 << 2
    static let PCIE_ASPM_CONTROLS: UInt16 = 1 << 4

    /// FADT revision 6.4 (ACPI 6.4, 5.2.9), 276 bytes.
    static func fadt(facs: UInt64, dsdt: UInt64) -> [UInt8] {
        let pm1a = GenericAddress.systemIO(ACPIPM.pm1aEvent, bits: 8 * ACPIPM.pm1EventLength, access: .word)
        let pm1aCnt = GenericAddress.systemIO(ACPIPM.pm1aControl, bits: 8 * ACPIPM.pm1ControlLength, access: .word)
        var w = ByteWriter()
        w.append(UInt32(facs))                           // FIRMWARE_CTRL (X_FIRMWARE_CTRL stays 0: one of the two)
        w.append(UInt32(dsdt))                           // DSDT
        w.append(UInt8(0))                               // Reserved
        w.append(UInt8(0))                               // Preferred_PM_Profile: unspecified
        w.append(UInt16(ACPIPM.sciGSI))                  // SCI_INT
        w.append(UInt32(0))                              // SMI_CMD: none, always in ACPI mode
        w.append(UInt8(0))                               // ACPI_ENABLE
        w.append(UInt8(0))                               // ACPI_DISABLE
        w.append(UInt8(0))                               // S4BIOS_REQ
        w.append(UInt8(0))                               // PSTATE_CNT
        w.append(UInt32(ACPIPM.pm1aEvent))               // PM1a_EVT_BLK
        w.append(UInt32(0))                              // PM1b_EVT_BLK
        w.append(UInt32(ACPIPM.pm1aControl))             // PM1a_CNT_BLK
        w.append(UInt32(0))                              // PM1b_CNT_BLK
        w.append(UInt32(0))                              // PM2_CNT_BLK
        w.append(UInt32(0))                              // PM_TMR_BLK: none (optional since ACPI 5.0A)
        w.append(UInt32(0))                              // GPE0_BLK
        w.append(UInt32(0))                              // GPE1_BLK
        w.append(ACPIPM.pm1EventLength)                  // PM1_EVT_LEN
        w.append(ACPIPM.pm1ControlLength)                // PM1_CNT_LEN
        w.append(UInt8(0))                               // PM2_CNT_LEN
        w.append(UInt8(0))                               // PM_TMR_LEN
        w.append(UInt8(0))                               // GPE0_BLK_LEN
        w.append(UInt8(0))                               // GPE1_BLK_LEN
        w.append(UInt8(0))                               // GPE1_BASE
        w.append(UInt8(0))                               // CST_CNT
        w.append(UInt16(0x65))                           // P_LVL2_LAT: > 100, C2 not supported
        w.append(UInt16(0x3E9))                          // P_LVL3_LAT: > 1000, C3 not supported
        w.append(UInt16(0))                              // FLUSH_SIZE
        w.append(UInt16(0))                              // FLUSH_STRIDE
        w.append(UInt8(0))                               // DUTY_OFFSET
        w.append(UInt8(0))                               // DUTY_WIDTH
        w.append(UInt8(0))                               // DAY_ALRM
        w.append(UInt8(0))                               // MON_ALRM
        w.append(UInt8(0))                               // CENTURY: no century register in the CMOS
        w.append(VGA_NOT_PRESENT | PCIE_ASPM_CONTROLS)   // IAPC_BOOT_ARCH
        w.append(UInt8(0))                               // Reserved
        w.append(WBINVD | PROC_C1 | PWR_BUTTON | SLP_BUTTON | FIX_RTC | RESET_REG_SUP)   // Flags
        w.append(GenericAddress.systemIO(ACPIPM.resetPort, bits: 8, access: .byte).bytes)  // RESET_REG
        w.append(ACPIPM.resetValue)                      // RESET_VALUE
        w.append(UInt16(0))                              // ARM_BOOT_ARCH
        w.append(UInt8(4))                               // FADT Minor Version: 6.4
        w.append(UInt64(0))                              // X_FIRMWARE_CTRL
        w.append(dsdt)                                   // X_DSDT
        w.append(pm1a.bytes)                             // X_PM1a_EVT_BLK
        w.append(GenericAddress.none.bytes)              // X_PM1b_EVT_BLK
        w.append(pm1aCnt.bytes)                          // X_PM1a_CNT_BLK
        w.append(GenericAddress.none.bytes)              // X_PM1b_CNT_BLK
        w.append(GenericAddress.none.bytes)              // X_PM2_CNT_BLK
        w.append(GenericAddress.none.bytes)              // X_PM_TMR_BLK
        w.append(GenericAddress.none.bytes)              // X_GPE0_BLK
        w.append(GenericAddress.none.bytes)              // X_GPE1_BLK
        w.append(GenericAddress.none.bytes)              // SLEEP_CONTROL_REG (hardware-reduced only)
        w.append(GenericAddress.none.bytes)              // SLEEP_STATUS_REG
        w.appendASCII("VFSVM", length: 8, pad: 0)        // Hypervisor Vendor Identity
        return table("FACP", revision: 6, body: w.bytes)
    }

    // MADT flags and entry types (ACPI 6.4, 5.2.12).
    static let PCAT_COMPAT: UInt32 = 1                // dual 8259s present (KVM's irqchip has them); the OS masks them
    static let localAPICEnabled: UInt32 = 1
    /// MPS INTI flags: polarity bits 1:0, trigger mode bits 3:2 (01 = high/edge, 11 = low/level, 00 = bus default).
    static let activeHighLevel: UInt16 = 0b1101
    static let activeHighEdge: UInt16 = 0b0101

    /// MADT revision 5: a local APIC per vCPU, the IOAPIC with GSI base 0,
    /// ISA IRQ 0 → GSI 2 (the PIT is on pin 2 of an IOAPIC, as on PCs and
    /// in KVM's default routing), the SCI level/active-high on GSI 9, and
    /// LINT1 as NMI on every CPU.
    static func madt(_ config: ACPIConfig) -> [UInt8] {
        var w = ByteWriter()
        w.append(UInt32(X86Layout.localAPIC))            // Local Interrupt Controller Address
        w.append(PCAT_COMPAT)                            // Flags
        for cpu in 0..<config.cpus {                     // Processor Local APIC
            w.append(UInt8(0)); w.append(UInt8(8))       //   Type 0, Length 8
            w.append(UInt8(cpu))                         //   ACPI Processor UID
            w.append(UInt8(cpu))                         //   APIC ID
            w.append(localAPICEnabled)                   //   Flags: enabled
        }
        w.append(UInt8(1)); w.append(UInt8(12))          // I/O APIC: Type 1, Length 12
        w.append(X86Layout.ioapicID)                     //   I/O APIC ID
        w.append(UInt8(0))                               //   Reserved
        w.append(UInt32(X86Layout.ioapic))               //   I/O APIC Address
        w.append(UInt32(0))                              //   Global System Interrupt Base
        for (irq, gsi, flags) in [(UInt8(0), UInt32(2), UInt16(0)),                        // PIT: bus default (edge, high)
                                  (UInt8(ACPIPM.sciGSI), ACPIPM.sciGSI, activeHighLevel)] {
            w.append(UInt8(2)); w.append(UInt8(10))      // Interrupt Source Override: Type 2, Length 10
            w.append(UInt8(0))                           //   Bus: ISA
            w.append(irq)                                //   Source (IRQ)
            w.append(gsi)                                //   Global System Interrupt
            w.append(flags)                              //   Flags
        }
        w.append(UInt8(4)); w.append(UInt8(6))           // Local APIC NMI: Type 4, Length 6
        w.append(UInt8(0xFF))                            //   ACPI Processor UID: all
        w.append(activeHighEdge)                         //   Flags
        w.append(UInt8(1))                               //   Local APIC LINT#
        return table("APIC", revision: 5, body: w.bytes)
    }

    /// MCFG (PCI Firmware Specification 3.2, 4.1.2): one ECAM range,
    /// segment 0, buses 0–255.
    static func mcfg(ecam: UInt64) -> [UInt8] {
        var w = ByteWriter()
        w.append(UInt64(0))                              // Reserved
        w.append(ecam)                                   // Base Address
        w.append(UInt16(0))                              // PCI Segment Group Number
        w.append(UInt8(0))                               // Start Bus Number
        w.append(UInt8(0xFF))                            // End Bus Number
        w.append(UInt32(0))                              // Reserved
        return table("MCFG", revision: 1, body: w.bytes)
    }
}

/// Generic Address Structure (ACPI 6.4, 5.2.3.2), 12 bytes.
struct GenericAddress {
    enum Access: UInt8 { case undefined = 0, byte = 1, word = 2, dword = 3, qword = 4 }
    var space: UInt8
    var bitWidth: UInt8
    var bitOffset: UInt8
    var access: Access
    var address: UInt64

    static let none = GenericAddress(space: 0, bitWidth: 0, bitOffset: 0, access: .undefined, address: 0)

    static func systemIO(_ port: UInt16, bits: UInt8, access: Access) -> GenericAddress {
        GenericAddress(space: 1, bitWidth: bits, bitOffset: 0, access: access, address: UInt64(port))
    }

    var bytes: [UInt8] {
        var w = ByteWriter()
        w.append(space); w.append(bitWidth); w.append(bitOffset); w.append(access.rawValue); w.append(address)
        return w.bytes
    }
}
