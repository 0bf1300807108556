import Testing
import VfsvmMemory
import VfsvmTestSupport
import VfsvmVirtio

/// A queue caches the host views of its ring areas per `GuestMemory`
/// object; a new memory table (vhost-user SET_MEM_TABLE while the ring
/// runs) is a new object, and the queue must follow it at once: no access
/// through the old mapping after the change.
@Suite struct MemoryChangeTests {
    /// A copy of `memory`'s one region in a new file at the same guest
    /// addresses: what a front-end that moved guest RAM sends.
    func moved(_ memory: GuestMemory) throws -> GuestMemory {
        let region = try #require(memory.regions.first)
        let copy = try GuestMemory.anonymous(size: Int(region.size), at: region.start)
        try copy.writeBytes(try memory.readBytes(at: region.start, count: Int(region.size)), at: region.start)
        return copy
    }

    func copyAll(from: GuestMemory, to: GuestMemory) throws {
        let region = try #require(from.regions.first)
        try to.writeBytes(try from.readBytes(at: region.start, count: Int(region.size)), at: region.start)
    }

    @Test(arguments: RingLayout.allCases, [false, true])
    func theRingFollowsANewMemoryTableBetweenPasses(_ layout: RingLayout, eventIndex: Bool) throws {
        let features: VirtioFeatures = eventIndex ? [.version1, .eventIndex] : [.version1]
        var h = try Harness(layout, features: features)
        let old = h.memory
        // A pass on the first table (the areas get resolved and cached).
        let first = try h.driver.post(request: [1, 2, 3], replyCapacity: 8)
        try h.queue.disableNotifications(old)
        let chain = try h.popOne()
        #expect(chain.id == first)
        try h.complete(chain, reply: [7])
        #expect(try !h.queue.enableNotifications(old))
        _ = try h.queue.needsInterrupt(old)
        #expect(try h.driver.collect().map(\.id) == [first])

        // The table changes; the driver then publishes in the old file only.
        let new = try moved(old)
        let second = try h.driver.post(request: [4, 5, 6], replyCapacity: 8)
        // The new table's ring has nothing new: a queue still reading the
        // old mapping would pop the second request here.
        #expect(try h.queue.pop(new) == nil)
        #expect(try !h.queue.hasAvailable(new))

        // Now the new file gets the request too: popped and answered there.
        try copyAll(from: old, to: new)
        let moved = try #require(try h.queue.pop(new))
        #expect(moved.id == second)
        #expect(try moved.readableBuffers(new).bytes(at: 0, count: 3) == [4, 5, 6])
        try moved.writableBuffers(new).write([9, 9], at: 0)
        try h.queue.pushUsed(id: moved.id, descriptorCount: moved.descriptorCount, length: 2, new)
        _ = try h.queue.needsInterrupt(new)
        // The used element went to the new file, not the old one.
        #expect(try h.driver.collect().isEmpty)
        try copyAll(from: new, to: old)
        #expect(try h.driver.collect() == [MockCompletion(id: second, length: 2, reply: [9, 9])])
    }

    @Test(arguments: RingLayout.allCases)
    func aNewTableWithoutTheRingBreaksTheQueue(_ layout: RingLayout) throws {
        var h = try Harness(layout)
        _ = try h.driver.post(request: [1], replyCapacity: 8)
        let chain = try h.popOne()
        try h.complete(chain, reply: [])
        // The ring's addresses are not in the new table: a fatal memory
        // error on the next access, never a read through the old mapping.
        let elsewhere = try GuestMemory.anonymous(size: 1 << 20, at: GuestAddress(1 << 40))
        var errors: [VirtqueueError?] = []
        do { _ = try h.queue.pop(elsewhere); errors.append(nil) } catch { errors.append(error) }
        do { _ = try h.queue.needsInterrupt(elsewhere); errors.append(nil) } catch { errors.append(error) }
        do { _ = try h.queue.hasAvailable(elsewhere); errors.append(nil) } catch { errors.append(error) }
        for error in errors {
            guard case .memory(.outOfRange) = error else {
                Issue.record("expected an out-of-range memory error, got \(String(describing: error))")
                continue
            }
            #expect(error?.isFatal == true)
        }
    }
}
