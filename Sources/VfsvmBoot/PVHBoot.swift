import VfsvmMemory

/// The PVH entry of an ELF kernel (Xen's docs/misc/pvh.pandoc and
/// xen/include/public/arch-x86/hvm/start_info.h): PT_LOAD segments at their
/// physical addresses, 32-bit protected mode with paging off, ebx →
/// `struct hvm_start_info`.
enum PVHBoot {
    /// XEN_HVM_START_MAGIC_VALUE ("xEn3" with the 0x80 bit of the "E" set).
    static let magic: UInt32 = 0x336E_C578
    /// Version 1 adds memmap_paddr and memmap_entries.
    static let version: UInt32 = 1
    static let startInfoSize = 56
    /// Module list and memory map follow the start info at 8-byte-aligned
    /// offsets in the same page.
    static let modlistOffset: UInt64 = 0x40
    static let memmapOffset: UInt64 = 0x80
    static let modlistEntrySize = 32

    static func load(_ kernel: [UInt8], config: BootConfig, into memory: GuestMemory) throws(BootError) -> BootEntry {
        let elf = try ELFFile(kernel)
        let entry = try PVHImage.entry(of: elf, kernel)
        let ram = X86Layout.ramRanges(memorySize: config.memorySize)
        // Segments: inside RAM, at or above 1 MiB (the boot structures and
        // the BIOS area are below), and not wrapping (checked by the parser).
        var kernelEnd = X86Layout.highMemory
        for (index, s) in elf.loadSegments where s.memorySize > 0 {
            let start = s.physicalAddress, end = s.physicalAddress + s.memorySize
            guard start >= X86Layout.highMemory, ram.contains(where: { start >= $0.lowerBound && end <= $0.upperBound }) else {
                throw .segmentOutsideRAM(index: index, start: start, end: end)
            }
            kernelEnd = max(kernelEnd, end)
        }
        try BootCommon.writeCmdline(config.cmdline, limit: Int.max, into: memory)

        var modules: [(address: UInt64, size: UInt64)] = []
        if let initrd = config.initrd, !initrd.isEmpty {
            // Below 4 GiB, like Xen ("will always try to place all the data
            // below the 4GiB boundary"), above every segment.
            let limit = X86Layout.lowRAMTop(memorySize: config.memorySize)
            modules.append((try BootCommon.placeInitrd(initrd, lowest: kernelEnd, limit: limit, into: memory), UInt64(initrd.count)))
        }
        for (_, s) in elf.loadSegments where s.memorySize > 0 {
            try BootCommon.copy(kernel, Int(s.offset)..<Int(s.offset + s.fileSize), to: s.physicalAddress, into: memory)
            // The part of p_memsz past p_filesz is zero (.bss).
            if s.memorySize > s.fileSize {
                let at = GuestAddress(s.physicalAddress + s.fileSize), count = Int(s.memorySize - s.fileSize)
                try guest { () throws(GuestMemoryError) in try memory.fill(0, at: at, count: count) }
            }
        }

        let info = startInfo(config: config, modules: modules)
        try guest { () throws(GuestMemoryError) in try memory.writeBytes(info, at: GuestAddress(X86Layout.pvhStartInfo)) }
        let boot = BootEntry(mode: .pvh32, rip: UInt64(entry), rsi: 0, rbx: X86Layout.pvhStartInfo)
        try boot.writeTables(into: memory)
        return boot
    }

    /// `struct hvm_start_info` with its module list and memory map, as the
    /// bytes of the page at `X86Layout.pvhStartInfo`.
    static func startInfo(config: BootConfig, modules: [(address: UInt64, size: UInt64)]) -> [UInt8] {
        let base = X86Layout.pvhStartInfo
        let map = X86Layout.e820(memorySize: config.memorySize)
        var w = ByteWriter()
        w.append(magic)                                             // magic
        w.append(version)                                           // version
        w.append(UInt32(0))                                         // flags: no SIF_xxx
        w.append(UInt32(modules.count))                             // nr_modules
        w.append(modules.isEmpty ? 0 : base + modlistOffset)        // modlist_paddr
        w.append(X86Layout.cmdline)                                 // cmdline_paddr
        w.append(config.rsdpAddress ?? 0)                           // rsdp_paddr
        w.append(base + memmapOffset)                               // memmap_paddr
        w.append(UInt32(map.count))                                 // memmap_entries
        w.append(UInt32(0))                                         // reserved
        w.align(to: Int(modlistOffset))
        for m in modules {                                          // struct hvm_modlist_entry
            w.append(m.address)                                     // paddr
            w.append(m.size)                                        // size
            w.append(UInt64(0))                                     // cmdline_paddr: none
            w.append(UInt64(0))                                     // reserved
        }
        w.append([UInt8](repeating: 0, count: Int(memmapOffset) - w.count))
        w.append(BootCommon.e820Bytes(map, pvh: true))
        return w.bytes
    }
}
