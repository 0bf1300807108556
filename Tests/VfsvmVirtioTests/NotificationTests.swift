import Testing
import VfsvmMemory
import VfsvmTestSupport
import VfsvmVirtio

/// Notification suppression in both directions (virtio 1.2: 2.7.7 and
/// 2.7.10 split, 2.8.10 packed).
@Suite struct NotificationTests {
    /// Pushes one completion for a fresh 1-descriptor chain and asks
    /// whether to interrupt.
    func roundTrip(_ h: inout Harness) throws -> Bool {
        try h.driver.post(request: [1], replyCapacity: 0)
        let chain = try h.popOne()
        try h.queue.pushUsed(id: chain.id, descriptorCount: chain.descriptorCount, length: 0, h.memory)
        return try h.queue.needsInterrupt(h.memory)
    }

    // MARK: Device → driver (interrupts)

    /// 2.7.7: without EVENT_IDX the driver's VRING_AVAIL_F_NO_INTERRUPT decides;
    /// packed 2.8.10: DISABLE / ENABLE.
    @Test(arguments: RingLayout.allCases)
    func noInterruptFlagSuppressesUsedBufferNotifications(_ layout: RingLayout) throws {
        var h = try Harness(layout, features: [.version1])
        #expect(try roundTrip(&h))
        try h.driver.suppressInterrupts(true)
        #expect(try !roundTrip(&h))
        #expect(try !roundTrip(&h))
        try h.driver.suppressInterrupts(false)
        #expect(try roundTrip(&h))
        #expect(try h.driver.collect().count == 4)
    }

    /// 2.7.10: with EVENT_IDX the device interrupts when used idx passes
    /// used_event, and ignores the NO_INTERRUPT flag.
    @Test func splitUsedEvent() throws {
        var h = try Harness(.split, features: [.version1, .eventIndex])
        h.driver.autoUsedEvent = false
        try h.driver.setUsedEvent(2)
        try h.driver.suppressInterrupts(true)   // must be ignored
        #expect(try [roundTrip(&h), roundTrip(&h), roundTrip(&h), roundTrip(&h)] == [false, false, true, false])
        // A batch that jumps over used_event interrupts once.
        try h.driver.setUsedEvent(5)
        var chains: [DescriptorChain] = []
        for _ in 0..<3 { try h.driver.post(request: [1], replyCapacity: 0) }
        for _ in 0..<3 { chains.append(try h.popOne()) }
        for c in chains { try h.queue.pushUsed(id: c.id, descriptorCount: 1, length: 0, h.memory) }
        #expect(try h.queue.needsInterrupt(h.memory))       // used idx 4 → 7 passes 5
        #expect(try !h.queue.needsInterrupt(h.memory))      // nothing new
    }

    /// vring_need_event arithmetic wraps at 65536.
    @Test func splitUsedEventAcrossWrap() throws {
        var h = try Harness(.split, size: 4, features: [.version1, .eventIndex], splitStartIndex: 65534)
        h.driver.autoUsedEvent = false
        try h.driver.setUsedEvent(0)   // the entry at index 0, i.e. after the wrap
        #expect(try [roundTrip(&h), roundTrip(&h), roundTrip(&h)] == [false, false, true])
        #expect(vringNeedEvent(event: 65535, new: 1, old: 65534))
        #expect(!vringNeedEvent(event: 1, new: 1, old: 65534))
    }

    /// With the driver's automatic used_event (as Linux does), every
    /// collected batch re-arms exactly one interrupt.
    @Test(arguments: RingLayout.allCases)
    func eventIndexWithLinuxLikeDriver(_ layout: RingLayout) throws {
        var h = try Harness(layout, features: [.version1, .eventIndex])
        if layout == .packed { try h.driver.setPackedDriverEvent(flags: 2, offset: 0, wrap: true) }
        for _ in 0..<20 {
            #expect(try roundTrip(&h))
            #expect(try h.driver.collect().count == 1)
        }
        // Without collecting, the next completions do not interrupt again.
        #expect(try roundTrip(&h))
        #expect(try !roundTrip(&h))
    }

    /// 2.8.10: packed DESC mode: interrupt when the used cursor passes
    /// off_wrap (offset in bits 0-14, wrap counter in bit 15).
    @Test func packedDescMode() throws {
        var h = try Harness(.packed, size: 4, features: [.version1, .eventIndex])
        h.driver.autoUsedEvent = false
        try h.driver.setPackedDriverEvent(flags: 2, offset: 2, wrap: true)
        #expect(try [roundTrip(&h), roundTrip(&h), roundTrip(&h)] == [false, false, true])
        _ = try h.driver.collect()
        // Event at slot 1 of the next lap (wrap counter 0): slots 3, 0, then 1.
        try h.driver.setPackedDriverEvent(flags: 2, offset: 1, wrap: false)
        #expect(try [roundTrip(&h), roundTrip(&h), roundTrip(&h)] == [false, false, true])
        _ = try h.driver.collect()
        // DESC without EVENT_IDX negotiated is treated as ENABLE.
        var g = try Harness(.packed, size: 4, features: [.version1])
        try g.driver.setPackedDriverEvent(flags: 2, offset: 3, wrap: true)
        #expect(try roundTrip(&g))
    }

    /// Packed DESC across many laps: an event one lap behind the cursor is
    /// not re-triggered; an event just ahead is.
    @Test func packedDescManyLaps() throws {
        var h = try Harness(.packed, size: 3, features: [.version1, .eventIndex])
        h.driver.autoUsedEvent = false
        for _ in 0..<50 {
            let (slot, wrap) = h.driver.usedCursor
            try h.driver.setPackedDriverEvent(flags: 2, offset: slot, wrap: wrap)
            #expect(try roundTrip(&h))      // the entry at the event slot was written
            #expect(try !roundTrip(&h))     // event now behind the cursor
            _ = try h.driver.collect()
        }
    }

    // MARK: Driver → device (kicks)

    /// 2.7.7 / 2.8.10: the device turns kicks off while draining and on again.
    @Test(arguments: RingLayout.allCases, [false, true])
    func deviceSuppressesKicks(_ layout: RingLayout, eventIndex: Bool) throws {
        var h = try Harness(layout, features: eventIndex ? [.version1, .eventIndex] : [.version1])
        try h.driver.post(request: [1], replyCapacity: 0)
        #expect(try h.driver.deviceWantsKick())
        try h.queue.disableNotifications(h.memory)
        _ = try h.popOne()
        try h.driver.post(request: [2], replyCapacity: 0)
        #expect(try !h.driver.deviceWantsKick())
        // The re-check: a buffer arrived while kicks were off.
        #expect(try h.queue.enableNotifications(h.memory))
        _ = try h.popOne()
        #expect(try !h.queue.enableNotifications(h.memory))
        try h.driver.post(request: [3], replyCapacity: 0)
        #expect(try h.driver.deviceWantsKick())
    }

    /// 2.7.10: with EVENT_IDX, popping moves avail_event along (while
    /// notifications are on), so each new buffer after a drain is kicked.
    @Test func splitAvailEventFollowsPops() throws {
        var h = try Harness(.split, size: 8, features: [.version1, .eventIndex])
        let availEvent = h.driver.deviceArea.unchecked(plus: 4 + 8 * 8)
        for i in 1...10 {
            try h.driver.post(request: [1], replyCapacity: 0)
            #expect(try h.driver.deviceWantsKick())
            let chain = try h.popOne()
            #expect(try h.memory.load(UInt16.self, at: availEvent) == UInt16(i))
            try h.queue.pushUsed(id: chain.id, descriptorCount: 1, length: 0, h.memory)
            _ = try h.driver.collect()
        }
        // Two buffers published before the device looks: the second needs no kick.
        try h.driver.post(request: [1], replyCapacity: 0)
        #expect(try h.driver.deviceWantsKick())
        try h.driver.post(request: [1], replyCapacity: 0)
        #expect(try !h.driver.deviceWantsKick())
    }

    /// Packed device event suppression bytes as the spec lays them out.
    @Test func packedDeviceEventStructure() throws {
        var h = try Harness(.packed, size: 4, features: [.version1, .eventIndex])
        try h.driver.post(request: [1], replyCapacity: 0)
        _ = try h.popOne()
        try h.queue.disableNotifications(h.memory)
        #expect(try h.memory.load(UInt16.self, at: h.driver.deviceArea.unchecked(plus: 2)) == 1)
        #expect(try !h.queue.enableNotifications(h.memory))
        // DESC at next avail slot 1, wrap counter 1.
        #expect(try h.memory.load(UInt16.self, at: h.driver.deviceArea) == 0x8001)
        #expect(try h.memory.load(UInt16.self, at: h.driver.deviceArea.unchecked(plus: 2)) == 2)
    }

    /// Split without EVENT_IDX: VRING_USED_F_NO_NOTIFY in the used ring flags.
    @Test func splitNoNotifyFlag() throws {
        var h = try Harness(.split, features: [.version1])
        try h.queue.disableNotifications(h.memory)
        #expect(try h.memory.load(UInt16.self, at: h.driver.deviceArea) == 1)
        #expect(try !h.queue.enableNotifications(h.memory))
        #expect(try h.memory.load(UInt16.self, at: h.driver.deviceArea) == 0)
    }

    @Test func recordingInterruptCountsEachKindOfSignal() throws {
        let r = RecordingInterrupt()
        try r.signalQueue(1)
        try r.signalQueue(1)
        try r.signalConfigChange()
        #expect(r.queueSignals(1) == 2 && r.queueSignals(0) == 0 && r.configSignals == 1)
        r.clear()
        #expect(r.queueSignals(1) == 0)
    }
}
