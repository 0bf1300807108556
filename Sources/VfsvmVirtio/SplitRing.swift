import CVfsvmLinux
import VfsvmMemory

// The split virtqueue (virtio 1.2, 2.7): descriptor table, driver area
// (avail ring: flags, idx, ring[size], used_event) and device area (used
// ring: flags, idx, ring[size] of {id, len}, avail_event). Indices are
// free-running 16-bit counters; slots are index mod size (a power of two).

extension Virtqueue {
    mutating func popSplit(_ memory: GuestMemory, _ r: RingAreas) throws(VirtqueueError) -> DescriptorChain? {
        // avail->idx, read with acquire so the ring entry and descriptors
        // the driver wrote before publishing are visible (2.7.13.3).
        let published = try ringLoadAcquire16(r.driver, 2)
        let pending = published &- nextAvail
        if pending == 0 { return nil }
        // 2.7.6: the driver only adds entries for buffers it owns, at most
        // the queue size ahead of the device.
        guard pending <= ringSize else {
            throw .availIndexJump(next: nextAvail, published: published, size: ringSize)
        }
        let slot = UInt64(nextAvail & (ringSize - 1))
        let head: UInt16 = try ringLoad(r.driver, 4 + 2 * slot)
        nextAvail &+= 1
        // EVENT_IDX: move avail_event along while kicks are wanted.
        if eventIndex && notificationsEnabled { try writeKickRequest(r) }
        // 2.7.6: ring entries are descriptor chain heads, < Queue Size.
        guard head < ringSize else { throw .headOutOfRange(head: head, size: ringSize) }

        var builder = ChainBuilder(indirectAllowed: indirectAllowed, indirectLimit: indirectEntryLimit)
        var index = head
        var count: UInt16 = 0
        var ringError: VirtqueueError?
        let result: Result<DescriptorChain, ChainRefusal>
        do throws(ChainRefusal) {
            while true {
                // Budget: at most Queue Size descriptors (2.7.5.2); ends loops.
                guard count < ringSize else { throw .tooLong(limit: Int(ringSize)) }
                count += 1
                let d: vring_desc
                do {
                    d = try r.table.load(vring_desc.self, at: Ring.descriptorSize * UInt64(index))
                } catch {
                    ringError = .memory(error)
                    break
                }
                let flags = UInt16(littleEndian: d.flags)
                if flags & Ring.indirect != 0 {
                    try builder.indirect(address: UInt64(littleEndian: d.addr), length: UInt32(littleEndian: d.len),
                                         flags: flags, format: .split, memory)
                    break
                }
                try builder.add(address: UInt64(littleEndian: d.addr), length: UInt32(littleEndian: d.len), flags: flags)
                guard flags & Ring.next != 0 else { break }
                let next = UInt16(littleEndian: d.next)
                guard next < ringSize else { throw .nextOutOfRange(next: next, size: Int(ringSize)) }
                index = next
            }
            result = .success(try builder.finish(id: head, descriptorCount: count, memory))
        } catch {
            result = .failure(error)
        }
        if let ringError { throw ringError }
        switch result {
        case let .success(chain): return chain
        case let .failure(reason): throw .refusedChain(RefusedChain(id: head, descriptorCount: count, reason: reason))
        }
    }

    /// The next used ring slot gets {id, len}, then used->idx moves with
    /// release (2.7.8).
    mutating func pushUsedSplit(id: UInt16, descriptorCount: UInt16, length: UInt32, _ r: RingAreas) throws(VirtqueueError) {
        guard id < ringSize else { throw .badCompletion(id: id, descriptorCount: descriptorCount) }
        let slot = UInt64(nextUsed & (ringSize - 1))
        let element = 4 + 8 * slot
        try ringStore(r.device, UInt32(id).littleEndian, element)
        try ringStore(r.device, length.littleEndian, element + 4)
        nextUsed &+= 1
        try ringStoreRelease16(r.device, nextUsed, 2)
        pendingUsed += 1
    }

    /// EVENT_IDX: used_event crossed by the `pending` elements just pushed
    /// (2.7.10); otherwise VRING_AVAIL_F_NO_INTERRUPT clear (2.7.7).
    mutating func splitNeedsInterrupt(_ r: RingAreas, pending: Int) throws(VirtqueueError) -> Bool {
        if eventIndex {
            let usedEvent: UInt16 = try ringLoad(r.driver, 4 + 2 * UInt64(ringSize))
            if pending >= 1 << 16 { return true }
            return vringNeedEvent(event: UInt16(littleEndian: usedEvent), new: nextUsed, old: nextUsed &- UInt16(pending))
        }
        let flags: UInt16 = try ringLoad(r.driver, 0)
        return UInt16(littleEndian: flags) & Ring.availNoInterrupt == 0
    }

    /// Without EVENT_IDX: used->flags VRING_USED_F_NO_NOTIFY set or clear
    /// (2.7.7). With it: avail_event = next avail index when enabled; left
    /// alone when disabled (2.7.10: the driver then kicks at most once more).
    /// Inlined: a call copied the whole queue as its receiver.
    @inline(__always)
    func writeSplitKickRequest(_ r: RingAreas) throws(VirtqueueError) {
        if eventIndex {
            if notificationsEnabled {
                try ringStore(r.device, nextAvail.littleEndian, 4 + 8 * UInt64(ringSize))
            }
        } else {
            try ringStore(r.device, (notificationsEnabled ? 0 : Ring.usedNoNotify).littleEndian, 0)
        }
    }

    @inline(__always)
    func splitHasAvailable(_ r: RingAreas) throws(VirtqueueError) -> Bool {
        try ringLoadAcquire16(r.driver, 2) != nextAvail
    }
}
