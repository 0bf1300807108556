import Foundation
import Testing
import VfsvmMemory
@testable import VfsvmBoot

/// The loaders against the real thing: Debian's kernel from Images/out
/// (`make images`), the bzImage (vmlinuz) and its uncompressed ELF
/// (vmlinux, with the PVH note), loaded into guest memory the way
/// `vfsvm run` will. Booting them needs hardware KVM; this checks what the
/// kernel will find.
@Suite struct DebianKernelTests {
    static let memorySize: UInt64 = 256 << 20
    static let out = packageRoot.appendingPathComponent("Images/out")

    static func read(_ name: String) -> [UInt8]? {
        let url = out.appendingPathComponent(name)
        guard let data = FileManager.default.contents(atPath: url.path) else {
            Issue.record("\(url.path) is missing: run `make images` (the Makefile's unit-test target does)")
            return nil
        }
        return [UInt8](data)
    }

    static var cmdline: [UInt8] {
        let text = read("cmdline").map { String(decoding: $0, as: UTF8.self) } ?? ""
        return Array(text.trimmingCharacters(in: .whitespacesAndNewlines).utf8)
    }

    @Test func bzImage() throws {
        guard let kernel = Self.read("vmlinuz"), let initrd = Self.read("initramfs.cpio.gz") else { return }
        guard case let .bzImage(h) = try KernelImage.identify(kernel) else { Issue.record("vmlinuz is not a bzImage"); return }
        #expect(h.version >= 0x020C && h.xloadflags & 1 != 0)      // 2.12+ with XLF_KERNEL_64
        #expect(h.relocatable)
        let memory = try guestMemory(Self.memorySize)
        let rsdp = try writeACPI(ACPIConfig(cpus: 1, mmioDevices: [MMIODevice(base: X86Layout.virtioMMIOWindow(0), gsi: 5)]), into: memory)
        let config = BootConfig(memorySize: Self.memorySize, cmdline: Self.cmdline, initrd: initrd, rsdpAddress: rsdp)
        let entry = try loadKernel(kernel, config: config, into: memory)

        // The protected-mode kernel, byte for byte, at pref_address.
        let load = h.prefAddress
        #expect(try peek(memory, load, kernel.count - h.kernelOffset) == Array(kernel[h.kernelOffset...]))
        #expect(entry.mode == .linux64 && entry.rip == load + 0x200 && entry.rsi == X86Layout.zeroPage)

        let zp = try peek(memory, X86Layout.zeroPage, 4096)
        #expect(Array(zp[0x202..<0x206]) == Array("HdrS".utf8))
        #expect(le(UInt16.self, zp, 0x206) == h.version)
        #expect(zp[0x210] == 0xFF)                                  // type_of_loader
        #expect(zp[0x211] & 0x81 == 0x81)                           // LOADED_HIGH | CAN_USE_HEAP
        #expect(le(UInt32.self, zp, 0x228) == 0x2_0000)             // cmd_line_ptr
        #expect(try peek(memory, 0x2_0000, Self.cmdline.count + 1) == Self.cmdline + [0])
        let ramdisk = UInt64(le(UInt32.self, zp, 0x218)), ramdiskSize = UInt64(le(UInt32.self, zp, 0x21C))
        #expect(ramdiskSize == UInt64(initrd.count))
        #expect(ramdisk % 4096 == 0)
        #expect(ramdisk >= h.prefAddress + UInt64(h.initSize))      // above the kernel's whole init_size
        #expect(ramdisk + ramdiskSize - 1 <= UInt64(h.initrdAddrMax))
        #expect(ramdisk + ramdiskSize <= Self.memorySize)
        #expect(try peek(memory, ramdisk, initrd.count) == initrd)
        #expect(le(UInt64.self, zp, 0x070) == 0xE_0000)             // acpi_rsdp_addr
        #expect(zp[0x1E8] == 5)                                     // e820_entries
        #expect(le(UInt64.self, zp, 0x2D0 + 4 * 20 + 8) == Self.memorySize - 0x10_0000)   // RAM from 1 MiB to the end
    }

    @Test func pvhVmlinux() throws {
        guard let kernel = Self.read("vmlinux"), let initrd = Self.read("initramfs.cpio.gz") else { return }
        guard case let .pvh(entryPoint, elfClass) = try KernelImage.identify(kernel) else {
            Issue.record("vmlinux has no PVH entry"); return
        }
        #expect(elfClass == 64)
        let elf = try ELFFile(kernel)
        let memory = try guestMemory(Self.memorySize)
        let config = BootConfig(memorySize: Self.memorySize, cmdline: Self.cmdline, initrd: initrd, rsdpAddress: 0xE_0000)
        let entry = try loadKernel(kernel, config: config, into: memory)
        #expect(entry.mode == .pvh32 && entry.rip == UInt64(entryPoint) && entry.rbx == X86Layout.pvhStartInfo)

        // Every PT_LOAD segment's file bytes at its physical address, the rest zero.
        var end: UInt64 = 0
        #expect(elf.loadSegments.count >= 2)
        for (_, s) in elf.loadSegments {
            #expect(try peek(memory, s.physicalAddress, Int(s.fileSize)) == Array(kernel[Int(s.offset)..<Int(s.offset + s.fileSize)]))
            if s.memorySize > s.fileSize {
                let tail = try peek(memory, s.physicalAddress + s.fileSize, Int(s.memorySize - s.fileSize))
                #expect(tail.allSatisfy { $0 == 0 })
            }
            end = max(end, s.physicalAddress + s.memorySize)
        }
        let info = try peek(memory, X86Layout.pvhStartInfo, 56)
        #expect(le(UInt32.self, info, 0) == 0x336E_C578)            // magic
        #expect(le(UInt32.self, info, 4) == 1)                      // version
        #expect(le(UInt32.self, info, 12) == 1)                     // nr_modules
        #expect(le(UInt64.self, info, 24) == 0x2_0000)              // cmdline_paddr
        #expect(le(UInt64.self, info, 32) == 0xE_0000)              // rsdp_paddr
        #expect(le(UInt32.self, info, 48) == 5)                     // memmap_entries
        let module = try peek(memory, le(UInt64.self, info, 16), 16)
        let address = le(UInt64.self, module, 0)
        #expect(le(UInt64.self, module, 8) == UInt64(initrd.count))
        #expect(address >= end && address % 4096 == 0)
        #expect(try peek(memory, address, initrd.count) == initrd)
    }
}
