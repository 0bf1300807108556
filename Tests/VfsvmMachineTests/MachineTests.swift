import Synchronization
import Testing
import VfsvmMachine

/// The board end to end under /dev/kvm, on PVH ELF images assembled here:
/// a few 32-bit instructions at the PVH entry (protected mode, paging off).
@Suite(.serialized) struct MachineTests {
    /// An ELF64 with one PT_LOAD at 1 MiB holding `code` and a PT_NOTE
    /// with XEN_ELFNOTE_PHYS32_ENTRY (18) pointing at it.
    static func pvhImage(_ code: [UInt8]) -> [UInt8] {
        func le(_ v: UInt64, _ n: Int) -> [UInt8] { (0..<n).map { UInt8(truncatingIfNeeded: v >> (8 * $0)) } }
        let load: UInt64 = 0x10_0000
        let phoff = 64, phnum = 2, noteOffset = phoff + 56 * phnum
        let note = le(4, 4) + le(4, 4) + le(18, 4) + Array("Xen\0".utf8) + le(load + 0x1000, 4)
        let codeOffset = 0x1000
        var elf = [0x7f, 0x45, 0x4c, 0x46, 2, 1, 1, 0] + [UInt8](repeating: 0, count: 8)  // ELF64, LSB, v1
        elf += le(2, 2) + le(62, 2) + le(1, 4)  // ET_EXEC, EM_X86_64, EV_CURRENT
        elf += le(load + 0x1000, 8) + le(UInt64(phoff), 8) + le(0, 8)  // entry, phoff, shoff
        elf += le(0, 4) + le(64, 2) + le(56, 2) + le(UInt64(phnum), 2) + le(64, 2) + le(0, 2) + le(0, 2)
        let total = UInt64(codeOffset + code.count)
        // PT_LOAD: the whole file at 1 MiB (the code lands at 1 MiB + 0x1000).
        elf += le(1, 4) + le(7, 4) + le(0, 8) + le(load, 8) + le(load, 8) + le(total, 8) + le(total, 8) + le(0x1000, 8)
        // PT_NOTE
        elf += le(4, 4) + le(4, 4) + le(UInt64(noteOffset), 8) + le(load + UInt64(noteOffset), 8) + le(load + UInt64(noteOffset), 8)
            + le(UInt64(note.count), 8) + le(UInt64(note.count), 8) + le(4, 8)
        elf += note
        elf += [UInt8](repeating: 0, count: codeOffset - elf.count)
        return elf + code
    }

    static func run(_ code: [UInt8]) throws -> (MachineStop, [UInt8]) {
        let console = Mutex<[UInt8]>([])
        let machine = try Machine.build(MachineConfig(
            memorySize: 64 << 20, kernel: pvhImage(code), consoleOutput: { b in console.withLock { $0.append(b) } }))
        let stop = machine.run()
        return (stop, console.withLock { $0 })
    }

    @Test func aPVHGuestPrintsOnCOM1AndExitsThroughTheDebugPort() throws {
        // mov dx, 0x3f8; mov al, 'K'; out dx, al; mov dx, 0x501; mov al, 0x21; out dx, al; hlt
        let (stop, console) = try Self.run([0x66, 0xba, 0xf8, 0x03, 0xb0, 0x4b, 0xee, 0x66, 0xba, 0x01, 0x05, 0xb0, 0x21, 0xee, 0xf4])
        #expect(stop == .debugExit(0x21))
        #expect(stop.exitStatus == 67)
        #expect(console == Array("K".utf8))
    }

    @Test func ebxHoldsTheHVMStartInfoWithItsMagic() throws {
        // mov eax, [ebx]; cmp eax, 0x336ec578; jne +4; mov al, 1; jmp +2; mov al, 2; mov dx, 0x501; out dx, al
        let (stop, _) = try Self.run([0x8b, 0x03, 0x3d, 0x78, 0xc5, 0x6e, 0x33, 0x75, 0x04, 0xb0, 0x01, 0xeb, 0x02, 0xb0, 0x02,
                                      0x66, 0xba, 0x01, 0x05, 0xee, 0xf4])
        #expect(stop == .debugExit(1))
    }

    @Test func anI8042ResetAndATripleFaultEndTheVMAsAReboot() throws {
        // mov al, 0xfe; out 0x64, al; hlt
        #expect(try Self.run([0xb0, 0xfe, 0xe6, 0x64, 0xf4]).0 == .reboot("i8042 reset"))
        // ud2 with no IDT: #UD, #DF, shutdown.
        let (stop, _) = try Self.run([0x0f, 0x0b])
        #expect(stop.exitStatus == 0)
        guard case .reboot = stop else { Issue.record("expected a reboot, got \(stop)"); return }
    }

    @Test func aKernelThatIsNoKernelIsRefusedBeforeAnythingRuns() {
        #expect(throws: MachineError.self) {
            try Machine.build(MachineConfig(memorySize: 64 << 20, kernel: Array("not a kernel".utf8), consoleOutput: { _ in }))
        }
    }
}
