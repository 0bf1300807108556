import FuzzSupport
import VfsvmMemory
import VfsvmTestSupport
import VfsvmVirtio

/// Seeds after RingTests and HostileDriverTests: rings a mock driver laid
/// out in each RAM layout, split and packed, with one- and three-buffer
/// chains, indirect tables, EVENT_IDX, a wrapped packed ring, and a second
/// batch posted after the first drain; plus the hostile shapes (a looping
/// chain, a head out of range, an avail index jump).
enum VirtqueueSeeds {
    struct Shape {
        var name: String
        var layout: RingLayout
        var features: VirtioFeatures = [.version1]
        var ram: UInt8 = 0
        var size: UInt16 = 8
        var indirect = false
    }

    static func seed(_ s: Shape, hostile: ((MockDriver) throws -> Void)? = nil) throws -> [UInt8] {
        let memory = try GuestRAM.memory(layout: s.ram, chunks: [])
        let start = memory.regions[0].start.rawValue
        let end = memory.regions[0].end
        let driver = try MockDriver(memory: memory, layout: s.layout, queueSize: s.size, features: s.features,
                                    ringBase: GuestAddress(start + 0x1000), arena: (start + 0x4000)..<end)
        _ = try driver.post(request: Array(repeating: 0x5a, count: 40), replyCapacity: 64)
        _ = try driver.add(readable: [[1, 2, 3], [4, 5]], writable: [32, 16], indirect: s.indirect)
        try hostile?(driver)
        var c = VirtqueueFuzzCase()
        c.packed = s.layout == .packed
        c.eventIndex = s.features.contains(.eventIndex)
        c.indirect = s.features.contains(.indirectDescriptors)
        c.layout = s.ram
        c.size = s.size
        c.descriptorTable = UInt32(driver.descriptorTable.rawValue)
        c.driverArea = UInt32(driver.driverArea.rawValue)
        c.deviceArea = UInt32(driver.deviceArea.rawValue)
        c.first = try VirtqueueFuzzCase.chunks(of: memory)
        if hostile == nil {
            // The driver posts more once the first chains are in flight.
            _ = try driver.post(request: [9, 9, 9, 9], replyCapacity: 8)
            c.second = try VirtqueueFuzzCase.chunks(of: memory)
        }
        return c.encoded
    }

    static var all: [(name: String, bytes: [UInt8])] {
        var shapes: [Shape] = []
        for layout in RingLayout.allCases {
            let p = layout == .packed ? "packed" : "split"
            shapes.append(Shape(name: "\(p)-plain", layout: layout))
            shapes.append(Shape(name: "\(p)-event-idx", layout: layout, features: [.version1, .eventIndex]))
            shapes.append(Shape(name: "\(p)-indirect", layout: layout, features: [.version1, .indirectDescriptors], indirect: true))
            shapes.append(Shape(name: "\(p)-adjacent-regions", layout: layout, ram: 1))
            shapes.append(Shape(name: "\(p)-high-ram", layout: layout, ram: 3, size: layout == .packed ? 11 : 16))
        }
        var seeds: [(String, [UInt8])] = []
        do {
            for s in shapes { seeds.append((s.name, try seed(s))) }
            let split = Shape(name: "", layout: .split)
            seeds.append(("split-looping-chain", try seed(split) { d in
                try d.writeSplitDescriptor(index: 0, address: GuestAddress(0x4000), length: 16, flags: 1, next: 0)
                try d.publishRawHead(0)
            }))
            seeds.append(("split-head-out-of-range", try seed(split) { d in try d.publishRawHead(200) }))
            seeds.append(("split-avail-jump", try seed(split) { d in try d.writeAvailIndex(40) }))
            seeds.append(("packed-unterminated", try seed(Shape(name: "", layout: .packed)) { d in
                for slot in UInt16(0)..<8 {
                    try d.writePackedDescriptor(slot: slot, address: GuestAddress(0x4000), length: 8, id: slot, flags: 1 | d.currentAvailFlags)
                }
            }))
        } catch {
            fatalError("virtqueue seeds: \(error)")
        }
        return seeds
    }
}
