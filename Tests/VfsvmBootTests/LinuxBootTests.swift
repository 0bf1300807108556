import Testing
import VfsvmMemory
@testable import VfsvmBoot

@Suite struct LinuxBootTests {
    static let memorySize: UInt64 = 64 << 20

    @Test func loadsTheKernelAndFillsTheZeroPage() throws {
        let fixture = BzImageFixture()
        let image = fixture.bytes
        let memory = try guestMemory(Self.memorySize)
        let initrd = [UInt8](repeating: 0x5A, count: 10_000)
        let config = BootConfig(memorySize: Self.memorySize, cmdline: Array("console=ttyS0 panic=-1".utf8),
                                initrd: initrd, rsdpAddress: 0xE_0000)
        let entry = try loadKernel(image, config: config, into: memory)

        // The protected-mode kernel (after boot sector + 4 setup sectors) at pref_address.
        #expect(try peek(memory, 0x100_0000, fixture.payload.count) == fixture.payload)
        let zp = try peek(memory, X86Layout.zeroPage, 4096)
        // The setup header is the image's from 0x1F1 to 0x26C, except the loader's fields.
        var header = Array(image[0x1F1..<0x26C])
        func set(_ bytes: [UInt8], at offset: Int) { header.replaceSubrange((offset - 0x1F1)..<(offset - 0x1F1 + bytes.count), with: bytes) }
        set([0xFF], at: 0x210)                            // type_of_loader: undefined
        set([0x81], at: 0x211)                            // loadflags: LOADED_HIGH | CAN_USE_HEAP
        set([0x00, 0xD0, 0xFF, 0x03], at: 0x218)          // ramdisk_image: 0x03FFD000 (64 MiB - 10000, page aligned down)
        set([0x10, 0x27, 0x00, 0x00], at: 0x21C)          // ramdisk_size: 10000
        set([0x00, 0xFE], at: 0x224)                      // heap_end_ptr: 0xFE00
        set([0x00, 0x00, 0x02, 0x00], at: 0x228)          // cmd_line_ptr: 0x20000
        #expect(Array(zp[0x1F1..<0x26C]) == header)
        #expect(le(UInt64.self, zp, 0x070) == 0xE_0000)   // acpi_rsdp_addr
        #expect(le(UInt32.self, zp, 0x0C0) == 0)          // ext_ramdisk_image
        #expect(le(UInt32.self, zp, 0x0C8) == 0)          // ext_cmd_line_ptr
        #expect(zp[0x1E8] == 5)                           // e820_entries
        #expect(Array(zp[0x2D0..<(0x2D0 + 40)]) == [
            0, 0, 0, 0, 0, 0, 0, 0,                       // [0] addr 0
            0x00, 0xFC, 0x09, 0, 0, 0, 0, 0,              //     size 0x9FC00
            1, 0, 0, 0,                                   //     type RAM
            0x00, 0xFC, 0x09, 0, 0, 0, 0, 0,              // [1] addr 0x9FC00
            0x00, 0x04, 0x04, 0, 0, 0, 0, 0,              //     size 0x40400
            2, 0, 0, 0,                                   //     type reserved
        ])
        #expect(Array(zp[(0x2D0 + 80)..<(0x2D0 + 100)]) == [
            0x00, 0x00, 0x10, 0, 0, 0, 0, 0,              // [4] addr 1 MiB
            0x00, 0x00, 0xF0, 0x03, 0, 0, 0, 0,           //     size 63 MiB
            1, 0, 0, 0,                                   //     type RAM
        ])
        #expect(zp[0x2D0 + 100] == 0)                     // nothing after the fifth entry
        #expect(try peek(memory, X86Layout.cmdline, 23) == Array("console=ttyS0 panic=-1".utf8) + [0])
        #expect(try peek(memory, 0x3FF_D000, initrd.count) == initrd)

        // Long mode at load address + 0x200, rsi = boot_params.
        #expect(entry.mode == .linux64)
        #expect(entry.rip == 0x100_0200)
        #expect(entry.rsi == 0x7000)
        #expect(entry.cr0 == 0x8000_0011)                // PG | ET | PE
        #expect(entry.cr3 == 0x9000 && entry.pageTableRoot == 0x9000)
        #expect(entry.cr4 == 0x20)                       // PAE
        #expect(entry.efer == 0x500)                     // LMA | LME
        #expect(entry.rflags == 0x2)
        #expect(entry.cs.selector == 0x10 && entry.ds.selector == 0x18 && entry.ss.selector == 0x18)
        #expect(entry.cs.l && !entry.cs.db && entry.cs.limit == 0xFFFF_FFFF)
        #expect(entry.gdtBase == 0x500 && entry.gdtLimit == 0x2F)
        #expect(try peek(memory, 0x500, 48) == [
            0, 0, 0, 0, 0, 0, 0, 0,                       // 0x00 null
            0, 0, 0, 0, 0, 0, 0, 0,                       // 0x08 unused
            0xFF, 0xFF, 0, 0, 0, 0x9B, 0xAF, 0x00,        // 0x10 code: limit 0xFFFFF, P DPL0 S type B, G L
            0xFF, 0xFF, 0, 0, 0, 0x93, 0xCF, 0x00,        // 0x18 data: P S type 3, G D/B
            0x67, 0, 0, 0, 0, 0x8B, 0x00, 0x00,           // 0x20 TSS: limit 0x67, P busy TSS
            0, 0, 0, 0, 0, 0, 0, 0,                       // 0x28 TSS base 63:32
        ])
        // Identity page tables: PML4[0] → PDPT, PDPT[i] → PD i, 2 MiB pages to 4 GiB.
        #expect(le(UInt64.self, try peek(memory, 0x9000, 8), 0) == 0xA003)
        #expect(try peek(memory, 0xA000, 32) == [0x03, 0xB0, 0, 0, 0, 0, 0, 0, 0x03, 0xC0, 0, 0, 0, 0, 0, 0,
                                                 0x03, 0xD0, 0, 0, 0, 0, 0, 0, 0x03, 0xE0, 0, 0, 0, 0, 0, 0])
        #expect(le(UInt64.self, try peek(memory, 0xB008, 8), 0) == 0x20_0083)          // PD0[1]: 2 MiB, PS | RW | P
        #expect(le(UInt64.self, try peek(memory, 0xEFF8, 8), 0) == 0xFFE0_0083)        // PD3[511]: the last 2 MiB below 4 GiB
    }

    @Test func nonRelocatableKernelLoadsAt1MiB() throws {
        var fixture = BzImageFixture()
        fixture.relocatable = 0
        fixture.prefAddress = 0x10_0000
        let memory = try guestMemory(Self.memorySize)
        let entry = try loadKernel(fixture.bytes, config: BootConfig(memorySize: Self.memorySize), into: memory)
        #expect(entry.rip == 0x10_0200)
        #expect(try peek(memory, 0x10_0000, 16) == Array(fixture.payload.prefix(16)))
        let zp = try peek(memory, X86Layout.zeroPage, 4096)
        #expect(le(UInt32.self, zp, 0x218) == 0 && le(UInt32.self, zp, 0x21C) == 0)   // no initrd
        #expect(le(UInt64.self, zp, 0x070) == 0)                                       // no RSDP given
    }

    @Test func initrdStaysBelowInitrdAddrMax() throws {
        var fixture = BzImageFixture()
        fixture.initrdAddrMax = 0x01FF_FFFF           // last byte the initrd may use: 32 MiB - 1
        let memory = try guestMemory(Self.memorySize)
        let config = BootConfig(memorySize: Self.memorySize, initrd: [UInt8](repeating: 1, count: 5000))
        _ = try loadKernel(fixture.bytes, config: config, into: memory)
        let zp = try peek(memory, X86Layout.zeroPage, 4096)
        #expect(le(UInt32.self, zp, 0x218) == 0x01FF_E000)   // 32 MiB - 8 KiB: page aligned, ends below the limit
        #expect(le(UInt32.self, zp, 0x21C) == 5000)
    }

    @Test func placementFollowsPrefAddressAndInitSize() throws {
        let h = try BzImageHeader(BzImageFixture().bytes)
        #expect(try LinuxBoot.placement(h, payload: 0x1000, memorySize: 64 << 20)
            == .init(load: 0x100_0000, runtimeStart: 0x100_0000, end: 0x140_0000))
        // Debian's kernel: pref_address 16 MiB, init_size 0x3378000 (51.5 MiB).
        var debian = BzImageFixture()
        debian.initSize = 0x337_8000
        let big = try BzImageHeader(debian.bytes)
        #expect(try LinuxBoot.placement(big, payload: 0xD8_3200, memorySize: 128 << 20).end == 0x437_8000)
        #expect(throws: BootError.kernelDoesNotFit(memory: 64 << 20, start: 0x10_0000, end: 0x437_8000, ramTop: 0x400_0000)) {
            try LinuxBoot.placement(big, payload: 0xD8_3200, memorySize: 64 << 20)
        }
        #expect(BootError.kernelDoesNotFit(memory: 64 << 20, start: 0x10_0000, end: 0x437_8000, ramTop: 0x400_0000).description
            == "memory 64 MiB is too small for this kernel: it needs 0x100000-0x4378000 (66.5 MiB) and RAM below 4 GiB ends at 0x4000000")
        // A corrupt init_size is a too-small memory, not an overflow.
        var corrupt = BzImageFixture()
        corrupt.prefAddress = UInt64.max - 10
        #expect(throws: BootError.self) { try LinuxBoot.placement(try BzImageHeader(corrupt.bytes), payload: 1, memorySize: 64 << 20) }
        var low = BzImageFixture()
        low.relocatable = 0
        low.prefAddress = 0x1_0000
        #expect(throws: BootError.kernelBelow1MiB(0x1_0000)) { try LinuxBoot.placement(try BzImageHeader(low.bytes), payload: 1, memorySize: 64 << 20) }
    }

    @Test func refusesWhatDoesNotFit() throws {
        let image = BzImageFixture().bytes
        let memory = try guestMemory(Self.memorySize)
        #expect(throws: BootError.cmdlineTooLong(length: 2048, maximum: 2047)) {
            try loadKernel(image, config: BootConfig(memorySize: Self.memorySize, cmdline: [UInt8](repeating: 0x61, count: 2048)), into: memory)
        }
        #expect(throws: BootError.cmdlineHasNUL(offset: 3)) {
            try loadKernel(image, config: BootConfig(memorySize: Self.memorySize, cmdline: [0x61, 0x62, 0x63, 0, 0x64]), into: memory)
        }
        // 60 MiB of initrd above a kernel that ends at 20 MiB in 64 MiB of RAM.
        #expect(throws: BootError.initrdDoesNotFit(size: 60 << 20, lowest: 0x140_0000, highest: 0x400_0000)) {
            try loadKernel(image, config: BootConfig(memorySize: Self.memorySize, initrd: [UInt8](repeating: 0, count: 60 << 20)), into: memory)
        }
        #expect(throws: BootError.memoryTooSmall(memory: 1 << 20, minimum: 2 << 20)) {
            try loadKernel(image, config: BootConfig(memorySize: 1 << 20), into: memory)
        }
        // memorySize claims more RAM than the GuestMemory backs.
        #expect(throws: BootError.guestMemory(.outOfRange(address: GuestAddress(0), length: 128 << 20))) {
            try loadKernel(image, config: BootConfig(memorySize: 128 << 20), into: memory)
        }
    }
}
