import CVfsvmLinux
import VfsvmMemory

/// Which virtqueue format a queue runs (virtio 1.2, 2.7 and 2.8).
public enum RingLayout: String, Hashable, Sendable, CaseIterable {
    case split
    case packed
}

/// Ring constants from linux/virtio_ring.h, as Swift values.
enum Ring {
    static let next = UInt16(VRING_DESC_F_NEXT)            // 1
    static let write = UInt16(VRING_DESC_F_WRITE)          // 2
    static let indirect = UInt16(VRING_DESC_F_INDIRECT)    // 4
    static let packedAvail: UInt16 = 1 << UInt16(VRING_PACKED_DESC_F_AVAIL) // bit 7
    static let packedUsed: UInt16 = 1 << UInt16(VRING_PACKED_DESC_F_USED)   // bit 15
    static let usedNoNotify = UInt16(VRING_USED_F_NO_NOTIFY)
    static let availNoInterrupt = UInt16(VRING_AVAIL_F_NO_INTERRUPT)
    static let eventEnable = UInt16(VRING_PACKED_EVENT_FLAG_ENABLE)   // 0
    static let eventDisable = UInt16(VRING_PACKED_EVENT_FLAG_DISABLE) // 1
    static let eventDesc = UInt16(VRING_PACKED_EVENT_FLAG_DESC)       // 2
    static let wrapBit: UInt16 = 1 << UInt16(VRING_PACKED_EVENT_F_WRAP_CTR) // bit 15
    static let descriptorSize: UInt64 = 16
}

/// `vring_need_event` (2.7.10 / linux/virtio_ring.h): true when `event`
/// lies in the window (old, new], all in wrapping 16-bit arithmetic.
@inlinable
public func vringNeedEvent(event: UInt16, new: UInt16, old: UInt16) -> Bool {
    (new &- event &- 1) < (new &- old)
}

/// The device side of one virtqueue, split or packed.
///
/// A value type holding only indices and guest addresses; guest memory is
/// passed to every call (so a vhost-user memory table update needs no
/// change here). Everything read from the ring is validated: a malformed
/// chain is consumed and reported as `.refusedChain`, a broken ring as a
/// fatal error (`isFatal`), never a crash or an access outside guest memory.
///
/// The transport writes `size`, the three area addresses and `ready` as the
/// driver programs them; `activate` validates and freezes them. Changing
/// them afterwards has no effect until `reset()` and a new activation.
///
/// VIRTIO_F_IN_ORDER: accepted; one used element is written per chain
/// (the spec allows, but does not require, batching). The device using the
/// queue must complete chains in the order it popped them when IN_ORDER was
/// negotiated.
public struct Virtqueue: Sendable {
    /// The largest queue size the spec allows (2.7 and 2.8: 32768).
    public static let maximumSize: UInt16 = 32768
    /// Indirect tables may hold up to `max(queue size, 1024)` entries.
    /// 2.7.5.2 bounds chains by the queue size, but Linux's virtio_ring uses
    /// indirect tables with more entries than a small queue has slots (it
    /// only bounds direct chains); 1024 is QEMU's VIRTQUEUE_MAX_SIZE.
    public static let minimumIndirectLimit = 1024

    public let maxSize: UInt16
    public var size: UInt16
    public var descriptorTable = GuestAddress(0)
    public var driverArea = GuestAddress(0)
    public var deviceArea = GuestAddress(0)
    public var ready = false
    public private(set) var features: VirtioFeatures = []

    /// The layout after a successful `activate`, nil before.
    public private(set) var layout: RingLayout?

    // Frozen at activation.
    private var ringSize: UInt16 = 0
    private var table = GuestAddress(0)
    private var driver = GuestAddress(0)
    private var device = GuestAddress(0)
    private var eventIndex = false
    private var indirectAllowed = false

    // Split: free-running 16-bit indices. Packed: slot index + wrap counter.
    private var nextAvail: UInt16 = 0
    private var availWrap = true
    private var nextUsed: UInt16 = 0
    private var usedWrap = true

    private var savedAvailState: UInt16?
    private var savedUsedState: UInt16?

    private var notificationsEnabled = true
    /// Used elements (split) or ring slots (packed) written since the last
    /// `needsInterrupt`.
    private var pendingUsed = 0

    public init(maxSize: UInt16) {
        precondition(maxSize > 0 && maxSize <= Self.maximumSize, "queue max size must be 1...32768")
        self.maxSize = maxSize
        self.size = maxSize
    }

    public var isActive: Bool { layout != nil }

    /// Indirect table entry bound for this queue (see `minimumIndirectLimit`).
    public var indirectEntryLimit: Int { max(Int(ringSize), Self.minimumIndirectLimit) }

    // MARK: - Activation

    /// Validates `size`, alignment and that every ring structure lies in one
    /// guest memory region, then chooses split or packed from `features`.
    /// Keeps `availState`/`usedState` (set them before, e.g. from vhost-user
    /// SET_VRING_BASE; `reset()` zeroes them).
    public mutating func activate(memory: GuestMemory, features: VirtioFeatures) throws(VirtqueueError) {
        let packed = features.contains(.ringPacked)
        // 2.7: split Queue Size is a power of 2; 2.8: packed any value up to 2^15.
        guard size > 0, size <= maxSize, packed || size.nonzeroBitCount == 1 else {
            throw .invalidSize(size: size, maxSize: maxSize, packed: packed)
        }
        let n = UInt64(size)
        // 2.7 table "Virtqueue Part / Alignment / Size" and 2.8.10-2.8.11.
        let areas: [(QueueArea, GuestAddress, Int, UInt64)] = packed
            ? [(.descriptorTable, descriptorTable, 16, 16 * n),
               (.driverArea, driverArea, 4, 4),
               (.deviceArea, deviceArea, 4, 4)]
            : [(.descriptorTable, descriptorTable, 16, 16 * n),
               (.driverArea, driverArea, 2, 6 + 2 * n),
               (.deviceArea, deviceArea, 4, 6 + 8 * n)]
        for (area, address, alignment, length) in areas {
            guard address.isAligned(to: UInt64(alignment)) else {
                throw .misaligned(area, address, alignment: alignment)
            }
            do {
                try memory.checkContiguous(address, length: length)
            } catch {
                throw .areaOutOfRange(area, error)
            }
        }
        let newLayout: RingLayout = packed ? .packed : .split
        var avail = (nextAvail, availWrap), used = (nextUsed, usedWrap)
        if let s = savedAvailState { avail = Self.decode(s, newLayout) }
        if let s = savedUsedState { used = Self.decode(s, newLayout) }
        // A packed base (SET_VRING_BASE) must name a slot of the ring.
        guard !packed || (avail.0 < size && used.0 < size) else {
            throw .invalidBase(avail: avail.0, used: used.0, size: size)
        }
        (nextAvail, availWrap) = avail
        (nextUsed, usedWrap) = used
        savedAvailState = nil
        savedUsedState = nil
        self.features = features
        ringSize = size
        table = descriptorTable
        driver = driverArea
        device = deviceArea
        eventIndex = features.contains(.eventIndex)
        indirectAllowed = features.contains(.indirectDescriptors)
        notificationsEnabled = true
        pendingUsed = 0
        layout = newLayout
    }

    /// Back to the state after `init`: inactive, size = max, addresses 0,
    /// indices 0, wrap counters 1.
    public mutating func reset() {
        self = Virtqueue(maxSize: maxSize)
    }

    // MARK: - vhost-user base

    /// Split: the next avail index. Packed: next avail slot in bits 0-14 and
    /// the avail wrap counter in bit 15 (QEMU's GET/SET_VRING_BASE encoding).
    /// Set before activation, the value is kept and decoded by `activate`
    /// for the layout the features choose, which checks a packed slot is
    /// inside the ring. Values from a driver or frontend must be set that
    /// way: set after activation (tests, mocks) the value is trusted.
    public var availState: UInt16 {
        get { savedAvailState ?? encode(nextAvail, availWrap) }
        set {
            if let layout { (nextAvail, availWrap) = Self.decode(newValue, layout) } else { savedAvailState = newValue }
        }
    }

    /// The same encoding for the device's used cursor.
    public var usedState: UInt16 {
        get { savedUsedState ?? encode(nextUsed, usedWrap) }
        set {
            if let layout { (nextUsed, usedWrap) = Self.decode(newValue, layout) } else { savedUsedState = newValue }
        }
    }

    /// Split ring, after activation: takes the device's used index from
    /// used->idx in guest memory, as a vhost-user backend does when it
    /// (re)starts on a ring the driver has been using (SET_VRING_BASE only
    /// carries the avail index). Packed rings carry both cursors in the
    /// base and need nothing here.
    public mutating func adoptUsedIndexFromRing(_ memory: GuestMemory) throws(VirtqueueError) {
        guard layout == .split else {
            if layout == nil { throw .notActive }
            return
        }
        nextUsed = try ringLoadAcquire16(memory, device.unchecked(plus: 2))
    }

    private func encode(_ index: UInt16, _ wrap: Bool) -> UInt16 {
        layout == .packed ? (index | (wrap ? Ring.wrapBit : 0)) : index
    }

    private static func decode(_ value: UInt16, _ layout: RingLayout) -> (UInt16, Bool) {
        layout == .packed ? (value & ~Ring.wrapBit, value & Ring.wrapBit != 0) : (value, true)
    }

    // MARK: - Popping chains

    /// The next available chain, or nil when the driver has published none.
    public mutating func pop(_ memory: GuestMemory) throws(VirtqueueError) -> DescriptorChain? {
        switch layout {
        case .split: try popSplit(memory)
        case .packed: try popPacked(memory)
        case nil: throw .notActive
        }
    }

    private mutating func popSplit(_ memory: GuestMemory) throws(VirtqueueError) -> DescriptorChain? {
        // avail->idx, read with acquire so the ring entry and descriptors
        // the driver wrote before publishing are visible (2.7.13.3).
        let published = try ringLoadAcquire16(memory, driver.unchecked(plus: 2))
        let pending = published &- nextAvail
        if pending == 0 { return nil }
        // 2.7.6: the driver only adds entries for buffers it owns, at most
        // the queue size ahead of the device.
        guard pending <= ringSize else {
            throw .availIndexJump(next: nextAvail, published: published, size: ringSize)
        }
        let slot = UInt64(nextAvail & (ringSize - 1))
        let head: UInt16 = try ringLoad(memory, driver.unchecked(plus: 4 + 2 * slot))
        nextAvail &+= 1
        // EVENT_IDX: move avail_event along while kicks are wanted.
        if eventIndex && notificationsEnabled { try writeKickRequest(memory) }
        // 2.7.6: ring entries are descriptor chain heads, < Queue Size.
        guard head < ringSize else { throw .headOutOfRange(head: head, size: ringSize) }

        var builder = ChainBuilder(memory: memory, indirectAllowed: indirectAllowed, indirectLimit: indirectEntryLimit)
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
                    d = try memory.load(vring_desc.self, at: table.unchecked(plus: Ring.descriptorSize * UInt64(index)))
                } catch {
                    ringError = .memory(error)
                    break
                }
                let flags = UInt16(littleEndian: d.flags)
                if flags & Ring.indirect != 0 {
                    try builder.indirect(address: UInt64(littleEndian: d.addr), length: UInt32(littleEndian: d.len),
                                         flags: flags, format: .split)
                    break
                }
                try builder.add(address: UInt64(littleEndian: d.addr), length: UInt32(littleEndian: d.len), flags: flags)
                guard flags & Ring.next != 0 else { break }
                let next = UInt16(littleEndian: d.next)
                guard next < ringSize else { throw .nextOutOfRange(next: next, size: Int(ringSize)) }
                index = next
            }
            result = .success(try builder.finish(id: head, descriptorCount: count))
        } catch {
            result = .failure(error)
        }
        if let ringError { throw ringError }
        switch result {
        case let .success(chain): return chain
        case let .failure(reason): throw .refusedChain(RefusedChain(id: head, descriptorCount: count, reason: reason))
        }
    }

    private func packedIsAvailable(_ flags: UInt16, wrap: Bool) -> Bool {
        // 2.8.1: available when AVAIL == wrap counter and USED != it.
        (flags & Ring.packedAvail != 0) == wrap && (flags & Ring.packedUsed != 0) != wrap
    }

    private mutating func popPacked(_ memory: GuestMemory) throws(VirtqueueError) -> DescriptorChain? {
        let start = nextAvail
        let headFlags = try ringLoadAcquire16(memory, table.unchecked(plus: Ring.descriptorSize * UInt64(start) + 14))
        guard packedIsAvailable(headFlags, wrap: availWrap) else { return nil }

        var builder = ChainBuilder(memory: memory, indirectAllowed: indirectAllowed, indirectLimit: indirectEntryLimit)
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
            let d: vring_packed_desc = try ringLoad(memory, table.unchecked(plus: Ring.descriptorSize * UInt64(position)))
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
                                             flags: flags, format: .packed)
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
        if eventIndex && notificationsEnabled { try writeKickRequest(memory) }
        // 2.8.6 / 2.8.13: buffer ids name the driver's in-flight buffers, < Queue Size.
        guard lastID < ringSize else { throw .bufferIDOutOfRange(id: lastID, size: ringSize) }
        do throws(ChainRefusal) {
            if let refusal { throw refusal }
            return try builder.finish(id: lastID, descriptorCount: count)
        } catch {
            throw .refusedChain(RefusedChain(id: lastID, descriptorCount: count, reason: error))
        }
    }

    // MARK: - Completing chains

    /// Writes the used element for a chain: `id` and the number of bytes
    /// written into its writable buffers. Split: the next used ring slot,
    /// then used->idx with release. Packed: the descriptor at the device's
    /// used cursor (the slot of the chain's first descriptor when chains are
    /// completed in order), flags last with release, then the cursor moves
    /// by `descriptorCount` (2.8.7).
    public mutating func pushUsed(id: UInt16, descriptorCount: UInt16, length: UInt32, _ memory: GuestMemory) throws(VirtqueueError) {
        switch layout {
        case nil:
            throw .notActive
        case .split:
            guard id < ringSize else { throw .badCompletion(id: id, descriptorCount: descriptorCount) }
            let slot = UInt64(nextUsed & (ringSize - 1))
            let element = device.unchecked(plus: 4 + 8 * slot)
            try ringStore(memory, UInt32(id).littleEndian, element)
            try ringStore(memory, length.littleEndian, element.unchecked(plus: 4))
            nextUsed &+= 1
            try ringStoreRelease16(memory, nextUsed, device.unchecked(plus: 2))
            pendingUsed += 1
        case .packed:
            guard id < ringSize, descriptorCount >= 1, descriptorCount <= ringSize else {
                throw .badCompletion(id: id, descriptorCount: descriptorCount)
            }
            let d = table.unchecked(plus: Ring.descriptorSize * UInt64(nextUsed))
            try ringStore(memory, length.littleEndian, d.unchecked(plus: 8))
            try ringStore(memory, id.littleEndian, d.unchecked(plus: 12))
            // 2.8.4: Element Length only counts with VIRTQ_DESC_F_WRITE set
            // in the used descriptor (as QEMU does when anything was written).
            let flags = (usedWrap ? (Ring.packedAvail | Ring.packedUsed) : 0) | (length > 0 ? Ring.write : 0)
            try ringStoreRelease16(memory, flags, d.unchecked(plus: 14))
            let advanced = UInt32(nextUsed) + UInt32(descriptorCount)
            if advanced >= UInt32(ringSize) {
                nextUsed = UInt16(advanced - UInt32(ringSize))
                usedWrap.toggle()
            } else {
                nextUsed = UInt16(advanced)
            }
            pendingUsed += Int(descriptorCount)
        }
    }

    // MARK: - Notification suppression (the one place for each direction)

    /// After a batch of `pushUsed`: does the driver want a used buffer
    /// notification? Split: EVENT_IDX → used_event crossed (2.7.10);
    /// otherwise VRING_AVAIL_F_NO_INTERRUPT clear (2.7.7). Packed: the
    /// driver event suppression structure (2.8.10): ENABLE → yes,
    /// DISABLE → no, DESC (with EVENT_IDX) → its off_wrap was crossed.
    /// False when nothing was pushed since the last call.
    public mutating func needsInterrupt(_ memory: GuestMemory) throws(VirtqueueError) -> Bool {
        guard let layout else { throw .notActive }
        let pending = pendingUsed
        guard pending > 0 else { return false }
        pendingUsed = 0
        // Our used-ring stores must be visible before we read the driver's
        // suppression field, or both sides may decide not to act.
        GuestMemory.fullFence()
        switch layout {
        case .split:
            if eventIndex {
                let usedEvent: UInt16 = try ringLoad(memory, driver.unchecked(plus: 4 + 2 * UInt64(ringSize)))
                if pending >= 1 << 16 { return true }
                return vringNeedEvent(event: usedEvent, new: nextUsed, old: nextUsed &- UInt16(pending))
            }
            let flags: UInt16 = try ringLoad(memory, driver)
            return UInt16(littleEndian: flags) & Ring.availNoInterrupt == 0
        case .packed:
            // off_wrap and flags in one 32-bit load, so they are a matching
            // pair (the area is 4-byte aligned, checked at activation).
            let event: UInt32
            do { event = try memory.loadAcquireUInt32(at: driver) } catch { throw .memory(error) }
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
    }

    /// Asks the driver not to notify (kick) while the device drains the
    /// queue (see `writeKickRequest`).
    public mutating func disableNotifications(_ memory: GuestMemory) throws(VirtqueueError) {
        guard isActive else { throw .notActive }
        notificationsEnabled = false
        try writeKickRequest(memory)
    }

    /// Asks the driver to notify again, then re-checks the ring: returns
    /// true when buffers became available while notifications were off
    /// (the driver may not have kicked for them; pop again).
    public mutating func enableNotifications(_ memory: GuestMemory) throws(VirtqueueError) -> Bool {
        guard isActive else { throw .notActive }
        notificationsEnabled = true
        try writeKickRequest(memory)
        // The store must be visible before we look at the ring again, or
        // the driver and we could both conclude the other will act.
        GuestMemory.fullFence()
        return try hasAvailable(memory)
    }

    /// The one place that tells the driver whether to kick:
    /// - split, no EVENT_IDX: used->flags VRING_USED_F_NO_NOTIFY set or clear (2.7.7);
    /// - split, EVENT_IDX: avail_event = next avail index when enabled; left
    ///   alone when disabled (2.7.10: the driver then kicks at most once more);
    /// - packed: device event suppression flags DISABLE, ENABLE, or with
    ///   EVENT_IDX DESC with off_wrap = next avail slot | wrap << 15 (2.8.10).
    private func writeKickRequest(_ memory: GuestMemory) throws(VirtqueueError) {
        switch layout {
        case nil:
            throw .notActive
        case .split:
            if eventIndex {
                if notificationsEnabled {
                    try ringStore(memory, nextAvail.littleEndian, device.unchecked(plus: 4 + 8 * UInt64(ringSize)))
                }
            } else {
                try ringStore(memory, (notificationsEnabled ? 0 : Ring.usedNoNotify).littleEndian, device)
            }
        case .packed:
            if !notificationsEnabled {
                try ringStore(memory, Ring.eventDisable.littleEndian, device.unchecked(plus: 2))
            } else if eventIndex {
                let offWrap = nextAvail | (availWrap ? Ring.wrapBit : 0)
                try ringStore(memory, offWrap.littleEndian, device)
                try ringStoreRelease16(memory, Ring.eventDesc, device.unchecked(plus: 2))
            } else {
                try ringStore(memory, Ring.eventEnable.littleEndian, device.unchecked(plus: 2))
            }
        }
    }

    /// True when a chain is waiting (without consuming it).
    public func hasAvailable(_ memory: GuestMemory) throws(VirtqueueError) -> Bool {
        switch layout {
        case nil:
            throw .notActive
        case .split:
            return try ringLoadAcquire16(memory, driver.unchecked(plus: 2)) != nextAvail
        case .packed:
            let flags = try ringLoadAcquire16(memory, table.unchecked(plus: Ring.descriptorSize * UInt64(nextAvail) + 14))
            return packedIsAvailable(flags, wrap: availWrap)
        }
    }

    // MARK: - Ring access (validated at activation; errors here are fatal)

    private func ringLoad<T: BitwiseCopyable>(_ memory: GuestMemory, _ address: GuestAddress) throws(VirtqueueError) -> T {
        do { return try memory.load(T.self, at: address) } catch { throw .memory(error) }
    }

    private func ringStore<T: BitwiseCopyable>(_ memory: GuestMemory, _ value: T, _ address: GuestAddress) throws(VirtqueueError) {
        do { try memory.store(value, at: address) } catch { throw .memory(error) }
    }

    private func ringLoadAcquire16(_ memory: GuestMemory, _ address: GuestAddress) throws(VirtqueueError) -> UInt16 {
        do { return try memory.loadAcquireUInt16(at: address) } catch { throw .memory(error) }
    }

    private func ringStoreRelease16(_ memory: GuestMemory, _ value: UInt16, _ address: GuestAddress) throws(VirtqueueError) {
        do { try memory.storeReleaseUInt16(value, at: address) } catch { throw .memory(error) }
    }
}

/// Collects and validates the buffers of one chain.
struct ChainBuilder {
    enum TableFormat { case split, packed }

    let memory: GuestMemory
    let indirectAllowed: Bool
    let indirectLimit: Int
    var readable: [GuestRange] = []
    var writable: [GuestRange] = []
    var total: UInt64 = 0
    var sawWritable = false
    var sawIndirect = false

    init(memory: GuestMemory, indirectAllowed: Bool, indirectLimit: Int) {
        self.memory = memory
        self.indirectAllowed = indirectAllowed
        self.indirectLimit = indirectLimit
    }

    mutating func add(address: UInt64, length: UInt32, flags: UInt16) throws(ChainRefusal) {
        if flags & Ring.write != 0 {
            sawWritable = true
        } else if sawWritable {
            throw .readableAfterWritable
        }
        total += UInt64(length)
        guard total <= UInt64(UInt32.max) else { throw .lengthOverflow }
        // Zero-length descriptors: nothing is accessed, so nothing to check
        // or record (the spec sets no minimum length).
        guard length > 0 else { return }
        let range = GuestRange(address: GuestAddress(address), length: length)
        if flags & Ring.write != 0 { writable.append(range) } else { readable.append(range) }
    }

    /// Checks every buffer against guest memory, once the chain's shape is
    /// known to be sound (so a chain that is both malformed and out of range
    /// reports the structural error).
    func finish(id: UInt16, descriptorCount: UInt16) throws(ChainRefusal) -> DescriptorChain {
        for range in readable { try check(range) }
        for range in writable { try check(range) }
        return DescriptorChain(id: id, descriptorCount: descriptorCount, readable: readable, writable: writable)
    }

    private func check(_ range: GuestRange) throws(ChainRefusal) {
        do {
            try memory.checkContiguous(range.address, length: UInt64(range.length))
        } catch .crossesRegion {
            // Backed, just by two adjacent regions (checkContiguous verified
            // every byte before reporting the crossing); views handle that.
        } catch {
            throw .bufferOutOfRange(error)
        }
    }

    /// Expands an indirect descriptor (2.7.5.3 split, 2.8.8 packed). The
    /// descriptor's own WRITE flag is ignored (2.7.5.3.2).
    mutating func indirect(address: UInt64, length: UInt32, flags: UInt16, format: TableFormat) throws(ChainRefusal) {
        guard indirectAllowed else { throw .indirectNotNegotiated }
        guard !sawIndirect else { throw .nestedIndirect }
        guard flags & Ring.next == 0 else { throw .indirectWithNext }
        guard length > 0, length % 16 == 0 else { throw .indirectTableLength(length) }
        let entries = Int(length / 16)
        guard entries <= indirectLimit else { throw .indirectTableTooLarge(entries: entries, limit: indirectLimit) }
        sawIndirect = true
        let base = GuestAddress(address)
        do {
            try memory.checkContiguous(base, length: UInt64(length))
        } catch .crossesRegion {
            // Backed; each entry is loaded (and checked) on its own below.
        } catch {
            throw .indirectTableOutOfRange(error)
        }
        func entryAddress(_ i: Int) -> GuestAddress { base.unchecked(plus: UInt64(i) * 16) }
        switch format {
        case .split:
            // Entries chain through `next` inside the table, starting at 0.
            var index = 0
            var count = 0
            while true {
                guard count < entries else { throw .tooLong(limit: entries) }
                count += 1
                let d: vring_desc
                do { d = try memory.load(vring_desc.self, at: entryAddress(index)) } catch { throw .indirectTableOutOfRange(error) }
                let f = UInt16(littleEndian: d.flags)
                guard f & Ring.indirect == 0 else { throw .nestedIndirect }
                try add(address: UInt64(littleEndian: d.addr), length: UInt32(littleEndian: d.len), flags: f)
                guard f & Ring.next != 0 else { break }
                let next = UInt16(littleEndian: d.next)
                guard Int(next) < entries else { throw .nextOutOfRange(next: next, size: entries) }
                index = Int(next)
            }
        case .packed:
            // 2.8.8: the whole table is one chain, in order; NEXT is implied.
            for i in 0..<entries {
                let d: vring_packed_desc
                do { d = try memory.load(vring_packed_desc.self, at: entryAddress(i)) } catch { throw .indirectTableOutOfRange(error) }
                let f = UInt16(littleEndian: d.flags)
                guard f & Ring.indirect == 0 else { throw .nestedIndirect }
                try add(address: UInt64(littleEndian: d.addr), length: UInt32(littleEndian: d.len), flags: f)
            }
        }
    }

}
