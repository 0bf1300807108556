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
/// EOF: a shared mapping of a page past the file's end raises SIGBUS in
/// whoever touches it, here the VMM (a vCPU thread inside KVM_RUN, or the
/// device). A Linux guest maps whole 2 MiB ranges (FUSE_DAX_SZ), also the
/// last, partial one of a file, so a range may run past EOF: the file's
/// pages up to its end (page-rounded) are mapped, and the rest of the
/// range, its "zero tail", is anonymous zero pages. When the file grows
/// through the server (`growing(file:)`), the file is mapped again over
/// the zero tail of each of its mappings, up to the new end; before the
/// server shrinks a file (`shrinking(file:to:_:)`), the mapped pages past
/// the new end become the zero tail. A range that starts at or past EOF
/// is refused (Linux never sends one: a read at or past i_size is a hole
/// to it, and a write that extends the file goes as FUSE_WRITE, not
/// through the window). Stores into a zero tail land in anonymous memory
/// and are dropped when the file is mapped over it: they never reach the
/// file (Linux makes none: a guest fault past i_size is its SIGBUS).
/// A truncate by another host process is outside vfsvm's control; the
/// VMM never touches the window itself, so only KVM meets the vanished
/// pages (on the build machines' software KVM the guest reads zeros;
/// README, "DAX"), and growth by another host process shows only once
/// the guest maps the range again.
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
    public struct Mapping: Sendable {
        public var windowOffset: UInt64
        public var length: UInt64
        public var file: FileKey
        public var fileOffset: UInt64
        public var writable: Bool
        /// How much of the range, from its start, shows the file (a page
        /// multiple, at most `length`); the rest is the zero tail past EOF.
        public var fileLength: UInt64
        var end: UInt64 { windowOffset + length }
        var hasZeroTail: Bool { fileLength < length }
    }

    /// What the server knows of the handle the guest named. `fd` is held
    /// for as long as the request needs it, so a RELEASE on another queue
    /// cannot close it, nor its number be reused for another file, before
    /// the mmap. (A mapping needs no fd: it holds the file itself.)
    public struct OpenFile: Sendable {
        public var fd: FileDescriptor
        public var key: FileKey
        public var isRegular: Bool
        public var openForWriting: Bool
        public init(fd: FileDescriptor, key: FileKey, isRegular: Bool, openForWriting: Bool) {
            self.fd = fd
            self.key = key
            self.isRegular = isRegular
            self.openForWriting = openForWriting
        }
    }

    struct Table {
        var mappings: [Mapping] = []
        /// The files some mapping of which has a zero tail: what a WRITE
        /// checks before taking a closer look (`growing(file:)`).
        var withZeroTail: Set<FileKey> = []

        mutating func set(_ m: [Mapping]) {
            mappings = m.sorted { $0.windowOffset < $1.windowOffset }
            withZeroTail = Set(m.lazy.filter(\.hasZeroTail).map(\.file))
        }
    }

    public let window: SharedMemoryWindow
    public let readOnlyShare: Bool
    /// At most this many mappings at once; a SETUPMAPPING past it, or a
    /// REMOVEMAPPING that would split the table past it, is refused
    /// (ENOMEM, as mmap past vm.max_map_count), which also bounds the
    /// window's VMAs (about two per mapping).
    public let maxMappings: Int
    /// What this table shares with every other DAX window of the process:
    /// the mappings all of them may hold together (vm.max_map_count).
    public let budget: DAXMappingBudget
    private let table = Mutex(Table())

    public init(window: SharedMemoryWindow, readOnlyShare: Bool, maxMappings: Int = 4096,
                budget: DAXMappingBudget = .process) {
        self.window = window
        self.readOnlyShare = readOnlyShare
        self.maxMappings = maxMappings
        self.budget = budget
    }

    deinit {
        budget.release(table.withLock { $0.mappings.count })
    }

    public var mappings: [Mapping] { table.withLock { $0.mappings } }

    /// A refused request: the errno its reply carries.
    static func refusal(_ code: Int32) -> SystemError { SystemError("DAX mapping", Errno(rawValue: code)) }

    static func pageRounded(_ n: UInt64) -> UInt64 { n > UInt64.max - (alignment - 1) ? UInt64.max & ~(alignment - 1) : (n + alignment - 1) & ~(alignment - 1) }

    /// The file's size now; 0 when fstat fails.
    static func size(of fd: FileDescriptor) -> UInt64 {
        var st = stat()
        return fstat(fd.rawValue, &st) == 0 ? UInt64(max(st.st_size, 0)) : 0
    }

    /// FUSE_SETUPMAPPING: checks everything the guest gave, then maps
    /// `length` bytes of `file` at `fileOffset` over window offset
    /// `windowOffset`, replacing whatever overlapped there; the part past
    /// EOF becomes the zero tail. Throws the errno of the reply: EINVAL
    /// for a range that is unaligned, empty, overflowing, outside the
    /// window or starting at or past the file's end (or bad flags);
    /// ENODEV for a handle that is no regular file; EROFS for WRITE on a
    /// read-only share; EACCES for WRITE on a handle not open for writing;
    /// ENOMEM when the table is full.
    public func setup(_ file: OpenFile, fileOffset: UInt64, length: UInt64, windowOffset: UInt64, flags: UInt64) throws(SystemError) {
        guard flags & ~(Self.flagWrite | Self.flagRead) == 0 else { throw Self.refusal(EINVAL) }
        guard file.isRegular else { throw Self.refusal(ENODEV) }
        let write = flags & Self.flagWrite != 0
        if write && readOnlyShare { throw Self.refusal(EROFS) }
        if write && !file.openForWriting { throw Self.refusal(EACCES) }
        let a = Self.alignment
        guard length > 0, length % a == 0, windowOffset % a == 0, fileOffset % a == 0 else { throw Self.refusal(EINVAL) }
        let (windowEnd, o1) = windowOffset.addingReportingOverflow(length)
        let (_, o2) = fileOffset.addingReportingOverflow(length)
        guard !o1, !o2, windowEnd <= window.size, fileOffset <= UInt64(Int64.max) else { throw Self.refusal(EINVAL) }
        try table.withLock { (t: inout Table) throws(SystemError) in
            // The size is read under the lock: a shrink
            // (`shrinking(file:to:_:)`) holds it across its truncate, and
            // a growth through the server takes it after its write, so
            // this mapping's tail is right whichever came first.
            let sizeRounded = Self.pageRounded(Self.size(of: file.fd))
            guard fileOffset < sizeRounded else { throw Self.refusal(EINVAL) }
            let fileLength = min(length, sizeRounded - fileOffset)
            let remaining = Self.without(t.mappings, windowOffset, windowEnd)
            guard remaining.count < maxMappings else { throw Self.refusal(ENOMEM) }
            // The new mapping's share of the process-wide bound (a
            // replaced one gives its own back).
            let before = t.mappings.count
            guard budget.take(max(remaining.count + 1 - before, 0)) else { throw Self.refusal(ENOMEM) }
            let prot = PROT_READ | (write ? PROT_WRITE : 0)
            do throws(SystemError) {
                try map(file.fd, at: fileOffset, over: windowOffset, fileLength, prot: prot)
                if fileLength < length { try zero(windowOffset + fileLength, length - fileLength) }
            } catch {
                // MAP_FIXED may have unmapped the range before failing:
                // put zero pages back so the window has no hole.
                try? zero(windowOffset, length)
                t.set(remaining)
                budget.release(before - remaining.count + max(remaining.count + 1 - before, 0))
                throw error
            }
            budget.release(before - remaining.count - 1)
            t.set(remaining + [Mapping(windowOffset: windowOffset, length: length, file: file.key, fileOffset: fileOffset,
                                       writable: write, fileLength: fileLength)])
        }
    }

    /// FUSE_REMOVEMAPPING of one range: zero pages again, and the table
    /// forgets (or trims) what was there. EINVAL for a range that is
    /// unaligned, overflowing or outside the window; ENOMEM, with the
    /// table and the window as they were, when cutting the range out of a
    /// mapping would leave more than `maxMappings` pieces.
    public func remove(windowOffset: UInt64, length: UInt64) throws(SystemError) {
        let a = Self.alignment
        guard length > 0, length % a == 0, windowOffset % a == 0 else { throw Self.refusal(EINVAL) }
        let (end, overflow) = windowOffset.addingReportingOverflow(length)
        guard !overflow, end <= window.size else { throw Self.refusal(EINVAL) }
        try table.withLock { (t: inout Table) throws(SystemError) in
            let after = Self.without(t.mappings, windowOffset, end)
            guard after.count <= maxMappings else { throw Self.refusal(ENOMEM) }
            let delta = after.count - t.mappings.count
            guard budget.take(max(delta, 0)) else { throw Self.refusal(ENOMEM) }
            do throws(SystemError) { try zero(windowOffset, length) } catch {
                budget.release(delta)
                throw error
            }
            budget.release(-delta)
            t.set(after)
        }
    }

    /// Before the server shrinks `file` to `size`: every mapped page that
    /// would lie wholly past the new end becomes a zero page (the zero
    /// tail grows), so neither the guest nor the VMM can touch a page the
    /// file no longer has. The mappings stay: a guest keeps its ranges
    /// across a truncate, and `growing(file:)` maps the file back.
    public func shrinking(file: FileKey, to size: UInt64) throws(SystemError) {
        try table.withLock { (t: inout Table) throws(SystemError) in try zeroPast(size, of: file, in: &t) }
    }

    /// `shrinking(file:to:)`, then `truncate` (the host call that shrinks
    /// the file), both under the table's lock: no SETUPMAPPING can map
    /// the old end of the file between the two. When a mapped page cannot
    /// be made a zero page, `truncate` is not run and `refused` says why.
    public func shrinking<E: Error>(file: FileKey, to size: UInt64, refused: (SystemError) -> E,
                                    _ truncate: () throws(E) -> Void) throws(E) {
        try shrinking(file: file, toSize: { () throws(E) in size }, refused: refused, truncate)
    }

    /// `shrinking(file:to:refused:_:)` for a request whose new size depends
    /// on the file's size now (FALLOC_FL_COLLAPSE_RANGE: the size less the
    /// range): `size` is read under the table's lock too. A shrink that
    /// read it before the lock could meet a truncate that ran in between
    /// (it holds the lock) and keep mapped pages past the end the collapse
    /// leaves: a SIGBUS for whoever touches them.
    public func shrinking<E: Error>(file: FileKey, toSize size: () throws(E) -> UInt64, refused: (SystemError) -> E,
                                    _ truncate: () throws(E) -> Void) throws(E) {
        try table.withLock { (t: inout Table) throws(E) in
            let newSize = try size()
            do throws(SystemError) { try zeroPast(newSize, of: file, in: &t) } catch { throw refused(error) }
            try truncate()
        }
    }

    private func zeroPast(_ size: UInt64, of file: FileKey, in t: inout Table) throws(SystemError) {
        let keep = Self.pageRounded(size)
        var m = t.mappings
        defer { t.set(m) }
        for i in m.indices where m[i].file == file {
            let fileEnd = m[i].fileOffset + m[i].fileLength
            guard fileEnd > keep else { continue }
            let cut = max(keep, m[i].fileOffset) - m[i].fileOffset
            try zero(m[i].windowOffset + cut, m[i].fileLength - cut)
            m[i].fileLength = cut
        }
    }

    /// After the server made `file` longer (WRITE past EOF, FALLOCATE,
    /// SETATTR size, COPY_FILE_RANGE): the file is mapped over the zero
    /// tail of each of its mappings, up to its new end (page-rounded), so
    /// the guest sees the new bytes through the ranges it already has.
    /// `open(writable)` opens the file afresh, read-write or read-only as
    /// the mapping was made; it is called only when some mapping of
    /// `file` has a zero tail (a WRITE to any other file costs a set
    /// look-up), at most once per mode. A range that cannot be mapped
    /// stays (or becomes) zero pages: the request that grew the file has
    /// succeeded and is not failed for it; the guest sees the bytes once
    /// it maps the range anew.
    public func growing(file: FileKey, open: (_ writable: Bool) -> FileDescriptor?) {
        table.withLock { t in
            guard t.withZeroTail.contains(file) else { return }
            var opened: [Bool: FileDescriptor?] = [:]
            func backing(_ writable: Bool) -> FileDescriptor? {
                if let fd = opened[writable] { return fd }
                var fd = open(writable)
                // Only the file the table names (the node may have been
                // replaced under the same name: the fd is of the node).
                var st = stat()
                if let f = fd, fstat(f.rawValue, &st) != 0 || FileKey(device: UInt64(st.st_dev), inode: UInt64(st.st_ino)) != file { fd = nil }
                opened[writable] = fd
                return fd
            }
            var m = t.mappings
            defer { t.set(m) }
            for i in m.indices where m[i].file == file && m[i].hasZeroTail {
                guard let fd = backing(m[i].writable) else { continue }
                let sizeRounded = Self.pageRounded(Self.size(of: fd))
                let fileEnd = m[i].fileOffset + m[i].fileLength
                guard sizeRounded > fileEnd else { continue }
                let grown = min(m[i].length, sizeRounded - m[i].fileOffset)
                let prot = PROT_READ | (m[i].writable ? PROT_WRITE : 0)
                do {
                    try map(fd, at: fileEnd, over: m[i].windowOffset + m[i].fileLength, grown - m[i].fileLength, prot: prot)
                    m[i].fileLength = grown
                } catch {
                    try? zero(m[i].windowOffset + m[i].fileLength, m[i].length - m[i].fileLength)
                }
            }
        }
    }

    /// Whether any mapping has a zero tail: when none has, a WRITE need
    /// not even look up its file's key for `growing(file:open:)`.
    public var anyZeroTail: Bool { table.withLock { !$0.withZeroTail.isEmpty } }

    /// Every mapping gone (device reset, FUSE_DESTROY).
    public func removeAll() {
        table.withLock { t in
            // Should even this fail, the table still forgets every file.
            try? zero(0, window.size)
            budget.release(t.mappings.count)
            t.set([])
        }
    }

    /// `fd`'s bytes from `fileOffset` over window range [offset, offset+length).
    private func map(_ fd: FileDescriptor, at fileOffset: UInt64, over offset: UInt64, _ length: UInt64, prot: Int32) throws(SystemError) {
        guard length > 0 else { return }
        let raw = Glibc.mmap(window.base + Int(offset), Int(length), prot, MAP_SHARED | MAP_FIXED, fd.rawValue, off_t(fileOffset))
        guard let raw, raw != MAP_FAILED else {
            throw SystemError("mmap(DAX window + 0x\(String(offset, radix: 16)), \(length) bytes)", .current)
        }
    }

    /// Anonymous zero pages over window range [offset, offset+length),
    /// read-only (as the window's unmapped pages: SharedMemoryWindow): a
    /// guest's stores there cannot grow vfsvm's memory.
    /// Replacing a mapping inside our own reservation fails only for want
    /// of memory (or of VMAs, which `maxMappings` bounds); the caller
    /// answers the guest with the errno instead of stopping the VMM.
    private func zero(_ offset: UInt64, _ length: UInt64) throws(SystemError) {
        guard length > 0 else { return }
        let raw = Glibc.mmap(window.base + Int(offset), Int(length), PROT_READ,
                             MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED | MAP_NORESERVE, -1, 0)
        guard let raw, raw != MAP_FAILED else {
            throw SystemError("mmap(zero pages over DAX window + 0x\(String(offset, radix: 16)), \(length) bytes)", .current)
        }
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
                left.fileLength = min(m.fileLength, left.length)
                out.append(left)
            }
            if m.end > end {
                var right = m
                let cut = end - m.windowOffset
                right.windowOffset = end
                right.fileOffset += cut
                right.length -= cut
                right.fileLength = m.fileLength > cut ? m.fileLength - cut : 0
                out.append(right)
            }
        }
        return out
    }
}

/// The DAX mappings all windows of the process hold together. Each mapping
/// is an mmap: a VMA for its file part, one for its zero tail and one for
/// the zero pages after it, at most; and a process has vm.max_map_count
/// VMAs in all, which guest RAM, libraries, thread stacks and io_uring
/// rings need some of. One window's `maxMappings` alone keeps within it;
/// thirteen dax= shares would not. Past the budget a SETUPMAPPING (or a
/// REMOVEMAPPING that splits a mapping) is ENOMEM, with one log line the
/// first time, instead of an mmap failing with ENOMEM somewhere else
/// (a thread that cannot start, a vCPU, an io_uring ring).
public final class DAXMappingBudget: Sendable {
    /// The most mappings all windows hold at once.
    public let limit: Int
    private let used = Atomic<Int>(0)
    private let warned = Atomic<Bool>(false)

    public init(limit: Int) { self.limit = max(limit, 1) }

    /// VMAs left to the rest of the process whatever the windows map.
    public static let reservedVMAs = 16384
    /// Most VMAs one mapping can cost (see the type).
    public static let vmasPerMapping = 3

    /// The budget for a process with `maxMapCount` VMAs (vm.max_map_count):
    /// what is left after `reservedVMAs`, at `vmasPerMapping` each; at
    /// least 64.
    public static func limit(maxMapCount: Int) -> Int {
        max(64, (maxMapCount - reservedVMAs) / vmasPerMapping)
    }

    /// /proc/sys/vm/max_map_count now; 65530 (the kernel's default) when
    /// it cannot be read.
    public static func hostMaxMapCount() -> Int {
        let fd = open("/proc/sys/vm/max_map_count", O_RDONLY)
        guard fd >= 0 else { return 65530 }
        defer { close(fd) }
        var buffer = [UInt8](repeating: 0, count: 32)
        let n = buffer.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
        guard n > 0 else { return 65530 }
        let text = String(decoding: buffer.prefix(n), as: UTF8.self).split(separator: "\n").first ?? ""
        return Int(text) ?? 65530
    }

    /// The one budget every window of this process shares unless a test
    /// gives its own.
    public static let process = DAXMappingBudget(limit: limit(maxMapCount: hostMaxMapCount()))

    /// Mappings held now, over all windows.
    public var inUse: Int { used.load(ordering: .relaxed) }

    /// Takes `count` more mappings; false, and nothing taken, past the
    /// limit.
    func take(_ count: Int) -> Bool {
        if count <= 0 { return true }
        var now = used.load(ordering: .relaxed)
        while true {
            guard now + count <= limit else {
                if !warned.exchange(true, ordering: .relaxed) {
                    logLine("vfsvm: the DAX windows hold \(now) mappings, all that vm.max_map_count (\(DAXMappingBudget.hostMaxMapCount())) leaves them; further SETUPMAPPINGs get ENOMEM until the guest removes some")
                }
                return false
            }
            let (exchanged, original) = used.compareExchange(expected: now, desired: now + count, ordering: .relaxed)
            if exchanged { return true }
            now = original
        }
    }

    /// Gives `count` back (nothing when it is 0 or less).
    func release(_ count: Int) {
        guard count > 0 else { return }
        used.subtract(count, ordering: .relaxed)
    }
}
