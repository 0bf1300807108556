import Testing
import VfsvmMemory
import VfsvmTestSupport
import VfsvmVirtio

/// A hostile driver gets a defined outcome for every malformed ring:
/// "chain refused" (consumed; the device completes it with length 0 and
/// the queue keeps working) or "fatal" (the device goes NEEDS_RESET).
/// Section numbers are virtio 1.2.
@Suite struct HostileDriverTests {
    /// After a refusal the queue still works: the refused chain completes
    /// with length 0 and a good chain goes through.
    func expectQueueStillWorks(_ h: inout Harness, refused: RefusedChain, sourceLocation: SourceLocation = #_sourceLocation) throws {
        try h.queue.pushUsed(id: refused.id, descriptorCount: refused.descriptorCount, length: 0, h.memory)
        let id = try h.driver.post(request: [7], replyCapacity: 1)
        let chain = try h.popOne(sourceLocation: sourceLocation)
        #expect(chain.id == id, sourceLocation: sourceLocation)
        try h.complete(chain, reply: [1])
        let done = try h.driver.collect()
        #expect(done.map(\.length) == [0, 1], sourceLocation: sourceLocation)
    }

    // MARK: Chain shape

    /// 2.7.13.1: "loops in the descriptor chain are forbidden"; the walk has
    /// a budget of Queue Size descriptors (2.7.5.2), so a cycle ends there.
    @Test func splitLoopingChainRefused() throws {
        var h = try Harness(.split, size: 8)
        let buf = try h.driver.allocate(16)
        try h.driver.writeSplitDescriptor(index: 0, address: buf, length: 16, flags: 1, next: 1)
        try h.driver.writeSplitDescriptor(index: 1, address: buf, length: 16, flags: 1, next: 0)
        try h.driver.publishRawHead(0)
        let r = try #require(try h.popRefused())
        #expect(r.reason == .tooLong(limit: 8) && r.id == 0 && r.descriptorCount == 8)
        #expect(try h.queue.pop(h.memory) == nil)
    }

    /// A self-loop on one descriptor, likewise.
    @Test func splitSelfLoopRefused() throws {
        var h = try Harness(.split, size: 4)
        let buf = try h.driver.allocate(16)
        try h.driver.writeSplitDescriptor(index: 3, address: buf, length: 16, flags: 1, next: 3)
        try h.driver.publishRawHead(3)
        #expect(try h.popRefused()?.reason == .tooLong(limit: 4))
    }

    /// A loop inside a split indirect table ends after `entries` descriptors.
    @Test func splitIndirectLoopRefused() throws {
        var h = try Harness(.split, size: 4)
        let buf = try h.driver.allocate(16)
        let table = try h.driver.allocate(32)
        try h.driver.writeTableEntry(table: table, index: 0, address: buf, length: 4, flags: 1, next: 1)
        try h.driver.writeTableEntry(table: table, index: 1, address: buf, length: 4, flags: 1, next: 0)
        try h.driver.writeSplitDescriptor(index: 0, address: table, length: 32, flags: 4, next: 0)
        try h.driver.publishRawHead(0)
        #expect(try h.popRefused()?.reason == .tooLong(limit: 2))
    }

    /// 2.7.5: `next` indexes the descriptor table.
    @Test func splitNextOutOfRangeRefused() throws {
        var h = try Harness(.split, size: 4)
        let buf = try h.driver.allocate(16)
        try h.driver.writeSplitDescriptor(index: 0, address: buf, length: 16, flags: 1, next: 4)
        try h.driver.publishRawHead(0)
        #expect(try h.popRefused()?.reason == .nextOutOfRange(next: 4, size: 4))
    }

    /// `next` inside a split indirect table indexes the table (2.7.5.3).
    @Test func splitIndirectNextOutOfRangeRefused() throws {
        var h = try Harness(.split, size: 4)
        let buf = try h.driver.allocate(16)
        let table = try h.driver.allocate(32)
        try h.driver.writeTableEntry(table: table, index: 0, address: buf, length: 4, flags: 1, next: 2)
        try h.driver.writeSplitDescriptor(index: 0, address: table, length: 32, flags: 4, next: 0)
        try h.driver.publishRawHead(0)
        #expect(try h.popRefused()?.reason == .nextOutOfRange(next: 2, size: 2))
    }

    /// 2.8.8: a packed indirect table is one chain in table order; NEXT
    /// flags inside it carry no meaning and are ignored.
    @Test func packedIndirectIgnoresNextFlags() throws {
        var h = try Harness(.packed, size: 4)
        let a = try h.driver.allocate(4), b = try h.driver.allocate(4)
        try h.memory.writeBytes([1, 2, 3, 4], at: a)
        try h.memory.writeBytes([5, 6, 7, 8], at: b)
        let table = try h.driver.allocate(32)
        try h.driver.writeTableEntry(table: table, index: 0, address: a, length: 4, flags: 1, next: 0)
        try h.driver.writeTableEntry(table: table, index: 1, address: b, length: 4, flags: 1, next: 0)
        try h.driver.addChain([MockSegment(address: table, length: 32, writable: false)])
        try rewriteHeadAsIndirect(&h, .packed, table: table, length: 32)
        let chain = try h.popOne()
        #expect(try chain.readableBuffers(h.memory).bytes(at: 0, count: 8) == [1, 2, 3, 4, 5, 6, 7, 8])
    }

    /// 2.7.5.3.1: INDIRECT inside an indirect table is forbidden.
    @Test(arguments: RingLayout.allCases)
    func nestedIndirectRefused(_ layout: RingLayout) throws {
        var h = try Harness(layout, size: 4)
        let inner = try h.driver.allocate(16)
        let outer = try h.driver.allocate(16)
        try h.driver.writeTableEntry(table: inner, index: 0, address: try h.driver.allocate(8), length: 8, flags: 0, next: 0)
        try h.driver.writeTableEntry(table: outer, index: 0, address: inner, length: 16, flags: 4, next: 0)
        try h.driver.addChain([MockSegment(address: outer, length: 16, writable: false)], indirect: false)
        // addChain wrote a direct descriptor; make it INDIRECT by hand.
        switch layout {
        case .split:
            try h.driver.writeSplitDescriptor(index: 0, address: outer, length: 16, flags: 4, next: 0)
        case .packed:
            try h.driver.writePackedDescriptor(slot: 0, address: outer, length: 16, id: 0, flags: 4 | MockDriver.packedAvailFlags(wrap: true))
        }
        let r = try #require(try h.popRefused())
        #expect(r.reason == .nestedIndirect)
        try expectQueueStillWorks(&h, refused: r)
    }

    /// 2.7.5.3.1: "MUST NOT set both VIRTQ_DESC_F_INDIRECT and VIRTQ_DESC_F_NEXT".
    @Test(arguments: RingLayout.allCases)
    func indirectWithNextRefused(_ layout: RingLayout) throws {
        var h = try Harness(layout, size: 4)
        let table = try h.driver.allocate(16)
        let buf = try h.driver.allocate(8)
        try h.driver.writeTableEntry(table: table, index: 0, address: buf, length: 8, flags: 0, next: 0)
        // Two ring descriptors: [INDIRECT|NEXT → table, buf].
        try h.driver.addChain([MockSegment(address: table, length: 16, writable: false),
                               MockSegment(address: buf, length: 8, writable: false)])
        switch layout {
        case .split:
            try h.driver.writeSplitDescriptor(index: 0, address: table, length: 16, flags: 4 | 1, next: 1)
        case .packed:
            try h.driver.writePackedDescriptor(slot: 0, address: table, length: 16, id: 0, flags: 5 | MockDriver.packedAvailFlags(wrap: true))
        }
        let r = try #require(try h.popRefused())
        #expect(r.reason == .indirectWithNext)
        // Packed: the whole chain was skipped (2 slots), so the ring stays in step.
        #expect(r.descriptorCount == 2 || layout == .split)
        try expectQueueStillWorks(&h, refused: r)
    }

    /// Without VIRTIO_F_INDIRECT_DESC the driver MUST NOT use INDIRECT (2.7.5.3.1).
    @Test(arguments: RingLayout.allCases)
    func indirectWithoutFeatureRefused(_ layout: RingLayout) throws {
        var h = try Harness(layout, size: 4, features: [.version1])
        try h.driver.add(readable: [[1]], writable: [1], indirect: true)
        let r = try #require(try h.popRefused())
        #expect(r.reason == .indirectNotNegotiated)
        try expectQueueStillWorks(&h, refused: r)
    }

    /// An indirect table holds len/16 whole descriptors (2.7.5.3): length 0
    /// or not a multiple of 16 is refused.
    @Test(arguments: RingLayout.allCases, [UInt32(0), 24, 8])
    func indirectTableBadLengthRefused(_ layout: RingLayout, length: UInt32) throws {
        var h = try Harness(layout, size: 4)
        let table = try h.driver.allocate(32)
        try h.driver.addChain([MockSegment(address: table, length: length, writable: false)])
        try rewriteHeadAsIndirect(&h, layout, table: table, length: length)
        let r = try #require(try h.popRefused())
        #expect(r.reason == .indirectTableLength(length))
        try expectQueueStillWorks(&h, refused: r)
    }

    /// Indirect tables are bounded by max(queue size, 1024) entries (see
    /// `Virtqueue.minimumIndirectLimit`; 2.7.5.2 bounds chains by the queue size).
    @Test(arguments: RingLayout.allCases)
    func indirectTableTooLargeRefused(_ layout: RingLayout) throws {
        var h = try Harness(layout, size: 4)
        #expect(h.queue.indirectEntryLimit == 1024)
        let length = UInt32(16 * 1025)
        let table = try h.driver.allocate(Int(length))
        try h.driver.addChain([MockSegment(address: table, length: length, writable: false)])
        try rewriteHeadAsIndirect(&h, layout, table: table, length: length)
        #expect(try h.popRefused()?.reason == .indirectTableTooLarge(entries: 1025, limit: 1024))
    }

    /// The indirect table itself outside guest memory, or overflowing.
    @Test(arguments: RingLayout.allCases, [UInt64(4 << 20), UInt64.max - 15])
    func indirectTableOutOfRangeRefused(_ layout: RingLayout, address: UInt64) throws {
        var h = try Harness(layout, size: 4)
        try h.driver.addChain([MockSegment(address: GuestAddress(address), length: 32, writable: false)])
        try rewriteHeadAsIndirect(&h, layout, table: GuestAddress(address), length: 32)
        let r = try #require(try h.popRefused())
        guard case .indirectTableOutOfRange = r.reason else {
            Issue.record("unexpected \(r.reason)")
            return
        }
        try expectQueueStillWorks(&h, refused: r)
    }

    func rewriteHeadAsIndirect(_ h: inout Harness, _ layout: RingLayout, table: GuestAddress, length: UInt32) throws {
        switch layout {
        case .split:
            try h.driver.writeSplitDescriptor(index: 0, address: table, length: length, flags: 4, next: 0)
        case .packed:
            try h.driver.writePackedDescriptor(slot: 0, address: table, length: length, id: 0, flags: 4 | MockDriver.packedAvailFlags(wrap: true))
        }
    }

    // MARK: Buffers

    /// Buffers outside guest memory, or whose end wraps 2^64, are refused.
    @Test(arguments: RingLayout.allCases, [false, true])
    func bufferOutOfRangeRefused(_ layout: RingLayout, indirect: Bool) throws {
        var h = try Harness(layout, size: 4)
        for (address, length) in [(UInt64(4 << 20) - 8, UInt32(16)), (UInt64.max - 7, 16), (UInt64(1 << 40), 1)] {
            try h.driver.addChain([MockSegment(address: GuestAddress(0x20000), length: 8, writable: false),
                                   MockSegment(address: GuestAddress(address), length: length, writable: true)],
                                  indirect: indirect)
            let r = try #require(try h.popRefused())
            guard case .bufferOutOfRange = r.reason else {
                Issue.record("unexpected \(r.reason)")
                return
            }
            try expectQueueStillWorks(&h, refused: r)
        }
    }

    /// 2.7.13.1: "Drivers MUST NOT add a descriptor chain longer than 2^32
    /// bytes in total". Checked before buffer ranges, so it is what is reported.
    @Test(arguments: RingLayout.allCases, [false, true])
    func totalLengthOverflowRefused(_ layout: RingLayout, indirect: Bool) throws {
        var h = try Harness(layout, size: 4)
        try h.driver.addChain([MockSegment(address: GuestAddress(0x20000), length: 0x8000_0000, writable: false),
                               MockSegment(address: GuestAddress(0x20000), length: 0x8000_0000, writable: true)],
                              indirect: indirect)
        let r = try #require(try h.popRefused())
        #expect(r.reason == .lengthOverflow)
        try expectQueueStillWorks(&h, refused: r)
    }

    /// 2.7.4.2 / 2.8.4: device-writable descriptors follow the readable ones.
    @Test(arguments: RingLayout.allCases, [false, true])
    func readableAfterWritableRefused(_ layout: RingLayout, indirect: Bool) throws {
        var h = try Harness(layout, size: 4)
        let a = try h.driver.allocate(8), b = try h.driver.allocate(8)
        try h.driver.addChain([MockSegment(address: a, length: 8, writable: true),
                               MockSegment(address: b, length: 8, writable: false)], indirect: indirect)
        let r = try #require(try h.popRefused())
        #expect(r.reason == .readableAfterWritable)
        #expect(r.descriptorCount == (indirect ? 1 : 2))
        try expectQueueStillWorks(&h, refused: r)
    }

    // MARK: Fatal ring errors

    /// 2.7.6: avail ring entries are chain heads, < Queue Size.
    @Test func splitHeadOutOfRangeIsFatal() throws {
        var h = try Harness(.split, size: 4)
        try h.driver.publishRawHead(4)
        #expect(h.popFatal() == .headOutOfRange(head: 4, size: 4))
    }

    /// 2.7.6: the driver adds at most Queue Size entries ahead of the device.
    @Test func availIndexJumpIsFatal() throws {
        var h = try Harness(.split, size: 4)
        try h.driver.writeAvailIndex(5)
        #expect(h.popFatal() == .availIndexJump(next: 0, published: 5, size: 4))
        // Exactly Queue Size ahead is legal (every descriptor in flight).
        var g = try Harness(.split, size: 4)
        for _ in 0..<4 { try g.driver.post(request: [1], replyCapacity: 0) }
        for _ in 0..<4 { _ = try g.popOne() }
        #expect(try g.queue.pop(g.memory) == nil)
    }

    /// 2.8.6: buffer ids are < Queue Size; an unknown id cannot be completed.
    @Test func packedBufferIDOutOfRangeIsFatal() throws {
        var h = try Harness(.packed, size: 4)
        let buf = try h.driver.allocate(8)
        try h.driver.writePackedDescriptor(slot: 0, address: buf, length: 8, id: 4, flags: MockDriver.packedAvailFlags(wrap: true))
        #expect(h.popFatal() == .bufferIDOutOfRange(id: 4, size: 4))
    }

    /// 2.8.6: a chain is at most the ring; NEXT on every slot has no end.
    @Test func packedChainWithoutEndIsFatal() throws {
        var h = try Harness(.packed, size: 4)
        let buf = try h.driver.allocate(8)
        for slot in UInt16(0)..<4 {
            try h.driver.writePackedDescriptor(slot: slot, address: buf, length: 8, id: 0, flags: 1 | MockDriver.packedAvailFlags(wrap: true))
        }
        #expect(h.popFatal() == .packedChainUnterminated(start: 0, size: 4))
    }

    /// A packed descriptor whose AVAIL/USED bits say "used" or "previous
    /// lap" is simply not available: nothing is popped.
    @Test func packedStaleFlagsAreNotAvailable() throws {
        var h = try Harness(.packed, size: 4)
        let buf = try h.driver.allocate(8)
        for flags: UInt16 in [0, 0x8080, 0x8000] {
            try h.driver.writePackedDescriptor(slot: 0, address: buf, length: 8, id: 0, flags: flags)
            #expect(try h.queue.pop(h.memory) == nil)
        }
    }

    /// A packed ring base (vhost-user SET_VRING_BASE) must name a ring slot.
    @Test func packedBaseOutsideRingRefused() throws {
        let driver = try MockDriver(layout: .packed, queueSize: 4)
        var q = Virtqueue(maxSize: 4)
        driver.configure(&q)
        q.availState = 0x8000 | 4
        #expect(throws: VirtqueueError.invalidBase(avail: 4, used: 0, size: 4)) {
            try q.activate(memory: driver.memory, features: driver.features)
        }
    }

    /// The reserved driver event flags value 3 is treated like ENABLE: an
    /// extra interrupt is harmless, a missing one would hang the driver.
    @Test func packedReservedEventFlagsInterrupt() throws {
        var h = try Harness(.packed, size: 4)
        try h.driver.setPackedDriverEvent(flags: 3, offset: 0, wrap: true)
        try h.driver.post(request: [1], replyCapacity: 0)
        let c = try h.popOne()
        try h.queue.pushUsed(id: c.id, descriptorCount: c.descriptorCount, length: 0, h.memory)
        #expect(try h.queue.needsInterrupt(h.memory))
    }

    /// Fatal and refused errors are told apart by `isFatal`.
    @Test func brokenRingsAreFatalAndRefusedChainsAreNot() {
        #expect(!VirtqueueError.refusedChain(RefusedChain(id: 0, descriptorCount: 1, reason: .lengthOverflow)).isFatal)
        #expect(VirtqueueError.availIndexJump(next: 0, published: 9, size: 4).isFatal)
        #expect(VirtqueueError.memory(.outOfRange(address: GuestAddress(0), length: 1)).isFatal)
        #expect(VirtqueueError.headOutOfRange(head: 9, size: 4).description == "avail ring head 9 outside queue size 4")
    }
}
