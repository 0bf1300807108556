import Testing
@testable import VfsvmBoot

@Suite struct LayoutTests {
    @Test func e820For128MiB() {
        #expect(X86Layout.e820(memorySize: 128 << 20) == [
            E820Entry(address: 0, size: 0x9_FC00, type: .ram),                  // conventional memory up to the EBDA
            E820Entry(address: 0x9_FC00, size: 0x4_0400, type: .reserved),     // EBDA, VGA hole, option ROMs
            E820Entry(address: 0xE_0000, size: 0x1_0000, type: .acpi),          // RSDP, XSDT, FADT, MADT, DSDT...
            E820Entry(address: 0xF_0000, size: 0x1_0000, type: .reserved),     // MP table, BIOS ROM area
            E820Entry(address: 0x10_0000, size: (128 << 20) - 0x10_0000, type: .ram),
        ])
    }

    @Test func e820AboveTheHole() {
        // 5 GiB: 3 GiB below the hole, 2 GiB from 4 GiB.
        let map = X86Layout.e820(memorySize: 5 << 30)
        #expect(map.count == 6)
        #expect(map[4] == E820Entry(address: 0x10_0000, size: 0xC000_0000 - 0x10_0000, type: .ram))
        #expect(map[5] == E820Entry(address: 0x1_0000_0000, size: 2 << 30, type: .ram))
        #expect(X86Layout.ramRanges(memorySize: 5 << 30) == [0..<0xC000_0000, 0x1_0000_0000..<0x1_8000_0000])
        // Exactly 3 GiB fills the space below the hole and nothing above.
        #expect(X86Layout.e820(memorySize: 3 << 30).last == E820Entry(address: 0x10_0000, size: 0xC000_0000 - 0x10_0000, type: .ram))
        #expect(X86Layout.ramRanges(memorySize: 3 << 30) == [0..<0xC000_0000])
    }

    @Test func e820EntriesDoNotOverlapAndAreSorted() {
        for size: UInt64 in [2 << 20, 128 << 20, 3 << 30, (3 << 30) + 4096, 64 << 30] {
            let map = X86Layout.e820(memorySize: size)
            for (a, b) in zip(map, map.dropFirst()) { #expect(a.end <= b.address, "\(a) then \(b)") }
            let ram = map.filter { $0.type == .ram }.reduce(0) { $0 + $1.size }
            // All RAM is listed except the 384 KiB BIOS area below 1 MiB.
            #expect(ram == size - (X86Layout.highMemory - X86Layout.lowRAMEnd))
        }
    }

    @Test func pciWindows() {
        // 128 MiB: the 64-bit window starts at 4 GiB.
        #expect(X86Layout.pciMem64(memorySize: 128 << 20) == 0x1_0000_0000...0x10_FFFF_FFFF)
        // 5 GiB of RAM ends at 6 GiB; 5.5 GiB at 6.5 GiB, rounded up to 7 GiB.
        #expect(X86Layout.pciMem64(memorySize: 5 << 30).lowerBound == 6 << 30)
        #expect(X86Layout.pciMem64(memorySize: (11 << 29)).lowerBound == 7 << 30)
        #expect(X86Layout.virtioMMIOWindow(2) == 0xD000_2000)
        // The windows in the hole do not overlap one another.
        #expect(X86Layout.pciMem32.upperBound < X86Layout.virtioMMIOBase)
        #expect(X86Layout.virtioMMIOWindow(255) + X86Layout.virtioMMIOSize <= X86Layout.pciECAM)
        #expect(X86Layout.pciECAM + X86Layout.pciECAMSize <= X86Layout.ioapic)
    }

    @Test func lowStructuresDoNotOverlap() {
        let areas: [(String, UInt64, UInt64)] = [
            ("gdt", X86Layout.gdt, 0x30),
            ("start_info", X86Layout.pvhStartInfo, 0x1000),
            ("zero page", X86Layout.zeroPage, 0x1000),
            ("stack", X86Layout.bootStackTop - 0x1000, 0x1000),
            ("page tables", X86Layout.pageTables, 0x6000),
            ("cmdline", X86Layout.cmdline, X86Layout.cmdlineMax),
        ]
        for (i, a) in areas.enumerated() {
            #expect(a.1 + a.2 <= X86Layout.lowRAMEnd, "\(a.0)")
            for b in areas[(i + 1)...] { #expect(a.1 + a.2 <= b.1, "\(a.0) runs into \(b.0)") }
        }
    }
}
