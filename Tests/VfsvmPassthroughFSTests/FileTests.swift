import VfsvmFUSETestSupport
import Glibc
import Testing
import VfsvmFUSE
import VfsvmMemory
import VfsvmPassthroughFS
import VfsvmSys

@Suite struct AttributeTests {
    @Test func getattrReportsHostStat() throws {
        let f = try Fixture()
        f.writeHost("a", "12345")
        let c = f.client
        let n = c.lookup(1, "a").nodeID
        let r = c.getattr(n)
        #expect(r.ok)
        let st = try #require(f.statHost("a"))
        #expect(r.attr.size == 5)
        #expect(r.attr.ino == UInt64(st.st_ino))
        #expect(r.attr.mode == UInt32(st.st_mode))
    }

    @Test func setattrModeOwnerSizeTimes() throws {
        let f = try Fixture()
        f.writeHost("a", "0123456789")
        let c = f.client
        let n = c.lookup(1, "a").nodeID
        // FATTR_MODE
        #expect(c.setattr(n, valid: 1 << 0, mode: 0o100600).attr.mode == 0o100600)
        #expect(try #require(f.statHost("a")).st_mode & 0o7777 == 0o600)
        // FATTR_UID | FATTR_GID
        let o = c.setattr(n, valid: (1 << 1) | (1 << 2), uid: 501, gid: 502)
        #expect(o.attr.uid == 501 && o.attr.gid == 502)
        #expect(try #require(f.statHost("a")).st_uid == 501)
        // FATTR_SIZE without a handle
        #expect(c.setattr(n, valid: 1 << 3, size: 4).attr.size == 4)
        #expect(f.readHost("a") == "0123")
        // FATTR_ATIME | FATTR_MTIME
        let t = c.setattr(n, valid: (1 << 4) | (1 << 5), atime: 1_000_000, mtime: 2_000_000)
        #expect(t.attr.atime == 1_000_000 && t.attr.mtime == 2_000_000)
        #expect(try #require(f.statHost("a")).st_mtim.tv_sec == 2_000_000)
        // FATTR_MTIME_NOW
        let now = UInt64(time(nil))
        let t2 = c.setattr(n, valid: (1 << 5) | (1 << 8))
        #expect(t2.attr.mtime >= now - 2)
        // FATTR_SIZE through FATTR_FH
        let fh = c.open(n).openHandle
        #expect(c.setattr(n, valid: (1 << 3) | (1 << 6), fh: fh, size: 2).attr.size == 2)
        #expect(f.readHost("a") == "01")
        // Truncating a directory.
        #expect(mkdir(f.path("d"), 0o755) == 0)
        #expect(c.setattr(c.lookup(1, "d").nodeID, valid: 1 << 3, size: 0).errno == EISDIR)
    }

    @Test func chownAndKillSUIDGIDClearSetIDBits() throws {
        let f = try Fixture()
        f.writeHost("s", "x")
        #expect(chmod(f.path("s"), 0o6755) == 0)
        let c = f.client
        let n = c.lookup(1, "s").nodeID
        _ = c.setattr(n, valid: 1 << 11)  // FATTR_KILL_SUIDGID alone
        #expect(try #require(f.statHost("s")).st_mode & 0o7777 == 0o755)
        #expect(chmod(f.path("s"), 0o4755) == 0)
        _ = c.setattr(n, valid: 1 << 1, uid: 77)  // chown clears setuid, as locally
        #expect(try #require(f.statHost("s")).st_mode & 0o4000 == 0)
    }

    @Test func chmodOfSymlinkIsRefused() throws {
        let f = try Fixture()
        #expect(symlink("x", f.path("l")) == 0)
        let c = f.client
        #expect(c.setattr(c.lookup(1, "l").nodeID, valid: 1, mode: 0o777).errno == EOPNOTSUPP)
    }

    /// SETATTR with FATTR_FH naming another node's handle must not change
    /// that other file.
    @Test func setattrIgnoresAHandleOfAnotherNode() throws {
        let f = try Fixture()
        let c = f.client
        let a = c.create(1, "a"), b = c.create(1, "b")
        _ = c.write(a.nodeID, fh: a.createHandle, offset: 0, Array("aaaa".utf8))
        _ = c.write(b.nodeID, fh: b.createHandle, offset: 0, Array("bbbb".utf8))
        let fattrSize: UInt32 = 1 << 3, fattrFH: UInt32 = 1 << 6
        #expect(c.setattr(a.nodeID, valid: fattrSize | fattrFH, fh: b.createHandle, size: 0).ok)
        #expect(f.readHost("b") == "bbbb", "b is untouched")
        #expect(f.readHost("a") == "", "the request was about a")
    }
}

@Suite struct FileTests {
    @Test func openTruncAppendAndKillOnWrite() throws {
        let f = try Fixture()
        f.writeHost("a", "abcdef")
        let c = f.client
        let n = c.lookup(1, "a").nodeID
        let t = c.open(n, flags: UInt32(O_WRONLY | O_TRUNC))
        #expect(t.ok)
        #expect(f.readHost("a") == "")
        let a = c.open(n, flags: UInt32(O_WRONLY | O_APPEND))
        _ = c.write(n, fh: a.openHandle, offset: 0, Array("one".utf8))
        _ = c.write(n, fh: a.openHandle, offset: 0, Array("two".utf8))
        #expect(f.readHost("a") == "onetwo")
        #expect(chmod(f.path("a"), 0o4755) == 0)
        _ = c.write(n, fh: t.openHandle, offset: 6, Array("!".utf8), flags: 1 << 2)  // FUSE_WRITE_KILL_SUIDGID
        #expect(try #require(f.statHost("a")).st_mode & 0o4000 == 0)
        #expect(c.release(n, fh: t.openHandle).ok)
        #expect(c.release(n, fh: t.openHandle).errno == EBADF)
    }

    @Test func createExclusiveOnExistingFails() throws {
        let f = try Fixture()
        f.writeHost("a", "")
        #expect(f.client.create(1, "a", flags: UInt32(O_RDWR | O_CREAT | O_EXCL)).errno == EEXIST)
    }

    @Test func readGoesStraightIntoScatteredReplyBuffers() throws {
        let f = try Fixture()
        let content = (0..<5000).map { UInt8(truncatingIfNeeded: $0 * 7) }
        let fd = open(f.path("big"), O_CREAT | O_WRONLY, 0o644)
        _ = content.withUnsafeBytes { Glibc.write(fd, $0.baseAddress, $0.count) }
        close(fd)
        let c = f.client
        let n = c.lookup(1, "big").nodeID
        let fh = c.open(n, flags: UInt32(O_RDONLY)).openHandle
        // A reply split over three pieces of host memory.
        let p1 = HostBuffer(count: 20), p2 = HostBuffer(count: 1000), p3 = HostBuffer(count: 4100)
        let reply = Pieces(parts: [p1, p2, p3])
        let body = Bytes()
        body.u64(fh).u64(0).u32(5000).u32(0).u64(0).u32(0).u32(0)
        let req = HostBuffer(c.header(FUSEOpcode.read.rawValue, node: n, bodyLength: body.b.count) + body.b)
        let len = f.server.handle(request: req, reply: reply)
        #expect(len == 16 + 5000)
        let all = p1.array + p2.array + p3.array
        #expect(Array(all[16..<5016]) == content)
        // Reading past the end returns zero bytes.
        let past = c.read(n, fh: fh, offset: 10000, size: 10)
        #expect(past.ok && past.body.isEmpty)
        // A reply buffer smaller than the request shortens the read.
        let small = c.read(n, fh: fh, offset: 0, size: 4096, replySize: 16 + 100)
        #expect(small.ok && small.body.count == 100)
        #expect(small.body == Array(content.prefix(100)))
    }

    @Test func writeComesFromScatteredRequest() throws {
        let f = try Fixture()
        let c = f.client
        let r = c.create(1, "w")
        let data = (0..<3000).map { UInt8(truncatingIfNeeded: $0 &* 13) }
        let body = Bytes()
        body.u64(r.createHandle).u64(10).u32(UInt32(data.count)).u32(0).u64(0).u32(0).u32(0)
        let head = c.header(FUSEOpcode.write.rawValue, node: r.nodeID, bodyLength: body.b.count + data.count) + body.b
        let req = Pieces(parts: [HostBuffer(Array(head.prefix(30))), HostBuffer(Array(head.dropFirst(30)) + Array(data.prefix(1000))), HostBuffer(Array(data.dropFirst(1000)))])
        let reply = HostBuffer(count: 64)
        #expect(f.server.handle(request: req, reply: reply) == 24)
        let st = try #require(f.statHost("w"))
        #expect(st.st_size == 3010)
        let fd = open(f.path("w"), O_RDONLY)
        var back = [UInt8](repeating: 0, count: 3000)
        _ = back.withUnsafeMutableBytes { pread(fd, $0.baseAddress, 3000, 10) }
        close(fd)
        #expect(back == data)
    }

    @Test func writeSizeLyingAboutPayloadIsRejected() throws {
        let f = try Fixture()
        let c = f.client
        let r = c.create(1, "w")
        let body = Bytes()
        body.u64(r.createHandle).u64(0).u32(4096).u32(0).u64(0).u32(0).u32(0).raw([1, 2, 3])
        #expect(c.call(.write, node: r.nodeID, body).errno == EINVAL)
        #expect(try #require(f.statHost("w")).st_size == 0)
    }

    @Test func flushFsyncFallocateLseekCopyFileRange() throws {
        let f = try Fixture()
        let c = f.client
        let r = c.create(1, "src")
        let n = r.nodeID, fh = r.createHandle
        _ = c.write(n, fh: fh, offset: 0, Array("copy me".utf8))
        let fl = Bytes(); fl.u64(fh).u32(0).u32(0).u64(99)
        #expect(c.call(.flush, node: n, fl).ok)
        let fs = Bytes(); fs.u64(fh).u32(1).u32(0)
        #expect(c.call(.fsync, node: n, fs).ok)
        // A sparse file: data at 0 and at 200000, a hole between.
        _ = c.write(n, fh: fh, offset: 200_000, Array("x".utf8))
        let sh = Bytes(); sh.u64(fh).u64(0).u32(UInt32(HostFSFlag.seekHole)).u32(0)
        let hole = c.call(.lseek, node: n, sh)
        #expect(hole.ok && hole.u64 == 4096)
        let sd = Bytes(); sd.u64(fh).u64(70000).u32(UInt32(HostFSFlag.seekData)).u32(0)
        let data = c.call(.lseek, node: n, sd)
        #expect(data.ok && data.u64 == 196_608)
        // fallocate extends to 1 MiB
        let fa = Bytes(); fa.u64(fh).u64(0).u64(1 << 20).u32(0).u32(0)
        #expect(c.call(.fallocate, node: n, fa).ok)
        #expect(try #require(f.statHost("src")).st_size == 1 << 20)
        let sd2 = Bytes(); sd2.u64(fh).u64(1 << 20).u32(UInt32(HostFSFlag.seekData)).u32(0)
        #expect(c.call(.lseek, node: n, sd2).errno == ENXIO)
        let bad = Bytes(); bad.u64(fh).u64(0).u32(1).u32(0)  // SEEK_CUR is meaningless here
        #expect(c.call(.lseek, node: n, bad).errno == EINVAL)
        // copy_file_range into a second file
        let d = c.create(1, "dst")
        let cp = Bytes(); cp.u64(fh).u64(0).u64(d.nodeID).u64(d.createHandle).u64(0).u64(7).u64(0)
        let cr = c.call(.copyFileRange, node: n, cp)
        #expect(cr.ok && cr.u32 == 7)
        #expect(f.readHost("dst") == "copy me")
    }

    @Test func statfsAccessSyncfs() throws {
        let f = try Fixture()
        let c = f.client
        let s = c.call(.statfs, node: 1)
        #expect(s.ok && s.body.count == 80)
        var vfs = statvfs()
        #expect(statvfs(f.dir, &vfs) == 0)
        var d = Decoder(s.body)
        #expect(d.u64() == UInt64(vfs.f_blocks))
        f.writeHost("ro", "")
        #expect(chmod(f.path("ro"), 0o444) == 0)
        let n = c.lookup(1, "ro").nodeID
        c.uid = 1000; c.gid = 1000
        let a = Bytes(); a.u32(UInt32(R_OK)).u32(0)
        #expect(c.call(.access, node: n, a).ok)
        let w = Bytes(); w.u32(UInt32(W_OK)).u32(0)
        #expect(c.call(.access, node: n, w).errno == EACCES)
        let sy = Bytes(); sy.u64(0)
        #expect(c.call(.syncfs, node: 1, sy).ok)
    }
}

/// A scatter-gather list made of several host buffers.
struct Pieces: ScatterGatherList {
    let parts: [HostBuffer]
    var segments: [HostSegment] { parts.flatMap { $0.segments } }
    var byteCount: Int { parts.reduce(0) { $0 + $1.byteCount } }
}

@Suite struct IOURingTests {
    @Test func readAndWriteThroughIOURing() throws {
        guard let engine = IOURingEngine.make() else {
            Issue.record("io_uring is not available on this kernel (io_uring_queue_init failed); the engine cannot be tested here")
            return
        }
        var template = Array("/tmp/vfsvm-uring-XXXXXX".utf8CString)
        let p = try #require(template.withUnsafeMutableBufferPointer { mkdtemp($0.baseAddress!) })
        let dir = String(cString: p)
        defer { _ = system("rm -rf '\(dir)'") }
        let fs = try PassthroughFileSystem(root: dir, engine: engine)
        let c = Client(FUSEServer(fileSystem: fs, options: FUSEServerOptions()))
        c.initSession()
        let r = c.create(1, "u")
        let data = (0..<10000).map { UInt8(truncatingIfNeeded: $0 &* 31) }
        let body = Bytes()
        body.u64(r.createHandle).u64(5).u32(UInt32(data.count)).u32(0).u64(0).u32(0).u32(0)
        let head = c.header(FUSEOpcode.write.rawValue, node: r.nodeID, bodyLength: body.b.count + data.count) + body.b
        let req = Pieces(parts: [HostBuffer(head + Array(data.prefix(3000))), HostBuffer(Array(data.dropFirst(3000)))])
        #expect(c.server.handle(request: req, reply: HostBuffer(count: 64)) == 24)
        var st = stat()
        #expect(stat(dir + "/u", &st) == 0 && st.st_size == 10005)
        let p1 = HostBuffer(count: 16 + 4000), p2 = HostBuffer(count: 6000)
        let rb = Bytes(); rb.u64(r.createHandle).u64(5).u32(10000).u32(0).u64(0).u32(0).u32(0)
        let rreq = HostBuffer(c.header(FUSEOpcode.read.rawValue, node: r.nodeID, bodyLength: rb.b.count) + rb.b)
        #expect(c.server.handle(request: rreq, reply: Pieces(parts: [p1, p2])) == 16 + 10000)
        #expect(Array((p1.array + p2.array)[16...]) == data)
        // FSYNC and FALLOCATE go through the ring too.
        let sync = Bytes(); sync.u64(r.createHandle).u32(1).u32(0)  // fdatasync
        #expect(c.call(.fsync, node: r.nodeID, sync).ok)
        let fa = Bytes(); fa.u64(r.createHandle).u64(0).u64(1 << 20).u32(0).u32(0)
        #expect(c.call(.fallocate, node: r.nodeID, fa).ok)
        #expect(stat(dir + "/u", &st) == 0 && st.st_size == 1 << 20)
        let punch = Bytes(); punch.u64(r.createHandle).u64(0).u64(4096).u32(0x02).u32(0)
        #expect(c.call(.fallocate, node: r.nodeID, punch).errno == EOPNOTSUPP,
                "FALLOC_FL_PUNCH_HOLE (0x02) without KEEP_SIZE is refused by the kernel, and the errno comes back through the ring")
        // Errors come back as errno: a read from a write-only handle.
        let wo = c.open(r.nodeID, flags: UInt32(O_WRONLY))
        #expect(c.read(r.nodeID, fh: wo.openHandle, offset: 0, size: 10).errno == EBADF)
    }
}

@Suite struct OffsetTests {
    @Test func offsetsNearTheEndOfTheRangeAreRefusedOrHarmless() throws {
        let f = try Fixture()
        let c = f.client
        let r = c.create(1, "o")
        let top = UInt64(Int64.max)
        #expect(c.read(r.nodeID, fh: r.createHandle, offset: top - 2, size: 100).errno == EINVAL)
        #expect(c.write(r.nodeID, fh: r.createHandle, offset: top - 2, [1, 2, 3, 4]).errno == EINVAL)
        #expect(c.read(r.nodeID, fh: r.createHandle, offset: top, size: 1).errno == EINVAL)
        #expect(c.read(r.nodeID, fh: r.createHandle, offset: UInt64.max, size: 0).errno == EINVAL)
        // The largest legal offset: the host answers (EOF or EFBIG/EINVAL), no crash.
        let w = c.write(r.nodeID, fh: r.createHandle, offset: top - 4, [1, 2, 3, 4])
        #expect(w.errno == EFBIG || w.errno == EINVAL)
        #expect(c.read(r.nodeID, fh: r.createHandle, offset: top - 4, size: 4).ok)
    }
}
