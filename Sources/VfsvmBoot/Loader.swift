import VfsvmMemory

/// What the loader needs besides the kernel.
public struct BootConfig: Sendable {
    /// Guest RAM in bytes, laid out by `X86Layout.ramRanges(memorySize:)`;
    /// the `GuestMemory` passed to `loadKernel` must back those ranges.
    public var memorySize: UInt64
    /// Kernel command line, without a NUL.
    public var cmdline: [UInt8]
    /// Initial ramdisk (bzImage: boot_params ramdisk fields; PVH: module 0).
    public var initrd: [UInt8]?
    /// The RSDP's guest address (from `writeACPI`), passed to the kernel in
    /// boot_params.acpi_rsdp_addr or hvm_start_info.rsdp_paddr. Without it
    /// Linux scans 0xE0000–0xFFFFF, where `writeACPI` also puts it.
    public var rsdpAddress: UInt64?

    public init(memorySize: UInt64, cmdline: [UInt8] = [], initrd: [UInt8]? = nil, rsdpAddress: UInt64? = nil) {
        self.memorySize = memorySize
        self.cmdline = cmdline
        self.initrd = initrd
        self.rsdpAddress = rsdpAddress
    }
}

/// Loads a bzImage (Linux x86 boot protocol, 64-bit entry) or a PVH ELF
/// into `memory` with its command line and initrd, writes the boot
/// structures (boot_params or hvm_start_info, e820, GDT, page tables) at
/// the `X86Layout` addresses, and returns the boot vCPU's registers.
/// The ACPI and MP tables are written separately (`writeACPI`,
/// `writeMPTable`), before or after; only their RSDP address is needed here.
public func loadKernel(_ kernel: [UInt8], config: BootConfig, into memory: GuestMemory) throws(BootError) -> BootEntry {
    guard config.memorySize >= X86Layout.minimumMemory else {
        throw .memoryTooSmall(memory: config.memorySize, minimum: X86Layout.minimumMemory)
    }
    for range in X86Layout.ramRanges(memorySize: config.memorySize) {
        try guest { () throws(GuestMemoryError) in try memory.checkRange(GuestAddress(range.lowerBound), length: UInt64(range.count)) }
    }
    switch try KernelImage.identify(kernel) {
    case let .bzImage(header):
        return try LinuxBoot.load(kernel, header: header, config: config, into: memory)
    case .pvh:
        return try PVHBoot.load(kernel, config: config, into: memory)
    }
}

/// Placement and writes both protocols share.
enum BootCommon {
    static let pageSize: UInt64 = 0x1000

    /// Checks the command line against the kernel's limit (without NUL)
    /// and the layout's area, and writes it NUL-terminated.
    static func writeCmdline(_ cmdline: [UInt8], limit: Int, into memory: GuestMemory) throws(BootError) {
        let maximum = min(limit, Int(X86Layout.cmdlineMax) - 1)
        guard cmdline.count <= maximum else { throw .cmdlineTooLong(length: cmdline.count, maximum: maximum) }
        if let nul = cmdline.firstIndex(of: 0) { throw .cmdlineHasNUL(offset: nul) }
        try guest { () throws(GuestMemoryError) in try memory.writeBytes(cmdline + [0], at: GuestAddress(X86Layout.cmdline)) }
    }

    /// Puts the initrd as high as it fits: page aligned, ending at or below
    /// `limit` (exclusive), starting at or above `lowest` (the kernel's end).
    /// Returns its address.
    static func placeInitrd(_ initrd: [UInt8], lowest: UInt64, limit: UInt64, into memory: GuestMemory) throws(BootError) -> UInt64 {
        let size = UInt64(initrd.count)
        let floor = (lowest + pageSize - 1) & ~(pageSize - 1)
        guard size <= limit, (limit - size) & ~(pageSize - 1) >= floor else {
            throw .initrdDoesNotFit(size: size, lowest: lowest, highest: limit)
        }
        let address = (limit - size) & ~(pageSize - 1)
        try guest { () throws(GuestMemoryError) in try memory.writeBytes(initrd, at: GuestAddress(address)) }
        return address
    }

    /// Copies `bytes[range]` to `address` (the kernel image is the user's
    /// file, already bounds-checked by the parser).
    static func copy(_ bytes: [UInt8], _ range: Range<Int>, to address: UInt64, into memory: GuestMemory) throws(BootError) {
        let piece = Array(bytes[range])
        try guest { () throws(GuestMemoryError) in try memory.writeBytes(piece, at: GuestAddress(address)) }
    }

    /// `map` as 20-byte `boot_e820_entry` or 24-byte `hvm_memmap_table_entry` records.
    static func e820Bytes(_ map: [E820Entry], pvh: Bool) -> [UInt8] {
        var w = ByteWriter()
        for e in map {
            w.append(e.address)                 // addr
            w.append(e.size)                    // size
            w.append(e.type.rawValue)           // type
            if pvh { w.append(UInt32(0)) }      // reserved (hvm_memmap_table_entry only)
        }
        return w.bytes
    }
}
