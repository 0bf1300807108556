import VfsvmSys
import CVfsvmLinux

/// One contiguous range of guest-physical memory backed by a host mapping.
public struct GuestRegion: Sendable {
    public let start: GuestAddress
    public let mapping: MemoryMapping
    /// Set for a front-end's unsealed file (`frontendShared`).
    let truncationGuard: TruncationGuard?

    public var size: UInt64 { UInt64(mapping.count) }
    /// First address past the region (may equal 2^64 only in theory; regions
    /// are checked not to wrap when the memory is built).
    public var end: UInt64 { start.rawValue &+ size }

    public init(start: GuestAddress, mapping: MemoryMapping) {
        self.init(start: start, mapping: mapping, guard: nil)
    }

    init(start: GuestAddress, mapping: MemoryMapping, guard truncationGuard: TruncationGuard?) {
        self.start = start
        self.mapping = mapping
        self.truncationGuard = truncationGuard
    }

    /// A new memfd-backed region, so the same pages can later be handed to
    /// KVM or a vhost-user frontend by fd.
    public static func memfd(at start: GuestAddress, size: Int, name: String = "vfsvm-guest-ram") throws(SystemError) -> GuestRegion {
        let fd = try MemFD.create(name: name, size: size)
        return GuestRegion(start: start, mapping: try MemoryMapping(fd: fd, count: size))
    }

    @inlinable
    func contains(_ address: UInt64) -> Bool { address >= start.rawValue && address - start.rawValue < size }
}

/// A guest's physical memory: a fixed set of non-overlapping regions.
///
/// Every access is bounds- and overflow-checked and throws
/// `GuestMemoryError` on a bad guest address; no access reaches outside the
/// mappings. The object is immutable: when a vhost-user frontend sends a new
/// memory table, a new `GuestMemory` replaces the old one, and buffers that
/// still reference the old one keep it (and its mappings) alive.
///
/// Multi-byte values are little-endian (virtio 1.x is little-endian and so
/// is every host vfsvm runs on; see `load(_:at:)`).
public final class GuestMemory: Sendable {
    public let regions: [GuestRegion]
    /// The regions as plain values (start, size, host base), in the same
    /// order: the address lookups below walk these, so a ring access
    /// retains and releases nothing (a `GuestRegion` holds two objects).
    @usableFromInline let spans: [Span]

    /// One region's bounds and host address; the mapping itself stays
    /// alive through `regions`.
    @usableFromInline
    struct Span: @unchecked Sendable {
        // @unchecked: the pointer is into a mapping `regions` keeps alive
        // as long as this GuestMemory; it is never freed through here.
        @usableFromInline let start: UInt64
        @usableFromInline let size: UInt64
        @usableFromInline let base: UnsafeMutableRawPointer
    }

    public init(regions: [GuestRegion]) throws(GuestMemoryError) {
        let sorted = regions.sorted { $0.start < $1.start }
        for (i, r) in sorted.enumerated() {
            if r.size == 0 { throw .badRegion("region at \(r.start) is empty") }
            if r.start.adding(r.size) == nil && r.start.rawValue &+ r.size != 0 {
                throw .badRegion("region at \(r.start) of \(r.size) bytes wraps the address space")
            }
            if i > 0, sorted[i - 1].end > r.start.rawValue {
                throw .badRegion("regions at \(sorted[i - 1].start) and \(r.start) overlap")
            }
        }
        self.regions = sorted
        spans = sorted.map { Span(start: $0.start.rawValue, size: $0.size, base: $0.mapping.base) }
    }

    /// One memfd-backed region of `size` bytes at guest address 0: the
    /// layout most tests and the vhost-user mock use.
    public static func anonymous(size: Int, at start: GuestAddress = GuestAddress(0)) throws -> GuestMemory {
        try GuestMemory(regions: [GuestRegion.memfd(at: start, size: size)])
    }

    /// Total bytes across all regions.
    public var size: UInt64 { regions.reduce(0) { $0 + $1.size } }

    // MARK: - The one place guest addresses become host pointers

    /// The region holding `address`, or nil.
    @inlinable
    func region(containing address: UInt64) -> GuestRegion? {
        for r in regions where r.contains(address) { return r }
        return nil
    }

    func span(containing address: UInt64) -> Span? {
        for r in spans where address >= r.start && address - r.start < r.size { return r }
        return nil
    }

    /// A host pointer to `[address, address + length)`, which must lie
    /// inside one region. `length` may be 0 (the address must still be
    /// backed, except exactly at a region's end).
    @usableFromInline
    func contiguousPointer(at address: GuestAddress, length: UInt64) throws(GuestMemoryError) -> UnsafeMutableRawPointer {
        guard address.adding(length) != nil else { throw .overflow(address: address, length: length) }
        for r in spans where address.rawValue >= r.start {
            let offset = address.rawValue - r.start
            // At or past this region's end: the address belongs to a later
            // region (one may start exactly here), except for an empty
            // range right at the end.
            guard offset < r.size || (offset == r.size && length == 0) else { continue }
            if length <= r.size - offset { return r.base + Int(offset) }
            // Starts here but runs past the end: is the rest backed at all?
            _ = try segments(at: address, length: length)
            throw .crossesRegion(address: address, length: length)
        }
        throw .outOfRange(address: address, length: length)
    }

    /// `[address, address + length)` as host segments, split where the range
    /// crosses from one region into an adjacent one. Throws if any byte is
    /// unbacked or the range overflows.
    public func segments(at address: GuestAddress, length: UInt64) throws(GuestMemoryError) -> [HostSegment] {
        var result: [HostSegment] = []
        try appendSegments(at: address, length: length, to: &result)
        return result
    }

    /// `segments(at:length:)` appended to `list` (no array of its own: a
    /// descriptor chain's buffers resolve into one list per request).
    public func appendSegments(at address: GuestAddress, length: UInt64, to list: inout [HostSegment]) throws(GuestMemoryError) {
        guard address.adding(length) != nil else { throw .overflow(address: address, length: length) }
        var cursor = address.rawValue
        var remaining = length
        while remaining > 0 {
            guard let r = span(containing: cursor) else { throw .outOfRange(address: address, length: length) }
            let offset = cursor - r.start
            let take = min(remaining, r.size - offset)
            list.append(HostSegment(base: r.base + Int(offset), count: Int(take)))
            cursor += take
            remaining -= take
        }
    }

    /// `[address, address + length)` as one host segment, or nil when it
    /// runs from one region into an adjacent one (every byte backed; use
    /// `appendSegments`). Throws like `segments(at:length:)` otherwise.
    package func singleSegment(at address: GuestAddress, length: UInt64) throws(GuestMemoryError) -> HostSegment? {
        do {
            return HostSegment(base: try contiguousPointer(at: address, length: length), count: Int(length))
        } catch .crossesRegion {
            return nil
        } catch {
            throw error
        }
    }

    /// Checks that `[address, address + length)` is backed by one region,
    /// without touching it. Used to validate ring layouts up front.
    public func checkContiguous(_ address: GuestAddress, length: UInt64) throws(GuestMemoryError) {
        _ = try contiguousPointer(at: address, length: length)
    }

    /// Checks that every byte of `[address, address + length)` is backed.
    public func checkRange(_ address: GuestAddress, length: UInt64) throws(GuestMemoryError) {
        _ = try segments(at: address, length: length)
    }

    // MARK: - Plain values

    /// Loads a plain value (an integer, or a C struct from the UAPI headers
    /// such as `vring_desc`) from guest memory. Unaligned loads are allowed;
    /// the value must lie inside one region.
    @inlinable
    public func load<T: BitwiseCopyable>(_ type: T.Type = T.self, at address: GuestAddress) throws(GuestMemoryError) -> T {
        let p = try contiguousPointer(at: address, length: UInt64(MemoryLayout<T>.size))
        // Safe: the range was checked to lie inside a live mapping.
        return p.loadUnaligned(as: T.self)
    }

    /// Stores a plain value into guest memory (inside one region).
    @inlinable
    public func store<T: BitwiseCopyable>(_ value: T, at address: GuestAddress) throws(GuestMemoryError) {
        let p = try contiguousPointer(at: address, length: UInt64(MemoryLayout<T>.size))
        // Safe: the range was checked to lie inside a live mapping.
        p.storeBytes(of: value, as: T.self)
    }

    /// Copies `buffer.count` bytes out of guest memory, across regions if
    /// the range spans adjacent ones.
    public func read(into buffer: UnsafeMutableRawBufferPointer, from address: GuestAddress) throws(GuestMemoryError) {
        var done = 0
        for s in try segments(at: address, length: UInt64(buffer.count)) {
            // Safe: segments are inside live mappings; buffer has room for the total.
            (buffer.baseAddress! + done).copyMemory(from: s.base, byteCount: s.count)
            done += s.count
        }
    }

    /// Copies `buffer` into guest memory, across regions if needed.
    public func write(_ buffer: UnsafeRawBufferPointer, to address: GuestAddress) throws(GuestMemoryError) {
        var done = 0
        for s in try segments(at: address, length: UInt64(buffer.count)) {
            s.base.copyMemory(from: buffer.baseAddress! + done, byteCount: s.count)
            done += s.count
        }
    }

    public func readBytes(at address: GuestAddress, count: Int) throws(GuestMemoryError) -> [UInt8] {
        var out = [UInt8](repeating: 0, count: count)
        try out.withUnsafeMutableBytes { raw in
            Result { () throws(GuestMemoryError) in try read(into: raw, from: address) }
        }.get()
        return out
    }

    public func writeBytes(_ bytes: [UInt8], at address: GuestAddress) throws(GuestMemoryError) {
        try bytes.withUnsafeBytes { raw in
            Result { () throws(GuestMemoryError) in try write(raw, to: address) }
        }.get()
    }

    /// Fills `[address, address + count)` with `byte`.
    public func fill(_ byte: UInt8, at address: GuestAddress, count: Int) throws(GuestMemoryError) {
        for s in try segments(at: address, length: UInt64(count)) {
            s.base.initializeMemory(as: UInt8.self, repeating: byte, count: s.count)
        }
    }

    // MARK: - Ring atomics (virtio 1.2, 2.7.13 and 2.8.21)

    private func alignedPointer(_ address: GuestAddress, _ size: Int) throws(GuestMemoryError) -> UnsafeMutableRawPointer {
        guard address.rawValue & UInt64(size - 1) == 0 else { throw .misaligned(address: address, alignment: size) }
        return try contiguousPointer(at: address, length: UInt64(size))
    }

    /// Loads a naturally aligned 16-bit ring field with acquire ordering:
    /// reads that follow see everything the driver wrote before publishing it.
    public func loadAcquireUInt16(at address: GuestAddress) throws(GuestMemoryError) -> UInt16 {
        UInt16(littleEndian: vfsvm_load_acquire_u16(try alignedPointer(address, 2)))
    }

    /// Stores a naturally aligned 16-bit ring field with release ordering:
    /// everything written before it is visible to a driver that sees it.
    public func storeReleaseUInt16(_ value: UInt16, at address: GuestAddress) throws(GuestMemoryError) {
        vfsvm_store_release_u16(try alignedPointer(address, 2), value.littleEndian)
    }

    public func loadAcquireUInt32(at address: GuestAddress) throws(GuestMemoryError) -> UInt32 {
        UInt32(littleEndian: vfsvm_load_acquire_u32(try alignedPointer(address, 4)))
    }

    public func storeReleaseUInt32(_ value: UInt32, at address: GuestAddress) throws(GuestMemoryError) {
        vfsvm_store_release_u32(try alignedPointer(address, 4), value.littleEndian)
    }

    /// A full fence: orders a used-ring store before a later read of the
    /// driver's event suppression field.
    public static func fullFence() { vfsvm_fence_seq_cst() }
}

/// A contiguous piece of host memory inside a guest mapping. Only
/// `VfsvmMemory` turns these into pointers for callers, inside closures.
public struct HostSegment: @unchecked Sendable {
    // @unchecked: a view into a mapping kept alive by its owner.
    public let base: UnsafeMutableRawPointer
    public let count: Int
}
