/// The parts of an ELF executable a PVH loader needs: the header, the
/// program headers, and the notes in PT_NOTE segments (System V gABI,
/// "ELF Header", "Program Header", "Note Section").
///
/// The file comes from the command line and may be corrupt or hostile:
/// every offset and size is checked against the file and for overflow
/// before use, and a bad one is a `BootError.badELF` naming the field.
struct ELFFile: Sendable {
    enum Class: Int, Sendable { case elf32 = 32, elf64 = 64 }

    /// One program header (Elf32_Phdr / Elf64_Phdr, widened to 64 bits).
    struct Segment: Equatable, Sendable {
        var type: UInt32
        var flags: UInt32
        var offset: UInt64
        var virtualAddress: UInt64
        var physicalAddress: UInt64
        var fileSize: UInt64
        var memorySize: UInt64
        var alignment: UInt64
    }

    struct Note: Equatable, Sendable {
        var name: [UInt8]   // without the terminating NUL
        var type: UInt32
        var desc: [UInt8]
    }

    static let PT_LOAD: UInt32 = 1
    static let PT_NOTE: UInt32 = 4
    static let ET_EXEC: UInt16 = 2
    static let EM_386: UInt16 = 3
    static let EM_X86_64: UInt16 = 62
    /// XEN_ELFNOTE_PHYS32_ENTRY (xen/include/public/elfnote.h): the 32-bit
    /// physical entry point of a PVH kernel.
    static let XEN_ELFNOTE_PHYS32_ENTRY: UInt32 = 18
    /// e_phnum's escape value (the real count would be in section 0).
    static let PN_XNUM: UInt64 = 0xFFFF

    let elfClass: Class
    let machine: UInt16
    let entry: UInt64
    let segments: [Segment]

    static func isELF(_ bytes: [UInt8]) -> Bool {
        bytes.count >= 4 && bytes[0] == 0x7F && bytes[1] == 0x45 && bytes[2] == 0x4C && bytes[3] == 0x46
    }

    init(_ bytes: [UInt8]) throws(BootError) {
        guard Self.isELF(bytes) else { throw .unknownKernelFormat }
        guard bytes.count >= 16 else { throw .truncated(what: "the ELF identification", need: 16, have: UInt64(bytes.count)) }
        switch bytes[4] {    // EI_CLASS
        case 1: elfClass = .elf32
        case 2: elfClass = .elf64
        default: throw .badELF("EI_CLASS \(bytes[4]) is neither ELFCLASS32 nor ELFCLASS64")
        }
        guard bytes[5] == 1 else { throw .badELF("EI_DATA \(bytes[5]) is not little-endian (ELFDATA2LSB)") }
        guard bytes[6] == 1 else { throw .badELF("EI_VERSION \(bytes[6]) is not EV_CURRENT") }
        let wide = elfClass == .elf64
        let headerSize: UInt64 = wide ? 64 : 52
        guard UInt64(bytes.count) >= headerSize else {
            throw .truncated(what: "the ELF\(elfClass.rawValue) header", need: headerSize, have: UInt64(bytes.count))
        }
        // Offsets of e_type .. e_phnum in Elf32_Ehdr / Elf64_Ehdr.
        let type = readLE(UInt16.self, bytes, at: 16)!
        machine = readLE(UInt16.self, bytes, at: 18)!
        guard type == Self.ET_EXEC else { throw .badELF("e_type \(type) is not ET_EXEC") }
        guard machine == Self.EM_386 || machine == Self.EM_X86_64 else {
            throw .badELF("e_machine \(machine) is neither EM_386 nor EM_X86_64")
        }
        entry = wide ? readLE(UInt64.self, bytes, at: 24)! : UInt64(readLE(UInt32.self, bytes, at: 24)!)
        let phoff = wide ? readLE(UInt64.self, bytes, at: 32)! : UInt64(readLE(UInt32.self, bytes, at: 28)!)
        let phentsize = UInt64(readLE(UInt16.self, bytes, at: wide ? 54 : 42)!)
        let phnum = UInt64(readLE(UInt16.self, bytes, at: wide ? 56 : 44)!)
        let minimumEntry: UInt64 = wide ? 56 : 32
        guard phnum != Self.PN_XNUM else { throw .badELF("e_phnum is PN_XNUM (more than 65534 program headers)") }
        guard phnum > 0 else { throw .badELF("no program headers") }
        guard phentsize >= minimumEntry else { throw .badELF("e_phentsize \(phentsize) is smaller than \(minimumEntry)") }
        // phnum, phentsize < 2^16, so the product cannot overflow.
        guard fits(offset: phoff, length: phnum * phentsize, in: bytes.count) else {
            throw .badELF("program headers at \(hex(phoff)) (\(phnum) × \(phentsize) bytes) run past the end of the file")
        }
        var segments: [Segment] = []
        for i in 0..<phnum {
            let s = Self.segment(bytes, at: phoff + i * phentsize, wide: wide)
            if s.type == Self.PT_LOAD || s.type == Self.PT_NOTE {
                guard fits(offset: s.offset, length: s.fileSize, in: bytes.count) else {
                    throw .badELF("segment \(i) (file offset \(hex(s.offset)), \(s.fileSize) bytes) runs past the end of the file")
                }
            }
            if s.type == Self.PT_LOAD {
                guard s.fileSize <= s.memorySize else {
                    throw .badELF("segment \(i) has p_filesz \(hex(s.fileSize)) larger than p_memsz \(hex(s.memorySize))")
                }
                guard s.physicalAddress.addingReportingOverflow(s.memorySize).overflow == false else {
                    throw .badELF("segment \(i) at \(hex(s.physicalAddress)) of \(hex(s.memorySize)) bytes wraps the address space")
                }
            }
            segments.append(s)
        }
        self.segments = segments
    }

    /// Program header `at` (checked in range by the caller).
    private static func segment(_ b: [UInt8], at o: UInt64, wide: Bool) -> Segment {
        if wide {
            // Elf64_Phdr: type, flags, offset, vaddr, paddr, filesz, memsz, align.
            return Segment(type: readLE(UInt32.self, b, at: o)!, flags: readLE(UInt32.self, b, at: o + 4)!,
                           offset: readLE(UInt64.self, b, at: o + 8)!, virtualAddress: readLE(UInt64.self, b, at: o + 16)!,
                           physicalAddress: readLE(UInt64.self, b, at: o + 24)!, fileSize: readLE(UInt64.self, b, at: o + 32)!,
                           memorySize: readLE(UInt64.self, b, at: o + 40)!, alignment: readLE(UInt64.self, b, at: o + 48)!)
        }
        // Elf32_Phdr: type, offset, vaddr, paddr, filesz, memsz, flags, align.
        func w(_ d: UInt64) -> UInt64 { UInt64(readLE(UInt32.self, b, at: o + d)!) }
        return Segment(type: UInt32(w(0)), flags: UInt32(w(24)), offset: w(4), virtualAddress: w(8),
                       physicalAddress: w(12), fileSize: w(16), memorySize: w(20), alignment: w(28))
    }

    var loadSegments: [(index: Int, segment: Segment)] {
        segments.enumerated().filter { $0.element.type == Self.PT_LOAD }.map { ($0.offset, $0.element) }
    }

    /// The notes of every PT_NOTE segment. Each note's header, name and
    /// descriptor must lie inside its segment; entries are padded to 4 bytes,
    /// or 8 when the segment says so (gABI: "4-byte alignment"; the GNU
    /// property notes of ELF64 use 8).
    func notes(_ bytes: [UInt8]) throws(BootError) -> [Note] {
        var notes: [Note] = []
        for (i, s) in segments.enumerated() where s.type == Self.PT_NOTE {
            let align: UInt64 = s.alignment == 8 ? 8 : 4
            func padded(_ n: UInt64) -> UInt64 { (n + align - 1) & ~(align - 1) }
            var cursor: UInt64 = 0
            // Checked in init: the segment lies inside the file.
            while s.fileSize - cursor >= 12 {
                let at = s.offset + cursor
                let namesz = UInt64(readLE(UInt32.self, bytes, at: at)!)
                let descsz = UInt64(readLE(UInt32.self, bytes, at: at + 4)!)
                let type = readLE(UInt32.self, bytes, at: at + 8)!
                // Sizes are < 2^32, so these sums cannot overflow.
                let descStart = 12 + padded(namesz)
                let next = descStart + padded(descsz)
                guard next <= s.fileSize - cursor else {
                    throw .badELF("note \(notes.count) in segment \(i) (\(namesz)-byte name, \(descsz)-byte value) runs past its segment")
                }
                var name = Array(bytes[Int(at + 12)..<Int(at + 12 + namesz)])
                if name.last == 0 { name.removeLast() }
                let desc = Array(bytes[Int(at + descStart)..<Int(at + descStart + descsz)])
                notes.append(Note(name: name, type: type, desc: desc))
                cursor += next
            }
        }
        return notes
    }

    /// The PVH entry (XEN_ELFNOTE_PHYS32_ENTRY, owner "Xen"), or nil. Linux
    /// on x86-64 stores it as an 8-byte value (`_ASM_PTR`), 32-bit kernels
    /// and other guests as 4 bytes.
    func pvhEntry(_ bytes: [UInt8]) throws(BootError) -> UInt64? {
        for note in try notes(bytes) where note.name == Array("Xen".utf8) && note.type == Self.XEN_ELFNOTE_PHYS32_ENTRY {
            switch note.desc.count {
            case 4: return UInt64(readLE(UInt32.self, note.desc, at: 0)!)
            case 8: return readLE(UInt64.self, note.desc, at: 0)!
            default: throw .badELF("the PVH entry note holds \(note.desc.count) bytes, not 4 or 8")
            }
        }
        return nil
    }
}
