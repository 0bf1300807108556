/// The x86 guest-physical memory map vfsvm's board uses, in one place: the
/// loader, the ACPI and MP table writers and the board (VfsvmMachine) all
/// read these constants, so a device the tables describe is where the board
/// decodes it.
///
/// ```
/// 0x0000_0500  GDT (null, null, code 0x10, data 0x18, TSS 0x20)
/// 0x0000_6000  PVH hvm_start_info, module list, memory map
/// 0x0000_7000  Linux boot_params (the "zero page")
/// 0x0000_8000  boot stack (rsp starts at its top)
/// 0x0000_9000  identity page tables: PML4, PDPT, four PDs (4 GiB, 2 MiB pages)
/// 0x0002_0000  kernel command line (up to 64 KiB)
/// 0x0009_FC00  reserved: EBDA, VGA hole, ROM area
/// 0x000E_0000  ACPI tables (RSDP first, found by the legacy scan), e820 ACPI
/// 0x000F_0000  MP floating pointer and configuration table, reserved
/// 0x0010_0000  kernel (bzImage protected-mode part, or PVH PT_LOAD segments)
/// 0xC000_0000  32-bit MMIO hole: PCI window, virtio-mmio, ECAM, IOAPIC, LAPIC
/// 4 GiB        RAM above the hole
/// ```
public enum X86Layout {
    // MARK: Low-memory boot structures

    /// Boot-time GDT: the Linux 64-bit protocol wants `__BOOT_CS` = 0x10 and
    /// `__BOOT_DS` = 0x18 (Documentation/arch/x86/boot.rst, "64-bit Boot
    /// Protocol"); PVH uses the same selectors for its 32-bit segments.
    public static let gdt: UInt64 = 0x500
    /// PVH `hvm_start_info`, followed by the module list and the memory map.
    public static let pvhStartInfo: UInt64 = 0x6000
    /// Linux `struct boot_params`.
    public static let zeroPage: UInt64 = 0x7000
    /// Initial stack pointer (top of the page below the page tables). Neither
    /// protocol requires one; a valid value keeps an early push harmless.
    public static let bootStackTop: UInt64 = 0x9000
    /// PML4; the PDPT follows at +0x1000 and four PDs at +0x2000..+0x5FFF.
    public static let pageTables: UInt64 = 0x9000
    /// Kernel command line, NUL-terminated.
    public static let cmdline: UInt64 = 0x2_0000
    /// Room for the command line including its NUL.
    public static let cmdlineMax: UInt64 = 0x1_0000

    /// End of the RAM the guest may use below 1 MiB; EBDA, VGA and ROM above.
    public static let lowRAMEnd: UInt64 = 0x9_FC00
    /// ACPI tables: 64 KiB typed ACPI (3) in the e820 map. The RSDP sits at
    /// its start, on a 16-byte boundary inside 0xE0000–0xFFFFF where the
    /// legacy scan (ACPI 6.4, 5.2.5.1) looks.
    public static let acpiTables: UInt64 = 0xE_0000
    public static let acpiTablesSize: UInt64 = 0x1_0000
    /// MP floating pointer (Intel MP spec 1.4, 4.1: inside the BIOS ROM area
    /// 0xF0000–0xFFFFF) followed by the configuration table.
    public static let mpTable: UInt64 = 0xF_0000
    public static let mpTableSize: UInt64 = 0x1_0000
    /// Where the BIOS area ends and the kernel may begin.
    public static let highMemory: UInt64 = 0x10_0000
    /// The least memory the loader accepts: the boot structures and tables
    /// below 1 MiB, and 1 MiB above them for anything at all to load.
    public static let minimumMemory: UInt64 = 0x20_0000

    // MARK: The 32-bit hole and above

    /// RAM is [0, min(size, ramHoleStart)) plus the rest from 4 GiB.
    public static let ramHoleStart: UInt64 = 0xC000_0000
    public static let fourGiB: UInt64 = 0x1_0000_0000

    /// Default 32-bit PCI memory window (BARs below 4 GiB), below the
    /// virtio-mmio windows.
    public static let pciMem32: ClosedRange<UInt64> = 0xC000_0000...0xCFFF_FFFF
    /// virtio-mmio device windows: device n at `virtioMMIOBase + n * virtioMMIOStride`.
    public static let virtioMMIOBase: UInt64 = 0xD000_0000
    public static let virtioMMIOStride: UInt64 = 0x1000
    /// Bytes of registers each virtio-mmio device decodes (virtio 1.2, 4.2.2:
    /// the device-specific configuration starts at 0x100).
    public static let virtioMMIOSize: UInt64 = 0x200
    /// PCI ECAM (PCIe 5.0, 7.2.2): 1 MiB per bus, 256 buses.
    public static let pciECAM: UInt64 = 0xE000_0000
    public static let pciECAMSize: UInt64 = 0x1000_0000
    public static let ioapic: UInt64 = 0xFEC0_0000
    /// IOAPIC ID in the MADT and the MP table: 0, the reset value of KVM's
    /// in-kernel IOAPIC ID register (QEMU's MADT uses the same).
    public static let ioapicID: UInt8 = 0
    /// IOAPIC inputs (KVM_IOAPIC_NUM_PINS).
    public static let ioapicPins: UInt32 = 24
    public static let localAPIC: UInt64 = 0xFEE0_0000

    /// The IOAPIC pin (GSI) of ISA IRQ `irq`: the PIT's IRQ 0 is on pin 2,
    /// the others on their own number — what the MADT's interrupt source
    /// override and the MP table say. KVM's default GSI routing sends GSI 0
    /// to IOAPIC pin 0, so a VMM that relies on this must route GSI 0 to
    /// IOAPIC pin 2 (and PIC pin 0) itself, as QEMU does
    /// (`kvm_pc_setup_irq_routing`).
    public static func isaIRQToGSI(_ irq: UInt8) -> UInt32 { irq == 0 ? 2 : UInt32(irq) }

    /// virtio-mmio window `index` (0-based).
    public static func virtioMMIOWindow(_ index: Int) -> UInt64 {
        virtioMMIOBase + UInt64(index) * virtioMMIOStride
    }

    /// The 64-bit PCI memory window: 64 GiB from the first 1 GiB boundary at
    /// or above the end of RAM (never below 4 GiB).
    public static func pciMem64(memorySize: UInt64) -> ClosedRange<UInt64> {
        let end = ramRanges(memorySize: memorySize).last.map { $0.upperBound } ?? 0
        let gib: UInt64 = 1 << 30
        let start = max(fourGiB, (end + gib - 1) & ~(gib - 1))
        return start...(start + (64 << 30) - 1)
    }

    // MARK: RAM and the e820 map

    /// Guest-physical RAM for `memorySize` bytes: below the 32-bit hole,
    /// then the rest from 4 GiB. The VMM backs exactly these ranges.
    public static func ramRanges(memorySize: UInt64) -> [Range<UInt64>] {
        let below = min(memorySize, ramHoleStart)
        var ranges: [Range<UInt64>] = below > 0 ? [0..<below] : []
        if memorySize > ramHoleStart { ranges.append(fourGiB..<(fourGiB + (memorySize - ramHoleStart))) }
        return ranges
    }

    /// The end of RAM below 4 GiB (where initrds and low tables must end).
    public static func lowRAMTop(memorySize: UInt64) -> UInt64 { min(memorySize, ramHoleStart) }

    /// The memory map the guest is given, in boot_params (e820_table) and in
    /// hvm_start_info (memmap) alike: RAM below the EBDA, the BIOS area
    /// reserved except the ACPI tables, RAM from 1 MiB to the hole, RAM
    /// above 4 GiB. The loader refuses memory below `minimumMemory`.
    public static func e820(memorySize: UInt64) -> [E820Entry] {
        var map = [
            E820Entry(address: 0, size: min(lowRAMEnd, memorySize), type: .ram),
            E820Entry(address: lowRAMEnd, size: acpiTables - lowRAMEnd, type: .reserved),
            E820Entry(address: acpiTables, size: acpiTablesSize, type: .acpi),
            E820Entry(address: mpTable, size: highMemory - mpTable, type: .reserved),
        ]
        let low = lowRAMTop(memorySize: memorySize)
        if low > highMemory { map.append(E820Entry(address: highMemory, size: low - highMemory, type: .ram)) }
        if memorySize > ramHoleStart { map.append(E820Entry(address: fourGiB, size: memorySize - ramHoleStart, type: .ram)) }
        return map
    }
}

/// One entry of the BIOS e820 memory map (`struct boot_e820_entry` in
/// arch/x86/include/uapi/asm/setup_data.h; `hvm_memmap_table_entry` in Xen's
/// start_info.h uses the same type numbers).
public struct E820Entry: Hashable, Sendable, CustomStringConvertible {
    public enum Kind: UInt32, Sendable {
        case ram = 1        // E820_TYPE_RAM
        case reserved = 2   // E820_TYPE_RESERVED
        case acpi = 3       // E820_TYPE_ACPI (ACPI tables, reclaimable)
    }
    public var address: UInt64
    public var size: UInt64
    public var type: Kind

    public init(address: UInt64, size: UInt64, type: Kind) {
        self.address = address
        self.size = size
        self.type = type
    }

    public var end: UInt64 { address + size }

    public var description: String {
        "[0x\(String(address, radix: 16))-0x\(String(end, radix: 16))) \(type)"
    }
}

/// I/O ports the board decodes and the firmware tables describe.
public enum X86Ports {
    /// COM1, an 8250/16550 UART: 8 ports, on IOAPIC pin 4.
    public static let com1: UInt16 = 0x3F8
    public static let com1GSI: UInt32 = 4
    /// i8042 controller; 0xFE written to the command port pulses the CPU
    /// reset line (what Linux's `reboot=k` and the ACPI reset register do).
    public static let i8042Data: UInt16 = 0x60
    public static let i8042Command: UInt16 = 0x64
    public static let i8042ResetCommand: UInt8 = 0xFE
    /// CMOS RTC index and data.
    public static let rtcIndex: UInt16 = 0x70
    public static let rtcData: UInt16 = 0x71
    /// QEMU's isa-debug-exit: a write of v ends the VM with status (v << 1) | 1.
    public static let debugExit: UInt16 = 0x501
    /// PCI configuration mechanism #1 (CONFIG_ADDRESS, CONFIG_DATA).
    public static let pciConfigAddress: UInt16 = 0xCF8
    public static let pciConfigData: UInt16 = 0xCFC
}

/// The ACPI fixed hardware the FADT describes and the board implements:
/// full (not hardware-reduced) ACPI with a PM1a event and control block,
/// SCI on GSI 9, no PM timer, no GPE blocks, SMI_CMD = 0 (always in ACPI
/// mode: the OS never needs to switch), and the reset register on the
/// i8042 command port.
///
/// Power-off (ACPI 6.4, 4.8.3.2.1 and 7.4.2): the OS reads \_S5 from the
/// DSDT (SLP_TYP = `s5SleepType`) and writes PM1a_CNT with SLP_TYP in bits
/// 12:10 and SLP_EN (bit 13) — 16-bit writes, first without SLP_EN, then
/// with it; `isPowerOff(pm1aControl:)` says when a write means S5.
public enum ACPIPM {
    /// PM1a_EVT_BLK: PM1_STS (16 bits, write 1 to clear) at +0, PM1_EN
    /// (16 bits) at +2; accessed as 16-bit words.
    public static let pm1aEvent: UInt16 = 0x600
    public static let pm1EventLength: UInt8 = 4
    /// PM1a_CNT_BLK (16 bits). Reads should return SCI_EN (bit 0) set, as
    /// on hardware already in ACPI mode.
    public static let pm1aControl: UInt16 = 0x604
    public static let pm1ControlLength: UInt8 = 2
    public static let sciGSI: UInt32 = 9
    /// SLP_TYP value the DSDT's \_S5 package gives.
    public static let s5SleepType: UInt16 = 5
    public static let sleepEnable: UInt16 = 1 << 13     // SLP_EN
    public static let sleepTypeShift: UInt16 = 10       // SLP_TYP, bits 12:10
    public static let sciEnable: UInt16 = 1 << 0        // SCI_EN
    /// FADT RESET_REG: a byte write of `X86Ports.i8042ResetCommand` to
    /// `X86Ports.i8042Command` (Linux tries it first when rebooting, then the
    /// i8042 itself).
    public static let resetPort: UInt16 = X86Ports.i8042Command
    public static let resetValue: UInt8 = X86Ports.i8042ResetCommand

    /// True when a PM1a_CNT write requests S5 (soft off).
    public static func isPowerOff(pm1aControl value: UInt16) -> Bool {
        value & sleepEnable != 0 && (value >> sleepTypeShift) & 0x7 == s5SleepType
    }
}
