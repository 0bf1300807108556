import VfsvmFUSETestSupport
import Glibc
import Testing
import VfsvmFUSE
import VfsvmPassthroughFS
import VfsvmSys

/// FUSE_SETUPMAPPING / FUSE_REMOVEMAPPING served by the server over a real
/// DAX window: what INIT announces, the file's bytes seen through the
/// window's host mapping, writes through it reaching the file, every
/// hostile request refused with its errno, and a file shrunk while mapped
/// leaving zero pages (no SIGBUS) in the window.
@Suite struct DAXTests {
    static let page: UInt64 = 4096
    static let read = DAXMappings.flagRead
    static let write = DAXMappings.flagRead | DAXMappings.flagWrite

    /// A share with a 1 MiB window and a 3-page file "data" whose page p
    /// is filled with the byte "A" + p.
    final class Share {
        let window: SharedMemoryWindow
        let maps: DAXMappings
        let f: Fixture
        let node: UInt64
        init(readOnly: Bool = false, maxMappings: Int = 4096, budget: DAXMappingBudget = DAXMappingBudget(limit: 1 << 20)) throws {
            window = try SharedMemoryWindow(size: 1 << 20)
            maps = DAXMappings(window: window, readOnlyShare: readOnly, maxMappings: maxMappings, budget: budget)
            f = try Fixture(server: FUSEServerOptions(readOnly: readOnly), dax: maps)
            let bytes = (0..<3 * Int(DAXTests.page)).map { UInt8(ascii: "A") + UInt8($0 / Int(DAXTests.page)) }
            let fd = Glibc.open(f.path("data"), O_CREAT | O_WRONLY | O_TRUNC, 0o644)
            _ = bytes.withUnsafeBytes { Glibc.write(fd, $0.baseAddress, $0.count) }
            close(fd)
            mkdir(f.path("dir"), 0o755)
            node = f.client.lookup(1, "data").nodeID
        }
        var c: Client { f.client }
        /// The window's bytes [offset, offset + count) as the guest sees them.
        func window(_ offset: UInt64, _ count: Int) -> [UInt8] {
            (0..<count).map { window.base.load(fromByteOffset: Int(offset) + $0, as: UInt8.self) }
        }
        func hostBytes(_ offset: Int, _ count: Int) -> [UInt8] {
            var b = [UInt8](repeating: 0, count: count)
            let fd = Glibc.open(f.path("data"), O_RDONLY)
            defer { close(fd) }
            let n = b.withUnsafeMutableBytes { pread(fd, $0.baseAddress, count, off_t(offset)) }
            return Array(b.prefix(max(n, 0)))
        }
    }

    static func filled(_ ch: Character, _ n: Int) -> [UInt8] { [UInt8](repeating: ch.asciiValue!, count: n) }

    @Test func initAnnouncesMapAlignmentOnlyWithAWindow() throws {
        // fuse_init_out: flags at 12, map_alignment at 30.
        func announced(_ r: Reply) -> (Bool, UInt16) {
            var d = Decoder(r.body, at: 12)
            let flags = UInt64(d.u32())
            let align = UInt16(r.body[30]) | UInt16(r.body[31]) << 8
            return (flags & FUSEInitFlag.mapAlignment != 0, align)
        }
        let s = try Share()
        let with = announced(s.c.initSession())
        #expect(with.0 && with.1 == 12, "FUSE_MAP_ALIGNMENT with map_alignment = log2(4096)")
        let plain = try Fixture()
        let without = announced(plain.client.initSession())
        #expect(!without.0 && without.1 == 0)
        // A share without a window: both opcodes ENOSYS, as before.
        let n = plain.client.create(1, "x").nodeID
        #expect(plain.client.setupMapping(n, fh: UInt64.max, fileOffset: 0, length: Self.page, flags: Self.read, windowOffset: 0).errno == ENOSYS)
        #expect(plain.client.removeMapping(1, [(0, Self.page)]).errno == ENOSYS)
    }

    @Test func fileBytesReadableThroughTheWindowAndWritesReachTheFile() throws {
        let s = try Share()
        let fh = s.c.open(s.node, flags: UInt32(O_RDWR)).openHandle
        // File pages 1-2 ("B", "C") at window offset 64 KiB, read-only.
        #expect(s.c.setupMapping(s.node, fh: fh, fileOffset: Self.page, length: 2 * Self.page, flags: Self.read, windowOffset: 0x10000).ok)
        #expect(s.window(0x10000, 4096) == Self.filled("B", 4096))
        #expect(s.window(0x11000, 4096) == Self.filled("C", 4096))
        #expect(s.window(0x12000, 16) == [UInt8](repeating: 0, count: 16), "past the mapping: zero pages")
        // A host write shows through the shared mapping at once.
        let fd = Glibc.open(s.f.path("data"), O_WRONLY)
        _ = pwrite(fd, "host", 4, off_t(Self.page))
        close(fd)
        #expect(s.window(0x10000, 4) == Array("host".utf8))

        // Page 0 writable at offset 0: the guest's stores land in the file.
        #expect(s.c.setupMapping(s.node, fh: fh, fileOffset: 0, length: Self.page, flags: Self.write, windowOffset: 0).ok)
        #expect(s.window(0, 2) == Array("AA".utf8))
        for (i, b) in "guest wrote".utf8.enumerated() { s.window.base.storeBytes(of: b, toByteOffset: 100 + i, as: UInt8.self) }
        #expect(s.hostBytes(100, 11) == Array("guest wrote".utf8))

        // Without a handle (fh = -1, what Linux sends): the node itself.
        #expect(s.c.setupMapping(s.node, fh: UInt64.max, fileOffset: 2 * Self.page, length: Self.page, flags: Self.read, windowOffset: 0x20000).ok)
        #expect(s.window(0x20000, 8) == Self.filled("C", 8))
        #expect(s.maps.mappings.count == 3)

        // REMOVEMAPPING of two ranges: zeros again, the table forgets them.
        #expect(s.c.removeMapping(s.node, [(0x10000, 2 * Self.page), (0, Self.page)]).ok)
        #expect(s.window(0x10000, 8) == [UInt8](repeating: 0, count: 8))
        #expect(s.window(0, 8) == [UInt8](repeating: 0, count: 8))
        #expect(s.maps.mappings.map(\.windowOffset) == [0x20000])
        #expect(s.hostBytes(100, 11) == Array("guest wrote".utf8), "removing a mapping keeps what was written")
        // DESTROY drops every mapping.
        #expect(s.c.call(.destroy, node: 0).ok)
        #expect(s.maps.mappings.isEmpty && s.window(0x20000, 8) == [UInt8](repeating: 0, count: 8))
    }

    @Test func anOverlappingMappingReplacesTheOldOneWithoutAHole() throws {
        // The kernel upgrades a read mapping to a write one by mapping
        // the same range again, so overlap is not an error: the new
        // mapping wins, what it does not cover stays as it was.
        let s = try Share()
        let fh = s.c.open(s.node, flags: UInt32(O_RDWR)).openHandle
        #expect(s.c.setupMapping(s.node, fh: fh, fileOffset: 0, length: 3 * Self.page, flags: Self.read, windowOffset: 0).ok)
        #expect(s.c.setupMapping(s.node, fh: fh, fileOffset: 2 * Self.page, length: Self.page, flags: Self.write, windowOffset: Self.page).ok)
        #expect(s.window(0, 1) == Array("A".utf8) && s.window(Self.page, 1) == Array("C".utf8) && s.window(2 * Self.page, 1) == Array("C".utf8))
        #expect(s.maps.mappings.map(\.windowOffset) == [0, Self.page, 2 * Self.page])
    }

    @Test func hostileMappingsRefusedWithTheirErrno() throws {
        let s = try Share()
        let rw = s.c.open(s.node, flags: UInt32(O_RDWR)).openHandle
        let ro = s.c.open(s.node, flags: UInt32(O_RDONLY)).openHandle
        let dirNode = s.c.lookup(1, "dir").nodeID
        let dirHandle = s.c.opendir(dirNode).openHandle
        func setup(fh: UInt64, node: UInt64? = nil, _ fileOffset: UInt64, _ length: UInt64, _ flags: UInt64, at w: UInt64) -> Int32 {
            s.c.setupMapping(node ?? s.node, fh: fh, fileOffset: fileOffset, length: length, flags: flags, windowOffset: w).errno
        }
        let end: UInt64 = 1 << 20
        #expect(setup(fh: rw, 0, Self.page, Self.read, at: end) == EINVAL, "starts at the window's end")
        #expect(setup(fh: rw, 0, 2 * Self.page, Self.read, at: end - Self.page) == EINVAL, "runs past the window")
        #expect(setup(fh: rw, 0, Self.page, Self.read, at: UInt64.max - 4095) == EINVAL, "window offset + length overflows")
        #expect(setup(fh: rw, 3 * Self.page, Self.page, Self.read, at: 0) == EINVAL, "wholly past EOF")
        #expect(setup(fh: UInt64.max, 4 * Self.page, Self.page, Self.read, at: 0) == EINVAL, "wholly past EOF, without a handle")
        #expect(setup(fh: rw, 0, 100, Self.read, at: 0) == EINVAL, "length not page aligned")
        #expect(setup(fh: rw, 0, Self.page, Self.read, at: 12) == EINVAL, "window offset not page aligned")
        #expect(setup(fh: rw, 0, 0, Self.read, at: 0) == EINVAL, "empty")
        #expect(setup(fh: rw, 0, Self.page, 1 << 5, at: 0) == EINVAL, "unknown flag")
        #expect(setup(fh: dirHandle, node: dirNode, 0, Self.page, Self.read, at: 0) == ENODEV, "a directory handle")
        #expect(setup(fh: UInt64.max, node: dirNode, 0, Self.page, Self.read, at: 0) == ENODEV, "a directory node")
        #expect(setup(fh: ro, 0, Self.page, Self.write, at: 0) == EACCES, "WRITE on a read-only handle")
        #expect(setup(fh: 987_654, 0, Self.page, Self.read, at: 0) == EBADF, "a handle never opened")
        #expect(s.maps.mappings.isEmpty && s.window(0, 4) == [0, 0, 0, 0], "nothing refused was mapped")

        // REMOVEMAPPING: a count the request cannot hold is refused before
        // anything is removed (no read past the request).
        #expect(setup(fh: rw, 0, Self.page, Self.read, at: 0) == 0)
        #expect(s.c.removeMapping(s.node, [(0, Self.page)], count: 2).errno == EINVAL)
        #expect(s.c.removeMapping(s.node, [], count: UInt32.max).errno == EINVAL)
        #expect(s.maps.mappings.count == 1 && s.window(0, 1) == Array("A".utf8))
        #expect(s.c.removeMapping(s.node, [(end, Self.page)]).errno == EINVAL, "a range past the window")
        #expect(s.c.removeMapping(s.node, [(0, 5)]).errno == EINVAL, "an unaligned range")
        #expect(s.maps.mappings.count == 1)
    }

    @Test func mappingsAreBoundedAndANewSessionReclaimsThem() throws {
        let s = try Share(maxMappings: 2)
        let fh = s.c.open(s.node, flags: UInt32(O_RDONLY)).openHandle
        for i: UInt64 in 0..<2 {
            #expect(s.c.setupMapping(s.node, fh: fh, fileOffset: i * Self.page, length: Self.page, flags: Self.read, windowOffset: i * Self.page).ok)
        }
        #expect(s.c.setupMapping(s.node, fh: fh, fileOffset: 0, length: Self.page, flags: Self.read, windowOffset: 0x40000).errno == ENOMEM,
                "one mapping past the table's bound")
        // Replacing a mapping in place is no new one.
        #expect(s.c.setupMapping(s.node, fh: fh, fileOffset: 2 * Self.page, length: Self.page, flags: Self.read, windowOffset: 0).ok)
        #expect(s.window(0, 1) == Array("C".utf8))
        // A guest that reboots sends INIT again without DESTROY: nothing
        // of the old session stays mapped.
        #expect(s.c.initSession().ok)
        #expect(s.maps.mappings.isEmpty && s.window(0, 1) == [0] && s.window(Self.page, 1) == [0])
    }

    /// Two dax= shares of one VM share the process's mapping budget: what
    /// one holds, the other's guest gets ENOMEM for, until it is removed.
    @Test func sharesTogetherStayWithinTheProcessBudget() throws {
        let budget = DAXMappingBudget(limit: 2)
        let a = try Share(budget: budget), b = try Share(budget: budget)
        let fa = a.c.open(a.node, flags: UInt32(O_RDONLY)).openHandle, fb = b.c.open(b.node, flags: UInt32(O_RDONLY)).openHandle
        #expect(a.c.setupMapping(a.node, fh: fa, fileOffset: 0, length: Self.page, flags: Self.read, windowOffset: 0).ok)
        #expect(a.c.setupMapping(a.node, fh: fa, fileOffset: Self.page, length: Self.page, flags: Self.read, windowOffset: 0x10000).ok)
        #expect(b.c.setupMapping(b.node, fh: fb, fileOffset: 0, length: Self.page, flags: Self.read, windowOffset: 0).errno == ENOMEM,
                "the other share's guest is refused: the windows together hold the budget")
        #expect(b.window(0, 1) == [0])
        #expect(a.c.removeMapping(a.node, [(0, Self.page)]).ok)
        #expect(b.c.setupMapping(b.node, fh: fb, fileOffset: 0, length: Self.page, flags: Self.read, windowOffset: 0).ok)
        #expect(b.window(0, 1) == Array("A".utf8) && budget.inUse == 2)
    }

    @Test func writeMappingOnAReadOnlyShareIsEROFS() throws {
        let s = try Share(readOnly: true)
        let fh = s.c.open(s.node, flags: UInt32(O_RDONLY)).openHandle
        #expect(s.c.setupMapping(s.node, fh: fh, fileOffset: 0, length: Self.page, flags: Self.write, windowOffset: 0).errno == EROFS)
        #expect(s.c.setupMapping(s.node, fh: UInt64.max, fileOffset: 0, length: Self.page, flags: Self.write, windowOffset: 0).errno == EROFS)
        // Reading is what a read-only share is for.
        #expect(s.c.setupMapping(s.node, fh: fh, fileOffset: 0, length: Self.page, flags: Self.read, windowOffset: 0).ok)
        #expect(s.window(0, 1) == Array("A".utf8))
    }

    @Test func shrinkingAMappedFileLeavesZeroPagesNotSIGBUS() throws {
        // Each shrink below would make the mapped pages past the new end
        // SIGBUS on the next load here (the test process would die).
        let s = try Share()
        let fh = s.c.open(s.node, flags: UInt32(O_RDWR)).openHandle
        #expect(s.c.setupMapping(s.node, fh: fh, fileOffset: 0, length: 3 * Self.page, flags: Self.write, windowOffset: 0).ok)
        // SETATTR size 4097: page 1 still holds the end of the file, page 2 goes.
        #expect(s.c.setattr(s.node, valid: 1 << 3, size: Self.page + 1).ok)
        #expect(s.window(0, 1) == Array("A".utf8) && s.window(Self.page, 1) == Array("B".utf8))
        #expect(s.window(2 * Self.page, 4096) == [UInt8](repeating: 0, count: 4096))
        #expect(s.maps.mappings.map(\.fileLength) == [2 * Self.page] && s.maps.mappings.map(\.length) == [3 * Self.page],
                "the mapping stays, its last page now zero tail")
        // OPEN with O_TRUNC: nothing of the file stays mapped.
        #expect(s.c.open(s.node, flags: UInt32(O_RDWR | O_TRUNC)).ok)
        #expect(s.window(0, 1) == [0] && s.window(Self.page, 1) == [0])
        #expect(s.maps.mappings.map(\.fileLength) == [0])
        // FALLOCATE collapsing a range shrinks the file too.
        let fd = Glibc.open(s.f.path("data"), O_WRONLY)
        _ = ftruncate(fd, off_t(3 * Self.page))
        close(fd)
        #expect(s.c.setupMapping(s.node, fh: fh, fileOffset: 0, length: 3 * Self.page, flags: Self.read, windowOffset: 0).ok)
        let b = Bytes(); b.u64(fh).u64(0).u64(Self.page).u32(UInt32(HostFSFlag.fallocCollapseRange)).u32(0)
        let collapsed = s.c.call(.fallocate, node: s.node, b)
        if collapsed.errno == EOPNOTSUPP {
            print("DAXTests: /tmp's file system cannot collapse a range; the FALLOCATE case did not run")
        } else {
            #expect(collapsed.ok)
            #expect(s.window(2 * Self.page, 4096) == [UInt8](repeating: 0, count: 4096))
            #expect(s.maps.mappings.map(\.fileLength) == [2 * Self.page])
        }
        // CREATE without O_EXCL of the existing name with O_TRUNC: an OPEN
        // with O_TRUNC, so the mapping's pages go first.
        let hfd = Glibc.open(s.f.path("data"), O_WRONLY)
        _ = pwrite(hfd, "still here", 10, 0)
        close(hfd)
        #expect(s.c.setupMapping(s.node, fh: fh, fileOffset: 0, length: Self.page, flags: Self.read, windowOffset: 0x40000).ok)
        #expect(s.window(0x40000, 10) == Array("still here".utf8))
        let created = s.c.create(1, "data", flags: UInt32(O_RDWR | O_CREAT | O_TRUNC))
        #expect(created.ok)
        #expect(s.window(0x40000, 4096) == [UInt8](repeating: 0, count: 4096) && s.hostBytes(0, 1).isEmpty)
    }

    /// The table is attached once (requests read it without a lock): a
    /// second, different table is refused and the first keeps guarding
    /// the shrinks, so a truncate still zeroes the first window's pages.
    @Test func theMappingTableIsAttachedOnce() throws {
        let s = try Share()
        #expect(s.f.fs.attachMappings(s.maps), "the same table again: already attached, kept")
        let other = DAXMappings(window: try SharedMemoryWindow(size: 1 << 20), readOnlyShare: false)
        #expect(!s.f.fs.attachMappings(other), "a different table is refused")
        let fh = s.c.open(s.node, flags: UInt32(O_RDWR)).openHandle
        #expect(s.c.setupMapping(s.node, fh: fh, fileOffset: 0, length: 3 * Self.page, flags: Self.read, windowOffset: 0).ok)
        #expect(s.c.setattr(s.node, valid: 1 << 3, size: Self.page).ok)
        #expect(s.window(Self.page, 4096) == [UInt8](repeating: 0, count: 4096), "the first table saw the shrink")
        #expect(s.maps.mappings.map(\.fileLength) == [Self.page])
    }

    /// A shrink the host refuses (FALLOCATE collapsing a range that reaches
    /// EOF: EINVAL) leaves the file as it was, and so its mappings: the
    /// window shows the file, and stores through it reach the file.
    @Test func aRefusedShrinkLeavesTheMappingsShowingTheFile() throws {
        let s = try Share()
        let fh = s.c.open(s.node, flags: UInt32(O_RDWR)).openHandle
        #expect(s.c.setupMapping(s.node, fh: fh, fileOffset: 0, length: 3 * Self.page, flags: Self.write, windowOffset: 0).ok)
        let b = Bytes(); b.u64(fh).u64(Self.page).u64(2 * Self.page).u32(UInt32(HostFSFlag.fallocCollapseRange)).u32(0)
        let r = s.c.call(.fallocate, node: s.node, b)
        #expect(!r.ok, "a collapse reaching EOF is refused by the host")
        #expect(s.window(Self.page, 1) == Array("B".utf8) && s.window(2 * Self.page, 1) == Array("C".utf8),
                "the window still shows the file")
        #expect(s.maps.mappings.map(\.fileLength) == [3 * Self.page])
        s.window.base.storeBytes(of: UInt8(ascii: "z"), toByteOffset: Int(2 * Self.page), as: UInt8.self)
        #expect(s.hostBytes(Int(2 * Self.page), 1) == Array("z".utf8), "a store through the window reaches the file")
    }

    /// A Linux guest maps whole 2 MiB ranges (FUSE_DAX_SZ), also of a
    /// file smaller than that, and sends a write that extends a file as
    /// FUSE_WRITE: the range reads the file's bytes then zeros (no
    /// SIGBUS), and grows with the file, whatever made it longer.
    @Test func aSmallFileMappedWholeGrowsWithTheServersWrites() throws {
        let s = try Share()
        let small = (0..<5000).map { UInt8(ascii: "a") + UInt8($0 % 26) }
        let fd = Glibc.open(s.f.path("small"), O_CREAT | O_WRONLY | O_TRUNC, 0o644)
        _ = small.withUnsafeBytes { Glibc.write(fd, $0.baseAddress, $0.count) }
        close(fd)
        let node = s.c.lookup(1, "small").nodeID
        let range: UInt64 = 1 << 20  // the whole test window; Linux's 2 MiB does not fit in it
        #expect(s.c.setupMapping(node, fh: UInt64.max, fileOffset: 0, length: range, flags: Self.read, windowOffset: 0).ok,
                "a range running past EOF is mapped")
        #expect(s.window(0, 5000) == small, "the file's 5,000 bytes")
        #expect(s.window(5000, 8192 - 5000) == [UInt8](repeating: 0, count: 8192 - 5000), "then zeros to the end of its page")
        #expect(s.window(8192, 4096) == [UInt8](repeating: 0, count: 4096) && s.window(range - 16, 16) == [UInt8](repeating: 0, count: 16),
                "and the zero tail past EOF, no SIGBUS")

        // A WRITE past EOF through the server (what fuse_dax_write_iter
        // sends for an extending write) shows in the existing mapping.
        let fh = s.c.open(node, flags: UInt32(O_RDWR)).openHandle
        let text = Array("appended by FUSE_WRITE".utf8)
        #expect(s.c.write(node, fh: fh, offset: 20_000, text).ok)
        #expect(s.window(20_000, text.count) == text)
        #expect(s.window(0, 5000) == small && s.window(5000, 16) == [UInt8](repeating: 0, count: 16))

        // SETATTR size up, then a host write inside the new size: the
        // pages are the file's (shared), so the host's bytes show at once.
        #expect(s.c.setattr(node, valid: 1 << 3, size: 100_000).ok)
        let hfd = Glibc.open(s.f.path("small"), O_WRONLY)
        _ = pwrite(hfd, "host", 4, 90_000)
        close(hfd)
        #expect(s.window(90_000, 4) == Array("host".utf8))

        // FALLOCATE without KEEP_SIZE, then a host write inside it.
        let fa = Bytes(); fa.u64(fh).u64(100_000).u64(100_000).u32(0).u32(0)
        #expect(s.c.call(.fallocate, node: node, fa).ok)
        let hfd2 = Glibc.open(s.f.path("small"), O_WRONLY)
        _ = pwrite(hfd2, "fall", 4, 190_000)
        close(hfd2)
        #expect(s.window(190_000, 4) == Array("fall".utf8))

        // COPY_FILE_RANGE into it, past its end.
        let src = s.c.open(s.node, flags: UInt32(O_RDONLY)).openHandle
        let cp = Bytes(); cp.u64(src).u64(0).u64(node).u64(fh).u64(300_000).u64(8).u64(0)
        let copied = s.c.call(.copyFileRange, node: s.node, cp)
        #expect(copied.ok && copied.u32 == 8)
        #expect(s.window(300_000, 8) == Self.filled("A", 8))

        // Shrunk to nothing and written again: the guest still holds its
        // range (Linux keeps it across a truncate) and sees the new bytes.
        #expect(s.c.setattr(node, valid: 1 << 3, size: 0).ok)
        #expect(s.window(0, 16) == [UInt8](repeating: 0, count: 16) && s.window(300_000, 8) == [UInt8](repeating: 0, count: 8))
        #expect(s.c.write(node, fh: fh, offset: 0, Array("again".utf8)).ok)
        #expect(s.window(0, 5) == Array("again".utf8) && s.window(300_000, 8) == [UInt8](repeating: 0, count: 8))
        #expect(s.maps.mappings.map(\.fileLength) == [Self.page])
        // Growth by another host process is not seen until the guest maps
        // again (README, "DAX"): vfsvm learns of growth through the server.
        let hfd3 = Glibc.open(s.f.path("small"), O_WRONLY)
        _ = pwrite(hfd3, "late", 4, 50_000)
        close(hfd3)
        #expect(s.window(50_000, 4) == [0, 0, 0, 0])
        #expect(s.c.setupMapping(node, fh: UInt64.max, fileOffset: 0, length: range, flags: Self.read, windowOffset: 0).ok)
        #expect(s.window(50_000, 4) == Array("late".utf8))
    }

    /// The host protection of the window page at `offset` ("r--p", ...).
    static func protection(_ s: Share, at offset: UInt64) -> String? {
        MemoryMap.protection(of: s.window.base + Int(offset))
    }

    /// A write mapping past EOF: its zero tail is read-only (Linux stores
    /// nothing there: its extending writes are FUSE_WRITEs, a fault past
    /// i_size its SIGBUS), as are the window's unmapped pages, so a guest
    /// cannot make vfsvm commit memory by storing into the window; the
    /// file part takes stores, and the tail shows the file once it grows.
    @Test func aWriteMappingsZeroTailAndTheUnmappedWindowAreReadOnly() throws {
        let s = try Share()
        #expect(Self.protection(s, at: 0x80000)?.hasPrefix("r-") == true, "an unmapped window page is read-only")
        let fh = s.c.open(s.node, flags: UInt32(O_RDWR)).openHandle
        #expect(s.c.setupMapping(s.node, fh: fh, fileOffset: 0, length: 8 * Self.page, flags: Self.write, windowOffset: 0).ok)
        #expect(Self.protection(s, at: 5 * Self.page)?.hasPrefix("r-") == true, "the zero tail is read-only")
        #expect(Self.protection(s, at: 0)?.hasPrefix("rw") == true, "the file part takes stores")
        s.window.base.storeBytes(of: UInt8(ascii: "y"), toByteOffset: 10, as: UInt8.self)
        #expect(s.hostBytes(10, 1) == Array("y".utf8), "a store inside the file is in the file")
        #expect(s.c.write(s.node, fh: fh, offset: 6 * Self.page, [1]).ok)
        #expect(s.window(5 * Self.page, 1) == [0] && s.window(6 * Self.page, 1) == [1], "the window shows the grown file")
    }
}
