/// What the ACPI tables describe: the CPUs, the legacy UART, each
/// virtio-mmio device and the PCI host bridge. The VMM builds the same
/// board; addresses and GSIs come from `X86Layout`'s windows and the VMM's
/// GSI allocator.
public struct ACPIConfig: Sendable, Equatable {
    /// vCPUs; APIC IDs and ACPI processor UIDs are 0..<cpus (the VMM's
    /// CPUID leaves must report the same APIC IDs).
    public var cpus: Int
    /// virtio-mmio devices, each a `LNRO0005` device in the DSDT.
    public var mmioDevices: [MMIODevice]
    /// The PCI host bridge (bus 0 behind 0xCF8/0xCFC), or nil for none.
    public var pci: PCIHostBridge?
    /// COM1 as a PNP0501 device, or nil to leave it out.
    public var serial: SerialPort?

    public init(cpus: Int, mmioDevices: [MMIODevice] = [], pci: PCIHostBridge? = nil, serial: SerialPort? = .com1) {
        self.cpus = cpus
        self.mmioDevices = mmioDevices
        self.pci = pci
        self.serial = serial
    }
}

/// A virtio-mmio register window and its interrupt: edge-triggered, active
/// high, one GSI per device (the VMM raises it with a plain irqfd).
public struct MMIODevice: Sendable, Equatable {
    public var base: UInt64
    public var size: UInt64
    public var gsi: UInt32

    public init(base: UInt64, size: UInt64 = X86Layout.virtioMMIOSize, gsi: UInt32) {
        self.base = base
        self.size = size
        self.gsi = gsi
    }
}

/// The PCI root bridge, segment 0, buses 0–255. Configuration mechanism #1
/// (0xCF8/0xCFC) is always described; `ecam` adds an MCFG table and makes
/// the bridge a PCI Express root (PNP0A08, compatible PNP0A03).
public struct PCIHostBridge: Sendable, Equatable {
    /// ECAM base (256 MiB for 256 buses), or nil for port I/O only.
    public var ecam: UInt64?
    /// Non-prefetchable 32-bit MMIO window for BARs.
    public var mem32: ClosedRange<UInt64>
    /// Prefetchable 64-bit MMIO window for BARs.
    public var mem64: ClosedRange<UInt64>
    /// INTA# of each device on bus 0 routed to a GSI through the _PRT.
    /// Linux programs a _PRT GSI as level-triggered, active-low
    /// (drivers/acpi/pci_irq.c, the default for an entry without a link
    /// device); KVM's in-kernel IOAPIC ignores the polarity bit, so the VMM
    /// asserts the line with a level irqfd plus resample fd.
    public var interrupts: [PCIInterrupt]

    public init(ecam: UInt64? = nil, mem32: ClosedRange<UInt64> = X86Layout.pciMem32,
                mem64: ClosedRange<UInt64>, interrupts: [PCIInterrupt] = []) {
        self.ecam = ecam
        self.mem32 = mem32
        self.mem64 = mem64
        self.interrupts = interrupts
    }
}

public struct PCIInterrupt: Sendable, Equatable {
    /// Device number on bus 0 (0–31).
    public var slot: UInt8
    public var gsi: UInt32

    public init(slot: UInt8, gsi: UInt32) {
        self.slot = slot
        self.gsi = gsi
    }

    /// The slot exists and the GSI is an IOAPIC pin.
    func check() throws(BootError) {
        guard slot < 32 else { throw .badDeviceConfig("PCI slot \(slot) does not exist (bus 0 has slots 0-31)") }
        try checkIOAPICPin(gsi, "PCI slot \(slot)")
    }
}

/// `gsi` is one of the IOAPIC's pins (the only interrupt controller the tables describe).
func checkIOAPICPin(_ gsi: UInt32, _ what: String) throws(BootError) {
    guard gsi < X86Layout.ioapicPins else {
        throw .badDeviceConfig("\(what) uses GSI \(gsi), but the IOAPIC has pins 0-\(X86Layout.ioapicPins - 1)")
    }
}

/// A 16550 UART on `port` (8 ports) with an edge-triggered ISA IRQ.
public struct SerialPort: Sendable, Equatable {
    public var port: UInt16
    public var gsi: UInt32

    public init(port: UInt16, gsi: UInt32) {
        self.port = port
        self.gsi = gsi
    }

    public static let com1 = SerialPort(port: X86Ports.com1, gsi: X86Ports.com1GSI)
}

extension ACPIConfig {
    /// Most vCPUs the MADT and MP table describe with 8-bit xAPIC IDs
    /// (0xFF is the broadcast ID).
    public static let maximumCPUs = 254

    /// Checks what the tables cannot express or what would conflict.
    func validate() throws(BootError) {
        guard (1...Self.maximumCPUs).contains(cpus) else { throw .tooManyCPUs(cpus, maximum: Self.maximumCPUs) }
        var used: [UInt32: String] = [0: "the 8259 PIC (ExtINT)", 2: "the PIT timer (IRQ 0)", 8: "the RTC",
                                      ACPIPM.sciGSI: "the ACPI SCI"]
        func claim(_ gsi: UInt32, _ what: String) throws(BootError) {
            try checkIOAPICPin(gsi, what)
            if let other = used[gsi] { throw .badDeviceConfig("\(what) and \(other) both use GSI \(gsi)") }
            used[gsi] = what
        }
        if let s = serial { try claim(s.gsi, "the serial port") }
        for (i, d) in mmioDevices.enumerated() {
            let (end, overflow) = d.base.addingReportingOverflow(d.size)
            guard d.size > 0, !overflow, end <= X86Layout.fourGiB, d.base >= X86Layout.ramHoleStart else {
                throw .badDeviceConfig("virtio-mmio device \(i) at \(hex(d.base)) (\(d.size) bytes) is not inside the 32-bit MMIO hole")
            }
            for (j, e) in mmioDevices[..<i].enumerated() where d.base < e.base + e.size && e.base < end {
                throw .badDeviceConfig("virtio-mmio devices \(j) and \(i) overlap at \(hex(d.base))")
            }
            try claim(d.gsi, "virtio-mmio device \(i)")
        }
        if let pci {
            guard pci.mem32.upperBound < X86Layout.fourGiB, pci.mem32.lowerBound >= X86Layout.ramHoleStart else {
                throw .badDeviceConfig("the 32-bit PCI window \(hex(pci.mem32.lowerBound))-\(hex(pci.mem32.upperBound)) is not inside the MMIO hole")
            }
            guard pci.mem64.lowerBound >= X86Layout.fourGiB else {
                throw .badDeviceConfig("the 64-bit PCI window starts at \(hex(pci.mem64.lowerBound)), below 4 GiB")
            }
            if let ecam = pci.ecam, ecam & 0xFFF_FFFF != 0 || ecam > X86Layout.fourGiB - X86Layout.pciECAMSize {
                throw .badDeviceConfig("the PCI ECAM base \(hex(ecam)) is not a 256 MiB-aligned address below 4 GiB")
            }
            for p in pci.interrupts {
                try p.check()
                try claim(p.gsi, "PCI slot \(p.slot)")
            }
            guard pci.interrupts.count <= 255 else { throw .badDeviceConfig("more than 255 PCI interrupt routes") }
        }
        guard mmioDevices.count <= 256 else { throw .badDeviceConfig("more than 256 virtio-mmio devices") }
    }
}
