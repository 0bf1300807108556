import VfsvmMemory

/// The Linux x86 boot protocol for a bzImage, entered through its 64-bit
/// entry point (Documentation/arch/x86/boot.rst).
enum LinuxBoot {
    // struct boot_params offsets (arch/x86/include/uapi/asm/bootparam.h).
    static let acpiRSDPAddrOffset = 0x070
    static let extRamdiskImageOffset = 0x0C0
    static let extRamdiskSizeOffset = 0x0C4
    static let extCmdLinePtrOffset = 0x0C8
    static let e820EntriesOffset = 0x1E8
    static let e820TableOffset = 0x2D0
    /// E820_MAX_ENTRIES_ZEROPAGE.
    static let e820Max = 128
    /// type_of_loader 0xFF: "undefined" boot loader (boot.rst, "Details of
    /// Header Fields": no assigned ID).
    static let loaderType: UInt8 = 0xFF
    /// heap_end_ptr: end of the setup heap/stack minus 0x200, as offset from
    /// the real-mode code; 0xFE00 is the whole 64 KiB segment (boot.rst,
    /// "LOADING THE REST OF THE KERNEL"). Only the 16-bit setup code uses it.
    static let heapEnd: UInt16 = 0xFE00

    /// Where the protected-mode kernel goes and what memory it needs.
    struct Placement: Equatable {
        /// Load address of the protected-mode kernel.
        var load: UInt64
        /// Where the kernel runs from (it moves itself up to pref_address
        /// when loaded lower) and the end of its `init_size` bytes: the
        /// decompressor uses all of [load, end).
        var runtimeStart: UInt64
        var end: UInt64
    }

    /// pref_address when the kernel is relocatable and its init_size fits
    /// there, else 1 MiB (code32_start's default). A kernel loaded below
    /// pref_address still runs from there (arch/x86/boot/compressed/head_64.S
    /// rounds the load address up to kernel_alignment and raises it to
    /// LOAD_PHYSICAL_ADDR), so `end` counts from the runtime start.
    static func placement(_ h: BzImageHeader, payload: UInt64, memorySize: UInt64) throws(BootError) -> Placement {
        let top = X86Layout.lowRAMTop(memorySize: memorySize)
        let size = UInt64(h.initSize)
        func fits(_ start: UInt64) -> Bool { start >= X86Layout.highMemory && start <= top && size <= top - start }
        let load = h.relocatable && fits(h.prefAddress) ? h.prefAddress : X86Layout.highMemory
        var runtime = h.prefAddress
        if h.relocatable {
            let align = UInt64(max(h.kernelAlignment, 1))
            let aligned = align.nonzeroBitCount == 1 ? (load + align - 1) & ~(align - 1) : load
            runtime = max(aligned, h.prefAddress)
        }
        // Corrupt headers (init_size near 2^32, pref_address near 2^64) land
        // here as too-large requests, never as overflow.
        let (initEnd, o1) = runtime.addingReportingOverflow(size)
        let (payloadEnd, o2) = load.addingReportingOverflow(payload)
        let end = max(initEnd, payloadEnd)
        guard runtime >= X86Layout.highMemory else { throw .kernelBelow1MiB(runtime) }
        guard !o1, !o2, end <= top, runtime < top else {
            throw .kernelDoesNotFit(memory: memorySize, start: load, end: o1 || o2 ? UInt64.max : end, ramTop: top)
        }
        return Placement(load: load, runtimeStart: runtime, end: end)
    }

    static func load(_ kernel: [UInt8], header h: BzImageHeader, config: BootConfig, into memory: GuestMemory) throws(BootError) -> BootEntry {
        try h.check64BitEntry()
        let payload = kernel.count - h.kernelOffset
        let place = try placement(h, payload: UInt64(payload), memorySize: config.memorySize)
        try BootCommon.writeCmdline(config.cmdline, limit: Int(h.cmdlineSize), into: memory)

        var ramdisk: (address: UInt64, size: UInt64) = (0, 0)
        if let initrd = config.initrd, !initrd.isEmpty {
            // initrd_addr_max is the highest byte the initrd may occupy.
            let limit = min(UInt64(h.initrdAddrMax) + 1, X86Layout.lowRAMTop(memorySize: config.memorySize))
            ramdisk = (try BootCommon.placeInitrd(initrd, lowest: place.end, limit: limit, into: memory), UInt64(initrd.count))
        }
        try BootCommon.copy(kernel, h.kernelOffset..<kernel.count, to: place.load, into: memory)

        let zeroPage = bootParams(kernel, header: h, config: config, ramdisk: ramdisk)
        try guest { () throws(GuestMemoryError) in try memory.writeBytes(zeroPage, at: GuestAddress(X86Layout.zeroPage)) }

        // boot.rst: "the 64-bit entry point is at the load address + 0x200".
        let entry = BootEntry(mode: .linux64, rip: place.load + 0x200, rsi: X86Layout.zeroPage, rbx: 0)
        try entry.writeTables(into: memory)
        return entry
    }

    /// The zero page: the image's setup header copied to 0x1F1, then the
    /// fields a boot loader fills in (boot.rst, "Details of Header Fields",
    /// "obligatory" and "write" fields).
    static func bootParams(_ kernel: [UInt8], header h: BzImageHeader, config: BootConfig,
                           ramdisk: (address: UInt64, size: UInt64)) -> [UInt8] {
        var p = ByteWriter(zeros: 4096)
        let start = BzImageHeader.setupSectsOffset
        p.put(Array(kernel[start..<(start + h.headerLength)]), at: start)
        p.put(loaderType, at: BzImageHeader.typeOfLoaderOffset)
        p.put(h.loadflags | BzImageHeader.CAN_USE_HEAP, at: BzImageHeader.loadflagsOffset)
        p.put(heapEnd, at: BzImageHeader.heapEndPtrOffset)
        p.put(UInt32(X86Layout.cmdline), at: BzImageHeader.cmdLinePtrOffset)
        p.put(UInt32(0), at: extCmdLinePtrOffset)
        p.put(UInt32(truncatingIfNeeded: ramdisk.address), at: BzImageHeader.ramdiskImageOffset)
        p.put(UInt32(truncatingIfNeeded: ramdisk.size), at: BzImageHeader.ramdiskSizeOffset)
        p.put(UInt32(truncatingIfNeeded: ramdisk.address >> 32), at: extRamdiskImageOffset)
        p.put(UInt32(truncatingIfNeeded: ramdisk.size >> 32), at: extRamdiskSizeOffset)
        p.put(config.rsdpAddress ?? 0, at: acpiRSDPAddrOffset)
        let map = X86Layout.e820(memorySize: config.memorySize).prefix(e820Max)
        p.put(UInt8(map.count), at: e820EntriesOffset)
        p.put(BootCommon.e820Bytes(Array(map), pvh: false), at: e820TableOffset)
        return p.bytes
    }
}
