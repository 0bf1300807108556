import Glibc
import Synchronization
import Testing
@testable import VfsvmSys

/// The DAX mapping table over a real window: bytes seen through it, writes
/// reaching the file, zero pages after removal and truncation, and every
/// hostile request refused with the errno its reply would carry.
@Suite struct DAXMappingsTests {
    static let page = 4096

    /// A file of `pages` pages, byte i of page p = p * 16 + i % 16, open
    /// read-write (or read-only); unlinked at once.
    final class TempFile {
        let fd: FileDescriptor
        let key: DAXMappings.FileKey
        /// A file holding `bytes`.
        init(bytes: [UInt8], writable: Bool = true) throws {
            var template = Array("/tmp/vfsvm-dax-XXXXXX".utf8CString)
            let raw = mkstemp(&template)
            guard raw >= 0 else { throw SystemError("mkstemp", .current) }
            _ = bytes.withUnsafeBytes { write(raw, $0.baseAddress, $0.count) }
            var path = template
            if !writable {
                self.fd = FileDescriptor(owning: Glibc.open(&path, O_RDONLY))
                close(raw)
            } else {
                self.fd = FileDescriptor(owning: raw)
            }
            unlink(&path)
            var st = stat()
            fstat(self.fd.rawValue, &st)
            key = DAXMappings.FileKey(device: UInt64(st.st_dev), inode: UInt64(st.st_ino))
        }
        convenience init(pages: Int, writable: Bool = true) throws {
            try self.init(bytes: (0..<pages * DAXMappingsTests.page).map { UInt8(truncatingIfNeeded: ($0 / DAXMappingsTests.page) * 16 + $0 % 16) },
                          writable: writable)
        }
        func handle(writing: Bool) -> DAXMappings.OpenFile {
            DAXMappings.OpenFile(fd: fd, key: key, isRegular: true, openForWriting: writing)
        }
    }

    func byte(_ w: SharedMemoryWindow, _ offset: Int) -> UInt8 { w.base.load(fromByteOffset: offset, as: UInt8.self) }

    /// The errno `body` was refused with; nil when it was not, -1 for an
    /// error that is no SystemError.
    func errno(_ body: () throws -> Void) -> Int32? {
        do { try body() } catch let e as SystemError { return e.errno.rawValue } catch { return -1 }
        return nil
    }

    @Test func readThroughTheWindowWriteReachesTheFileRemoveGivesZeros() throws {
        let w = try SharedMemoryWindow(size: 2 << 20)
        let maps = DAXMappings(window: w, readOnlyShare: false)
        let f = try TempFile(pages: 4)
        #expect(byte(w, 0x1000) == 0, "an unmapped window reads zero")
        try maps.setup(f.handle(writing: true), fileOffset: 0x1000, length: 0x2000, windowOffset: 0x10_0000,
                       flags: DAXMappings.flagRead | DAXMappings.flagWrite)
        #expect(byte(w, 0x10_0000) == 16 && byte(w, 0x10_0005) == 21 && byte(w, 0x10_1000) == 32, "file pages 1 and 2 at the offset")
        w.base.storeBytes(of: 0xab, toByteOffset: 0x10_0003, as: UInt8.self)
        var got: UInt8 = 0
        #expect(pread(f.fd.rawValue, &got, 1, 0x1003) == 1 && got == 0xab, "a write through the window is in the file")
        #expect(maps.mappings.count == 1)
        try maps.remove(windowOffset: 0x10_0000, length: 0x2000)
        #expect(byte(w, 0x10_0000) == 0 && byte(w, 0x10_1000) == 0, "removed: zero pages again")
        #expect(maps.mappings.isEmpty)
        #expect(pread(f.fd.rawValue, &got, 1, 0x1003) == 1 && got == 0xab, "the file keeps the write")
        #expect(MemoryMap.protection(of: w.base + 0x10_0003)?.hasPrefix("r-") == true,
                "the zero page is no longer the file, and read-only (a guest store cannot commit host memory)")
    }

    @Test func anOverlappingMappingReplacesWhatWasThere() throws {
        let w = try SharedMemoryWindow(size: 2 << 20)
        let maps = DAXMappings(window: w, readOnlyShare: false)
        let a = try TempFile(pages: 4), b = try TempFile(pages: 4)
        try maps.setup(a.handle(writing: false), fileOffset: 0, length: 0x3000, windowOffset: 0, flags: DAXMappings.flagRead)
        try maps.setup(b.handle(writing: false), fileOffset: 0x2000, length: 0x1000, windowOffset: 0x1000, flags: DAXMappings.flagRead)
        #expect(byte(w, 0) == 0 && byte(w, 0x1000) == 32 && byte(w, 0x2000) == 32, "a's page 0, b's page 2, a's page 2")
        let m = maps.mappings
        #expect(m.count == 3, "a split around b")
        #expect(m.map(\.windowOffset) == [0, 0x1000, 0x2000] && m.map(\.fileOffset) == [0, 0x2000, 0x2000])
        #expect(m[0].file == a.key && m[1].file == b.key && m[2].file == a.key)
        try maps.remove(windowOffset: 0, length: 0x2000)
        #expect(maps.mappings.count == 1 && maps.mappings[0].windowOffset == 0x2000)
    }

    @Test func hostileMappingsRefusedWithTheirErrno() throws {
        let w = try SharedMemoryWindow(size: 2 << 20)
        let maps = DAXMappings(window: w, readOnlyShare: false, maxMappings: 2)
        let f = try TempFile(pages: 2)
        let ro = try TempFile(pages: 2, writable: false)
        let r = DAXMappings.flagRead, wr = DAXMappings.flagWrite | DAXMappings.flagRead
        let file = f.handle(writing: true)
        #expect(errno { try maps.setup(file, fileOffset: 0, length: 0x1000, windowOffset: 0x1ff000 + 0x1000, flags: r) } == EINVAL, "past the window")
        #expect(errno { try maps.setup(file, fileOffset: 0, length: 0x2000, windowOffset: 0x1ff000, flags: r) } == EINVAL, "across the window's end")
        #expect(errno { try maps.setup(file, fileOffset: 0, length: UInt64.max & ~0xfff, windowOffset: 0x1000, flags: r) } == EINVAL, "length overflows the offset")
        #expect(errno { try maps.setup(file, fileOffset: 0x1000, length: 0x1000, windowOffset: UInt64.max & ~0xfff, flags: r) } == EINVAL, "window offset overflows")
        #expect(errno { try maps.setup(file, fileOffset: 0, length: 0x1000, windowOffset: 0x800, flags: r) } == EINVAL, "unaligned window offset")
        #expect(errno { try maps.setup(file, fileOffset: 0x10, length: 0x1000, windowOffset: 0, flags: r) } == EINVAL, "unaligned file offset")
        #expect(errno { try maps.setup(file, fileOffset: 0, length: 0x1001, windowOffset: 0, flags: r) } == EINVAL, "unaligned length")
        #expect(errno { try maps.setup(file, fileOffset: 0, length: 0, windowOffset: 0, flags: r) } == EINVAL, "empty")
        #expect(errno { try maps.setup(file, fileOffset: 0x2000, length: 0x1000, windowOffset: 0, flags: r) } == EINVAL, "starting at EOF")
        #expect(errno { try maps.setup(file, fileOffset: 0x3000, length: 0x1000, windowOffset: 0, flags: r) } == EINVAL, "starting past EOF")
        #expect(errno { try maps.setup(file, fileOffset: 0, length: 0x1000, windowOffset: 0, flags: 0x4) } == EINVAL, "unknown flag")
        var dir = file
        dir.isRegular = false
        #expect(errno { try maps.setup(dir, fileOffset: 0, length: 0x1000, windowOffset: 0, flags: r) } == ENODEV, "a directory")
        #expect(errno { try maps.setup(ro.handle(writing: false), fileOffset: 0, length: 0x1000, windowOffset: 0, flags: wr) } == EACCES, "WRITE on a handle open read-only")
        let roShare = DAXMappings(window: try SharedMemoryWindow(size: 2 << 20), readOnlyShare: true)
        #expect(errno { try roShare.setup(file, fileOffset: 0, length: 0x1000, windowOffset: 0, flags: wr) } == EROFS, "WRITE on a read-only share")
        try roShare.setup(ro.handle(writing: false), fileOffset: 0, length: 0x1000, windowOffset: 0, flags: r)
        #expect(errno { try maps.remove(windowOffset: 0x1ff000, length: 0x2000) } == EINVAL, "removal past the window")
        #expect(errno { try maps.remove(windowOffset: 0x1000, length: UInt64.max & ~0xfff) } == EINVAL, "removal overflowing")
        #expect(maps.mappings.isEmpty, "nothing refused was mapped")
        // The bound: two mappings, a third refused; replacing one is not a third.
        try maps.setup(file, fileOffset: 0, length: 0x1000, windowOffset: 0, flags: r)
        try maps.setup(file, fileOffset: 0, length: 0x1000, windowOffset: 0x2000, flags: r)
        #expect(errno { try maps.setup(file, fileOffset: 0, length: 0x1000, windowOffset: 0x4000, flags: r) } == ENOMEM)
        try maps.setup(file, fileOffset: 0x1000, length: 0x1000, windowOffset: 0x2000, flags: r)
        #expect(maps.mappings.count == 2 && byte(w, 0x2000) == 16)
    }

    @Test func shrinkingAMappedFileLeavesZeroPagesNotSIGBUS() throws {
        let w = try SharedMemoryWindow(size: 2 << 20)
        let maps = DAXMappings(window: w, readOnlyShare: false)
        let f = try TempFile(pages: 4)
        try maps.setup(f.handle(writing: true), fileOffset: 0, length: 0x4000, windowOffset: 0x8000, flags: DAXMappings.flagRead)
        try maps.shrinking(file: f.key, to: 0x1001)
        #expect(ftruncate(f.fd.rawValue, 0x1001) == 0)
        // Pages 0 and 1 still hold the file (page 1 up to its new end);
        // pages 2 and 3 would SIGBUS if they were still the file's.
        #expect(byte(w, 0x8000) == 0 && byte(w, 0x9000) == 16 && byte(w, 0xa000) == 0 && byte(w, 0xb000) == 0)
        #expect(maps.mappings.count == 1 && maps.mappings[0].length == 0x4000 && maps.mappings[0].fileLength == 0x2000,
                "the mapping stays, its last two pages now its zero tail")
        let other = DAXMappings.FileKey(device: f.key.device, inode: f.key.inode &+ 1)
        try maps.shrinking(file: other, to: 0)
        #expect(maps.mappings[0].fileLength == 0x2000, "another file's truncation leaves this mapping")
        // Grown again (as by a server WRITE): the file is back in the tail.
        var b: UInt8 = 0x77
        #expect(pwrite(f.fd.rawValue, &b, 1, 0x3000) == 1)
        maps.growing(file: f.key) { _ in f.fd }
        #expect(byte(w, 0xb000) == 0x77 && byte(w, 0xa000) == 0 && maps.mappings[0].fileLength == 0x4000,
                "page 3 shows the new byte, page 2 the file's hole")
    }

    /// FALLOC_FL_COLLAPSE_RANGE's new end depends on the size now: it is
    /// read under the table's lock, so a truncate that comes while it is
    /// being read waits for the collapse, and the table never keeps a
    /// mapped page past the end the two leave.
    @Test func aShrinkReadsItsNewSizeUnderTheTableLock() throws {
        let w = try SharedMemoryWindow(size: 2 << 20)
        let maps = DAXMappings(window: w, readOnlyShare: false)
        let f = try TempFile(pages: 8)
        try maps.setup(f.handle(writing: true), fileOffset: 0, length: 0x8000, windowOffset: 0, flags: DAXMappings.flagRead)
        let reading = Atomic(false), truncated = Atomic(false)
        let fd = f.fd.rawValue, key = f.key
        let other = try OSThread(name: "dax-truncate") {
            while !reading.load(ordering: .acquiring) { usleep(1000) }
            // A truncate to 2 pages, racing the collapse below.
            try? maps.shrinking(file: key, to: 0x2000, refused: { $0 }) { () throws(SystemError) in
                _ = ftruncate(fd, 0x2000)
            }
            truncated.store(true, ordering: .releasing)
        }
        var sawTruncate = true
        try maps.shrinking(file: key, toSize: { () throws(SystemError) -> UInt64 in
            reading.store(true, ordering: .releasing)
            usleep(200_000)  // time for the truncate to run, were the lock not held
            sawTruncate = truncated.load(ordering: .acquiring)
            var st = stat()
            fstat(fd, &st)
            return UInt64(st.st_size) - 0x1000  // a collapse of one page
        }, refused: { $0 }) { () throws(SystemError) in
            var st = stat()
            fstat(fd, &st)
            _ = ftruncate(fd, st.st_size - 0x1000)
        }
        other.join()
        #expect(!sawTruncate, "the truncate waited for the collapse to read its size and finish")
        var st = stat()
        fstat(fd, &st)
        #expect(st.st_size == 0x2000, "collapse (8 -> 7 pages), then the truncate (-> 2 pages)")
        #expect(maps.mappings.count == 1 && maps.mappings[0].fileLength <= UInt64(st.st_size),
                "no mapped page past the end: \(maps.mappings.map(\.fileLength))")
        #expect(byte(w, 0x1000) == 16 && byte(w, 0x2000) == 0, "page 1 still the file's, page 2 a zero page")
    }

    /// What a Linux guest sends for a file smaller than 2 MiB: one whole
    /// 2 MiB range (FUSE_DAX_SZ) from offset 0.
    @Test func aSmallFileMappedWithA2MiBRangeReadsItsBytesThenZeros() throws {
        let w = try SharedMemoryWindow(size: 4 << 20)
        let maps = DAXMappings(window: w, readOnlyShare: false)
        let bytes = (0..<5000).map { UInt8(truncatingIfNeeded: $0 % 251 + 1) }
        let f = try TempFile(bytes: bytes)
        try maps.setup(f.handle(writing: false), fileOffset: 0, length: 2 << 20, windowOffset: 2 << 20, flags: DAXMappings.flagRead)
        let base = 2 << 20
        #expect((0..<5000).allSatisfy { byte(w, base + $0) == bytes[$0] }, "the file's 5,000 bytes")
        #expect((5000..<8192).allSatisfy { byte(w, base + $0) == 0 }, "the rest of its last page reads zero")
        #expect(byte(w, base + 8192) == 0 && byte(w, base + (2 << 20) - 1) == 0, "the zero tail past EOF reads zero, no SIGBUS")
        #expect(maps.mappings.count == 1 && maps.mappings[0].fileLength == 8192 && maps.mappings[0].length == 2 << 20)
        // The file grows (a server WRITE at 1 MiB): the mapping shows it.
        let text = Array("grown by a WRITE".utf8)
        #expect(text.withUnsafeBytes { pwrite(f.fd.rawValue, $0.baseAddress, $0.count, 1 << 20) } == text.count)
        #expect(byte(w, base + (1 << 20)) == 0, "not yet: vfsvm learns of growth through the server")
        let stranger = try TempFile(pages: 512)
        maps.growing(file: f.key) { _ in stranger.fd }
        #expect(byte(w, base + (1 << 20)) == 0 && maps.mappings[0].fileLength == 8192, "another file's fd maps nothing")
        maps.growing(file: f.key) { _ in f.fd }
        #expect((0..<text.count).map { byte(w, base + (1 << 20) + $0) } == text)
        #expect(byte(w, base + 4999) == bytes[4999] && byte(w, base + 6000) == 0, "the old bytes and the hole between")
        #expect(byte(w, base + (2 << 20) - 1) == 0)
        // A write mapping: the guest's store into the file part is in the
        // file; the zero tail is read-only until the file grows over it.
        try maps.setup(f.handle(writing: true), fileOffset: 0, length: 2 << 20, windowOffset: 0, flags: DAXMappings.flagRead | DAXMappings.flagWrite)
        w.base.storeBytes(of: 0xee, toByteOffset: 100, as: UInt8.self)
        #expect(MemoryMap.protection(of: w.base + 1_600_000)?.hasPrefix("r-") == true, "the zero tail is read-only")
        var got: UInt8 = 0
        #expect(pread(f.fd.rawValue, &got, 1, 100) == 1 && got == 0xee)
        #expect(ftruncate(f.fd.rawValue, 1_700_000) == 0)
        maps.growing(file: f.key) { _ in f.fd }
        #expect(MemoryMap.protection(of: w.base + 1_600_000)?.hasPrefix("rw") == true, "grown over: the file, writable")
        #expect(byte(w, 1_600_000) == 0, "the window shows the file there now")
    }

    /// The attack: REMOVEMAPPING of every other page of one mapping splits
    /// it each time; unbounded, the table and the window's VMAs grow until
    /// mmap fails at vm.max_map_count, which used to stop the VMM.
    @Test func removalsThatWouldSplitTheTablePastItsBoundAreENOMEM() throws {
        let w = try SharedMemoryWindow(size: 2 << 20)
        let maps = DAXMappings(window: w, readOnlyShare: false, maxMappings: 8)
        let f = try TempFile(pages: 64)
        try maps.setup(f.handle(writing: false), fileOffset: 0, length: 64 * 4096, windowOffset: 0, flags: DAXMappings.flagRead)
        var refused = 0
        for i in 0..<20 {
            let at = UInt64(2 * i + 1) * 4096
            switch errno({ try maps.remove(windowOffset: at, length: 4096) }) {
            case nil: #expect(byte(w, Int(at)) == 0, "a removed page reads zero")
            case ENOMEM?: refused += 1; #expect(byte(w, Int(at)) == UInt8(truncatingIfNeeded: (2 * i + 1) * 16), "a refused removal left the page mapped")
            case let e: Issue.record("removal \(i): errno \(String(describing: e))")
            }
            #expect(maps.mappings.count <= 8)
        }
        #expect(refused == 13, "7 removals fit in 8 pieces, the other 13 are ENOMEM")
        #expect(maps.mappings.count == 8)
        // Removing a whole piece shrinks the table: always allowed.
        try maps.remove(windowOffset: 0, length: 4096)
        #expect(maps.mappings.count == 7)
    }

    /// The attack across shares: several dax= windows, each within its own
    /// bound, together past what vm.max_map_count leaves; the budget they
    /// share refuses the mapping past it with ENOMEM, in whichever window.
    @Test func windowsShareOneMappingBudget() throws {
        let budget = DAXMappingBudget(limit: 3)
        let w1 = try SharedMemoryWindow(size: 1 << 20), w2 = try SharedMemoryWindow(size: 1 << 20)
        let a = DAXMappings(window: w1, readOnlyShare: false, budget: budget)
        let b = DAXMappings(window: w2, readOnlyShare: false, budget: budget)
        let f = try TempFile(pages: 8)
        let r = f.handle(writing: false)
        try a.setup(r, fileOffset: 0, length: 4096, windowOffset: 0, flags: DAXMappings.flagRead)
        try a.setup(r, fileOffset: 4096, length: 4096, windowOffset: 0x10000, flags: DAXMappings.flagRead)
        try b.setup(r, fileOffset: 0, length: 4096, windowOffset: 0, flags: DAXMappings.flagRead)
        #expect(budget.inUse == 3)
        #expect(errno { try b.setup(r, fileOffset: 0, length: 4096, windowOffset: 0x20000, flags: DAXMappings.flagRead) } == ENOMEM,
                "a fourth mapping, in either window, is past the budget")
        #expect(byte(w2, 0x20000) == 0 && b.mappings.count == 1, "the refused range stays zero pages")
        // Replacing a mapping in place costs nothing more.
        try b.setup(r, fileOffset: 4096, length: 4096, windowOffset: 0, flags: DAXMappings.flagRead)
        #expect(budget.inUse == 3 && byte(w2, 0) == 16)
        // A removal that would split a mapping needs one more: refused too.
        try a.setup(r, fileOffset: 0, length: 3 * 4096, windowOffset: 0x10000, flags: DAXMappings.flagRead)
        #expect(budget.inUse == 3)
        #expect(errno { try a.remove(windowOffset: 0x11000, length: 4096) } == ENOMEM)
        #expect(byte(w1, 0x11000) == 16, "the refused removal left the page mapped")
        // What one window gives back, the other may use.
        try a.remove(windowOffset: 0, length: 4096)
        #expect(budget.inUse == 2)
        try b.setup(r, fileOffset: 0, length: 4096, windowOffset: 0x20000, flags: DAXMappings.flagRead)
        #expect(budget.inUse == 3)
        a.removeAll()
        #expect(budget.inUse == 2, "removeAll gives back all of a's")
    }

    @Test func theBudgetLeavesMostOfMaxMapCountToTheProcess() {
        #expect(DAXMappingBudget.limit(maxMapCount: 65530) == (65530 - 16384) / 3)
        #expect(DAXMappingBudget.limit(maxMapCount: 1000) == 64, "never below 64")
        #expect(DAXMappingBudget.process.limit == DAXMappingBudget.limit(maxMapCount: DAXMappingBudget.hostMaxMapCount()))
    }
}
