import Foundation
import VfsvmMemory
@testable import VfsvmBoot

/// A small ELF executable built field by field: program headers right after
/// the header, one PT_NOTE (the PVH entry note, when given), then the
/// PT_LOAD segments' bytes.
struct ELFFixture {
    struct Load { var paddr: UInt64; var data: [UInt8]; var memsz: UInt64 }
    var elf64 = true
    var machine: UInt16 = 62                  // EM_X86_64
    var loads: [Load]
    var pvhEntry: UInt64?
    var pvhDescSize = 8                       // Linux x86-64 writes _ASM_PTR (8 bytes)

    var bytes: [UInt8] {
        let ehsize = elf64 ? 64 : 52
        let phentsize = elf64 ? 56 : 32
        let phnum = loads.count + (pvhEntry == nil ? 0 : 1)
        var note = ByteWriter()
        if let entry = pvhEntry {
            note.append(UInt32(4))            // n_namesz: "Xen\0"
            note.append(UInt32(pvhDescSize))  // n_descsz
            note.append(UInt32(18))           // n_type: XEN_ELFNOTE_PHYS32_ENTRY
            note.appendASCII("Xen", length: 4, pad: 0)
            if pvhDescSize == 8 { note.append(entry) } else { note.append(UInt32(truncatingIfNeeded: entry)) }
        }
        let noteOffset = ehsize + phnum * phentsize
        var dataOffset = noteOffset + note.count
        var h = ByteWriter()
        h.append([0x7F, 0x45, 0x4C, 0x46])    // ELFMAG
        h.append(UInt8(elf64 ? 2 : 1))        // EI_CLASS: ELFCLASS64 / ELFCLASS32
        h.append(UInt8(1))                    // EI_DATA: ELFDATA2LSB
        h.append(UInt8(1))                    // EI_VERSION: EV_CURRENT
        h.append([UInt8](repeating: 0, count: 9))  // EI_OSABI, EI_ABIVERSION, EI_PAD
        h.append(UInt16(2))                   // e_type: ET_EXEC
        h.append(machine)                     // e_machine
        h.append(UInt32(1))                   // e_version
        if elf64 {
            h.append(UInt64(loads.first?.paddr ?? 0))  // e_entry (not what PVH uses)
            h.append(UInt64(ehsize))          // e_phoff
            h.append(UInt64(0))               // e_shoff: no sections
        } else {
            h.append(UInt32(loads.first?.paddr ?? 0))
            h.append(UInt32(ehsize))
            h.append(UInt32(0))
        }
        h.append(UInt32(0))                   // e_flags
        h.append(UInt16(ehsize))              // e_ehsize
        h.append(UInt16(phentsize))           // e_phentsize
        h.append(UInt16(phnum))               // e_phnum
        h.append(UInt16(elf64 ? 64 : 40))     // e_shentsize
        h.append(UInt16(0))                   // e_shnum
        h.append(UInt16(0))                   // e_shstrndx
        func phdr(type: UInt32, offset: Int, addr: UInt64, filesz: Int, memsz: UInt64, flags: UInt32, align: UInt64) {
            if elf64 {
                h.append(type); h.append(flags); h.append(UInt64(offset)); h.append(addr)   // p_type, p_flags, p_offset, p_vaddr
                h.append(addr); h.append(UInt64(filesz)); h.append(memsz); h.append(align)  // p_paddr, p_filesz, p_memsz, p_align
            } else {
                h.append(type); h.append(UInt32(offset)); h.append(UInt32(addr)); h.append(UInt32(addr))
                h.append(UInt32(filesz)); h.append(UInt32(memsz)); h.append(flags); h.append(UInt32(align))
            }
        }
        if pvhEntry != nil { phdr(type: 4, offset: noteOffset, addr: 0, filesz: note.count, memsz: UInt64(note.count), flags: 4, align: 4) }
        for l in loads {
            phdr(type: 1, offset: dataOffset, addr: l.paddr, filesz: l.data.count, memsz: l.memsz, flags: 7, align: 0x1000)
            dataOffset += l.data.count
        }
        h.append(note.bytes)
        for l in loads { h.append(l.data) }
        return h.bytes
    }
}

/// A bzImage-shaped file: boot sector with the setup header at 0x1F1, the
/// setup sectors, then `payload` as the protected-mode kernel.
struct BzImageFixture {
    var version: UInt16 = 0x020F
    var setupSects: UInt8 = 4
    var loadflags: UInt8 = 0x01               // LOADED_HIGH
    var xloadflags: UInt16 = 0x0001           // XLF_KERNEL_64
    var relocatable: UInt8 = 1
    var kernelAlignment: UInt32 = 0x20_0000
    var initrdAddrMax: UInt32 = 0x7FFF_FFFF
    var cmdlineSize: UInt32 = 0x7FF
    var prefAddress: UInt64 = 0x100_0000
    var initSize: UInt32 = 0x40_0000
    var payload: [UInt8] = Array(0..<255) + Array(repeating: 0xCC, count: 1000)

    var bytes: [UInt8] {
        // setup_sects 0 means 4 (boot.rst: "for backwards compatibility").
        var b = ByteWriter(zeros: (setupSects == 0 ? 5 : Int(setupSects) + 1) * 512)
        b.put(setupSects, at: 0x1F1)          // setup_sects
        b.put(UInt16(0xAA55), at: 0x1FE)      // boot_flag
        b.put(UInt8(0xEB), at: 0x200)         // jump: short jmp ...
        b.put(UInt8(0x6A), at: 0x201)         //   ... over the header, which ends at 0x202 + 0x6A = 0x26C
        b.put(UInt32(0x5372_6448), at: 0x202) // header: "HdrS"
        b.put(version, at: 0x206)             // version
        b.put(loadflags, at: 0x211)           // loadflags
        b.put(UInt32(0x10_0000), at: 0x214)   // code32_start
        b.put(initrdAddrMax, at: 0x22C)       // initrd_addr_max
        b.put(kernelAlignment, at: 0x230)     // kernel_alignment
        b.put(relocatable, at: 0x234)         // relocatable_kernel
        b.put(UInt8(21), at: 0x235)           // min_alignment (2 MiB)
        b.put(xloadflags, at: 0x236)          // xloadflags
        b.put(cmdlineSize, at: 0x238)         // cmdline_size
        b.put(prefAddress, at: 0x258)         // pref_address
        b.put(initSize, at: 0x260)            // init_size
        b.put(UInt32(0xDEAD_BEEF), at: 0x268) // kernel_info_offset: last header field, copied as is
        b.append(payload)
        return b.bytes
    }
}

func guestMemory(_ size: UInt64) throws -> GuestMemory {
    try GuestMemory(regions: X86Layout.ramRanges(memorySize: size).map {
        try GuestRegion.memfd(at: GuestAddress($0.lowerBound), size: Int($0.count))
    })
}

/// The package root, for Images/out.
let packageRoot = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()

/// Reads `count` bytes of guest memory (test helper that cannot fail quietly).
func peek(_ memory: GuestMemory, _ address: UInt64, _ count: Int) throws -> [UInt8] {
    try memory.readBytes(at: GuestAddress(address), count: count)
}

func le<T: FixedWidthInteger>(_ type: T.Type, _ bytes: [UInt8], _ offset: Int) -> T {
    readLE(type, bytes, at: UInt64(offset)) ?? 0
}
