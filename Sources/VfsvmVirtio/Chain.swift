import VfsvmMemory

/// One buffer of a descriptor chain: `length` bytes at `address`, already
/// checked to be backed by guest memory and not to overflow.
public struct GuestRange: Hashable, Sendable, CustomStringConvertible {
    public var address: GuestAddress
    public var length: UInt32

    public init(address: GuestAddress, length: UInt32) {
        self.address = address
        self.length = length
    }

    public var description: String { "\(address)+\(length)" }
}

/// A validated descriptor chain, as popped from a virtqueue: device-readable
/// buffers then device-writable buffers (virtio 1.2, 2.7.4 "Message
/// Framing"; the order is enforced when the chain is parsed).
///
/// Zero-length descriptors are accepted (the spec puts no lower bound on
/// `len`) but contribute no range.
public struct DescriptorChain: Hashable, Sendable {
    /// Split ring: the head descriptor index. Packed ring: the buffer id
    /// (taken from the last descriptor of the chain, 2.8.6).
    public let id: UInt16
    /// Ring descriptors the chain used: for the packed ring the number of
    /// slots to skip when the chain is completed (2.8.6 "Next Flag:
    /// Descriptor Chaining"); for the split ring informational.
    public let descriptorCount: UInt16
    /// Every buffer, the readable ones first (up to four held inline: no
    /// allocation for a chain of that size).
    let ranges: ChainRanges
    /// How many of `ranges` are device-readable.
    let readableCount: Int
    /// Total bytes the device may read (fits in UInt32: 2.7.13.1).
    public let readableLength: Int
    /// Total bytes the device may write.
    public let writableLength: Int

    public init(id: UInt16, descriptorCount: UInt16, readable: [GuestRange], writable: [GuestRange]) {
        var ranges = ChainRanges()
        for r in readable + writable { ranges.append(r) }
        self.init(id: id, descriptorCount: descriptorCount, ranges: ranges, readableCount: readable.count,
                  readableLength: readable.reduce(0) { $0 + Int($1.length) },
                  writableLength: writable.reduce(0) { $0 + Int($1.length) })
    }

    init(id: UInt16, descriptorCount: UInt16, ranges: ChainRanges, readableCount: Int, readableLength: Int, writableLength: Int) {
        self.id = id
        self.descriptorCount = descriptorCount
        self.ranges = ranges
        self.readableCount = readableCount
        self.readableLength = readableLength
        self.writableLength = writableLength
    }

    /// The device-readable buffers, in order.
    public var readable: [GuestRange] { (0..<readableCount).map { ranges[$0] } }
    /// The device-writable buffers, in order.
    public var writable: [GuestRange] { (readableCount..<ranges.count).map { ranges[$0] } }

    /// The device-readable bytes as a scatter-gather view over `memory`.
    public func readableBuffers(_ memory: GuestMemory) throws(GuestMemoryError) -> GuestBufferList {
        try buffers(memory, 0..<readableCount, byteCount: readableLength)
    }

    /// The device-writable bytes as a scatter-gather view over `memory`.
    public func writableBuffers(_ memory: GuestMemory) throws(GuestMemoryError) -> GuestBufferList {
        try buffers(memory, readableCount..<ranges.count, byteCount: writableLength)
    }

    /// The ranges resolved straight into the view's one segment array (no
    /// intermediate array per half).
    private func buffers(_ memory: GuestMemory, _ slots: Range<Int>, byteCount: Int) throws(GuestMemoryError) -> GuestBufferList {
        guard !slots.isEmpty else { return .empty(memory) }
        if slots.count == 1, let one = try memory.singleSegment(at: ranges[slots.lowerBound].address,
                                                                length: UInt64(ranges[slots.lowerBound].length)) {
            return GuestBufferList(memory: memory, resolved: one)
        }
        // Two non-empty buffers, each inside one region (a READ's reply, a
        // WRITE's request): held inline, no array per request.
        if slots.count == 2, ranges[slots.lowerBound].length > 0, ranges[slots.lowerBound + 1].length > 0,
           let first = try memory.singleSegment(at: ranges[slots.lowerBound].address, length: UInt64(ranges[slots.lowerBound].length)),
           let second = try memory.singleSegment(at: ranges[slots.lowerBound + 1].address, length: UInt64(ranges[slots.lowerBound + 1].length)) {
            return GuestBufferList(memory: memory, resolved: first, second)
        }
        var segments: [HostSegment] = []
        segments.reserveCapacity(slots.count)
        for i in slots {
            try memory.appendSegments(at: ranges[i].address, length: UInt64(ranges[i].length), to: &segments)
        }
        return GuestBufferList(memory: memory, resolved: segments, byteCount: byteCount)
    }
}

/// A chain's buffers in order: the first four inline, all of them in an
/// array once there are more (Linux's virtio-fs puts a GETATTR or LOOKUP in
/// two, a small READ or WRITE in three).
struct ChainRanges: Hashable, Sendable {
    static let inlineCapacity = 4
    private var inline = (GuestRange.none, GuestRange.none, GuestRange.none, GuestRange.none)
    /// Every range once `count` exceeds `inlineCapacity`; nil before. An
    /// optional, not an empty array: a chain is copied several times per
    /// request (pop, the pass's array, the request, the used element), and
    /// each copy of an empty array retains and releases the shared empty
    /// storage (~20 instructions each way) where nil costs a null check.
    private var spilled: [GuestRange]?
    private(set) var count = 0

    init() {}

    subscript(i: Int) -> GuestRange {
        precondition(i >= 0 && i < count, "chain range index out of bounds")
        if let spilled { return spilled[i] }
        switch i {
        case 0: return inline.0
        case 1: return inline.1
        case 2: return inline.2
        default: return inline.3
        }
    }

    mutating func append(_ r: GuestRange) {
        switch count {
        case 0: inline.0 = r
        case 1: inline.1 = r
        case 2: inline.2 = r
        case 3: inline.3 = r
        case Self.inlineCapacity:
            var all: [GuestRange] = []
            all.reserveCapacity(2 * Self.inlineCapacity)
            all += [inline.0, inline.1, inline.2, inline.3, r]
            spilled = all
        default: spilled!.append(r)
        }
        count += 1
    }

    static func == (a: ChainRanges, b: ChainRanges) -> Bool {
        a.count == b.count && (0..<a.count).allSatisfy { a[$0] == b[$0] }
    }

    func hash(into h: inout Hasher) {
        h.combine(count)
        for i in 0..<count { h.combine(self[i]) }
    }
}

extension GuestRange {
    /// A placeholder for an unused inline slot.
    static let none = GuestRange(address: GuestAddress(0), length: 0)
}

/// Why a chain was refused. Each case cites the rule the driver broke.
public enum ChainRefusal: Error, Hashable, Sendable, CustomStringConvertible {
    /// More descriptors than allowed: the queue size for descriptors in the
    /// ring (2.7.5.2 / 2.8: "A driver MUST NOT create a descriptor chain
    /// longer than the Queue Size of the device"), which is also how a
    /// looping `next` chain ends (2.7.13.1: "loops in the descriptor chain
    /// are forbidden").
    case tooLong(limit: Int)
    /// INDIRECT without VIRTIO_F_INDIRECT_DESC (2.7.5.3.1).
    case indirectNotNegotiated
    /// INDIRECT inside an indirect table (2.7.5.3.1: "MUST NOT set the
    /// VIRTQ_DESC_F_INDIRECT flag within an indirect descriptor").
    case nestedIndirect
    /// INDIRECT together with NEXT (2.7.5.3.1: "MUST NOT set both").
    case indirectWithNext
    /// An indirect table whose length is 0 or not a multiple of 16 (the
    /// table holds `len / 16` whole descriptors, 2.7.5.3 / 2.8.8).
    case indirectTableLength(UInt32)
    /// An indirect table with more entries than `limit` (see
    /// `Virtqueue.indirectEntryLimit`).
    case indirectTableTooLarge(entries: Int, limit: Int)
    /// An indirect table not backed by guest memory, or overflowing.
    case indirectTableOutOfRange(GuestMemoryError)
    /// A split `next` field (or next inside an indirect table) out of range
    /// (2.7.5: next must index the table).
    case nextOutOfRange(next: UInt16, size: Int)
    /// A buffer not backed by guest memory, or overflowing.
    case bufferOutOfRange(GuestMemoryError)
    /// The chain's total length exceeds 2^32 - 1 bytes (2.7.13.1: "Drivers
    /// MUST NOT add a descriptor chain longer than 2^32 bytes in total").
    case lengthOverflow
    /// A device-readable descriptor after a device-writable one (2.7.4.2 /
    /// 2.8.4: "The driver MUST place any device-writable descriptor
    /// elements after any device-readable descriptor elements").
    case readableAfterWritable

    public var description: String {
        switch self {
        case let .tooLong(l): "descriptor chain longer than \(l) descriptors (or looping)"
        case .indirectNotNegotiated: "INDIRECT descriptor without VIRTIO_F_INDIRECT_DESC"
        case .nestedIndirect: "INDIRECT descriptor inside an indirect table"
        case .indirectWithNext: "descriptor has both INDIRECT and NEXT"
        case let .indirectTableLength(l): "indirect table length \(l) is 0 or not a multiple of 16"
        case let .indirectTableTooLarge(e, l): "indirect table of \(e) entries exceeds \(l)"
        case let .indirectTableOutOfRange(e): "indirect table: \(e)"
        case let .nextOutOfRange(n, s): "next index \(n) outside a table of \(s)"
        case let .bufferOutOfRange(e): "buffer: \(e)"
        case .lengthOverflow: "descriptor chain longer than 2^32 - 1 bytes"
        case .readableAfterWritable: "device-readable descriptor after a device-writable one"
        }
    }
}

/// A malformed chain that was taken off the ring. The device completes it
/// with `pushUsed(id:descriptorCount:length: 0)` and carries on.
public struct RefusedChain: Hashable, Sendable, CustomStringConvertible {
    public let id: UInt16
    public let descriptorCount: UInt16
    public let reason: ChainRefusal

    public init(id: UInt16, descriptorCount: UInt16, reason: ChainRefusal) {
        self.id = id
        self.descriptorCount = descriptorCount
        self.reason = reason
    }

    public var description: String { "chain \(id) refused: \(reason)" }
}

/// Which ring structure a layout error names.
public enum QueueArea: String, Hashable, Sendable {
    case descriptorTable = "descriptor table"
    case driverArea = "driver area"
    case deviceArea = "device area"
}

/// Errors from a virtqueue. `refusedChain` is per-request; everything else
/// with `isFatal` means the ring cannot be trusted: the device sets
/// DEVICE_NEEDS_RESET (2.1.2) and stops processing the queue.
public enum VirtqueueError: Error, Hashable, Sendable, CustomStringConvertible {
    /// A malformed chain, consumed; complete it with length 0.
    case refusedChain(RefusedChain)
    /// The queue is not ready or not activated.
    case notActive
    /// Queue size 0, above the maximum, or (split ring) not a power of two
    /// (2.7: "Queue Size ... MUST be a power of 2"; 2.8: any value up to 2^15).
    case invalidSize(size: UInt16, maxSize: UInt16, packed: Bool)
    /// A packed ring base (vhost-user SET_VRING_BASE) outside the ring.
    case invalidBase(avail: UInt16, used: UInt16, size: UInt16)
    /// A ring area misaligned (2.7 / 2.8 alignment tables).
    case misaligned(QueueArea, GuestAddress, alignment: Int)
    /// A ring area not inside one guest memory region.
    case areaOutOfRange(QueueArea, GuestMemoryError)
    /// A ring access failed after activation (memory replaced under the queue).
    case memory(GuestMemoryError)
    /// The driver's avail idx moved more than the queue size past the
    /// device's next index (2.7.6: idx only advances by buffers added).
    case availIndexJump(next: UInt16, published: UInt16, size: UInt16)
    /// A split head index from the avail ring is not a descriptor index.
    case headOutOfRange(head: UInt16, size: UInt16)
    /// A packed buffer id outside 0..<size (2.8.6: ids are < queue size).
    case bufferIDOutOfRange(id: UInt16, size: UInt16)
    /// A packed chain whose NEXT flags run round the whole ring.
    case packedChainUnterminated(start: UInt16, size: UInt16)
    /// The device itself asked to complete something impossible (an id or
    /// descriptor count out of range): a bug in the caller, nothing written.
    case badCompletion(id: UInt16, descriptorCount: UInt16)

    public var isFatal: Bool {
        switch self {
        case .refusedChain, .badCompletion: false
        default: true
        }
    }

    public var description: String {
        switch self {
        case let .refusedChain(r): r.description
        case .notActive: "virtqueue is not active"
        case let .invalidSize(s, m, p): "queue size \(s) invalid (max \(m)\(p ? "" : ", power of two"))"
        case let .invalidBase(a, u, s): "ring base avail \(a) / used \(u) outside queue size \(s)"
        case let .misaligned(a, addr, al): "\(a.rawValue) at \(addr) is not \(al)-byte aligned"
        case let .areaOutOfRange(a, e): "\(a.rawValue): \(e)"
        case let .memory(e): "ring access: \(e)"
        case let .availIndexJump(n, p, s): "avail idx jumped from \(n) to \(p) (queue size \(s))"
        case let .headOutOfRange(h, s): "avail ring head \(h) outside queue size \(s)"
        case let .bufferIDOutOfRange(i, s): "packed buffer id \(i) outside queue size \(s)"
        case let .packedChainUnterminated(st, s): "packed chain at \(st) has no end within \(s) descriptors"
        case let .badCompletion(i, c): "completion of id \(i) with \(c) descriptors is out of range"
        }
    }
}
