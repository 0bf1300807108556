import FuzzSupport
import VfsvmMemory
import VfsvmTestSupport
import VfsvmVirtio

/// Seeds after VirtioPCITests: memory decoding on, the capability list
/// walked, MSI-X programmed and enabled (or not: INTx), Linux's
/// virtio_pci_modern initialization through the common configuration
/// (reset, ACKNOWLEDGE, DRIVER, features, FEATURES_OK, queue setup with
/// vectors and 64-bit addresses, DRIVER_OK), a kick, the ISR read, a mask
/// and unmask, the PBA, config reads, a reset.
enum PCISeeds {
    typealias A = RegisterFuzzCase.Access

    static func cfg(_ offset: UInt16, _ width: Int = 4, write value: UInt64? = nil) -> A {
        A(write: value != nil, width: width, offset: 0x8000 | offset, value: value ?? 0)
    }

    static func setup(features: UInt64, queueSize: UInt16, driver: MockDriver, msix: Bool) -> [A] {
        var a: [A] = [cfg(0x00), cfg(0x08), cfg(0x34, 1), cfg(0x04, 2, write: 6), cfg(0x10), cfg(0x14),
                      cfg(0x10, write: 0xffff_ffff), cfg(0x10), cfg(0x10, write: 0), cfg(0x9a, 2), cfg(0x9c), cfg(0xa0)]
        if msix {
            for v in UInt16(0)..<3 {
                a += [A(write: true, offset: 0x4000 + 16 * v, value: 0xfee0_0000), A(write: true, offset: 0x4004 + 16 * v, value: 0),
                      A(write: true, offset: 0x4008 + 16 * v, value: 0x30), A(write: true, offset: 0x400c + 16 * v, value: 0)]
            }
            a += [cfg(0x9a, 2, write: 0x8000), A(write: true, width: 2, offset: 0x10, value: 0), A(write: false, width: 2, offset: 0x10)]
        }
        a += [A(write: true, width: 1, offset: 0x14, value: 0), A(write: true, width: 1, offset: 0x14, value: 1),
              A(write: true, width: 1, offset: 0x14, value: 3)]
        for word in UInt64(0)..<2 {
            a += [A(write: true, offset: 0x00, value: word), A(write: false, offset: 0x04),
                  A(write: true, offset: 0x08, value: word), A(write: true, offset: 0x0c, value: features >> (32 * word) & 0xffff_ffff)]
        }
        a += [A(write: true, width: 1, offset: 0x14, value: 11), A(write: false, width: 1, offset: 0x14), A(write: false, width: 2, offset: 0x12)]
        for q in UInt64(0)..<2 {
            a += [A(write: true, width: 2, offset: 0x16, value: q), A(write: false, width: 2, offset: 0x18),
                  A(write: true, width: 2, offset: 0x18, value: UInt64(q == 0 ? queueSize : 8))]
            if msix { a += [A(write: true, width: 2, offset: 0x1a, value: q + 1)] }
            a += [A(write: true, width: 8, offset: 0x20, value: driver.descriptorTable.rawValue),
                  A(write: true, width: 8, offset: 0x28, value: driver.driverArea.rawValue),
                  A(write: true, width: 8, offset: 0x30, value: driver.deviceArea.rawValue),
                  A(write: false, width: 2, offset: 0x1e), A(write: true, width: 2, offset: 0x1c, value: 1)]
        }
        a += [A(write: true, width: 1, offset: 0x14, value: 15), A(write: true, width: 2, offset: 0x3000, value: 0),
              A(write: false, width: 1, offset: 0x1000), A(write: false, width: 1, offset: 0x2000), A(write: false, width: 4, offset: 0x2004),
              A(write: true, offset: 0x401c, value: 1), A(write: false, width: 8, offset: 0x5000), A(write: true, offset: 0x401c, value: 0),
              cfg(0x9a, 2, write: 0xc000), cfg(0x9a, 2, write: 0x8000), cfg(0x06, 2),
              cfg(0x88, 1, write: 0), cfg(0x8c, write: 0x14), cfg(0x90, write: 1), cfg(0x94)]
        return a
    }

    static var all: [(name: String, bytes: [UInt8])] {
        var seeds: [(String, [UInt8])] = []
        for (name, layout, features, msix) in [("split-msix", RingLayout.split, UInt64(1) << 32, true),
                                               ("packed-msix", .packed, UInt64(1) << 32 | 1 << 34 | 1 << 29, true),
                                               ("split-intx", .split, UInt64(1) << 32 | 1 << 28 | 1 << 29, false)] {
            do {
                let memory = try GuestRAM.memory(layout: 0, chunks: [])
                let driver = try MockDriver(memory: memory, layout: layout, queueSize: 8, features: VirtioFeatures(rawValue: features),
                                            ringBase: GuestAddress(0x1000), arena: 0x4000..<0x10000)
                _ = try driver.post(request: Array(repeating: 0x41, count: 48), replyCapacity: 64)
                _ = try driver.post(request: [1, 2, 3], replyCapacity: 16, indirect: features & 1 << 28 != 0)
                var c = RegisterFuzzCase()
                c.transport = 1
                c.chunks = try VirtqueueFuzzCase.chunks(of: memory)
                c.accesses = setup(features: features, queueSize: 8, driver: driver, msix: msix)
                if name == "split-msix" { c.accesses += [A(write: true, width: 1, offset: 0x14, value: 0), A(write: false, width: 2, offset: 0x10)] }
                seeds.append(("pci-" + name, c.encoded))
            } catch {
                fatalError("seed \(name): \(error)")
            }
        }
        return seeds
    }
}
