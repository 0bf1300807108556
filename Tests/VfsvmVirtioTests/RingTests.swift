import Glibc
import Testing
import VfsvmMemory
import VfsvmSys
import VfsvmTestSupport
import VfsvmVirtio

/// Normal operation of both layouts (virtio 1.2, 2.7 split, 2.8 packed).
@Suite struct RingTests {
    @Test(arguments: RingLayout.allCases)
    func aRequestAndItsReplyCrossTheRing(_ layout: RingLayout) throws {
        var h = try Harness(layout)
        let request: [UInt8] = [1, 2, 3, 4, 5]
        let id = try h.driver.post(request: request, replyCapacity: 16)
        let chain = try h.popOne()
        #expect(chain.id == id)
        #expect(chain.descriptorCount == 2)
        #expect(chain.readableLength == 5 && chain.writableLength == 16)
        #expect(try chain.readableBuffers(h.memory).bytes(at: 0, count: 5) == request)
        #expect(try h.queue.pop(h.memory) == nil)
        try h.complete(chain, reply: [9, 8, 7])
        #expect(try h.queue.needsInterrupt(h.memory))
        let done = try h.driver.collect()
        #expect(done == [MockCompletion(id: id, length: 3, reply: [9, 8, 7])])
        // Nothing pushed since: no second interrupt.
        #expect(try !h.queue.needsInterrupt(h.memory))
    }

    @Test(arguments: RingLayout.allCases, [false, true])
    func buffersKeepTheirOrder(_ layout: RingLayout, indirect: Bool) throws {
        var h = try Harness(layout)
        let a = bytes(10, seed: 1), b = bytes(3, seed: 2)
        let id = try h.driver.add(readable: [a, b], writable: [4, 6], indirect: indirect)
        let chain = try h.popOne()
        #expect(chain.id == id)
        #expect(chain.descriptorCount == (indirect ? 1 : 4))
        #expect(chain.readable.map(\.length) == [10, 3])
        #expect(chain.writable.map(\.length) == [4, 6])
        #expect(try chain.readableBuffers(h.memory).bytes(at: 0, count: 13) == a + b)
        // A reply spanning both writable buffers arrives in order.
        try h.complete(chain, reply: Array(1...10))
        #expect(try h.driver.collect().first?.reply == Array(1...10))
    }

    /// A chain keeps its first four buffers inline and all of them in an
    /// array past that: at 3, 4, 5 and 9 buffers (split between the halves
    /// every way round) each half has its lengths, bytes and reply in order.
    @Test(arguments: RingLayout.allCases, [(1, 2), (2, 2), (3, 1), (1, 4), (4, 1), (5, 4)])
    func buffersPastTheInlineFourKeepTheirOrder(_ layout: RingLayout, shape: (readable: Int, writable: Int)) throws {
        var h = try Harness(layout, size: 16)
        let readable = (0..<shape.readable).map { bytes(3 + $0, seed: UInt8($0)) }
        let writable = (0..<shape.writable).map { UInt32(2 + $0) }
        let id = try h.driver.add(readable: readable, writable: writable)
        let chain = try h.popOne()
        #expect(chain.id == id)
        #expect(chain.readable.map(\.length) == readable.map { UInt32($0.count) })
        #expect(chain.writable.map(\.length) == writable)
        #expect(chain.readableLength == readable.joined().count)
        #expect(chain.writableLength == Int(writable.reduce(0, +)))
        #expect(try chain.readableBuffers(h.memory).bytes(at: 0, count: chain.readableLength) == Array(readable.joined()))
        #expect(try chain.writableBuffers(h.memory).segments.map(\.count) == writable.map(Int.init))
        let reply = (0..<chain.writableLength).map { UInt8($0 + 1) }
        try h.complete(chain, reply: reply)
        #expect(try h.driver.collect().first?.reply == reply)
    }

    /// A half of one buffer inside one region is held as one inline piece
    /// (no array): copies, iovecs, prefixes and short writes see it as they
    /// see any list.
    @Test(arguments: RingLayout.allCases)
    func aOneBufferHalfIsOneInlinePiece(_ layout: RingLayout) throws {
        var h = try Harness(layout)
        let request = bytes(24, seed: 5)
        try h.driver.post(request: request, replyCapacity: 16)
        let chain = try h.popOne()
        let r = try chain.readableBuffers(h.memory)
        #expect(r.segments.count == 1 && r.byteCount == 24)
        #expect(try r.bytes(at: 5, count: 10) == Array(request[5..<15]))
        #expect(r.withIOVecs(offset: 20, length: 100) { $0.map(\.iov_len) } == [4])
        #expect(try r.prefix(7).bytes(at: 0, count: 7) == Array(request[0..<7]))
        #expect(r.withSegments { $0.count } == 1)
        let w = try chain.writableBuffers(h.memory)
        #expect(throws: GuestMemoryError.partialBuffer(expected: 4, completed: 2)) { try w.write([1, 2, 3, 4], at: 14) }
        try h.complete(chain, reply: [7, 7])
        #expect(try h.driver.collect().first?.reply == [7, 7])
    }

    /// A half of two buffers, each inside one region (a READ's out-header
    /// and data, as Linux lays them out), is held as two inline pieces: the
    /// iovecs, copies across the boundary and a preadv into it put every
    /// byte where the driver expects it.
    @Test(arguments: RingLayout.allCases)
    func aTwoBufferHalfIsTwoInlinePieces(_ layout: RingLayout) throws {
        var h = try Harness(layout)
        try h.driver.add(readable: [bytes(40, seed: 1)], writable: [16, 4096])
        let chain = try h.popOne()
        let w = try chain.writableBuffers(h.memory)
        #expect(w.byteCount == 16 + 4096)
        #expect(w.withSegments { $0.map(\.count) } == [16, 4096])
        #expect(w.segments.map(\.count) == [16, 4096])
        #expect(w.withIOVecs(offset: 10, length: 20) { $0.map(\.iov_len) } == [6, 14])
        let header = bytes(16, seed: 9)
        try w.write(header, at: 0)

        var path = Array("/tmp/vfsvm-ring-two-XXXXXX".utf8CString)
        let raw = path.withUnsafeMutableBufferPointer { mkstemp($0.baseAddress!) }
        try #require(raw >= 0)
        path.withUnsafeBufferPointer { _ = unlink($0.baseAddress!) }
        let fd = FileDescriptor(owning: raw)
        let data = bytes(5000, seed: 4)
        #expect(data.withUnsafeBytes { pwrite(raw, $0.baseAddress, $0.count, 0) } == 5000)
        // Into the data buffer, from 100 bytes into the file; then one read
        // that straddles both pieces.
        #expect(try w.read(from: fd, fileOffset: 100, into: 16, count: 4096) == 4096)
        #expect(try w.bytes(at: 0, count: 16) == header)
        #expect(try w.bytes(at: 16, count: 4096) == Array(data[100..<4196]))
        #expect(try w.read(from: fd, fileOffset: 0, into: 8, count: 64) == 64)
        #expect(try w.bytes(at: 8, count: 64) == Array(data[0..<64]))
        let reply = try w.bytes(at: 0, count: w.byteCount)
        try h.complete(chain, reply: reply)
        #expect(try h.driver.collect().first?.reply == reply)
    }

    /// Zero-length descriptors are accepted and carry no range (the spec
    /// gives no minimum for len; nothing is accessed).
    @Test(arguments: RingLayout.allCases)
    func zeroLengthDescriptorsAccepted(_ layout: RingLayout) throws {
        var h = try Harness(layout)
        try h.driver.add(readable: [[], [1, 2]], writable: [0, 4])
        let chain = try h.popOne()
        #expect(chain.descriptorCount == 4)
        #expect(chain.readable.count == 1 && chain.writable.count == 1)
        #expect(chain.readableLength == 2 && chain.writableLength == 4)
    }

    /// A buffer spanning two adjacent memory regions is fine.
    @Test(arguments: RingLayout.allCases)
    func bufferAcrossRegions(_ layout: RingLayout) throws {
        let memory = try GuestMemory(regions: [
            GuestRegion.memfd(at: GuestAddress(0), size: 0x10000),
            GuestRegion.memfd(at: GuestAddress(0x10000), size: 0x10000),
        ])
        let driver = try MockDriver(memory: memory, layout: layout, queueSize: 4)
        var queue = try driver.makeQueue()
        let data = bytes(32, seed: 3)
        try memory.writeBytes(data, at: GuestAddress(0x10000 - 16))
        try driver.addChain([MockSegment(address: GuestAddress(0x10000 - 16), length: 32, writable: false)])
        let chain = try #require(try queue.pop(memory))
        #expect(try chain.readableBuffers(memory).bytes(at: 0, count: 32) == data)
        #expect(try chain.readableBuffers(memory).segments.count == 2)
    }

    @Test(arguments: RingLayout.allCases)
    func manyInFlightCompletedOutOfOrder(_ layout: RingLayout) throws {
        var h = try Harness(layout, size: 8)
        var ids: [UInt16] = []
        for i in 0..<4 { ids.append(try h.driver.post(request: [UInt8(i)], replyCapacity: 4)) }
        var chains: [DescriptorChain] = []
        while let c = try h.queue.pop(h.memory) { chains.append(c) }
        #expect(chains.map(\.id) == ids)
        for c in chains.reversed() {
            let first = try c.readableBuffers(h.memory).bytes(at: 0, count: 1)
            try h.complete(c, reply: first + [0xAA])
        }
        let done = try h.driver.collect()
        #expect(done.map(\.id) == ids.reversed())
        #expect(done.map(\.reply) == (0..<4).reversed().map { [UInt8($0), 0xAA] })
        // The driver can reuse everything.
        #expect(h.driver.freeDescriptorCount == 8)
    }

    // MARK: Activation checks

    @Test func splitSizeMustBePowerOfTwo() throws {
        let driver = try MockDriver(layout: .split, queueSize: 8)
        var q = Virtqueue(maxSize: 16)
        driver.configure(&q)
        q.size = 6
        #expect(throws: VirtqueueError.invalidSize(size: 6, maxSize: 16, packed: false)) {
            try q.activate(memory: driver.memory, features: [.version1])
        }
        q.size = 0
        #expect(throws: VirtqueueError.invalidSize(size: 0, maxSize: 16, packed: false)) {
            try q.activate(memory: driver.memory, features: [.version1])
        }
        q.size = 32
        #expect(throws: VirtqueueError.invalidSize(size: 32, maxSize: 16, packed: false)) {
            try q.activate(memory: driver.memory, features: [.version1])
        }
        #expect(!q.isActive)
        #expect(throws: VirtqueueError.notActive) { try q.pop(driver.memory) }
    }

    /// 2.8: packed queue size may be any value up to 32768.
    @Test func packedSizeAnyValue() throws {
        var h = try Harness(.packed, size: 6)
        try h.driver.post(request: [1], replyCapacity: 1)
        #expect(try h.queue.pop(h.memory) != nil)
        #expect(h.queue.layout == .packed)
    }

    @Test(arguments: RingLayout.allCases)
    func misalignedAreasRefused(_ layout: RingLayout) throws {
        let driver = try MockDriver(layout: layout, queueSize: 8)
        var q = Virtqueue(maxSize: 8)
        driver.configure(&q)
        q.descriptorTable = GuestAddress(0x1008)
        #expect(throws: VirtqueueError.misaligned(.descriptorTable, GuestAddress(0x1008), alignment: 16)) {
            try q.activate(memory: driver.memory, features: driver.features)
        }
        driver.configure(&q)
        q.deviceArea = GuestAddress(driver.deviceArea.rawValue + 2)
        #expect(throws: VirtqueueError.misaligned(.deviceArea, q.deviceArea, alignment: 4)) {
            try q.activate(memory: driver.memory, features: driver.features)
        }
        driver.configure(&q)
        q.driverArea = GuestAddress(driver.driverArea.rawValue + 1)
        #expect(throws: VirtqueueError.misaligned(.driverArea, q.driverArea, alignment: layout == .split ? 2 : 4)) {
            try q.activate(memory: driver.memory, features: driver.features)
        }
    }

    @Test(arguments: RingLayout.allCases)
    func areasOutsideMemoryRefused(_ layout: RingLayout) throws {
        let driver = try MockDriver(layout: layout, queueSize: 8)
        var q = Virtqueue(maxSize: 8)
        driver.configure(&q)
        // The device area starts at the first byte past guest memory.
        q.deviceArea = GuestAddress(driver.memory.size)
        let length: UInt64 = layout == .split ? 6 + 8 * 8 : 4
        #expect(throws: VirtqueueError.areaOutOfRange(.deviceArea, .outOfRange(address: q.deviceArea, length: length))) {
            try q.activate(memory: driver.memory, features: driver.features)
        }
        driver.configure(&q)
        q.descriptorTable = GuestAddress(UInt64.max - 15)
        #expect(throws: VirtqueueError.self) { try q.activate(memory: driver.memory, features: driver.features) }
        #expect(!q.isActive)
    }

    // MARK: Wrap-around

    /// Split indices are free-running 16-bit counters (2.7.6): they wrap at 65536.
    @Test func splitIndexWrapsAt65536() throws {
        var h = try Harness(.split, size: 4, splitStartIndex: 65530)
        for round in 0..<20 {
            let id = try h.driver.post(request: [UInt8(round)], replyCapacity: 2)
            let chain = try h.popOne()
            #expect(chain.id == id)
            try h.complete(chain, reply: [UInt8(round), 0x55])
            let done = try h.driver.collect()
            #expect(done == [MockCompletion(id: id, length: 2, reply: [UInt8(round), 0x55])])
        }
        #expect(h.queue.availState == 65530 &+ 20)
        #expect(h.queue.usedState == 14)
    }

    /// Packed wrap counters flip every lap (2.8.1), over many laps, with
    /// chains of 1 to 3 descriptors on a ring of 5 (not a power of two).
    @Test(arguments: [false, true])
    func packedWrapCountersOverManyLaps(indirect: Bool) throws {
        var h = try Harness(.packed, size: 5)
        var slots = 0
        for round in 0..<300 {
            let parts = round % 3 + 1
            let readable = (0..<parts).map { bytes(4, seed: UInt8(truncatingIfNeeded: round + $0)) }
            let id = try h.driver.add(readable: readable, writable: [8], indirect: indirect)
            let chain = try h.popOne()
            #expect(chain.id == id)
            #expect(try chain.readableBuffers(h.memory).bytes(at: 0, count: 4 * parts) == readable.flatMap { $0 })
            try h.complete(chain, reply: [UInt8(truncatingIfNeeded: round)])
            #expect(try h.driver.collect().map(\.reply) == [[UInt8(truncatingIfNeeded: round)]])
            slots += Int(chain.descriptorCount)
        }
        #expect(slots / 5 >= 60)   // at least 60 laps
        // availState = slot | wrap << 15, and both cursors agree.
        let wrap: UInt16 = (slots / 5) % 2 == 0 ? 0x8000 : 0
        #expect(h.queue.availState == UInt16(slots % 5) | wrap)
        #expect(h.queue.usedState == h.queue.availState)
    }

    /// vhost-user GET/SET_VRING_BASE: a new queue resumes where the old one stopped.
    @Test(arguments: RingLayout.allCases)
    func ringBaseRestores(_ layout: RingLayout) throws {
        var h = try Harness(layout, size: 4)
        for i in 0..<6 {
            try h.driver.post(request: [UInt8(i)], replyCapacity: 0)
            try h.complete(try h.popOne(), reply: [])
            _ = try h.driver.collect()
        }
        let avail = h.queue.availState, used = h.queue.usedState
        if layout == .packed { #expect(avail == 2) } else { #expect(avail == 6) }  // lap 2 of 4: wrap 0
        var fresh = Virtqueue(maxSize: 4)
        h.driver.configure(&fresh)
        fresh.availState = avail
        fresh.usedState = used
        try fresh.activate(memory: h.memory, features: h.driver.features)
        let id = try h.driver.post(request: [42], replyCapacity: 1)
        let chain = try #require(try fresh.pop(h.memory))
        #expect(chain.id == id)
        try fresh.pushUsed(id: chain.id, descriptorCount: chain.descriptorCount, length: 0, h.memory)
        #expect(try h.driver.collect().map(\.id) == [id])
    }

    /// A split queue restarted with only the avail index (vhost-user)
    /// takes its used index from the ring.
    @Test func splitUsedIndexFromRing() throws {
        let h = try Harness(.split, size: 4, splitStartIndex: 1000)
        var fresh = Virtqueue(maxSize: 4)
        h.driver.configure(&fresh)
        fresh.usedState = 0
        try fresh.activate(memory: h.memory, features: h.driver.features)
        try fresh.adoptUsedIndexFromRing(h.memory)
        #expect(fresh.usedState == 1000)
        let id = try h.driver.post(request: [1], replyCapacity: 0)
        let chain = try #require(try fresh.pop(h.memory))
        try fresh.pushUsed(id: chain.id, descriptorCount: 1, length: 0, h.memory)
        #expect(try h.driver.collect().map(\.id) == [id])
    }

    @Test(arguments: RingLayout.allCases)
    func resetReturnsToInitialState(_ layout: RingLayout) throws {
        var h = try Harness(layout, size: 4)
        try h.driver.post(request: [1], replyCapacity: 1)
        _ = try h.popOne()
        h.queue.reset()
        #expect(!h.queue.isActive && h.queue.size == 4 && !h.queue.ready)
        #expect(h.queue.availState == 0 && h.queue.descriptorTable == GuestAddress(0))
    }

    /// 2.8.7: the used descriptor carries the buffer id and length at the
    /// slot of the chain's first descriptor, AVAIL = USED = used wrap
    /// counter, and WRITE when a length is reported (2.8.4).
    @Test func packedUsedDescriptorBytes() throws {
        var h = try Harness(.packed, size: 4)
        let id = try h.driver.add(readable: [[1]], writable: [8])
        let chain = try h.popOne()
        try h.queue.pushUsed(id: chain.id, descriptorCount: chain.descriptorCount, length: 5, h.memory)
        let slot0 = h.driver.descriptorTable
        #expect(try h.memory.load(UInt32.self, at: slot0.unchecked(plus: 8)) == 5)
        #expect(try h.memory.load(UInt16.self, at: slot0.unchecked(plus: 12)) == id)
        #expect(try h.memory.load(UInt16.self, at: slot0.unchecked(plus: 14)) == 0x8080 | 2)
        // The next chain's used element goes to slot 2 (skip count 2).
        try h.driver.add(readable: [[1]], writable: [])
        let next = try h.popOne()
        try h.queue.pushUsed(id: next.id, descriptorCount: next.descriptorCount, length: 0, h.memory)
        #expect(try h.memory.load(UInt16.self, at: slot0.unchecked(plus: 32 + 14)) == 0x8080)
        #expect(try h.driver.collect().map(\.length) == [5, 0])
    }

    @Test func badCompletionIsRefusedWithoutWriting() throws {
        var h = try Harness(.packed, size: 4)
        #expect(throws: VirtqueueError.badCompletion(id: 4, descriptorCount: 1)) {
            try h.queue.pushUsed(id: 4, descriptorCount: 1, length: 0, h.memory)
        }
        #expect(throws: VirtqueueError.badCompletion(id: 0, descriptorCount: 5)) {
            try h.queue.pushUsed(id: 0, descriptorCount: 5, length: 0, h.memory)
        }
        #expect(!VirtqueueError.badCompletion(id: 0, descriptorCount: 5).isFatal)
        #expect(try !h.queue.needsInterrupt(h.memory))
    }
}

/// The benchmark's refill path re-posts completed chains unchanged.
@Suite struct RecycleTests {
    @Test(arguments: RingLayout.allCases, [false, true])
    func recycleRepostsSameChains(_ layout: RingLayout, indirect: Bool) throws {
        var h = try Harness(layout, size: 8)
        var ids: [UInt16] = []
        for i in 0..<2 { ids.append(try h.driver.add(readable: [[UInt8(i)], [9]], writable: [4], indirect: indirect)) }
        for round in 0..<30 {
            var seen: [[UInt8]] = []
            while let c = try h.queue.pop(h.memory) {
                seen.append(try c.readableBuffers(h.memory).bytes(at: 0, count: c.readableLength))
                try h.queue.pushUsed(id: c.id, descriptorCount: c.descriptorCount, length: 0, h.memory)
            }
            #expect(seen == [[0, 9], [1, 9]], "round \(round)")
            #expect(try h.driver.recycle() == 2)
        }
    }
}
