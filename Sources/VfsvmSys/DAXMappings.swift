import Glibc
import Synchronization

/// The file ranges mapped into a virtio-fs DAX window (FUSE_SETUPMAPPING,
/// FUSE_REMOVEMAPPING; virtio 1.2, 5.11.6.4): a table of mappings over one
/// `SharedMemoryWindow`, each a MAP_SHARED|MAP_FIXED mmap of an open file
/// over the window's host pages, which KVM already sees as the guest's
/// window. What a removed range holds again is anonymous zero pages
/// (MAP_PRIVATE|MAP_FIXED), never a hole: a guest access to a hole would
/// make KVM fail the vCPU (EFAULT) and a VMM access would fault.
///
/// SIGBUS: a shared mapping of a page past the file's end raises SIGBUS
/// in whoever touches it, here the VMM (a vCPU thread inside KVM_RUN, or
/// the device). So a mapping past EOF is refused at setup, and before the
/// server shrinks a file (`shrinking(file:to:)`) the mapped pages past the
/// new end become zero pages. A truncate by another host process is
/// outside vfsvm's control; the VMM never touches the window itself, so
/// only KVM meets the vanished pages (on the build machines' software KVM
/// the guest reads zeros; README, "DAX").
public final class DAXMappings: Sendable {
    /// Offsets and lengths are page aligned: what mmap needs; announced in
    /// FUSE_INIT as map_alignment = 12 (log2) with FUSE_MAP_ALIGNMENT.
    public static let alignmentShift: UInt16 = 12
    public static let alignment: UInt64 = 1 << 12
    /// FUSE_SETUPMAPPING_FLAG_WRITE / _READ (linux/fuse.h).
    public static let flagWrite: UInt64 = 1 << 0
    public static let flagRead: UInt64 = 1 << 1

    /// Which file a mapping shows (device and inode), for truncation.
    public struct FileKey: Hashable, Sendable {
        public var device: UInt64
        public var inode: UInt64
        public init(device: UInt64, inode: UInt64) { self.device = device; self.inode = inode }
    }

    /// One mapped range: window offset, length, and where in which file.
    public struct Mapping: Hashable, Sendable {
        public var windowOffset: UInt64
        public var length: UInt64
        public var file: FileKey
        public var fileOffset: UInt64
        public var writable: Bool
        var end: UInt64 { windowOffset + length }
    }

    /// What the server knows of the handle the guest named.
    public struct OpenFile: Sendable {
        public var fd: Int32
        public var key: FileKey
        public var isRegular: Bool
        public var openForWriting: Bool
        public var size: UInt64
        public init(fd: Int32, key: FileKey, isRegular: Bool, openForWriting: Bool, size: UInt64) {
            self.fd = fd
            self.key = key
            self.isRegular = isRegular
            self.openForWriting = openForWriting
            self.size = size
        }
    }

    public let window: SharedMemoryWindow
    public let readOnlyShare: Bool
    /// At most this many mappings at once; one more is refused (ENOMEM,
    /// as mmap past vm.max_map_count).
    public let maxMappings: Int
    private let table = Mutex<[Mapping]>([])

    public init(window: SharedMemoryWindow, readOnlyShare: Bool, maxMappings: Int = 4096) {
        self.window = window
        self.readOnlyShare = readOnlyShare
        self.maxMappings = maxMappings
    }

    public var mappings: [Mapping] { table.withLock { $0 } }

    /// A refused request: the errno its reply carries.
    static func refusal(_ code: Int32) -> SystemError { SystemError("DAX mapping", Errno(rawValue: code)) }

    /// FUSE_SETUPMAPPING: checks everything the guest gave, then maps
    /// `length` bytes of `file` at `fileOffset` over window offset
    /// `windowOffset`, replacing whatever overlapped there. Throws the
    /// errno of the reply: EINVAL for a range that is unaligned, empty,
    /// overflowing, outside the window or past the file's end (or bad
    /// flags); ENODEV for a handle that is no regular file; EROFS for
    /// WRITE on a read-only share; EACCES for WRITE on a handle not open
    /// for writing; ENOMEM when the table is full.
    public func setup(_ file: OpenFile, fileOffset: UInt64, length: UInt64, windowOffset: UInt64, flags: UInt64) throws(SystemError) {
        guard flags & ~(Self.flagWrite | Self.flagRead) == 0 else { throw Self.refusal(EINVAL) }
        guard file.isRegular else { throw Self.refusal(ENODEV) }
        let write = flags & Self.flagWrite != 0
        if write && readOnlyShare { throw Self.refusal(EROFS) }
        if write && !file.openForWriting { throw Self.refusal(EACCES) }
        let a = Self.alignment
        guard length > 0, length % a == 0, windowOffset % a == 0, fileOffset % a == 0 else { throw Self.refusal(EINVAL) }
        let (windowEnd, o1) = windowOffset.addingReportingOverflow(length)
        let (fileEnd, o2) = fileOffset.addingReportingOverflow(length)
        guard !o1, !o2, windowEnd <= window.size, fileOffset <= UInt64(Int64.max) else { throw Self.refusal(EINVAL) }
        try table.withLock { (t: inout [Mapping]) throws(SystemError) in
            // The last page may hold the end of the file; none may lie
            // wholly past it (that page would SIGBUS). The size is read
            // again under the lock: a shrink (`shrinking(file:to:_:)`)
            // holds it across its truncate, so none slips in between.
            var st = stat()
            let now = fstat(file.fd, &st) == 0 ? UInt64(max(st.st_size, 0)) : 0
            let size = min(file.size, now)
            let sizeRounded = (size + a - 1) & ~(a - 1)
            guard fileEnd <= sizeRounded else { throw Self.refusal(EINVAL) }
            let remaining = Self.without(t, windowOffset, windowEnd)
            guard remaining.count < maxMappings else { throw Self.refusal(ENOMEM) }
            let prot = PROT_READ | (write ? PROT_WRITE : 0)
            let at = window.base + Int(windowOffset)
            let raw = Glibc.mmap(at, Int(length), prot, MAP_SHARED | MAP_FIXED, file.fd, off_t(fileOffset))
            guard let raw, raw != MAP_FAILED else {
                let e = SystemError("mmap(DAX window + 0x\(String(windowOffset, radix: 16)), \(length) bytes)", .current)
                // MAP_FIXED may have unmapped the range before failing:
                // put zero pages back so the window has no hole.
                zero(windowOffset, length)
                t = remaining
                throw e
            }
            t = remaining + [Mapping(windowOffset: windowOffset, length: length, file: file.key, fileOffset: fileOffset, writable: write)]
            t.sort { $0.windowOffset < $1.windowOffset }
        }
    }

    /// FUSE_REMOVEMAPPING of one range: zero pages again, and the table
    /// forgets (or trims) what was there. EINVAL for a range that is
    /// unaligned, overflowing or outside the window.
    public func remove(windowOffset: UInt64, length: UInt64) throws(SystemError) {
        let a = Self.alignment
        guard length > 0, length % a == 0, windowOffset % a == 0 else { throw Self.refusal(EINVAL) }
        let (end, overflow) = windowOffset.addingReportingOverflow(length)
        guard !overflow, end <= window.size else { throw Self.refusal(EINVAL) }
        table.withLock { t in
            zero(windowOffset, length)
            t = Self.without(t, windowOffset, end)
        }
    }

    /// Before the server shrinks `file` to `size`: every mapped page that
    /// would lie wholly past the new end becomes a zero page, so neither
    /// the guest nor the VMM can touch a page the file no longer has.
    public func shrinking(file: FileKey, to size: UInt64) {
        table.withLock { t in Self.zeroPast(size, of: file, in: &t, zero: zero) }
    }

    private static func zeroPast(_ size: UInt64, of file: FileKey, in t: inout [Mapping], zero: (UInt64, UInt64) -> Void) {
        let keep = (size + alignment - 1) & ~(alignment - 1)
        for m in t where m.file == file && m.fileOffset + m.length > keep {
            let cut = max(keep, m.fileOffset) - m.fileOffset
            zero(m.windowOffset + cut, m.length - cut)
            t = without(t, m.windowOffset + cut, m.end)
        }
    }

    /// `shrinking(file:to:)`, then `truncate` (the host call that shrinks
    /// the file), both under the table's lock: no SETUPMAPPING can map
    /// the old end of the file between the two.
    public func shrinking<E: Error>(file: FileKey, to size: UInt64, _ truncate: () throws(E) -> Void) throws(E) {
        try table.withLock { (t: inout [Mapping]) throws(E) in
            Self.zeroPast(size, of: file, in: &t, zero: zero)
            try truncate()
        }
    }

    /// Every mapping gone (device reset, FUSE_DESTROY).
    public func removeAll() {
        table.withLock { t in
            zero(0, window.size)
            t = []
        }
    }

    /// Anonymous zero pages over window range [offset, offset+length).
    private func zero(_ offset: UInt64, _ length: UInt64) {
        let raw = Glibc.mmap(window.base + Int(offset), Int(length), PROT_READ | PROT_WRITE,
                             MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED | MAP_NORESERVE, -1, 0)
        // Replacing a mapping inside our own reservation fails only for
        // want of memory; then the range would be a hole, which is worse
        // than stopping.
        precondition(raw != MAP_FAILED, "cannot put zero pages back into the DAX window: errno \(errno)")
    }

    /// `table` with the window range [start, end) cut out: mappings inside
    /// it dropped, ones across its edges trimmed (split when it is inside).
    static func without(_ table: [Mapping], _ start: UInt64, _ end: UInt64) -> [Mapping] {
        var out: [Mapping] = []
        for m in table {
            if m.end <= start || m.windowOffset >= end { out.append(m); continue }
            if m.windowOffset < start {
                var left = m
                left.length = start - m.windowOffset
                out.append(left)
            }
            if m.end > end {
                var right = m
                let cut = end - m.windowOffset
                right.windowOffset = end
                right.fileOffset += cut
                right.length -= cut
                out.append(right)
            }
        }
        return out
    }
}
