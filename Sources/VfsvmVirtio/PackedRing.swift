import CVfsvmLinux
import VfsvmMemory

// The packed virtqueue (virtio 1.2, 2.8): one descriptor ring whose AVAIL
// and USED flag bits, read against a wrap counter, say who owns each slot,
// plus the driver and device event suppression structures ({off_wrap,
// flags}, 4 bytes each). Cursors are a slot index and a wrap counter.

extension Virtqueue {
    /// 2.8.1: a descriptor is available when AVAIL equals the wrap counter
    /// and USED does not.
    func packedIsAvailable(_ flags: UInt16, wrap: Bool) -> Bool {
        (flags & Ring.packedAvail != 0) == wrap && (flags & Ring.packedUsed != 0) != wrap
    }

    mutating func popPacked(_ memory: GuestMemory, _ r: RingAreas) throws(VirtqueueError) -> DescriptorChain? {
        let start = nextAvail
        let headFlags = try ringLoadAcquire16(r.table, Ring.descriptorSize * UInt64(start) + 14)
        guard packedIsAvailable(headFlags, wrap: availWrap) else { return nil }

        var builder = ChainBuilder(indirectAllowed: indirectAllowed, indirectLimit: indirectEntryLimit)
        var refusal: ChainRefusal?
        var position = start
        var wrap = availWrap
        var count: UInt16 = 0
        var lastID: UInt16 = 0
        while true {
            // 2.8.6: a chain's descriptors are consecutive in the ring; it
            // cannot be longer than the ring, so NEXT all the way round is
            // a broken ring, not a bad request.
            guard count < ringSize else { throw .packedChainUnterminated(start: start, size: ringSize) }
            let d: vring_packed_desc = try ringLoad(r.table, Ring.descriptorSize * UInt64(position))
            count += 1
            position += 1
            if position == ringSize { position = 0; wrap.toggle() }
            let flags = UInt16(littleEndian: d.flags)
            lastID = UInt16(littleEndian: d.id)
            if refusal == nil {
                // Keep walking after a refusal: the skip count is still needed.
                do throws(ChainRefusal) {
                    if flags & Ring.indirect != 0 {
                        try builder.indirect(address: UInt64(littleEndian: d.addr), length: UInt32(littleEndian: d.len),
                                             flags: flags, format: .packed, memory)
                    } else {
                        try builder.add(address: UInt64(littleEndian: d.addr), length: UInt32(littleEndian: d.len), flags: flags)
                    }
                } catch {
                    refusal = error
                }
            }
            if flags & Ring.next == 0 { break }
        }
        nextAvail = position
        availWrap = wrap
        if eventIndex && notificationsEnabled { try writeKickRequest(r) }
        // 2.8.6 / 2.8.13: buffer ids name the driver's in-flight buffers, < Queue Size.
        guard lastID < ringSize else { throw .bufferIDOutOfRange(id: lastID, size: ringSize) }
        do throws(ChainRefusal) {
            if let refusal { throw refusal }
            return try builder.finish(id: lastID, descriptorCount: count, memory)
        } catch {
            throw .refusedChain(RefusedChain(id: lastID, descriptorCount: count, reason: error))
        }
    }

    /// The used descriptor goes at the device's used cursor: length and id,
    /// then the flags with release; the cursor moves by the chain's
    /// descriptor count (2.8.7).
    mutating func pushUsedPacked(id: UInt16, descriptorCount: UInt16, length: UInt32, _ r: RingAreas) throws(VirtqueueError) {
        guard id < ringSize, descriptorCount >= 1, descriptorCount <= ringSize else {
            throw .badCompletion(id: id, descriptorCount: descriptorCount)
        }
        let d = Ring.descriptorSize * UInt64(nextUsed)
        try ringStore(r.table, length.littleEndian, d + 8)
        try ringStore(r.table, id.littleEndian, d + 12)
        // 2.8.4: Element Length only counts with VIRTQ_DESC_F_WRITE set
        // in the used descriptor (as QEMU does when anything was written).
        let flags = (usedWrap ? (Ring.packedAvail | Ring.packedUsed) : 0) | (length > 0 ? Ring.write : 0)
        try ringStoreRelease16(r.table, flags, d + 14)
        let advanced = UInt32(nextUsed) + UInt32(descriptorCount)
        if advanced >= UInt32(ringSize) {
            nextUsed = UInt16(advanced - UInt32(ringSize))
            usedWrap.toggle()
        } else {
            nextUsed = UInt16(advanced)
        }
        pendingUsed += Int(descriptorCount)
    }

    /// The driver event suppression structure (2.8.10): ENABLE → yes,
    /// DISABLE → no, DESC (with EVENT_IDX) → its off_wrap was crossed by
    /// the `pending` slots just used.
    func packedNeedsInterrupt(_ r: RingAreas, pending: Int) throws(VirtqueueError) -> Bool {
        // off_wrap and flags in one 32-bit load, so they are a matching
        // pair (the area is 4-byte aligned, checked at activation).
        let event: UInt32
        do { event = try r.driver.loadAcquireUInt32(at: 0) } catch { throw .memory(error) }
        let offWrap = UInt16(truncatingIfNeeded: event)
        let flags = UInt16(truncatingIfNeeded: event >> 16)
        switch flags & 3 {
        case Ring.eventDisable:
            return false
        case Ring.eventDesc where eventIndex:
            if pending >= Int(ringSize) { return true }
            // Positions as wrapping 16-bit numbers: the current lap is
            // 0..<size, the previous lap -size..<0 (as Linux does).
            var event = offWrap & ~Ring.wrapBit
            if (offWrap & Ring.wrapBit != 0) != usedWrap { event = event &- ringSize }
            return vringNeedEvent(event: event, new: nextUsed, old: nextUsed &- UInt16(pending))
        default:
            // ENABLE; DESC without EVENT_IDX and the reserved value 3
            // are driver errors: an extra interrupt is harmless.
            return true
        }
    }

    /// The device event suppression structure (2.8.10): DISABLE, ENABLE,
    /// or with EVENT_IDX DESC with off_wrap = next avail slot | wrap << 15.
    func writePackedKickRequest(_ r: RingAreas) throws(VirtqueueError) {
        if !notificationsEnabled {
            try ringStore(r.device, Ring.eventDisable.littleEndian, 2)
        } else if eventIndex {
            let offWrap = nextAvail | (availWrap ? Ring.wrapBit : 0)
            try ringStore(r.device, offWrap.littleEndian, 0)
            try ringStoreRelease16(r.device, Ring.eventDesc, 2)
        } else {
            try ringStore(r.device, Ring.eventEnable.littleEndian, 2)
        }
    }

    func packedHasAvailable(_ r: RingAreas) throws(VirtqueueError) -> Bool {
        let flags = try ringLoadAcquire16(r.table, Ring.descriptorSize * UInt64(nextAvail) + 14)
        return packedIsAvailable(flags, wrap: availWrap)
    }
}
