import VfsvmMemory
import VfsvmVirtio

/// What went wrong on the driver side of a test.
public enum MockDriverError: Error, Hashable, Sendable, CustomStringConvertible {
    case outOfDescriptors(needed: Int, free: Int)
    case arenaExhausted(requested: Int)
    /// The device returned an id the driver has not got in flight.
    case unknownUsedID(UInt16)
    case memory(GuestMemoryError)
    case queue(VirtqueueError)
    /// Anything else (not expected from the calls the mock makes).
    case other(String)

    /// Sorts an error from a block that mixes memory accesses with the
    /// driver's own checks.
    init(_ error: any Error) {
        switch error {
        case let e as MockDriverError: self = e
        case let e as GuestMemoryError: self = .memory(e)
        case let e as VirtqueueError: self = .queue(e)
        default: self = .other(String(describing: error))
        }
    }

    public var description: String {
        switch self {
        case let .other(e): "driver: \(e)"
        case let .outOfDescriptors(n, f): "driver needs \(n) descriptors, \(f) free"
        case let .arenaExhausted(r): "driver buffer arena cannot fit \(r) more bytes"
        case let .unknownUsedID(id): "device used id \(id), which is not in flight"
        case let .memory(e): "driver memory access: \(e)"
        case let .queue(e): "queue: \(e)"
        }
    }
}

/// One buffer of a chain as the driver posts it.
public struct MockSegment: Hashable, Sendable {
    public var address: GuestAddress
    public var length: UInt32
    public var writable: Bool

    public init(address: GuestAddress, length: UInt32, writable: Bool) {
        self.address = address
        self.length = length
        self.writable = writable
    }
}

/// A used element as the driver reads it back, with the reply bytes: the
/// first `min(length, capacity)` bytes of the chain's writable buffers.
public struct MockCompletion: Hashable, Sendable {
    public var id: UInt16
    public var length: UInt32
    public var reply: [UInt8]

    public init(id: UInt16, length: UInt32, reply: [UInt8]) {
        self.id = id
        self.length = length
        self.reply = reply
    }
}

/// The driver's half of one virtqueue, laid out in a `GuestMemory` exactly
/// as Linux's virtio_ring does it, for either layout:
///
/// - split: descriptor table, avail ring (flags, idx, ring[], used_event),
///   used ring (flags, idx, ring[], avail_event); free descriptors handed
///   out from a free list, indirect tables chained with `next`.
/// - packed: descriptor ring with AVAIL/USED bits per wrap counter, head
///   flags written last, buffer ids from a free list, the driver and device
///   event suppression structures.
///
/// Buffers come from a bump arena in the same memory; the arena rewinds
/// whenever nothing is in flight. Raw writers let hostile tests corrupt
/// anything.
public final class MockDriver {
    public let memory: GuestMemory
    public let layout: RingLayout
    public let queueSize: UInt16
    public let features: VirtioFeatures
    public let descriptorTable: GuestAddress
    public let driverArea: GuestAddress
    public let deviceArea: GuestAddress

    private let arenaStart: UInt64
    private let arenaEnd: UInt64
    private var arenaNext: UInt64

    private struct InFlight {
        var descriptors: [UInt16]   // split: ring descriptor indices used
        var slots: UInt16           // packed: ring slots used
        var writable: [MockSegment]
        var ring: [RingSegment]     // what went into the ring, for `recycle`
    }
    private typealias RingSegment = (address: GuestAddress, length: UInt32, flags: UInt16)
    private var inFlight: [UInt16: InFlight] = [:]

    // Split.
    private var freeDescriptors: [UInt16]
    var availIdx: UInt16          // shadow of avail->idx (next to publish)
    var publishedIdx: UInt16      // last value stored in avail->idx
    var lastUsedIdx: UInt16
    var kickCheckedIdx: UInt16    // avail idx at the last kick decision

    // Packed.
    var nextSlot: UInt16 = 0
    var availWrap = true
    var lastUsedSlot: UInt16 = 0
    var usedWrap = true
    private var freeIDs: [UInt16]
    private var pendingHeads: [(slot: UInt16, flags: UInt16)] = []
    private var kickCheckedSlot: (UInt16, Bool) = (0, true)
    var addedSinceKickCheck = 0

    /// Whether the driver asked not to be interrupted (split
    /// VRING_AVAIL_F_NO_INTERRUPT / packed DISABLE), as Linux tracks it.
    public internal(set) var interruptsSuppressed = false
    /// Like Linux with EVENT_IDX: after reading used entries, set
    /// used_event (split) or the DESC off_wrap (packed, only if DESC mode
    /// was chosen) to the next entry expected.
    public var autoUsedEvent = true

    /// Lays the ring out at `ringBase` in `memory`; buffers go to
    /// `arena` (default: everything after the rings).
    public init(memory: GuestMemory, layout: RingLayout, queueSize: UInt16,
                features: VirtioFeatures = [.version1],
                ringBase: GuestAddress = GuestAddress(0x1000),
                arena: Range<UInt64>? = nil,
                splitStartIndex: UInt16 = 0) throws(MockDriverError) {
        precondition(queueSize > 0)
        self.memory = memory
        self.layout = layout
        self.queueSize = queueSize
        var feats = features
        if layout == .packed { feats.insert(.ringPacked) } else { feats.remove(.ringPacked) }
        self.features = feats
        let n = UInt64(queueSize)
        func align(_ v: UInt64, _ a: UInt64) -> UInt64 { (v + a - 1) & ~(a - 1) }
        descriptorTable = ringBase
        let driverStart = align(ringBase.rawValue + 16 * n, 64)
        driverArea = GuestAddress(driverStart)
        let driverLength: UInt64 = layout == .split ? 6 + 2 * n : 4
        let deviceStart = align(driverStart + driverLength, 64)
        deviceArea = GuestAddress(deviceStart)
        let deviceLength: UInt64 = layout == .split ? 6 + 8 * n : 4
        let ringsEnd = align(deviceStart + deviceLength, 4096)
        let arenaRange = arena ?? ringsEnd..<(memory.regions.last.map { $0.end } ?? ringsEnd)
        arenaStart = arenaRange.lowerBound
        arenaEnd = arenaRange.upperBound
        arenaNext = arenaStart
        freeDescriptors = (0..<queueSize).reversed()
        freeIDs = (0..<queueSize).reversed()
        availIdx = splitStartIndex
        publishedIdx = splitStartIndex
        lastUsedIdx = splitStartIndex
        kickCheckedIdx = splitStartIndex
        do {
            // A driver zeroes its rings before handing them over.
            try memory.fill(0, at: ringBase, count: Int(16 * n))
            try memory.fill(0, at: driverArea, count: Int(driverLength))
            try memory.fill(0, at: deviceArea, count: Int(deviceLength))
            if layout == .split {
                try memory.store(splitStartIndex.littleEndian, at: driverArea.unchecked(plus: 2))
                try memory.store(splitStartIndex.littleEndian, at: deviceArea.unchecked(plus: 2))
            }
        } catch {
            throw .memory(error)
        }
    }

    /// A driver on fresh memory of `memorySize` bytes.
    public convenience init(layout: RingLayout, queueSize: UInt16, features: VirtioFeatures = [.version1],
                            memorySize: Int = 4 << 20, splitStartIndex: UInt16 = 0) throws {
        let memory = try GuestMemory.anonymous(size: memorySize)
        try self.init(memory: memory, layout: layout, queueSize: queueSize, features: features,
                      splitStartIndex: splitStartIndex)
    }

    /// Programs `queue` as a transport would for this ring.
    public func configure(_ queue: inout Virtqueue) {
        queue.size = queueSize
        queue.descriptorTable = descriptorTable
        queue.driverArea = driverArea
        queue.deviceArea = deviceArea
        queue.ready = true
        if layout == .split {
            queue.availState = availIdx
            queue.usedState = lastUsedIdx
        }
    }

    /// A device-side queue for this ring, activated with `features`.
    public func makeQueue(maxSize: UInt16? = nil) throws(MockDriverError) -> Virtqueue {
        var q = Virtqueue(maxSize: maxSize ?? queueSize)
        configure(&q)
        do { try q.activate(memory: memory, features: features) } catch { throw .queue(error) }
        return q
    }

    public var inFlightCount: Int { inFlight.count }
    public var freeDescriptorCount: Int { layout == .split ? freeDescriptors.count : Int(queueSize) - usedSlots }
    /// Packed ring slots held by chains in flight.
    private var usedSlots = 0
    /// Packed driver event flags last set (2 = DESC mode).
    var packedDriverEventMode: UInt16 = 0

    // MARK: - Buffers

    /// `length` bytes from the arena (which rewinds when `collect` finds
    /// nothing left in flight).
    public func allocate(_ length: Int, alignment: UInt64 = 16) throws(MockDriverError) -> GuestAddress {
        let start = (arenaNext + alignment - 1) & ~(alignment - 1)
        guard start + UInt64(length) <= arenaEnd else { throw .arenaExhausted(requested: length) }
        arenaNext = start + UInt64(max(length, 1))
        return GuestAddress(start)
    }

    // MARK: - Adding chains

    /// Allocates and fills readable buffers with `readable`, allocates
    /// writable buffers of `writable` lengths (filled with 0xEE), adds
    /// them as one chain and, if `publish`, makes it available.
    /// Returns the chain's id (split head / packed buffer id).
    @discardableResult
    public func add(readable: [[UInt8]], writable: [UInt32], indirect: Bool = false, publish: Bool = true) throws(MockDriverError) -> UInt16 {
        var segments: [MockSegment] = []
        do {
            for bytes in readable {
                let a = try allocate(bytes.count)
                try memory.writeBytes(bytes, at: a)
                segments.append(MockSegment(address: a, length: UInt32(bytes.count), writable: false))
            }
            for length in writable {
                let a = try allocate(Int(length))
                try memory.fill(0xEE, at: a, count: Int(length))
                segments.append(MockSegment(address: a, length: length, writable: true))
            }
        } catch {
            throw MockDriverError(error)
        }
        return try addChain(segments, indirect: indirect, publish: publish)
    }

    /// "Post these request bytes with a writable buffer of N bytes."
    @discardableResult
    public func post(request: [UInt8], replyCapacity: Int, indirect: Bool = false) throws(MockDriverError) -> UInt16 {
        try add(readable: [request], writable: replyCapacity > 0 ? [UInt32(replyCapacity)] : [], indirect: indirect)
    }

    /// Adds a chain of existing buffers (flags taken from each segment) as
    /// direct descriptors, or as one indirect descriptor pointing to a table.
    @discardableResult
    public func addChain(_ segments: [MockSegment], indirect: Bool = false, publish: Bool = true) throws(MockDriverError) -> UInt16 {
        precondition(!segments.isEmpty, "a chain has at least one descriptor")
        let ringSegments: [RingSegment]
        if indirect {
            let table = try allocate(16 * segments.count)
            do {
                for (i, s) in segments.enumerated() {
                    let last = i == segments.count - 1
                    let e = table.unchecked(plus: UInt64(16 * i))
                    let writeFlag: UInt16 = s.writable ? 2 : 0
                    try memory.store(s.address.rawValue.littleEndian, at: e)
                    try memory.store(s.length.littleEndian, at: e.unchecked(plus: 8))
                    switch layout {
                    case .split:
                        try memory.store((writeFlag | (last ? 0 : 1)).littleEndian, at: e.unchecked(plus: 12))
                        try memory.store(UInt16(last ? 0 : i + 1).littleEndian, at: e.unchecked(plus: 14))
                    case .packed:
                        try memory.store(UInt16(0), at: e.unchecked(plus: 12))
                        try memory.store(writeFlag.littleEndian, at: e.unchecked(plus: 14))
                    }
                }
            } catch {
                throw .memory(error)
            }
            ringSegments = [(table, UInt32(16 * segments.count), 4)]
        } else {
            ringSegments = segments.map { ($0.address, $0.length, $0.writable ? 2 : 0) }
        }
        let writable = segments.filter(\.writable)
        switch layout {
        case .split: return try addSplit(ringSegments, writable: writable, publish: publish)
        case .packed: return try addPacked(ringSegments, writable: writable, publish: publish)
        }
    }

    private func addSplit(_ segs: [RingSegment], writable: [MockSegment],
                          publish: Bool) throws(MockDriverError) -> UInt16 {
        guard segs.count <= freeDescriptors.count else {
            throw .outOfDescriptors(needed: segs.count, free: freeDescriptors.count)
        }
        let indices = (0..<segs.count).map { _ in freeDescriptors.removeLast() }
        do {
            for (i, s) in segs.enumerated() {
                let last = i == segs.count - 1
                try writeSplitDescriptor(index: indices[i], address: s.address, length: s.length,
                                         flags: s.flags | (last ? 0 : 1), next: last ? 0 : indices[i + 1])
            }
            let head = indices[0]
            try memory.store(head.littleEndian, at: driverArea.unchecked(plus: 4 + 2 * UInt64(availIdx & (queueSize - 1))))
            availIdx &+= 1
            inFlight[head] = InFlight(descriptors: indices, slots: 1, writable: writable, ring: segs)
            if publish { try self.publish() }
            return head
        } catch {
            throw MockDriverError(error)
        }
    }

    /// AVAIL/USED bits that make a descriptor available in lap `wrap`.
    public static func packedAvailFlags(wrap: Bool) -> UInt16 { wrap ? 1 << 7 : 1 << 15 }

    /// The flags bits that make the descriptor at the driver's next slot available now.
    public var currentAvailFlags: UInt16 { Self.packedAvailFlags(wrap: availWrap) }

    private func addPacked(_ segs: [RingSegment], writable: [MockSegment],
                           publish: Bool) throws(MockDriverError) -> UInt16 {
        let free = Int(queueSize) - usedSlots
        guard segs.count <= free, let id = freeIDs.popLast() else {
            throw .outOfDescriptors(needed: segs.count, free: free)
        }
        let headSlot = nextSlot
        var headFlags: UInt16 = 0
        do {
            for (i, s) in segs.enumerated() {
                let last = i == segs.count - 1
                let flags = s.flags | (last ? 0 : 1) | Self.packedAvailFlags(wrap: availWrap)
                if i == 0 {
                    headFlags = flags
                    // Everything but the flags now; flags at publish.
                    try writePackedDescriptor(slot: nextSlot, address: s.address, length: s.length, id: id, flags: nil)
                } else {
                    try writePackedDescriptor(slot: nextSlot, address: s.address, length: s.length, id: id, flags: flags)
                }
                nextSlot += 1
                if nextSlot == queueSize { nextSlot = 0; availWrap.toggle() }
            }
        } catch {
            throw .memory(error)
        }
        inFlight[id] = InFlight(descriptors: [], slots: UInt16(segs.count), writable: writable, ring: segs)
        usedSlots += segs.count
        pendingHeads.append((headSlot, headFlags))
        addedSinceKickCheck += segs.count
        if publish { try self.publish() }
        return id
    }

    /// Makes everything added so far visible to the device: split stores
    /// avail->idx with release; packed stores the head flags (release).
    public func publish() throws(MockDriverError) {
        do {
            switch layout {
            case .split:
                try memory.storeReleaseUInt16(availIdx, at: driverArea.unchecked(plus: 2))
                publishedIdx = availIdx
            case .packed:
                for h in pendingHeads {
                    try memory.storeReleaseUInt16(h.flags, at: descriptorTable.unchecked(plus: 16 * UInt64(h.slot) + 14))
                }
                pendingHeads.removeAll()
            }
        } catch {
            throw .memory(error)
        }
    }

    // MARK: - Reading used buffers

    /// Every used element the device has written since the last call, in
    /// order, with reply bytes; frees their descriptors and ids.
    public func collect() throws(MockDriverError) -> [MockCompletion] {
        var out: [MockCompletion] = []
        do {
            switch layout {
            case .split:
                let usedIdx = try memory.loadAcquireUInt16(at: deviceArea.unchecked(plus: 2))
                while lastUsedIdx != usedIdx {
                    let (id, length) = try splitUsedElement()
                    guard let f = inFlight.removeValue(forKey: id) else { throw MockDriverError.unknownUsedID(id) }
                    freeDescriptors.append(contentsOf: f.descriptors.reversed())
                    out.append(MockCompletion(id: id, length: length, reply: try replyBytes(f.writable, length)))
                    lastUsedIdx &+= 1
                }
                if autoUsedEvent && features.contains(.eventIndex) && !interruptsSuppressed {
                    try memory.store(lastUsedIdx.littleEndian, at: driverArea.unchecked(plus: 4 + 2 * UInt64(queueSize)))
                    GuestMemory.fullFence()
                }
            case .packed:
                while let (id, length, f) = try takePackedUsed() {
                    out.append(MockCompletion(id: id, length: length, reply: try replyBytes(f.writable, length)))
                }
                if autoUsedEvent && features.contains(.eventIndex) && packedDriverEventMode == 2 {
                    try setPackedDriverEvent(flags: 2, offset: lastUsedSlot, wrap: usedWrap)
                }
            }
        } catch {
            throw MockDriverError(error)
        }
        if !out.isEmpty && inFlight.isEmpty { arenaNext = arenaStart }
        return out
    }

    /// Benchmark refill: takes every used element and posts the same chain
    /// (same buffers, same indirect table) again, then publishes once.
    /// Split reuses the untouched descriptors (only the avail ring is
    /// written); packed rewrites the chain at the next slots. Returns how
    /// many chains were recycled.
    @discardableResult
    public func recycle() throws(MockDriverError) -> Int {
        var count = 0
        do {
            switch layout {
            case .split:
                let usedIdx = try memory.loadAcquireUInt16(at: deviceArea.unchecked(plus: 2))
                while lastUsedIdx != usedIdx {
                    let (id, _) = try splitUsedElement()
                    guard inFlight[id] != nil else { throw MockDriverError.unknownUsedID(id) }
                    try memory.store(id.littleEndian, at: driverArea.unchecked(plus: 4 + 2 * UInt64(availIdx & (queueSize - 1))))
                    availIdx &+= 1
                    lastUsedIdx &+= 1
                    count += 1
                }
            case .packed:
                while let (_, _, f) = try takePackedUsed() {
                    _ = try addPacked(f.ring, writable: f.writable, publish: false)
                    count += 1
                }
            }
            if count > 0 { try publish() }
        } catch {
            throw MockDriverError(error)
        }
        return count
    }

    /// The split used element at `lastUsedIdx`: its id (checked against
    /// the ring size) and written length.
    private func splitUsedElement() throws -> (id: UInt16, length: UInt32) {
        let e = deviceArea.unchecked(plus: 4 + 8 * UInt64(lastUsedIdx & (queueSize - 1)))
        let rawID = UInt32(littleEndian: try memory.load(UInt32.self, at: e))
        let length = UInt32(littleEndian: try memory.load(UInt32.self, at: e.unchecked(plus: 4)))
        guard rawID < UInt32(queueSize) else { throw MockDriverError.unknownUsedID(UInt16(truncatingIfNeeded: rawID)) }
        return (UInt16(rawID), length)
    }

    /// The packed used descriptor at `lastUsedSlot`, if the device has
    /// marked it used: takes its chain out of flight and steps past the
    /// slots it held (toggling the wrap counter); nil when none is used.
    private func takePackedUsed() throws -> (id: UInt16, length: UInt32, InFlight)? {
        let d = descriptorTable.unchecked(plus: 16 * UInt64(lastUsedSlot))
        let flags = try memory.loadAcquireUInt16(at: d.unchecked(plus: 14))
        guard (flags & (1 << 7) != 0) == usedWrap && (flags & (1 << 15) != 0) == usedWrap else { return nil }
        let id = UInt16(littleEndian: try memory.load(UInt16.self, at: d.unchecked(plus: 12)))
        let length = UInt32(littleEndian: try memory.load(UInt32.self, at: d.unchecked(plus: 8)))
        guard let f = inFlight.removeValue(forKey: id) else { throw MockDriverError.unknownUsedID(id) }
        usedSlots -= Int(f.slots)
        freeIDs.append(id)
        let advanced = Int(lastUsedSlot) + Int(f.slots)
        lastUsedSlot = UInt16(advanced % Int(queueSize))
        if advanced >= Int(queueSize) { usedWrap.toggle() }
        return (id, length, f)
    }

    private func replyBytes(_ writable: [MockSegment], _ length: UInt32) throws(GuestMemoryError) -> [UInt8] {
        var remaining = Int(length)
        var bytes: [UInt8] = []
        for s in writable where remaining > 0 {
            let n = min(remaining, Int(s.length))
            bytes += try memory.readBytes(at: s.address, count: n)
            remaining -= n
        }
        return bytes
    }
}
