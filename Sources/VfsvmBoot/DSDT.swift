/// The DSDT's AML: what Linux cannot probe for on this board.
///
/// ```
/// Name (\_S5, Package (4) { 5, 5, 0, 0 })          // SLP_TYP for soft-off
/// Scope (\_SB) {
///   Device (COM1) { _HID PNP0501, _UID 1, _CRS { IO 0x3F8/8, Interrupt {4} } }
///   Device (VR00) { _HID "LNRO0005", _UID 0, _CRS { Memory32Fixed, Interrupt } }  // per virtio-mmio device
///   Device (PCI0) { _HID PNP0A08/PNP0A03, _CID PNP0A03, _SEG 0, _BBN 0, _UID 0,
///                   _CRS { buses, 0xCF8 ports, I/O windows, 32- and 64-bit memory windows },
///                   _PRT { slot INTA# → GSI } }
/// }
/// ```
enum DSDT {
    /// Body of the DSDT after its header.
    static func aml(_ config: ACPIConfig) -> [UInt8] {
        var devices: [AML] = []
        if let s = config.serial { devices.append(serial(s)) }
        for (i, d) in config.mmioDevices.enumerated() { devices.append(virtioMMIO(d, index: i)) }
        if let pci = config.pci { devices.append(pciHostBridge(pci)) }
        // \_S5: {SLP_TYPa, SLP_TYPb, reserved, reserved} (ACPI 6.4, 7.4.2).
        let s5 = AML.name("\\_S5", .package([.integer(UInt64(ACPIPM.s5SleepType)), .integer(UInt64(ACPIPM.s5SleepType)),
                                              .integer(0), .integer(0)]))
        return s5.encoded + AML.scope("\\_SB", devices).encoded
    }

    /// A 16550 UART (PNP0501). Linux's 8250_pnp driver binds to it, so the
    /// port needs no legacy probing.
    static func serial(_ s: SerialPort) -> AML {
        .device("COM1", [
            .name("_HID", .eisaID("PNP0501")),
            .name("_UID", .integer(1)),
            .name("_CRS", .resourceTemplate([
                .io(minimum: s.port, maximum: s.port, alignment: 1, length: 8),
                .interrupt(gsis: [s.gsi], edge: true, activeLow: false, shared: false),
            ])),
        ])
    }

    /// A virtio-mmio transport as Linux's virtio_mmio driver matches it on
    /// ACPI systems (`virtio_mmio_acpi_match`: "LNRO0005"): the register
    /// window as Memory32Fixed and the line as an extended Interrupt
    /// descriptor, edge-triggered and active high. (An extended descriptor's
    /// trigger and polarity are used as written; a legacy IRQ() one would be
    /// subject to the MADT's override rules, drivers/acpi/resource.c.)
    static func virtioMMIO(_ d: MMIODevice, index: Int) -> AML {
        let hexDigits = Array("0123456789ABCDEF".utf8)
        let name = "VR" + String(decoding: [hexDigits[index >> 4 & 0xF], hexDigits[index & 0xF]], as: UTF8.self)
        return .device(name, [
            .name("_HID", .string("LNRO0005")),
            .name("_UID", .integer(UInt64(index))),
            .name("_CRS", .resourceTemplate([
                .memory32Fixed(base: UInt32(d.base), length: UInt32(d.size), writable: true),
                .interrupt(gsis: [d.gsi], edge: true, activeLow: false, shared: false),
            ])),
        ])
    }

    /// The PCI root bridge. Its I/O windows are the whole port space minus
    /// 0xCF8–0xCFF, which the bridge itself consumes (the PC layout: the
    /// legacy devices' ports sit inside the positive-decode window).
    static func pciHostBridge(_ pci: PCIHostBridge) -> AML {
        var ids: [AML] = pci.ecam == nil
            ? [.name("_HID", .eisaID("PNP0A03"))]
            : [.name("_HID", .eisaID("PNP0A08")), .name("_CID", .eisaID("PNP0A03"))]
        let configPort = X86Ports.pciConfigAddress
        ids += [
            .name("_SEG", .integer(0)),
            .name("_BBN", .integer(0)),
            .name("_UID", .integer(0)),
            .name("_CRS", .resourceTemplate([
                .wordBusNumber(minimum: 0, maximum: 0xFF),
                .io(minimum: configPort, maximum: configPort, alignment: 1, length: 8),
                .wordIO(minimum: 0, maximum: configPort - 1),
                .wordIO(minimum: configPort + 8, maximum: 0xFFFF),
                .dwordMemory(minimum: UInt32(pci.mem32.lowerBound), maximum: UInt32(pci.mem32.upperBound), prefetchable: false),
                .qwordMemory(minimum: pci.mem64.lowerBound, maximum: pci.mem64.upperBound, prefetchable: true),
            ])),
            // _PRT entries: {Address (device << 16 | 0xFFFF: any function),
            // Pin (0 = INTA#), Source (0: a GSI, no link device), Source Index (the GSI)}
            // (ACPI 6.4, 6.2.13).
            .name("_PRT", .package(pci.interrupts.map { p in
                .package([.integer(UInt64(p.slot) << 16 | 0xFFFF), .integer(0), .integer(0), .integer(UInt64(p.gsi))])
            })),
        ]
        return .device("PCI0", ids)
    }
}
