import Testing
@testable import VfsvmBoot

@Suite struct KernelImageTests {
    @Test func identifiesABzImage() throws {
        let image = try KernelImage.identify(BzImageFixture().bytes)
        guard case let .bzImage(h) = image else { Issue.record("\(image)"); return }
        #expect(h.version == 0x020F)
        #expect(h.setupSects == 4)
        #expect(h.kernelOffset == 5 * 512)          // boot sector + 4 setup sectors
        #expect(h.headerLength == 0x26C - 0x1F1)    // 0x202 + jump byte 0x6A, from 0x1F1
        #expect(h.relocatable && h.prefAddress == 0x100_0000 && h.initSize == 0x40_0000)
        #expect(h.cmdlineSize == 0x7FF && h.initrdAddrMax == 0x7FFF_FFFF)
        #expect(image.description == "bzImage, boot protocol 2.15")
        // setup_sects 0 means 4 (boot.rst: "for backwards compatibility").
        var zero = BzImageFixture()
        zero.setupSects = 0
        guard case let .bzImage(z) = try KernelImage.identify(zero.bytes) else { Issue.record("not a bzImage"); return }
        #expect(z.kernelOffset == 5 * 512)
    }

    @Test func refusesWhatItCannotBoot() throws {
        #expect(throws: BootError.unknownKernelFormat) { try KernelImage.identify([UInt8](repeating: 0x90, count: 4096)) }
        #expect(throws: BootError.unknownKernelFormat) { try KernelImage.identify([]) }
        var old = BzImageFixture()
        old.version = 0x0204
        #expect(throws: BootError.bootProtocolTooOld(version: 0x0204)) { try KernelImage.identify(old.bytes) }
        #expect(BootError.bootProtocolTooOld(version: 0x0204).description
            == "kernel image: boot protocol 2.04 is older than 2.06, the oldest vfsvm loads")
        // Truncated before the end of the header the jump byte announces.
        #expect(throws: BootError.truncated(what: "the setup header", need: 0x264, have: 0x250)) {
            try KernelImage.identify(Array(BzImageFixture().bytes.prefix(0x250)))
        }
        // A header with no kernel after the setup sectors.
        #expect(throws: BootError.truncated(what: "the protected-mode kernel after 4 setup sectors", need: 2561, have: 2560)) {
            try KernelImage.identify(Array(BzImageFixture().bytes.prefix(5 * 512)))
        }
        // Identified, but no 64-bit entry: 2.10 predates xloadflags.
        var v210 = BzImageFixture()
        v210.version = 0x020A
        guard case let .bzImage(h) = try KernelImage.identify(v210.bytes) else { Issue.record("not a bzImage"); return }
        #expect(throws: BootError.no64BitEntry(version: 0x020A, xloadflags: 0)) { try h.check64BitEntry() }
        #expect(BootError.no64BitEntry(version: 0x020A, xloadflags: 0).description
            == "kernel image: no 64-bit entry point (boot protocol 2.10, xloadflags 0x0; vfsvm needs protocol 2.12 with XLF_KERNEL_64)")
        var no64 = BzImageFixture()
        no64.xloadflags = 0x0002
        guard case let .bzImage(h2) = try KernelImage.identify(no64.bytes) else { Issue.record("not a bzImage"); return }
        #expect(throws: BootError.no64BitEntry(version: 0x020F, xloadflags: 2)) { try h2.check64BitEntry() }
        var zImage = BzImageFixture()
        zImage.loadflags = 0
        guard case let .bzImage(h3) = try KernelImage.identify(zImage.bytes) else { Issue.record("not a bzImage"); return }
        #expect(throws: BootError.notLoadedHigh) { try h3.check64BitEntry() }
    }
}

import PropertyBased
import Synchronization
import VfsvmTestSupport

@Suite struct HostileKernelTests {
    /// A bzImage with its setup header bytes changed at random, and a PVH
    /// ELF with header and program header bytes changed, go all the way
    /// through `loadKernel`: each loads inside guest memory or is refused
    /// with a sentence, never a trap.
    @Test func mutatedKernelsNeverCrashTheLoader() async throws {
        let memory = try guestMemory(64 << 20)
        let bz = BzImageFixture().bytes
        let elf = ELFFixture(loads: [.init(paddr: 0x10_0000, data: [0xF4, 0xF4], memsz: 0x2000)], pvhEntry: 0x10_0000).bytes
        let outcomes = Mutex((loaded: 0, refused: 0))
        await propertyCheck(count: 1500, input: Gen.int(in: 0...Int.max), Gen.bool) { seed, pvh in
            var rng = SplitMix(seed: UInt64(seed))
            var bytes = pvh ? elf : bz
            // Where the fields are: the setup header (0x1F1-0x26C), or the
            // ELF header and its two program headers (0-0xB0).
            let field = pvh ? 0..<(64 + 2 * 56) : 0x1F1..<0x26C
            for _ in 0..<(1 + rng.next() % 4) {
                bytes[field.lowerBound + Int(rng.next() % UInt64(field.count))] = UInt8(truncatingIfNeeded: rng.next())
            }
            do throws(BootError) {
                _ = try loadKernel(bytes, config: BootConfig(memorySize: 64 << 20, cmdline: Array("x".utf8),
                                                            initrd: [1, 2, 3]), into: memory)
                outcomes.withLock { $0.loaded += 1 }
            } catch {
                #expect(!error.description.isEmpty)
                outcomes.withLock { $0.refused += 1 }
            }
        }
        let seen = outcomes.withLock { $0 }
        #expect(seen.loaded > 100 && seen.refused > 100, "\(seen)")
    }
}
