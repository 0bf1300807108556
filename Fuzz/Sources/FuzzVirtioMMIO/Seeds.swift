import FuzzSupport
import VfsvmMemory
import VfsvmTestSupport
import VfsvmVirtio

/// Seeds after VirtioMMIOTests: the Linux driver's initialization sequence
/// (reset, ACKNOWLEDGE, DRIVER, feature words, FEATURES_OK, queue setup,
/// DRIVER_OK), a kick, an interrupt acknowledged, config reads, a reset;
/// rings in RAM with chains a mock driver posted.
enum RegisterSeeds {
    typealias A = RegisterFuzzCase.Access

    static func setup(layout: RingLayout, features: UInt64, queueSize: UInt16, driver: MockDriver) -> [A] {
        var a: [A] = [A(write: false, offset: 0x000), A(write: false, offset: 0x004), A(write: false, offset: 0x008),
                      A(write: true, offset: 0x070, value: 0), A(write: true, offset: 0x070, value: 1), A(write: true, offset: 0x070, value: 3)]
        for word in 0..<2 {
            a += [A(write: true, offset: 0x014, value: UInt64(word)), A(write: false, offset: 0x010),
                  A(write: true, offset: 0x024, value: UInt64(word)), A(write: true, offset: 0x020, value: features >> (32 * UInt64(word)) & 0xffff_ffff)]
        }
        a += [A(write: true, offset: 0x070, value: 11), A(write: false, offset: 0x070),
              A(write: true, offset: 0x030, value: 0), A(write: false, offset: 0x034),
              A(write: true, offset: 0x038, value: UInt64(queueSize)),
              A(write: true, offset: 0x080, value: driver.descriptorTable.rawValue & 0xffff_ffff), A(write: true, offset: 0x084, value: driver.descriptorTable.rawValue >> 32),
              A(write: true, offset: 0x090, value: driver.driverArea.rawValue & 0xffff_ffff), A(write: true, offset: 0x094, value: driver.driverArea.rawValue >> 32),
              A(write: true, offset: 0x0a0, value: driver.deviceArea.rawValue & 0xffff_ffff), A(write: true, offset: 0x0a4, value: driver.deviceArea.rawValue >> 32),
              A(write: true, offset: 0x044, value: 1), A(write: true, offset: 0x070, value: 15),
              A(write: true, offset: 0x050, value: 0), A(write: false, offset: 0x060), A(write: true, offset: 0x064, value: 1),
              A(write: false, width: 1, offset: 0x100), A(write: false, width: 2, offset: 0x10e), A(write: false, offset: 0x0fc)]
        return a
    }

    static var all: [(name: String, bytes: [UInt8])] {
        var seeds: [(String, [UInt8])] = []
        for (name, layout, features) in [("split", RingLayout.split, UInt64(1) << 32),
                                         ("packed", .packed, UInt64(1) << 32 | 1 << 34 | 1 << 29),
                                         ("split-indirect-event", .split, UInt64(1) << 32 | 1 << 28 | 1 << 29)] {
            do {
                let memory = try GuestRAM.memory(layout: 0, chunks: [])
                let driver = try MockDriver(memory: memory, layout: layout, queueSize: 8, features: VirtioFeatures(rawValue: features),
                                            ringBase: GuestAddress(0x1000), arena: 0x4000..<0x10000)
                _ = try driver.post(request: Array(repeating: 0x41, count: 48), replyCapacity: 64)
                _ = try driver.post(request: [1, 2, 3], replyCapacity: 16, indirect: features & 1 << 28 != 0)
                var c = RegisterFuzzCase()
                c.chunks = try VirtqueueFuzzCase.chunks(of: memory)
                c.accesses = setup(layout: layout, features: features, queueSize: 8, driver: driver)
                if name == "split" { c.accesses += [A(write: true, offset: 0x070, value: 0), A(write: false, offset: 0x044)] }
                seeds.append(("mmio-" + name, c.encoded))
            } catch {
                fatalError("seed \(name): \(error)")
            }
        }
        return seeds
    }
}
