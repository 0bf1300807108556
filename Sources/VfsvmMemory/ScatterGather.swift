import Glibc
import VfsvmSys

/// A buffer made of several pieces of host memory, in order: the readable or
/// the writable half of a descriptor chain, or a plain host buffer.
///
/// Byte offsets count from the start of the first piece. File data moves
/// straight between a host fd and the pieces with `withIOVecs` +
/// preadv/pwritev; smaller things are copied with `copy(from:into:)` and
/// `copy(_:to:)`.
public protocol ScatterGatherList: Sendable {
    /// The pieces, in order. Empty pieces are allowed.
    var segments: [HostSegment] { get }
    /// Total bytes over all pieces.
    var byteCount: Int { get }
    /// Lends `body` the pieces without building an array (a list may hold
    /// its one piece inline); the default lends `segments`' storage.
    func withSegments<R, E: Error>(_ body: (UnsafeBufferPointer<HostSegment>) throws(E) -> R) throws(E) -> R
    /// Lends `call` the iovecs covering `[offset, offset + length)`, clamped
    /// to the list's end, and returns what `call` returns: the file data
    /// path (preadv, pwritev, io_uring). Unlike the generic `withIOVecs` it
    /// costs no run-time metadata look-up when called from code generic over
    /// the list (the file systems' READ and WRITE: ~330 instructions per
    /// request); the default is compiled for each list type of this module.
    func vectored(offset: Int, length: Int, _ call: (UnsafeBufferPointer<iovec>) -> Int) -> Int
    /// preadv(fd) into the list (ScatterGatherFileIO.swift). Requirements
    /// with defaults, as `vectored` is, so that a READ or WRITE reached
    /// through code generic over the list (the file system behind
    /// `any FileSystem`, the engine behind `any IOEngine`) makes one call
    /// into code compiled for the list's type, the loop, the iovecs and the
    /// system call inlined, instead of four generic layers each looking up
    /// the next through witness tables (READ 4 KiB at 32 in flight spent
    /// ~50 ns per request in those layers, `perf record` of `vfsvm serve`).
    func read(from fd: FileDescriptor, fileOffset: Int64, into offset: Int, count: Int) throws(SystemError) -> Int
    /// pwritev(fd) from the list (ScatterGatherFileIO.swift).
    func write(to fd: FileDescriptor, fileOffset: Int64, from offset: Int, count: Int) throws(SystemError) -> Int
}

extension ScatterGatherList {
    @inlinable
    public func withSegments<R, E: Error>(_ body: (UnsafeBufferPointer<HostSegment>) throws(E) -> R) throws(E) -> R {
        try segments.withUnsafeBufferPointer { (all) throws(E) -> R in try body(all) }
    }

    /// Walks `[offset, offset + count)` of the pieces in `all`, clamped to
    /// their end: `visit(piece, done, take)` for each part, `piece` the
    /// part's first byte in the list, `done` the bytes visited before it,
    /// `take` its length. Returns the bytes visited. The one walk behind
    /// both copy directions and `withIOVecs`.
    @inlinable @inline(__always)
    static func walk(
        _ all: UnsafeBufferPointer<HostSegment>, offset: Int, count: Int,
        _ visit: (UnsafeMutableRawPointer, Int, Int) -> Void
    ) -> Int {
        precondition(offset >= 0 && count >= 0)
        var skip = offset
        var done = 0
        for s in all where done < count {
            if skip >= s.count { skip -= s.count; continue }
            let take = min(s.count - skip, count - done)
            visit(s.base + skip, done, take)
            done += take
            skip = 0
        }
        return done
    }

    /// Lends `body` the iovecs covering `[offset, offset + length)`, clamped
    /// to the buffer's end (so the total may be shorter than `length`).
    /// Always inlined: generic over R and E and called from code generic
    /// over the list, an outlined copy looked up Result<R, E>'s metadata at
    /// run time on every call (~330 instructions per READ or WRITE).
    @inlinable @inline(__always)
    public func withIOVecs<R, E: Error>(
        offset: Int, length: Int, _ body: (UnsafeBufferPointer<iovec>) throws(E) -> R
    ) throws(E) -> R {
        try withSegments { (all) throws(E) -> R in
            // The iovecs live on the stack (heap only for a very long list):
            // no array allocated per READ or WRITE.
            try withUnsafeTemporaryAllocation(of: iovec.self, capacity: max(all.count, 1)) { iovecs throws(E) -> R in
                var n = 0
                _ = Self.walk(all, offset: offset, count: length) { piece, _, take in
                    iovecs[n] = iovec(iov_base: piece, iov_len: take)
                    n += 1
                }
                return try body(UnsafeBufferPointer(rebasing: iovecs[0..<n]))
            }
        }
    }

    public func vectored(offset: Int, length: Int, _ call: (UnsafeBufferPointer<iovec>) -> Int) -> Int {
        withIOVecs(offset: offset, length: length, call)
    }

    // The copies are inlinable so that a caller in another module (the
    // FUSE server, for every request's header and reply) gets them compiled
    // for its list type instead of running this generic code through
    // witness tables (~250 instructions per copy of a GETATTR).

    /// Copies up to `destination.count` bytes starting at `offset` out of the
    /// list; returns how many were copied (fewer at the end of the list).
    @inlinable @discardableResult
    public func copy(from offset: Int, into destination: UnsafeMutableRawBufferPointer) -> Int {
        withSegments { all in
            Self.walk(all, offset: offset, count: destination.count) { piece, done, take in
                // Safe: the piece is live for `take` bytes; destination has room for `take` more.
                (destination.baseAddress! + done).copyMemory(from: piece, byteCount: take)
            }
        }
    }

    /// Copies `source` into the list starting at `offset`; returns how many
    /// bytes fit.
    @inlinable @discardableResult
    public func copy(_ source: UnsafeRawBufferPointer, to offset: Int) -> Int {
        withSegments { all in
            Self.walk(all, offset: offset, count: source.count) { piece, done, take in
                piece.copyMemory(from: source.baseAddress! + done, byteCount: take)
            }
        }
    }

    /// `count` bytes from `offset`, or `GuestMemoryError.partialBuffer` when
    /// the list ends first.
    public func bytes(at offset: Int, count: Int) throws(GuestMemoryError) -> [UInt8] {
        var out = [UInt8](repeating: 0, count: count)
        let got = out.withUnsafeMutableBytes { copy(from: offset, into: $0) }
        guard got == count else { throw .partialBuffer(expected: count, completed: got) }
        return out
    }

    /// Writes all of `bytes` at `offset`, or throws `partialBuffer` (having
    /// written what fit) when the list is too short.
    public func write(_ bytes: [UInt8], at offset: Int) throws(GuestMemoryError) {
        let put = bytes.withUnsafeBytes { copy($0, to: offset) }
        guard put == bytes.count else { throw .partialBuffer(expected: bytes.count, completed: put) }
    }
}

/// The readable or writable half of a descriptor chain, as a view over guest
/// memory. Holds its `GuestMemory` so the mappings outlive the view.
public struct GuestBufferList: ScatterGatherList {
    public let memory: GuestMemory
    /// The one piece held inline (a chain's half in one buffer of one
    /// region, the usual case: no array to allocate), or all of them. An
    /// enum, not a piece and an empty array: a list of one piece then holds
    /// no reference besides `memory`, and building and dropping it does not
    /// retain and release the empty array's storage (two lists per request).
    ///
    /// Two pieces are held inline too: Linux's virtio-fs puts a reply's
    /// out-header in a buffer of its own and READ data (or a GETATTR's
    /// attributes) in the next, and a WRITE's data after its header. As an
    /// array, each such half cost an allocation, a free and the
    /// `appendSegments` calls per request.
    @usableFromInline enum Pieces: Sendable {
        case one(HostSegment)
        case two(HostSegment, HostSegment)
        case many([HostSegment])
    }
    @usableFromInline let pieces: Pieces
    public let byteCount: Int

    /// The pieces (an array built on each read when there is one piece:
    /// hot paths use `withSegments`).
    public var segments: [HostSegment] {
        switch pieces {
        case let .one(one): [one]
        case let .two(first, second): [first, second]
        case let .many(all): all
        }
    }

    /// Inlinable, as the copies that call it are.
    @inlinable
    public func withSegments<R, E: Error>(_ body: (UnsafeBufferPointer<HostSegment>) throws(E) -> R) throws(E) -> R {
        switch pieces {
        case let .one(one):
            return try withUnsafePointer(to: one) { (p) throws(E) -> R in try body(UnsafeBufferPointer(start: p, count: 1)) }
        case let .two(first, second):
            // Safe: a homogeneous tuple's elements are laid out (and bound)
            // as an array of its element type.
            return try withUnsafePointer(to: (first, second)) { (p) throws(E) -> R in
                try body(UnsafeBufferPointer(start: UnsafeRawPointer(p).assumingMemoryBound(to: HostSegment.self), count: 2))
            }
        case let .many(all):
            return try all.withUnsafeBufferPointer { (all) throws(E) -> R in try body(all) }
        }
    }

    /// Resolves guest ranges to host pieces; throws if any byte is unbacked
    /// or a range overflows. A range that spans two adjacent regions becomes
    /// two pieces.
    public init(memory: GuestMemory, ranges: [(address: GuestAddress, length: UInt32)]) throws(GuestMemoryError) {
        var segs: [HostSegment] = []
        segs.reserveCapacity(ranges.count)
        var total = 0
        for r in ranges where r.length > 0 {
            try memory.appendSegments(at: r.address, length: UInt64(r.length), to: &segs)
            total += Int(r.length)
        }
        self.memory = memory
        self.pieces = .many(segs)
        self.byteCount = total
    }

    public static func empty(_ memory: GuestMemory) -> GuestBufferList {
        GuestBufferList(memory: memory, segments: [], byteCount: 0)
    }

    /// Segments already resolved from `memory` (`GuestMemory.appendSegments`)
    /// and their total: a virtqueue builds a chain's halves this way.
    package init(memory: GuestMemory, resolved segments: [HostSegment], byteCount: Int) {
        self.init(memory: memory, segments: segments, byteCount: byteCount)
    }

    /// One segment already resolved from `memory` (`GuestMemory.singleSegment`).
    package init(memory: GuestMemory, resolved segment: HostSegment) {
        self.memory = memory
        pieces = .one(segment)
        byteCount = segment.count
    }

    /// Two segments already resolved from `memory`, in order.
    package init(memory: GuestMemory, resolved first: HostSegment, _ second: HostSegment) {
        self.memory = memory
        pieces = .two(first, second)
        byteCount = first.count + second.count
    }

    private init(memory: GuestMemory, segments: [HostSegment], byteCount: Int) {
        self.memory = memory
        pieces = .many(segments)
        self.byteCount = byteCount
    }
}

/// Host memory owned by vfsvm, as a one-piece scatter-gather list: the
/// request and reply buffers of `vfsvm mount` (/dev/fuse), and test fixtures.
public final class HostBuffer: ScatterGatherList, @unchecked Sendable {
    // @unchecked: the allocation never moves; callers coordinate access to
    // the bytes as they would for any I/O buffer.
    private let storage: UnsafeMutableRawBufferPointer
    public let byteCount: Int
    /// The one segment, made once (not an array per read of `segments`:
    /// a request and its reply read it several times).
    public let segments: [HostSegment]
    /// The same segment held inline, lent by `withSegments` (the protocol's
    /// default went through `segments` and an unspecialised
    /// `Array.withUnsafeBufferPointer`: ~400 instructions per GETATTR).
    @usableFromInline let one: HostSegment

    /// True when `storage` is an anonymous mapping (`init(mappedCount:)`).
    private let mapped: Bool

    public init(count: Int) {
        storage = .allocate(byteCount: max(count, 1), alignment: 64)
        storage.initializeMemory(as: UInt8.self, repeating: 0)
        byteCount = count
        mapped = false
        one = HostSegment(base: storage.baseAddress!, count: count)
        segments = [one]
    }

    /// Zeroed bytes in an anonymous mapping of their own: a page costs
    /// memory only once it is written. For buffers sized for the largest
    /// message that most messages leave mostly untouched (a FUSE ring
    /// entry's 1 MiB payload, of which a lock request uses nothing). Nil
    /// when the mapping fails.
    public init?(mappedCount count: Int) {
        let p = mmap(nil, max(count, 1), PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0)
        guard let p, p != MAP_FAILED else { return nil }
        storage = UnsafeMutableRawBufferPointer(start: p, count: max(count, 1))
        byteCount = count
        mapped = true
        one = HostSegment(base: storage.baseAddress!, count: count)
        segments = [one]
    }

    @inlinable
    public func withSegments<R, E: Error>(_ body: (UnsafeBufferPointer<HostSegment>) throws(E) -> R) throws(E) -> R {
        try withUnsafePointer(to: one) { (p) throws(E) -> R in try body(UnsafeBufferPointer(start: p, count: 1)) }
    }

    public convenience init(_ bytes: [UInt8]) {
        self.init(count: bytes.count)
        bytes.withUnsafeBytes { _ = copy($0, to: 0) }
    }

    deinit {
        if mapped { munmap(storage.baseAddress, storage.count) } else { storage.deallocate() }
    }


    /// Lends the bytes; the pointer must not escape `body`.
    public func withUnsafeMutableBytes<R, E: Error>(_ body: (UnsafeMutableRawBufferPointer) throws(E) -> R) throws(E) -> R {
        try body(UnsafeMutableRawBufferPointer(rebasing: storage[0..<byteCount]))
    }

    public var array: [UInt8] { Array(storage[0..<byteCount]) }
}

/// The first `byteCount` bytes of another list: a request read into a
/// larger buffer, or a reply limited to what a driver accepts.
public struct ScatterGatherPrefix: ScatterGatherList {
    public let segments: [HostSegment]
    public let byteCount: Int
    /// Keeps the owner of the memory (a `HostBuffer` or `GuestMemory`) alive.
    private let owner: any Sendable

    public init(_ base: some ScatterGatherList, length: Int) {
        var segs: [HostSegment] = []
        var want = max(0, min(length, base.byteCount))
        let total = want
        base.withSegments { all in
            for s in all where want > 0 {
                let take = min(s.count, want)
                segs.append(HostSegment(base: s.base, count: take))
                want -= take
            }
        }
        segments = segs
        byteCount = total
        owner = base
    }

    init(segments: [HostSegment], byteCount: Int, owner: any Sendable) {
        self.segments = segments
        self.byteCount = byteCount
        self.owner = owner
    }
}

extension ScatterGatherList {
    public func prefix(_ length: Int) -> ScatterGatherPrefix { ScatterGatherPrefix(self, length: length) }
}

extension HostBuffer {
    /// `length` bytes from `offset` (clamped to the buffer): a request or
    /// reply laid out inside a larger buffer, as `vfsvm mount`'s io_uring
    /// entries are.
    public func window(offset: Int, length: Int) -> ScatterGatherPrefix {
        let start = max(0, min(offset, byteCount))
        let count = max(0, min(length, byteCount - start))
        return ScatterGatherPrefix(segments: [HostSegment(base: segments[0].base + start, count: count)], byteCount: count, owner: self)
    }
}
