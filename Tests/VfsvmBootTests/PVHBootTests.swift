import Testing
import VfsvmMemory
@testable import VfsvmBoot

@Suite struct PVHBootTests {
    static let memorySize: UInt64 = 64 << 20
    static let text: [UInt8] = Array(1...200)
    static let data: [UInt8] = [0xD0, 0xD1, 0xD2]

    static func kernel(elf64: Bool = true) -> ELFFixture {
        var f = ELFFixture(elf64: elf64, machine: elf64 ? 62 : 3,
                           loads: [.init(paddr: 0x10_0000, data: text, memsz: 200),
                                   .init(paddr: 0x20_0000, data: data, memsz: 0x3000)],   // .data + .bss
                           pvhEntry: 0x10_0010)
        f.pvhDescSize = elf64 ? 8 : 4
        return f
    }

    @Test(arguments: [true, false])
    func loadsSegmentsAndWritesStartInfo(elf64: Bool) throws {
        let memory = try guestMemory(Self.memorySize)
        try memory.fill(0xAA, at: GuestAddress(0x20_0000), count: 0x4000)    // stale bytes where .bss goes
        let initrd = [UInt8](repeating: 0x77, count: 6000)
        let config = BootConfig(memorySize: Self.memorySize, cmdline: Array("init=/bin/sh".utf8), initrd: initrd, rsdpAddress: 0xE_0000)
        let entry = try loadKernel(Self.kernel(elf64: elf64).bytes, config: config, into: memory)

        #expect(try peek(memory, 0x10_0000, 200) == Self.text)
        #expect(try peek(memory, 0x20_0000, 3) == Self.data)
        #expect(try peek(memory, 0x20_0003, 0x3000 - 3) == [UInt8](repeating: 0, count: 0x3000 - 3))   // p_memsz past p_filesz zeroed
        #expect(try peek(memory, 0x20_3000, 1) == [0xAA])                                               // and nothing beyond
        #expect(try peek(memory, X86Layout.cmdline, 13) == Array("init=/bin/sh".utf8) + [0])
        #expect(try peek(memory, 0x3FF_E000, 6000) == initrd)   // 64 MiB - 6000, page aligned down

        let info = try peek(memory, X86Layout.pvhStartInfo, 0x80 + 5 * 24)
        #expect(Array(info[0..<56]) == [
            0x78, 0xC5, 0x6E, 0x33,                 // magic XEN_HVM_START_MAGIC_VALUE 0x336ec578
            1, 0, 0, 0,                             // version 1 (has memmap)
            0, 0, 0, 0,                             // flags
            1, 0, 0, 0,                             // nr_modules: the initrd
            0x40, 0x60, 0, 0, 0, 0, 0, 0,           // modlist_paddr 0x6040
            0x00, 0x00, 0x02, 0, 0, 0, 0, 0,        // cmdline_paddr 0x20000
            0x00, 0x00, 0x0E, 0, 0, 0, 0, 0,        // rsdp_paddr 0xE0000
            0x80, 0x60, 0, 0, 0, 0, 0, 0,           // memmap_paddr 0x6080
            5, 0, 0, 0,                             // memmap_entries
            0, 0, 0, 0,                             // reserved
        ])
        #expect(Array(info[0x40..<0x60]) == [
            0x00, 0xE0, 0xFF, 0x03, 0, 0, 0, 0,     // module 0 paddr 0x3FFE000
            0x70, 0x17, 0, 0, 0, 0, 0, 0,           // size 6000
            0, 0, 0, 0, 0, 0, 0, 0,                 // cmdline_paddr: none
            0, 0, 0, 0, 0, 0, 0, 0,                 // reserved
        ])
        #expect(Array(info[0x80..<0x98]) == [
            0, 0, 0, 0, 0, 0, 0, 0,                 // memmap[0] addr 0
            0x00, 0xFC, 0x09, 0, 0, 0, 0, 0,        // size 0x9FC00
            1, 0, 0, 0,                             // type RAM
            0, 0, 0, 0,                             // reserved
        ])
        #expect(Array(info[(0x80 + 2 * 24)..<(0x80 + 2 * 24 + 20)]) == [
            0x00, 0x00, 0x0E, 0, 0, 0, 0, 0,        // memmap[2] addr 0xE0000
            0x00, 0x00, 0x01, 0, 0, 0, 0, 0,        // size 64 KiB
            3, 0, 0, 0,                             // type ACPI
        ])

        #expect(entry.mode == .pvh32)
        #expect(entry.rip == 0x10_0010)
        #expect(entry.rbx == 0x6000)
        #expect(entry.cr0 == 0x11 && entry.cr3 == 0 && entry.pageTableRoot == nil)   // PE | ET, paging off
        #expect(entry.cr4 == 0 && entry.efer == 0)
        #expect(!entry.cs.l && entry.cs.db && entry.cs.type == 0xB && entry.cs.limit == 0xFFFF_FFFF)
        #expect(entry.tr.type == 0xB && entry.tr.limit == 0x67 && !entry.tr.s)
        #expect(try peek(memory, 0x510, 8) == [0xFF, 0xFF, 0, 0, 0, 0x9B, 0xCF, 0x00])   // 32-bit code: G D/B, no L
    }

    @Test func withoutInitrdOrRSDP() throws {
        let memory = try guestMemory(Self.memorySize)
        _ = try loadKernel(Self.kernel().bytes, config: BootConfig(memorySize: Self.memorySize), into: memory)
        let info = try peek(memory, X86Layout.pvhStartInfo, 56)
        #expect(le(UInt32.self, info, 12) == 0)      // nr_modules
        #expect(le(UInt64.self, info, 16) == 0)      // modlist_paddr
        #expect(le(UInt64.self, info, 32) == 0)      // rsdp_paddr: the guest scans for it
        #expect(try peek(memory, X86Layout.cmdline, 1) == [0])
    }

    @Test func segmentsMustBeInRAMAbove1MiB() throws {
        let memory = try guestMemory(Self.memorySize)
        for (paddr, size) in [(UInt64(0x9_0000), UInt64(0x100)),      // over the boot structures
                              (0xF_FF00, 0x200),                       // straddles 1 MiB
                              (0x3FF_F000, 0x2000),                    // runs past the end of RAM
                              (0xD000_0000, 0x10)] {                   // in the MMIO hole
            let f = ELFFixture(loads: [.init(paddr: paddr, data: [0xF4], memsz: size)], pvhEntry: paddr)
            #expect(throws: BootError.segmentOutsideRAM(index: 1, start: paddr, end: paddr + size)) {
                try loadKernel(f.bytes, config: BootConfig(memorySize: Self.memorySize), into: memory)
            }
        }
        #expect(BootError.segmentOutsideRAM(index: 1, start: 0x9_0000, end: 0x9_0100).description
            == "kernel image: ELF segment 1 at 0x90000-0x90100 is not in RAM at or above 1 MiB")
        // An initrd that cannot go above the kernel.
        let f = ELFFixture(loads: [.init(paddr: 0x10_0000, data: [0xF4], memsz: 0x3E0_0000)], pvhEntry: 0x10_0000)
        #expect(throws: BootError.initrdDoesNotFit(size: 0x30_0000, lowest: 0x3F0_0000, highest: 0x400_0000)) {
            try loadKernel(f.bytes, config: BootConfig(memorySize: Self.memorySize, initrd: [UInt8](repeating: 0, count: 0x30_0000)), into: memory)
        }
        #expect(throws: BootError.cmdlineTooLong(length: 70_000, maximum: 65_535)) {
            try loadKernel(Self.kernel().bytes, config: BootConfig(memorySize: Self.memorySize, cmdline: [UInt8](repeating: 0x20, count: 70_000)), into: memory)
        }
    }
}
