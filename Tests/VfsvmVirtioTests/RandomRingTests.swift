import PropertyBased
import Synchronization
import Testing
import VfsvmMemory
import VfsvmTestSupport
import VfsvmVirtio


/// A hostile driver writing random descriptors, ring entries, indices and
/// indirect tables: whatever it writes, `pop` returns a well-formed chain,
/// refuses the chain, reports nothing, or reports a fatal error; it never
/// crashes or hangs, and every chain it does return is inside guest memory,
/// readable-before-writable, at most 2^32 - 1 bytes.
@Suite struct RandomRingTests {
    static let memorySize = 1 << 20

    func junkDescriptor(_ rng: inout SplitMix, size: UInt16, tables: [GuestAddress], packed: Bool, wrap: Bool)
        -> (address: UInt64, length: UInt32, flags: UInt16, next: UInt16) {
        let address: UInt64
        var length: UInt32
        switch rng.next() % 6 {
        case 0: address = rng.next(); length = UInt32(truncatingIfNeeded: rng.next())
        case 1: address = UInt64(Self.memorySize) - rng.next() % 64; length = UInt32(rng.next() % 128)
        default: address = 0x40000 + rng.next() % 0x40000; length = UInt32(rng.next() % 512)
        }
        var flags = UInt16(truncatingIfNeeded: rng.next()) & 0x7   // NEXT, WRITE, INDIRECT at random
        var finalAddress = address
        if flags & 4 != 0, !tables.isEmpty, rng.next() % 4 != 0 {
            finalAddress = tables[Int(rng.next() % UInt64(tables.count))].rawValue
            length = [0, 8, 16, 32, 64, 48][Int(rng.next() % 6)]
        }
        if packed {
            // Mostly "available in this lap", sometimes anything.
            flags |= rng.next() % 5 == 0 ? UInt16(truncatingIfNeeded: rng.next()) & 0x8080
                                         : MockDriver.packedAvailFlags(wrap: wrap)
        }
        let next = UInt16(rng.next() % (UInt64(size) + 2))
        return (finalAddress, length, flags, next)
    }

    func check(_ chain: DescriptorChain, size: UInt16, memory: GuestMemory) {
        #expect(chain.readableLength + chain.writableLength <= Int(UInt32.max))
        #expect(chain.descriptorCount >= 1 && chain.descriptorCount <= size)
        #expect(chain.id < size)
        for r in chain.readable + chain.writable {
            #expect(r.length > 0)
            #expect((try? memory.checkRange(r.address, length: UInt64(r.length))) != nil)
        }
        #expect((try? chain.readableBuffers(memory)) != nil && (try? chain.writableBuffers(memory)) != nil)
    }

    @Test(arguments: RingLayout.allCases)
    func randomRingContentsNeverCrashTheDevice(_ layout: RingLayout) async {
        // Outcomes seen: chains, refusals, fatal errors (all must occur, or
        // the junk is not exercising the checks).
        let outcomes = Mutex((chains: 0, refused: 0, fatal: 0))
        await propertyCheck(count: 300, input: Gen.int(in: 0...Int.max), Gen.int(in: 0...4)) { seed, sizeLog in
            var rng = SplitMix(seed: UInt64(seed))
            let size = UInt16(1 << sizeLog)
            let driver = try MockDriver(layout: layout, queueSize: size, features: [.version1],
                                        memorySize: Self.memorySize)
            var queue = Virtqueue(maxSize: size)
            driver.configure(&queue)
            var features: VirtioFeatures = [.version1, .indirectDescriptors, .eventIndex]
            if layout == .packed { features.insert(.ringPacked) }
            try queue.activate(memory: driver.memory, features: features)
            let memory = driver.memory
            // A few indirect tables full of junk (split and packed formats alike).
            var tables: [GuestAddress] = []
            for t in 0..<3 {
                let table = GuestAddress(0x20000 + UInt64(t) * 0x100)
                for i in 0..<4 {
                    let d = junkDescriptor(&rng, size: 4, tables: [table], packed: false, wrap: true)
                    try driver.writeTableEntry(table: table, index: i, address: GuestAddress(d.address), length: d.length,
                                               flags: d.flags, next: d.next % 5)
                }
                tables.append(table)
            }
            for round in 0..<4 {
                for i in 0..<size {
                    let d = junkDescriptor(&rng, size: size, tables: tables, packed: layout == .packed, wrap: round % 2 == 0)
                    switch layout {
                    case .split:
                        try driver.writeSplitDescriptor(index: i, address: GuestAddress(d.address), length: d.length,
                                                        flags: d.flags, next: d.next)
                    case .packed:
                        try driver.writePackedDescriptor(slot: i, address: GuestAddress(d.address), length: d.length,
                                                         id: UInt16(rng.next() % (UInt64(size) + 1)), flags: d.flags)
                    }
                }
                if layout == .split {
                    for slot in 0..<UInt64(size) {
                        let head = UInt16(rng.next() % (UInt64(size) + UInt64(rng.next() % 8 == 0 ? 4 : 0)))
                        try memory.store(head, at: driver.driverArea.unchecked(plus: 4 + 2 * slot))
                    }
                    let jump = rng.next() % 10 == 0 ? UInt16(truncatingIfNeeded: rng.next()) : UInt16(rng.next() % UInt64(size + 1))
                    try driver.writeAvailIndex(queue.availState &+ jump)
                }
                var pops = 0
                popping: while pops < 4 * Int(size) {
                    pops += 1
                    do {
                        guard let chain = try queue.pop(memory) else { break popping }
                        check(chain, size: size, memory: memory)
                        outcomes.withLock { $0.chains += 1 }
                        try queue.pushUsed(id: chain.id, descriptorCount: chain.descriptorCount, length: 0, memory)
                    } catch let error as VirtqueueError {
                        guard case let .refusedChain(r) = error else {
                            #expect(error.isFatal)
                            outcomes.withLock { $0.fatal += 1 }
                            return   // the device would go NEEDS_RESET here
                        }
                        #expect(r.descriptorCount <= size)
                        outcomes.withLock { $0.refused += 1 }
                        try queue.pushUsed(id: r.id, descriptorCount: max(r.descriptorCount, 1), length: 0, memory)
                    }
                }
                _ = try queue.needsInterrupt(memory)
            }
        }
        let seen = outcomes.withLock { $0 }
        #expect(seen.chains > 0 && seen.refused > 0 && seen.fatal > 0, "\(seen)")
    }
}
