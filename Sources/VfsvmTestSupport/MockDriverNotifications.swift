import VfsvmMemory
import VfsvmVirtio

/// The driver side of notification suppression (split flags and used_event,
/// packed event structures), the kick decision, and raw ring writes for
/// hostile tests.
extension MockDriver {
    // MARK: - Notification suppression, driver side

    /// Split: set/clear VRING_AVAIL_F_NO_INTERRUPT. Packed: DISABLE/ENABLE.
    public func suppressInterrupts(_ suppress: Bool) throws(MockDriverError) {
        interruptsSuppressed = suppress
        do {
            switch layout {
            case .split:
                try memory.store((suppress ? UInt16(1) : 0).littleEndian, at: driverArea)
            case .packed:
                try setPackedDriverEvent(flags: suppress ? 1 : 0, offset: 0, wrap: false)
            }
        } catch {
            throw MockDriverError(error)
        }
    }

    /// Split with EVENT_IDX: used_event ("interrupt me when used idx passes this").
    public func setUsedEvent(_ index: UInt16) throws(MockDriverError) {
        precondition(layout == .split)
        do { try memory.store(index.littleEndian, at: driverArea.unchecked(plus: 4 + 2 * UInt64(queueSize))) } catch { throw .memory(error) }
    }

    /// Packed driver event suppression: off_wrap = offset | wrap << 15, flags.
    public func setPackedDriverEvent(flags: UInt16, offset: UInt16, wrap: Bool) throws(MockDriverError) {
        precondition(layout == .packed)
        packedDriverEventMode = flags
        do {
            try memory.store((offset | (wrap ? 0x8000 : 0)).littleEndian, at: driverArea)
            try memory.store(flags.littleEndian, at: driverArea.unchecked(plus: 2))
        } catch {
            throw .memory(error)
        }
    }

    /// The driver's used cursor (packed: slot and wrap counter; split: the
    /// last used idx read, wrap always true).
    public var usedCursor: (index: UInt16, wrap: Bool) {
        layout == .split ? (lastUsedIdx, true) : (lastUsedSlot, usedWrap)
    }

    /// Linux's `virtqueue_kick_prepare`: after publishing, does the device
    /// want a notification? Reads VRING_USED_F_NO_NOTIFY / avail_event
    /// (split) or the device event suppression structure (packed).
    public func deviceWantsKick() throws(MockDriverError) -> Bool {
        GuestMemory.fullFence()
        do {
            switch layout {
            case .split:
                let old = kickCheckedIdx, new = publishedIdx
                kickCheckedIdx = new
                if features.contains(.eventIndex) {
                    let event = UInt16(littleEndian: try memory.load(UInt16.self, at: deviceArea.unchecked(plus: 4 + 8 * UInt64(queueSize))))
                    return vringNeedEvent(event: event, new: new, old: old)
                }
                let flags = UInt16(littleEndian: try memory.load(UInt16.self, at: deviceArea))
                return flags & 1 == 0
            case .packed:
                let added = addedSinceKickCheck
                addedSinceKickCheck = 0
                let offWrap = UInt16(littleEndian: try memory.load(UInt16.self, at: deviceArea))
                let flags = UInt16(littleEndian: try memory.load(UInt16.self, at: deviceArea.unchecked(plus: 2)))
                switch flags {
                case 1: return false
                case 2 where features.contains(.eventIndex):
                    if added >= Int(queueSize) { return true }
                    var event = offWrap & 0x7fff
                    if (offWrap & 0x8000 != 0) != availWrap { event = event &- queueSize }
                    return vringNeedEvent(event: event, new: nextSlot, old: nextSlot &- UInt16(added))
                default: return true
                }
            }
        } catch {
            throw .memory(error)
        }
    }

    // MARK: - Raw access for hostile tests

    /// Writes a split descriptor verbatim.
    public func writeSplitDescriptor(index: UInt16, address: GuestAddress, length: UInt32, flags: UInt16, next: UInt16) throws(GuestMemoryError) {
        let d = descriptorTable.unchecked(plus: 16 * UInt64(index))
        try memory.store(address.rawValue.littleEndian, at: d)
        try memory.store(length.littleEndian, at: d.unchecked(plus: 8))
        try memory.store(flags.littleEndian, at: d.unchecked(plus: 12))
        try memory.store(next.littleEndian, at: d.unchecked(plus: 14))
    }

    /// Writes a packed descriptor verbatim (flags nil: leave them alone).
    public func writePackedDescriptor(slot: UInt16, address: GuestAddress, length: UInt32, id: UInt16, flags: UInt16?) throws(GuestMemoryError) {
        let d = descriptorTable.unchecked(plus: 16 * UInt64(slot))
        try memory.store(address.rawValue.littleEndian, at: d)
        try memory.store(length.littleEndian, at: d.unchecked(plus: 8))
        try memory.store(id.littleEndian, at: d.unchecked(plus: 12))
        if let flags { try memory.storeReleaseUInt16(flags, at: d.unchecked(plus: 14)) }
    }

    /// Writes an entry of a split indirect table (same 16-byte format).
    public func writeTableEntry(table: GuestAddress, index: Int, address: GuestAddress, length: UInt32,
                                flags: UInt16, next: UInt16) throws(GuestMemoryError) {
        let d = table.unchecked(plus: 16 * UInt64(index))
        try memory.store(address.rawValue.littleEndian, at: d)
        try memory.store(length.littleEndian, at: d.unchecked(plus: 8))
        if layout == .split {
            try memory.store(flags.littleEndian, at: d.unchecked(plus: 12))
            try memory.store(next.littleEndian, at: d.unchecked(plus: 14))
        } else {
            try memory.store(next.littleEndian, at: d.unchecked(plus: 12))   // id, unused
            try memory.store(flags.littleEndian, at: d.unchecked(plus: 14))
        }
    }

    /// Split: puts `head` in the avail ring at the next slot and publishes
    /// avail->idx, bypassing the free list (for hand-made chains).
    public func publishRawHead(_ head: UInt16) throws(GuestMemoryError) {
        try memory.store(head.littleEndian, at: driverArea.unchecked(plus: 4 + 2 * UInt64(availIdx & (queueSize - 1))))
        availIdx &+= 1
        try memory.storeReleaseUInt16(availIdx, at: driverArea.unchecked(plus: 2))
        publishedIdx = availIdx
    }

    /// Split: stores any value in avail->idx.
    public func writeAvailIndex(_ value: UInt16) throws(GuestMemoryError) {
        try memory.storeReleaseUInt16(value, at: driverArea.unchecked(plus: 2))
    }
}
