import VfsvmMemory

/// Writes an Intel MultiProcessor Specification 1.4 table at
/// `X86Layout.mpTable` (inside the BIOS area 0xF0000–0xFFFFF, where Linux's
/// `smp_scan_config` looks): the floating pointer, then the configuration
/// table with a processor entry per vCPU (vCPU 0 the bootstrap processor),
/// the buses, the IOAPIC, an interrupt assignment per ISA IRQ (and per PCI
/// INTA# when given) and the local interrupts. Linux reads it only without
/// ACPI (`acpi=off`, or a kernel without ACPI); the ACPI tables say the same.
public func writeMPTable(cpus: Int, pciInterrupts: [PCIInterrupt] = [], into memory: GuestMemory) throws(BootError) {
    guard (1...ACPIConfig.maximumCPUs).contains(cpus) else { throw .tooManyCPUs(cpus, maximum: ACPIConfig.maximumCPUs) }
    for p in pciInterrupts { try p.check() }
    let bytes = MPTable.build(cpus: cpus, pciInterrupts: pciInterrupts)
    guard bytes.count <= Int(X86Layout.mpTableSize) else {
        throw .tablesTooLarge(what: "MP table", size: bytes.count, room: Int(X86Layout.mpTableSize))
    }
    try guest { () throws(GuestMemoryError) in try memory.writeBytes(bytes, at: GuestAddress(X86Layout.mpTable)) }
}

enum MPTable {
    static let specRevision: UInt8 = 4                // MP spec 1.4
    /// Local APIC version KVM's in-kernel LAPIC reports (APIC_VERSION 0x14).
    static let localAPICVersion: UInt8 = 0x14
    /// IOAPIC version KVM's in-kernel IOAPIC reports (IOAPIC_VERSION_ID 0x11).
    static let ioapicVersion: UInt8 = 0x11
    /// CPU signature (family 6) and feature flags (CPUID.1:EDX FPU | APIC)
    /// for processor entries; Linux reads only the APIC ID and flags.
    static let cpuSignature: UInt32 = 0x600
    static let cpuFeatures: UInt32 = 1 << 0 | 1 << 9

    // Entry types (MP spec 1.4, Table 4-3) and interrupt types (Table 4-10).
    static let processor: UInt8 = 0, bus: UInt8 = 1, ioapic: UInt8 = 2, ioInterrupt: UInt8 = 3, localInterrupt: UInt8 = 4
    static let INT: UInt8 = 0, NMI: UInt8 = 1, ExtINT: UInt8 = 3
    /// "Conforms to the specification of the bus" (edge/high for ISA, level/low for PCI).
    static let conforming: UInt16 = 0

    static func build(cpus: Int, pciInterrupts: [PCIInterrupt]) -> [UInt8] {
        let configAddress = X86Layout.mpTable + 16
        // PCI bus IDs are the PCI bus numbers (Linux matches INTx entries by
        // bus number), so PCI bus 0 is ID 0 and ISA follows.
        let pciBus: UInt8? = pciInterrupts.isEmpty ? nil : 0
        let isaBus: UInt8 = pciBus == nil ? 0 : 1
        let pciPins = Set(pciInterrupts.map(\.gsi))

        var entries = ByteWriter()
        var count = 0
        for cpu in 0..<cpus {                                  // Processor entries (20 bytes)
            entries.append(processor)
            entries.append(UInt8(cpu))                         // Local APIC ID
            entries.append(localAPICVersion)                   // Local APIC version
            entries.append(UInt8(cpu == 0 ? 0x03 : 0x01))      // CPU flags: EN, BP on the BSP
            entries.append(cpuSignature)                       // CPU signature
            entries.append(cpuFeatures)                        // Feature flags
            entries.append(UInt64(0))                          // Reserved
            count += 1
        }
        for (id, name) in [(pciBus, "PCI"), (isaBus, "ISA")] { // Bus entries (8 bytes)
            guard let id else { continue }
            entries.append(bus)
            entries.append(id)                                 // Bus ID
            entries.appendASCII(name, length: 6)               // Bus type string, space padded
            count += 1
        }
        entries.append(ioapic)                                 // I/O APIC entry (8 bytes)
        entries.append(X86Layout.ioapicID)                     // I/O APIC ID
        entries.append(ioapicVersion)                          // I/O APIC version
        entries.append(UInt8(1))                               // Flags: EN
        entries.append(UInt32(X86Layout.ioapic))               // Address
        count += 1
        func interrupt(_ kind: UInt8, type: UInt8, bus: UInt8, irq: UInt8, destination: UInt8, pin: UInt8) {
            entries.append(kind)                               // I/O or local interrupt entry (8 bytes)
            entries.append(type)                               // Interrupt type
            entries.append(conforming)                         // Flags: polarity, trigger mode
            entries.append(bus)                                // Source bus ID
            entries.append(irq)                                // Source bus IRQ
            entries.append(destination)                        // Destination I/O APIC ID / local APIC ID
            entries.append(pin)                                // Destination INTIN# / LINTIN#
            count += 1
        }
        // The 8259's output on IOAPIC pin 0 (virtual wire mode's ExtINT).
        interrupt(ioInterrupt, type: ExtINT, bus: isaBus, irq: 0, destination: X86Layout.ioapicID, pin: 0)
        for irq: UInt8 in 0..<16 where irq != 2 {              // ISA IRQs; 2 is the 8259 cascade
            let gsi = X86Layout.isaIRQToGSI(irq)
            guard !pciPins.contains(gsi) else { continue }
            interrupt(ioInterrupt, type: INT, bus: isaBus, irq: irq, destination: X86Layout.ioapicID, pin: UInt8(gsi))
        }
        if let pciBus {
            for p in pciInterrupts {                           // PCI: source IRQ = device << 2 | INTA# (0)
                interrupt(ioInterrupt, type: INT, bus: pciBus, irq: p.slot << 2, destination: X86Layout.ioapicID, pin: UInt8(p.gsi))
            }
        }
        interrupt(localInterrupt, type: ExtINT, bus: isaBus, irq: 0, destination: 0xFF, pin: 0)   // LINT0 on every CPU
        interrupt(localInterrupt, type: NMI, bus: isaBus, irq: 0, destination: 0xFF, pin: 1)      // LINT1 on every CPU

        var table = ByteWriter()                               // Configuration table header (44 bytes)
        table.appendASCII("PCMP", length: 4)                   // Signature
        table.append(UInt16(44 + entries.count))               // Base table length
        table.append(specRevision)                             // Specification revision
        table.append(UInt8(0))                                 // Checksum (below)
        table.appendASCII("VFSVM", length: 8)                  // OEM ID
        table.appendASCII("VFSVM", length: 12)                 // Product ID
        table.append(UInt32(0))                                // OEM table pointer
        table.append(UInt16(0))                                // OEM table size
        table.append(UInt16(count))                            // Entry count
        table.append(UInt32(X86Layout.localAPIC))              // Address of local APIC
        table.append(UInt16(0))                                // Extended table length
        table.append(UInt8(0))                                 // Extended table checksum
        table.append(UInt8(0))                                 // Reserved
        table.append(entries.bytes)
        table.put(zeroSumChecksum(table.bytes), at: 7)

        var floating = ByteWriter()                            // MP floating pointer (16 bytes)
        floating.appendASCII("_MP_", length: 4)                // Signature
        floating.append(UInt32(configAddress))                 // Physical address pointer
        floating.append(UInt8(1))                              // Length in 16-byte paragraphs
        floating.append(specRevision)                          // Specification revision
        floating.append(UInt8(0))                              // Checksum (below)
        floating.append(UInt8(0))                              // Feature 1: a configuration table is present
        floating.append(UInt8(0))                              // Feature 2: IMCRP clear, virtual wire mode
        floating.append([0, 0, 0])                             // Features 3-5
        floating.put(zeroSumChecksum(floating.bytes), at: 10)
        return floating.bytes + table.bytes
    }
}
