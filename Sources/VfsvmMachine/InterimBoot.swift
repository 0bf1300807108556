import VfsvmMemory

// INTERIM: a minimal PVH ELF loader and memory map, standing in for
// VfsvmBoot (built in parallel; see vmm-interfaces.md) until it lands on
// main. Shapes follow that contract (BootEntry, X86Layout) so switching is
// deleting this file and importing VfsvmBoot. No bzImage, no ACPI here.

public enum X86Layout {
    public static let gdt: UInt64 = 0x500
    public static let pvhStartInfo: UInt64 = 0x6000
    public static let cmdline: UInt64 = 0x2_0000
    public static let cmdlineMax: UInt64 = 0x1_0000
    public static let bootStackTop: UInt64 = 0x9000
    public static let lowRAMEnd: UInt64 = 0x9_FC00
    public static let highMemory: UInt64 = 0x10_0000
    public static let ramHoleStart: UInt64 = 0xC000_0000
    public static let fourGiB: UInt64 = 0x1_0000_0000
    public static let virtioMMIOBase: UInt64 = 0xD000_0000
    public static let virtioMMIOStride: UInt64 = 0x1000
    public static let virtioMMIOSize: UInt64 = 0x200

    public static func virtioMMIOWindow(_ index: Int) -> UInt64 { virtioMMIOBase + UInt64(index) * virtioMMIOStride }

    public static func ramRanges(memorySize: UInt64) -> [Range<UInt64>] {
        let below = min(memorySize, ramHoleStart)
        var ranges: [Range<UInt64>] = below > 0 ? [0..<below] : []
        if memorySize > ramHoleStart { ranges.append(fourGiB..<(fourGiB + (memorySize - ramHoleStart))) }
        return ranges
    }

    public static func pciMem64(memorySize: UInt64) -> ClosedRange<UInt64> {
        let end = ramRanges(memorySize: memorySize).last.map { $0.upperBound } ?? 0
        let gib: UInt64 = 1 << 30
        let start = max(fourGiB, (end + gib - 1) & ~(gib - 1))
        return start...(start + (64 << 30) - 1)
    }
}

public struct BootError: Error, Hashable, Sendable, CustomStringConvertible {
    public let description: String
    init(_ d: String) { description = d }
}

public struct BootEntry: Sendable {
    public enum Mode: Sendable { case pvh32, linux64 }
    public var mode: Mode
    public var rip: UInt64, rsp: UInt64, rsi: UInt64, rbx: UInt64
    public var gdtBase: UInt64, gdtLimit: UInt16
    public var pageTableRoot: UInt64?
}

enum InterimPVH {
    static func u16(_ b: [UInt8], _ o: Int) -> UInt64 { UInt64(b[o]) | UInt64(b[o + 1]) << 8 }
    static func u32(_ b: [UInt8], _ o: Int) -> UInt64 { u16(b, o) | u16(b, o + 2) << 16 }
    static func u64(_ b: [UInt8], _ o: Int) -> UInt64 { u32(b, o) | u32(b, o + 4) << 32 }

    static func load(_ elf: [UInt8], memorySize: UInt64, cmdline: [UInt8], into memory: GuestMemory) throws -> BootEntry {
        guard elf.count >= 64, elf[0..<4] == [0x7f, 0x45, 0x4c, 0x46], elf[4] == 2 else { throw BootError("kernel image: not an ELF64 file") }
        let phoff = Int(u64(elf, 32)), phentsize = Int(u16(elf, 54)), phnum = Int(u16(elf, 56))
        guard phentsize >= 56, phoff + phnum * phentsize <= elf.count else { throw BootError("kernel image: program headers out of range") }
        var entry: UInt64?
        for i in 0..<phnum {
            let p = phoff + i * phentsize
            let type = u32(elf, p), off = Int(u64(elf, p + 8)), paddr = u64(elf, p + 24), filesz = Int(u64(elf, p + 32)), memsz = Int(u64(elf, p + 40))
            guard off + filesz <= elf.count, filesz <= memsz else { throw BootError("kernel image: segment \(i) out of range") }
            if type == 1 {
                try memory.fill(0, at: GuestAddress(paddr), count: memsz)
                try memory.writeBytes(Array(elf[off..<(off + filesz)]), at: GuestAddress(paddr))
            } else if type == 4 {
                var n = off
                while n + 12 <= off + filesz {
                    let namesz = Int(u32(elf, n)), descsz = Int(u32(elf, n + 4)), ntype = u32(elf, n + 8)
                    let desc = n + 12 + (namesz + 3) & ~3
                    if ntype == 18, namesz == 4, elf[n + 12..<n + 15] == [0x58, 0x65, 0x6e], desc + 4 <= elf.count {  // "Xen"
                        entry = descsz >= 8 ? u64(elf, desc) : u32(elf, desc)
                    }
                    n = desc + (descsz + 3) & ~3
                }
            }
        }
        guard let entry else { throw BootError("kernel image: ELF without a PVH entry note (Xen ELF note 18)") }
        // GDT: null, null, code32 at 0x10, data at 0x18.
        for (i, d) in [UInt64(0), 0, 0x00cf_9b00_0000_ffff, 0x00cf_9300_0000_ffff].enumerated() {
            try memory.store(d, at: GuestAddress(X86Layout.gdt + UInt64(i) * 8))
        }
        try memory.writeBytes(cmdline + [0], at: GuestAddress(X86Layout.cmdline))
        // hvm_start_info: magic, version 1, flags, nr_modules, modlist, cmdline, rsdp, memmap, entries.
        let info = X86Layout.pvhStartInfo, map = info + 0x100
        try memory.store(UInt32(0x336e_c578), at: GuestAddress(info))
        try memory.store(UInt32(1), at: GuestAddress(info + 4))
        try memory.store(X86Layout.cmdline, at: GuestAddress(info + 24))
        let ranges: [(UInt64, UInt64, UInt32)] = [(0, X86Layout.lowRAMEnd, 1), (X86Layout.highMemory, min(memorySize, X86Layout.ramHoleStart) - X86Layout.highMemory, 1)]
        for (i, r) in ranges.enumerated() {
            try memory.store(r.0, at: GuestAddress(map + UInt64(i) * 24))
            try memory.store(r.1, at: GuestAddress(map + UInt64(i) * 24 + 8))
            try memory.store(r.2, at: GuestAddress(map + UInt64(i) * 24 + 16))
        }
        try memory.store(map, at: GuestAddress(info + 40))
        try memory.store(UInt32(ranges.count), at: GuestAddress(info + 48))
        return BootEntry(mode: .pvh32, rip: entry, rsp: X86Layout.bootStackTop, rsi: 0, rbx: info,
                         gdtBase: X86Layout.gdt, gdtLimit: 32 - 1, pageTableRoot: nil)
    }
}
