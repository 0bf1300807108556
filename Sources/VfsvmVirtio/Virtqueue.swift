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

    // Frozen at activation. Internal (not private) so the split and packed
    // halves in SplitRing.swift and PackedRing.swift reach them; nothing
    // outside this type touches them.
    var ringSize: UInt16 = 0
    var table = GuestAddress(0)
    var driver = GuestAddress(0)
    var device = GuestAddress(0)
    var eventIndex = false
    var indirectAllowed = false

    /// The three areas as host views, resolved for `areasMemory` on the
    /// first ring access with that memory object (every ring access after
    /// that skips the region lookup). A memory table change is a new
    /// `GuestMemory` object, so the next access resolves again (and fails,
    /// breaking the ring, if the areas are no longer backed); `activate`
    /// drops them. Holding `areasMemory` keeps the viewed mappings alive.
    var areas: RingAreas?
    var areasMemory: GuestMemory?

    struct RingAreas {
        var table: GuestArea
        var driver: GuestArea
        var device: GuestArea
    }

    // Split: free-running 16-bit indices. Packed: slot index + wrap counter.
    var nextAvail: UInt16 = 0
    var availWrap = true
    var nextUsed: UInt16 = 0
    var usedWrap = true

    private var savedAvailState: UInt16?
    private var savedUsedState: UInt16?

    var notificationsEnabled = true
    /// Used elements (split) or ring slots (packed) written since the last
    /// `needsInterrupt`.
    var pendingUsed = 0

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
        let lengths = Self.areaLengths(packed: packed, size: size)
        // 2.7 table "Virtqueue Part / Alignment / Size" and 2.8.10-2.8.11.
        let areas: [(QueueArea, GuestAddress, Int, UInt64)] = [
            (.descriptorTable, descriptorTable, 16, lengths.table),
            (.driverArea, driverArea, packed ? 4 : 2, lengths.driver),
            (.deviceArea, deviceArea, 4, lengths.device)]
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
        self.areas = nil
        areasMemory = nil
    }

    /// Bytes of the descriptor table, driver and device areas (2.7 table
    /// "Virtqueue Part / Alignment / Size"; 2.8.10-2.8.11 for packed).
    static func areaLengths(packed: Bool, size: UInt16) -> (table: UInt64, driver: UInt64, device: UInt64) {
        let n = UInt64(size)
        return packed ? (16 * n, 4, 4) : (16 * n, 6 + 2 * n, 6 + 8 * n)
    }

    /// The ring areas in `memory`: the cached views when they were resolved
    /// for this very object, else resolved now (and cached).
    @inline(__always)
    mutating func rings(_ memory: GuestMemory) throws(VirtqueueError) -> RingAreas {
        if let areas, areasMemory === memory { return areas }
        let resolved = try resolveAreas(memory)
        areas = resolved
        areasMemory = memory
        return resolved
    }

    /// `rings` for a caller that cannot update the cache.
    func peekRings(_ memory: GuestMemory) throws(VirtqueueError) -> RingAreas {
        if let areas, areasMemory === memory { return areas }
        return try resolveAreas(memory)
    }

    private func resolveAreas(_ memory: GuestMemory) throws(VirtqueueError) -> RingAreas {
        guard let layout else { throw .notActive }
        let lengths = Self.areaLengths(packed: layout == .packed, size: ringSize)
        do {
            return RingAreas(table: try memory.area(at: table, length: lengths.table),
                             driver: try memory.area(at: driver, length: lengths.driver),
                             device: try memory.area(at: device, length: lengths.device))
        } catch {
            throw .memory(error)
        }
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
        let r = try rings(memory)
        nextUsed = try ringLoadAcquire16(r.device, 2)
    }

    private func encode(_ index: UInt16, _ wrap: Bool) -> UInt16 {
        layout == .packed ? (index | (wrap ? Ring.wrapBit : 0)) : index
    }

    private static func decode(_ value: UInt16, _ layout: RingLayout) -> (UInt16, Bool) {
        layout == .packed ? (value & ~Ring.wrapBit, value & Ring.wrapBit != 0) : (value, true)
    }

    // MARK: - The ring operations, one entry point each (split in
    // SplitRing.swift, packed in PackedRing.swift)

    /// The next available chain, or nil when the driver has published none.
    public mutating func pop(_ memory: GuestMemory) throws(VirtqueueError) -> DescriptorChain? {
        guard layout != nil else { throw VirtqueueError.notActive }
        // Resolved before the call: `self.popSplit(_, rings(...))` would
        // copy the whole queue to evaluate the receiver first.
        let r = try rings(memory)
        return layout == .split ? try popSplit(memory, r) : try popPacked(memory, r)
    }

    /// Writes the used element for a chain: `id` and the number of bytes
    /// written into its writable buffers. Split: the next used ring slot,
    /// then used->idx with release. Packed: the descriptor at the device's
    /// used cursor (the slot of the chain's first descriptor when chains are
    /// completed in order), flags last with release, then the cursor moves
    /// by `descriptorCount` (2.8.7).
    public mutating func pushUsed(id: UInt16, descriptorCount: UInt16, length: UInt32, _ memory: GuestMemory) throws(VirtqueueError) {
        guard layout != nil else { throw .notActive }
        let r = try rings(memory)
        if layout == .split {
            try pushUsedSplit(id: id, descriptorCount: descriptorCount, length: length, r)
        } else {
            try pushUsedPacked(id: id, descriptorCount: descriptorCount, length: length, r)
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
        let r = try rings(memory)
        switch layout {
        case .split: return try splitNeedsInterrupt(r, pending: pending)
        case .packed: return try packedNeedsInterrupt(r, pending: pending)
        }
    }

    /// Asks the driver not to notify (kick) while the device drains the
    /// queue (see `writeKickRequest`).
    public mutating func disableNotifications(_ memory: GuestMemory) throws(VirtqueueError) {
        guard isActive else { throw .notActive }
        notificationsEnabled = false
        // Split with EVENT_IDX, turning kicks off is leaving avail_event
        // where it is (2.7.10): nothing to write, no ring to resolve.
        if eventIndex && layout == .split { return }
        let r = try rings(memory)
        try writeKickRequest(r)
    }

    /// Asks the driver to notify again, then re-checks the ring: returns
    /// true when buffers became available while notifications were off
    /// (the driver may not have kicked for them; pop again).
    public mutating func enableNotifications(_ memory: GuestMemory) throws(VirtqueueError) -> Bool {
        guard isActive else { throw .notActive }
        notificationsEnabled = true
        let r = try rings(memory)
        try writeKickRequest(r)
        // The store must be visible before we look at the ring again, or
        // the driver and we could both conclude the other will act.
        GuestMemory.fullFence()
        return try hasAvailable(r)
    }

    /// The one place that tells the driver whether to kick (split: 2.7.7 and
    /// 2.7.10; packed: 2.8.10). Inlined, as `hasAvailable(_:)` is: called
    /// from `enableNotifications`, each copied the whole queue (a memcpy) to
    /// pass it as the receiver.
    @inline(__always)
    func writeKickRequest(_ r: RingAreas) throws(VirtqueueError) {
        switch layout {
        case .split: try writeSplitKickRequest(r)
        case .packed: try writePackedKickRequest(r)
        case nil: throw .notActive
        }
    }

    /// True when a chain is waiting (without consuming it).
    public func hasAvailable(_ memory: GuestMemory) throws(VirtqueueError) -> Bool {
        try hasAvailable(try peekRings(memory))
    }

    @inline(__always)
    func hasAvailable(_ r: RingAreas) throws(VirtqueueError) -> Bool {
        switch layout {
        case .split: try splitHasAvailable(r)
        case .packed: try packedHasAvailable(r)
        case nil: throw .notActive
        }
    }

    // MARK: - Ring access (validated at activation; errors here are fatal)

    @inline(__always)
    func ringLoad<T: BitwiseCopyable>(_ area: GuestArea, _ offset: UInt64) throws(VirtqueueError) -> T {
        do { return try area.load(T.self, at: offset) } catch { throw .memory(error) }
    }

    @inline(__always)
    func ringStore<T: BitwiseCopyable>(_ area: GuestArea, _ value: T, _ offset: UInt64) throws(VirtqueueError) {
        do { try area.store(value, at: offset) } catch { throw .memory(error) }
    }

    func ringLoadAcquire16(_ area: GuestArea, _ offset: UInt64) throws(VirtqueueError) -> UInt16 {
        do { return try area.loadAcquireUInt16(at: offset) } catch { throw .memory(error) }
    }

    func ringStoreRelease16(_ area: GuestArea, _ value: UInt16, _ offset: UInt64) throws(VirtqueueError) {
        do { try area.storeReleaseUInt16(value, at: offset) } catch { throw .memory(error) }
    }
}
