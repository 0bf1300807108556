import VfsvmFUSETestSupport
import Glibc
import Testing
import VfsvmFUSE
import VfsvmPassthroughFS
import VfsvmSys

@Suite struct EntryTests {
    @Test func lookupCountsAndForget() throws {
        let f = try Fixture()
        f.writeHost("a", "x")
        let c = f.client
        let n = c.lookup(1, "a").nodeID
        #expect(c.lookup(1, "a").nodeID == n)
        #expect(f.fs.lookupCount(of: n) == 2)
        #expect(c.forget(n, 1).length == 0)  // no reply
        #expect(f.fs.lookupCount(of: n) == 1)
        #expect(c.getattr(n).ok)
        _ = c.forget(n, 1)
        #expect(f.fs.lookupCount(of: n) == nil)
        #expect(c.getattr(n).errno == ESTALE)
        // A new lookup gets a new node id (ids are never reused).
        let n2 = c.lookup(1, "a").nodeID
        #expect(n2 != n && n2 > 1)
    }

    @Test func batchForgetDropsSeveralAndIgnoresALyingCount() throws {
        let f = try Fixture()
        f.writeHost("a", ""); f.writeHost("b", "")
        let c = f.client
        let a = c.lookup(1, "a").nodeID, b = c.lookup(1, "b").nodeID
        _ = c.lookup(1, "b")
        let body = Bytes()
        body.u32(1000).u32(0).u64(a).u64(1).u64(b).u64(1)  // count says 1000, 2 present
        #expect(c.call(.batchForget, node: 0, body).length == 0)
        #expect(f.fs.lookupCount(of: a) == nil)
        #expect(f.fs.lookupCount(of: b) == 1)
    }

    @Test func mkdirAppliesUmaskAndCallerOwnership() throws {
        let f = try Fixture()
        let c = f.client
        c.uid = 1234; c.gid = 4321
        let r = c.mkdir(1, "d", mode: 0o777, umask: 0o022)
        #expect(r.ok)
        #expect(r.entryAttr.mode == 0o040755)
        let st = try #require(f.statHost("d"))
        #expect(st.st_mode & 0o7777 == 0o755)
        #expect(st.st_uid == 1234 && st.st_gid == 4321)
        #expect(c.mkdir(1, "d").errno == EEXIST)
    }

    @Test func createGetsCallerOwnerAndSetgidDirectoryGroup() throws {
        let f = try Fixture()
        #expect(mkdir(f.path("g"), 0o777) == 0)
        #expect(chown(f.path("g"), 0, 777) == 0)
        #expect(chmod(f.path("g"), 0o2777) == 0)
        let c = f.client
        let g = c.lookup(1, "g").nodeID
        c.uid = 1000; c.gid = 1000
        let r = c.create(g, "file", mode: 0o666, umask: 0o027)
        #expect(r.ok)
        let st = try #require(f.statHost("g/file"))
        #expect(st.st_uid == 1000)
        #expect(st.st_gid == 777)  // inherited from the setgid directory
        #expect(st.st_mode & 0o777 == 0o640)
        let sub = c.mkdir(g, "sub", mode: 0o755)
        #expect(sub.ok)
        let sst = try #require(f.statHost("g/sub"))
        #expect(sst.st_mode & 0o2000 != 0)  // setgid propagates to subdirectories
    }

    @Test func createAsUnprivilegedCallerIsRefusedInRootOwnedDirectory() throws {
        let f = try Fixture()
        #expect(mkdir(f.path("private"), 0o755) == 0)
        let c = f.client
        let p = c.lookup(1, "private").nodeID
        c.uid = 1000; c.gid = 1000
        #expect(c.create(p, "x").errno == EACCES)
        #expect(!f.exists("private/x"))
    }

    @Test func mknodMakesAFifo() throws {
        let f = try Fixture()
        let body = Bytes()
        body.u32(0o010644).u32(0).u32(0).u32(0).name("fifo")
        let r = f.client.call(.mknod, node: 1, body)
        #expect(r.ok)
        let st = try #require(f.statHost("fifo"))
        #expect(st.st_mode & 0o170000 == 0o010000)
    }

    @Test func symlinkAndReadlink() throws {
        let f = try Fixture()
        let c = f.client
        let body = Bytes()
        body.name("ln").name("../../etc/passwd")
        let r = c.call(.symlink, node: 1, body)
        #expect(r.ok)
        var buf = [Int8](repeating: 0, count: 256)
        let n = readlink(f.path("ln"), &buf, 255)
        #expect(String(decoding: buf.prefix(n).map { UInt8(bitPattern: $0) }, as: UTF8.self) == "../../etc/passwd")
        let rl = c.call(.readlink, node: r.nodeID)
        #expect(rl.ok && String(decoding: rl.body, as: UTF8.self) == "../../etc/passwd")
        f.writeHost("plain", "")
        #expect(c.call(.readlink, node: c.lookup(1, "plain").nodeID).errno == EINVAL)
    }

    @Test func hardLinkSharesTheNode() throws {
        let f = try Fixture()
        f.writeHost("a", "data")
        let c = f.client
        let a = c.lookup(1, "a").nodeID
        #expect(mkdir(f.path("d"), 0o755) == 0)
        let d = c.lookup(1, "d").nodeID
        let body = Bytes()
        body.u64(a).name("b")
        let r = c.call(.link, node: d, body)
        #expect(r.ok)
        #expect(r.nodeID == a)
        #expect(r.entryAttr.nlink == 2)
        #expect(f.readHost("d/b") == "data")
        // Directories cannot be hard-linked.
        let body2 = Bytes(); body2.u64(d).name("dl")
        #expect(c.call(.link, node: 1, body2).errno == EPERM)
    }

    @Test func unlinkAndRmdir() throws {
        let f = try Fixture()
        f.writeHost("a", "")
        #expect(mkdir(f.path("d"), 0o755) == 0)
        f.writeHost("d/inner", "")
        let c = f.client
        #expect(c.unlink(1, "a").ok)
        #expect(!f.exists("a"))
        #expect(c.unlink(1, "a").errno == ENOENT)
        #expect(c.rmdir(1, "d").errno == ENOTEMPTY)
        #expect(c.unlink(c.lookup(1, "d").nodeID, "inner").ok)
        #expect(c.rmdir(1, "d").ok)
        #expect(!f.exists("d"))
    }

    @Test func renameAndRename2() throws {
        let f = try Fixture()
        f.writeHost("a", "A"); f.writeHost("b", "B")
        #expect(mkdir(f.path("d"), 0o755) == 0)
        let c = f.client
        let d = c.lookup(1, "d").nodeID
        #expect(c.rename(1, "a", d, "a2").ok)
        #expect(f.readHost("d/a2") == "A" && !f.exists("a"))
        // NOREPLACE refuses an existing target.
        f.writeHost("a", "A")
        #expect(c.rename(1, "a", 1, "b", flags: 1).errno == EEXIST)
        // EXCHANGE swaps.
        #expect(c.rename(1, "a", 1, "b", flags: 2).ok)
        #expect(f.readHost("a") == "B" && f.readHost("b") == "A")
        // Unknown flags (WHITEOUT, garbage).
        #expect(c.rename(1, "a", 1, "c", flags: 4).errno == EINVAL)
        #expect(c.rename(1, "a", 1, "c", flags: 0x80).errno == EINVAL)
    }

    @Test func tmpfileIsAnonymousAndWritable() throws {
        let f = try Fixture()
        let c = f.client
        let body = Bytes()
        body.u32(UInt32(O_RDWR)).u32(0o600).u32(0).u32(0)
        let r = c.call(.tmpfile, node: 1, body)
        #expect(r.ok)
        let node = r.nodeID, fh = r.createHandle
        #expect(c.write(node, fh: fh, offset: 0, Array("tmp".utf8)).u32 == 3)
        #expect(String(decoding: c.read(node, fh: fh, offset: 0, size: 10).body, as: UTF8.self) == "tmp")
        #expect(r.entryAttr.nlink == 0)
        let names = try listHost(f.dir)
        #expect(names.isEmpty)
    }
}

func listHost(_ dir: String) throws -> [String] {
    guard let d = opendir(dir) else { throw SystemError("opendir", .current) }
    defer { closedir(d) }
    var out: [String] = []
    while let e = readdir(d) {
        let name = withUnsafeBytes(of: e.pointee.d_name) { raw in
            String(decoding: raw.prefix { $0 != 0 }, as: UTF8.self)
        }
        if name != "." && name != ".." { out.append(name) }
    }
    return out.sorted()
}

@Suite struct MoreEntryTests {
    @Test func invalidCallerIDsAreRefusedNotTakenAsRoot() throws {
        let f = try Fixture()
        let c = f.client
        c.uid = UInt32.max; c.gid = 0
        #expect(c.create(1, "x").errno == EPERM)
        #expect(c.mkdir(1, "d").errno == EPERM)
        #expect(!f.exists("x") && !f.exists("d"))
    }

    @Test func releaseOfTheWrongKindKeepsTheHandle() throws {
        let f = try Fixture()
        let c = f.client
        let dh = c.opendir(1).openHandle
        #expect(c.release(1, fh: dh).errno == EBADF)  // RELEASE of a directory handle
        #expect(c.readdir(1, fh: dh, offset: 0).ok)  // still open
        #expect(c.release(1, fh: dh, dir: true).ok)
    }

    @Test func concurrentLookupsAndForgetsKeepCountsConsistent() async throws {
        let f = try Fixture(options: PassthroughOptions(pathFDCacheSize: 4))
        for i in 0..<20 { f.writeHost("f\(i)", "") }
        let server = f.server
        await withTaskGroup(of: Void.self) { group in
            for t in 0..<4 {
                group.addTask {
                    let c = Client(server)
                    c.unique = UInt64(t) << 32
                    for round in 0..<50 {
                        let r = c.lookup(1, "f\((round + t) % 20)")
                        if r.ok { _ = c.getattr(r.nodeID); _ = c.forget(r.nodeID, 1) }
                    }
                }
            }
        }
        // Every lookup was forgotten: only the root is left.
        #expect(f.fs.inodeCount == 1)
    }
}
