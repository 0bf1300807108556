import PropertyBased
import Synchronization
import Testing
import VfsvmTestSupport
@testable import VfsvmBoot

@Suite struct ELFTests {
    static let code: [UInt8] = [0xB0, 0x21, 0xE6, 0x01, 0xF4]      // mov al,0x21; out 1,al; hlt

    @Test func parsesProgramHeadersAndTheNote() throws {
        let fixture = ELFFixture(loads: [.init(paddr: 0x10_0000, data: Self.code, memsz: 0x2000)], pvhEntry: 0x10_0000)
        let bytes = fixture.bytes
        let elf = try ELFFile(bytes)
        #expect(elf.elfClass == .elf64)
        #expect(elf.machine == 62)
        #expect(elf.segments.count == 2)
        #expect(elf.loadSegments.map(\.segment.physicalAddress) == [0x10_0000])
        #expect(elf.loadSegments[0].segment.fileSize == 5)
        #expect(elf.loadSegments[0].segment.memorySize == 0x2000)
        #expect(try elf.notes(bytes) == [ELFFile.Note(name: Array("Xen".utf8), type: 18, desc: [0, 0, 0x10, 0, 0, 0, 0, 0])])
        #expect(try KernelImage.identify(bytes) == .pvh(entry: 0x10_0000, elfClass: 64))
    }

    @Test func elf32WithAFourBytePVHNote() throws {
        var fixture = ELFFixture(elf64: false, machine: 3, loads: [.init(paddr: 0x20_0000, data: Self.code, memsz: 5)], pvhEntry: 0x20_0004)
        fixture.pvhDescSize = 4
        #expect(try KernelImage.identify(fixture.bytes) == .pvh(entry: 0x20_0004, elfClass: 32))
    }

    @Test func elfWithoutThePVHNoteIsRefused() {
        let fixture = ELFFixture(loads: [.init(paddr: 0x10_0000, data: Self.code, memsz: 5)], pvhEntry: nil)
        #expect(throws: BootError.noPVHEntry(elfClass: 64)) { try KernelImage.identify(fixture.bytes) }
        #expect(BootError.noPVHEntry(elfClass: 64).description
            == "kernel image: ELF64 file without a PVH entry (Xen ELF note 18, XEN_ELFNOTE_PHYS32_ENTRY); vfsvm boots ELF kernels only through PVH")
    }

    @Test func pvhEntryOutsideEverySegmentIsRefused() {
        let fixture = ELFFixture(loads: [.init(paddr: 0x10_0000, data: Self.code, memsz: 0x1000)], pvhEntry: 0x10_1000)
        #expect(throws: BootError.badPVHEntry(0x10_1000)) { try KernelImage.identify(fixture.bytes) }
    }

    @Test func corruptHeadersAreNamed() {
        var bytes = ELFFixture(loads: [.init(paddr: 0x10_0000, data: Self.code, memsz: 5)], pvhEntry: 0x10_0000).bytes
        var bad = bytes
        bad[5] = 2                                            // EI_DATA: big-endian
        #expect(throws: BootError.badELF("EI_DATA 2 is not little-endian (ELFDATA2LSB)")) { try ELFFile(bad) }
        bad = bytes
        bad[32] = 0xF0                                        // e_phoff far past the end
        #expect(throws: BootError.badELF("program headers at 0xf0 (2 × 56 bytes) run past the end of the file")) { try ELFFile(bad) }
        bad = bytes
        bad[54] = 8                                           // e_phentsize 8
        #expect(throws: BootError.badELF("e_phentsize 8 is smaller than 56")) { try ELFFile(bad) }
        bad = bytes
        bad[56] = 0xFF; bad[57] = 0xFF                        // e_phnum = PN_XNUM
        #expect(throws: BootError.badELF("e_phnum is PN_XNUM (more than 65534 program headers)")) { try ELFFile(bad) }
        // Second program header (the PT_LOAD) at 64 + 56: p_offset (+8) near 2^64.
        let load = 64 + 56
        bad = bytes
        for i in 0..<8 { bad[load + 8 + i] = 0xFF }
        #expect(throws: BootError.badELF("segment 1 (file offset 0xffffffffffffffff, 5 bytes) runs past the end of the file")) { try ELFFile(bad) }
        // p_paddr + p_memsz wraps.
        bad = bytes
        for i in 0..<8 { bad[load + 24 + i] = 0xFF; bad[load + 40 + i] = 0xFF }
        #expect(throws: (any Error).self) { try ELFFile(bad) }
        // p_filesz > p_memsz.
        bad = bytes
        bad[load + 40] = 4
        #expect(throws: BootError.badELF("segment 1 has p_filesz 0x5 larger than p_memsz 0x4")) { try ELFFile(bad) }
        // The note's n_descsz claims more than the segment holds.
        let noteStart = 64 + 2 * 56
        bytes[noteStart + 4] = 0x40
        #expect(throws: BootError.badELF("note 0 in segment 0 (4-byte name, 64-byte value) runs past its segment")) {
            try KernelImage.identify(bytes)
        }
        #expect(throws: BootError.unknownKernelFormat) { try KernelImage.identify([0x7F, 0x45, 0x4C]) }
        #expect(throws: BootError.truncated(what: "the ELF64 header", need: 64, have: 40)) {
            try ELFFile(Array(ELFFixture(loads: [], pvhEntry: nil).bytes.prefix(40)))
        }
    }

    /// Random bytes, and a valid image with random bytes overwritten, never
    /// crash the parser: each either parses (and then every segment it
    /// reports lies inside the file) or throws a BootError.
    @Test func randomAndMutatedFilesNeverCrashTheParser() async {
        let valid = ELFFixture(loads: [.init(paddr: 0x10_0000, data: Self.code, memsz: 0x2000),
                                       .init(paddr: 0x20_0000, data: Self.code, memsz: 5)], pvhEntry: 0x10_0000).bytes
        // Both outcomes must occur, or the inputs are not reaching the checks.
        let outcomes = Mutex((parsed: 0, refused: 0))
        await propertyCheck(count: 3000, input: Gen.int(in: 0...Int.max), Gen.int(in: 0...3)) { seed, mode in
            var rng = SplitMix(seed: UInt64(seed))
            var bytes: [UInt8]
            switch mode {
            case 0:  // Pure noise behind an ELF magic, so the parser gets past it.
                bytes = [0x7F, 0x45, 0x4C, 0x46] + (0..<Int(rng.next() % 300)).map { _ in UInt8(truncatingIfNeeded: rng.next()) }
            case 1:  // Noise with a plausible identification.
                bytes = [0x7F, 0x45, 0x4C, 0x46, UInt8(1 + rng.next() % 2), 1, 1] + (0..<Int(rng.next() % 400)).map { _ in UInt8(truncatingIfNeeded: rng.next()) }
            case 2:  // The valid image, truncated anywhere.
                bytes = Array(valid.prefix(Int(rng.next() % UInt64(valid.count))))
            default: // The valid image with a few bytes changed.
                bytes = valid
                for _ in 0..<(1 + rng.next() % 6) {
                    bytes[Int(rng.next() % UInt64(bytes.count))] = UInt8(truncatingIfNeeded: rng.next())
                }
            }
            do throws(BootError) {
                let elf = try ELFFile(bytes)
                for s in elf.segments where s.type == ELFFile.PT_LOAD || s.type == ELFFile.PT_NOTE {
                    #expect(s.offset + s.fileSize <= UInt64(bytes.count))
                }
                _ = try? elf.pvhEntry(bytes)
                _ = try? KernelImage.identify(bytes)
                outcomes.withLock { $0.parsed += 1 }
            } catch {
                #expect(!error.description.isEmpty)
                outcomes.withLock { $0.refused += 1 }
            }
        }
        let seen = outcomes.withLock { $0 }
        #expect(seen.parsed > 100 && seen.refused > 100, "\(seen)")
    }
}
