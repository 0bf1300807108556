import VfsvmTestSupport
import VfsvmFUSETestSupport
import Glibc
import Testing
import VfsvmFUSE
import VfsvmPassthroughFS
import VfsvmSys

@Suite struct ConfinementTests {
    @Test func symlinkPointingOutsideIsNeverFollowed() throws {
        let f = try Fixture()
        #expect(symlink("/etc", f.path("etc")) == 0)
        #expect(symlink("/etc/passwd", f.path("passwd")) == 0)
        let c = f.client
        let l = c.lookup(1, "passwd")
        #expect(l.ok)
        #expect(l.entryAttr.mode & 0o170000 == 0o120000)  // the link itself
        #expect(c.open(l.nodeID, flags: UInt32(O_RDONLY)).errno == ELOOP)
        #expect(c.open(l.nodeID, flags: UInt32(O_WRONLY | O_TRUNC)).errno == ELOOP)
        let e = c.lookup(1, "etc").nodeID
        #expect(c.lookup(e, "passwd").errno == ENOTDIR)
        #expect(c.create(e, "evil").errno == ENOTDIR)
        #expect(c.mkdir(e, "evil").errno == ENOTDIR)
        #expect(c.opendir(e).errno == ENOTDIR)
        // Setting attributes on the link does not reach the target.
        var before = stat()
        #expect(stat("/etc/passwd", &before) == 0)
        _ = c.setattr(l.nodeID, valid: (1 << 4) | (1 << 5), atime: 5, mtime: 5)
        _ = c.setattr(l.nodeID, valid: 1 << 3, size: 0)
        var after = stat()
        #expect(stat("/etc/passwd", &after) == 0)
        #expect(after.st_size == before.st_size && after.st_mtim.tv_sec == before.st_mtim.tv_sec)
    }

    @Test func procMagicLinksAreNotFollowed() throws {
        let f = try Fixture()
        #expect(symlink("/proc/self/root", f.path("root")) == 0)
        #expect(symlink("/proc/self/fd/3", f.path("fd3")) == 0)
        let c = f.client
        let r = c.lookup(1, "root").nodeID
        #expect(c.lookup(r, "etc").errno == ENOTDIR)
        #expect(c.open(c.lookup(1, "fd3").nodeID).errno == ELOOP)
    }

    @Test func dotDotStaysInsideTheShare() throws {
        let f = try Fixture()
        let c = f.client
        let up = c.lookup(1, "..")
        #expect(up.ok && up.nodeID == 1)
        let dot = c.lookup(1, ".")
        #expect(dot.ok && dot.nodeID == 1)
        #expect(mkdir(f.path("d"), 0o755) == 0)
        let d = c.lookup(1, "d").nodeID
        #expect(c.lookup(d, "..").nodeID == 1)
        // Names with '/' never resolve paths.
        #expect(c.lookup(1, "../etc").errno == EINVAL)
        #expect(c.lookup(1, "d/..").errno == EINVAL)
        #expect(c.lookup(1, "/etc").errno == EINVAL)
        #expect(c.create(1, "../escape").errno == EINVAL)
        #expect(c.rename(1, "d", 1, "../d2").errno == EINVAL)
    }

    @Test func directoryMovedOutsideCannotLeadOut() throws {
        let f = try Fixture()
        #expect(mkdir(f.path("d"), 0o755) == 0)
        let c = f.client
        let d = c.lookup(1, "d").nodeID
        let outside = f.dir + "-outside"
        #expect(rename(f.path("d"), outside) == 0)
        defer { _ = system("rm -rf '\(outside)'") }
        #expect(c.lookup(d, "..").errno == EACCES)
    }

    @Test func dotNamesRefusedForCreateUnlinkRename() throws {
        let f = try Fixture()
        let c = f.client
        #expect(c.create(1, ".").errno == EINVAL)
        #expect(c.mkdir(1, "..").errno == EINVAL)
        #expect(c.unlink(1, "..").errno == EINVAL)
        #expect(c.rmdir(1, ".").errno == EINVAL)
        f.writeHost("a", "")
        #expect(c.rename(1, "a", 1, "..").errno == EINVAL)
        #expect(c.rename(1, ".", 1, "b").errno == EINVAL)
        let body = Bytes(); body.name("..").name("/etc")
        #expect(c.call(.symlink, node: 1, body).errno == EINVAL)
        let lb = Bytes(); lb.u64(c.lookup(1, "a").nodeID).name(".")
        #expect(c.call(.link, node: 1, lb).errno == EINVAL)
    }

    @Test func overlongAndEmptyNames() throws {
        let f = try Fixture()
        let c = f.client
        let long = String(repeating: "x", count: 256)
        #expect(c.lookup(1, long).errno == ENAMETOOLONG)
        #expect(c.create(1, long).errno == ENAMETOOLONG)
        #expect(c.create(1, String(repeating: "y", count: 255)).ok)
        #expect(c.lookup(1, "").errno == EINVAL)
        // A name with no NUL before the end of the request.
        let b = Bytes(); b.raw(Array("noterminator".utf8))
        #expect(c.call(.lookup, node: 1, b).errno == EINVAL)
    }

    @Test func unknownForgottenAndZeroNodeIDs() throws {
        let f = try Fixture()
        f.writeHost("a", "")
        let c = f.client
        #expect(c.getattr(0).errno == ESTALE)
        #expect(c.getattr(999_999).errno == ESTALE)
        #expect(c.lookup(999_999, "a").errno == ESTALE)
        #expect(c.open(0).errno == ESTALE)
        let n = c.lookup(1, "a").nodeID
        _ = c.forget(n, 5)  // more than it has: clamps, entry dies
        #expect(c.getattr(n).errno == ESTALE)
        #expect(c.open(n).errno == ESTALE)
        // FORGET of the root is ignored.
        _ = c.forget(1, 100)
        #expect(c.getattr(1).ok)
        // A handle that was never opened.
        #expect(c.read(1, fh: 12345, offset: 0, size: 10).errno == EBADF)
        #expect(c.write(1, fh: 12345, offset: 0, [1]).errno == EBADF)
    }

    @Test func lookupUnderAFileIsENOTDIR() throws {
        let f = try Fixture()
        f.writeHost("a", "")
        let c = f.client
        let n = c.lookup(1, "a").nodeID
        #expect(c.lookup(n, "x").errno == ENOTDIR)
        #expect(c.create(n, "x").errno == ENOTDIR)
        #expect(c.unlink(n, "x").errno == ENOTDIR)
    }

    @Test func hardLinkAndRenameOnlyMoveThingsInside() throws {
        let f = try Fixture()
        #expect(symlink("/etc/passwd", f.path("pw")) == 0)
        let c = f.client
        let pw = c.lookup(1, "pw").nodeID
        // Linking the symlink node links the symlink, not /etc/passwd.
        let lb = Bytes(); lb.u64(pw).name("pw2")
        #expect(c.call(.link, node: 1, lb).ok)
        var st = stat()
        #expect(lstat(f.path("pw2"), &st) == 0 && st.st_mode & 0o170000 == 0o120000)
        // Renaming the symlink over nothing outside: target stays a link inside.
        #expect(c.rename(1, "pw", 1, "pw3").ok)
        #expect(lstat(f.path("pw3"), &st) == 0 && st.st_mode & 0o170000 == 0o120000)
    }

    @Test func staleInodeAfterHostDeleteIsESTALE() throws {
        let f = try Fixture(options: PassthroughOptions(pathFDCacheSize: 1))
        f.writeHost("gone", "")
        for i in 0..<6 { f.writeHost("f\(i)", "") }
        let c = f.client
        let g = c.lookup(1, "gone").nodeID
        for i in 0..<6 { _ = c.getattr(c.lookup(1, "f\(i)").nodeID) }  // push "gone" out of the fd cache
        #expect(unlink(f.path("gone")) == 0)
        #expect(c.getattr(g).errno == ESTALE)
    }

    @Test func inodesDoNotEachPinAnFD() throws {
        let f = try Fixture(options: PassthroughOptions(pathFDCacheSize: 8))
        for i in 0..<100 { f.writeHost("f\(i)", "\(i)") }
        let c = f.client
        let nodes = (0..<100).map { c.lookup(1, "f\($0)").nodeID }
        #expect(f.fs.inodeCount == 101)
        #expect(f.fs.heldPathFDCount <= 9)
        // Every node still works (re-opened by file handle).
        for (i, n) in nodes.enumerated() {
            #expect(c.getattr(n).attr.size == UInt64("\(i)".utf8.count))
        }
        #expect(f.fs.heldPathFDCount <= 9)
    }
}

@Suite struct OptionTests {
    @Test func readOnlyRefusesEveryMutation() throws {
        let f = try Fixture(server: FUSEServerOptions(readOnly: true))
        f.writeHost("a", "keep")
        let c = f.client
        let n = c.lookup(1, "a").nodeID
        #expect(c.create(1, "b").errno == EROFS)
        #expect(c.mkdir(1, "d").errno == EROFS)
        #expect(c.unlink(1, "a").errno == EROFS)
        #expect(c.rename(1, "a", 1, "b").errno == EROFS)
        #expect(c.setattr(n, valid: 1 << 3, size: 0).errno == EROFS)
        #expect(c.open(n, flags: UInt32(O_RDWR)).errno == EROFS)
        #expect(c.open(n, flags: UInt32(O_RDONLY | O_TRUNC)).errno == EROFS)
        let s = Bytes(); s.u32(1).u32(0).u32(0).u32(0).name("user.x").raw([1])
        #expect(c.call(.setxattr, node: n, s).errno == EROFS)
        let fh = c.open(n, flags: UInt32(O_RDONLY))
        #expect(fh.ok)
        #expect(c.write(n, fh: fh.openHandle, offset: 0, [1]).errno == EROFS)
        #expect(String(decoding: c.read(n, fh: fh.openHandle, offset: 0, size: 10).body, as: UTF8.self) == "keep")
        #expect(f.readHost("a") == "keep")
    }

    @Test func cacheModesSetTimeoutsAndOpenFlags() throws {
        let never = try Fixture(options: PassthroughOptions(cache: .never))
        never.writeHost("a", "")
        let l = never.client.lookup(1, "a")
        var d = Decoder(l.body, at: 16)
        #expect(d.u64() == 0 && d.u64() == 0)  // entry_valid, attr_valid
        #expect(never.client.open(l.nodeID).openFlags & 1 == 1)  // FOPEN_DIRECT_IO
        let always = try Fixture(options: PassthroughOptions(cache: .always))
        always.writeHost("a", "")
        let la = always.client.lookup(1, "a")
        var da = Decoder(la.body, at: 16)
        #expect(da.u64() == 86400)
        #expect(always.client.open(la.nodeID).openFlags & 2 == 2)  // FOPEN_KEEP_CACHE
        #expect(always.client.opendir(1).openFlags & 8 == 8)  // FOPEN_CACHE_DIR
    }

    @Test func writebackOpensWriteOnlyAsReadWrite() throws {
        let f = try Fixture(server: FUSEServerOptions(writeback: true))
        #expect(f.server.currentSession?.has(FUSEInitFlag.writebackCache) == true)
        f.writeHost("a", "abc")
        let c = f.client
        let n = c.lookup(1, "a").nodeID
        let fh = c.open(n, flags: UInt32(O_WRONLY | O_APPEND)).openHandle
        // The kernel may read through a write-only open under writeback caching.
        #expect(String(decoding: c.read(n, fh: fh, offset: 0, size: 3).body, as: UTF8.self) == "abc")
        // O_APPEND is the kernel's job under writeback: offsets are honoured.
        _ = c.write(n, fh: fh, offset: 1, Array("X".utf8))
        #expect(f.readHost("a") == "aXc")
    }
}

@Suite struct SpecialFileTests {
    @Test func deviceNodesFifosAndDirectoriesAreNeverOpenedHostSide() throws {
        let f = try Fixture()
        #expect(mknod(f.path("null"), S_IFCHR | 0o666, dev_t((1 << 8) | 3)) == 0)
        #expect(mkfifo(f.path("fifo"), 0o666) == 0)
        #expect(mkdir(f.path("d"), 0o755) == 0)
        let c = f.client
        #expect(c.open(c.lookup(1, "null").nodeID).errno == EPERM)
        #expect(c.open(c.lookup(1, "fifo").nodeID, flags: UInt32(O_RDONLY)).errno == EPERM)  // would block forever
        #expect(c.open(c.lookup(1, "d").nodeID, flags: UInt32(O_RDONLY)).errno == EISDIR)
        // CREATE without O_EXCL of an existing special file does not open it either.
        #expect(c.create(1, "fifo", flags: UInt32(O_RDONLY | O_CREAT)).errno == EPERM)
        #expect(c.create(1, "null", flags: UInt32(O_RDWR | O_CREAT)).errno == EPERM)
    }

    @Test func createWithoutExclOpensAnExistingRegularFile() throws {
        let f = try Fixture()
        f.writeHost("a", "old")
        let c = f.client
        let n = c.lookup(1, "a").nodeID
        let r = c.create(1, "a", flags: UInt32(O_RDWR | O_CREAT | O_TRUNC))
        #expect(r.ok && r.nodeID == n)
        #expect(f.readHost("a") == "")
        #expect(f.fs.lookupCount(of: n) == 2)
    }
}

@Suite struct PassthroughFuzzTests {
    /// Random requests against the real passthrough file system: no crash,
    /// every reply well-formed, and nothing outside the share changes.
    @Test func randomRequestsStayInsideAndAnswerSanely() throws {
        let f = try Fixture()
        let outside = f.dir + "-sentinel"
        let sfd = open(outside, O_CREAT | O_WRONLY, 0o644)
        _ = Glibc.write(sfd, "sentinel", 8)
        close(sfd)
        defer { unlink(outside) }
        #expect(symlink(outside, f.path("out")) == 0)
        #expect(mkdir(f.path("d"), 0o777) == 0)
        f.writeHost("file", "content")
        let c = f.client
        var nodes: [UInt64] = [0, 1, 2, 3, 999]
        for name in ["out", "d", "file"] { nodes.append(c.lookup(1, name).nodeID) }
        let names = ["out", "d", "file", "x", "..", ".", "y"]
        var rng = SplitMix(seed: 42)
        for _ in 0..<4000 {
            var op = UInt32(rng.next() % 52)
            // SETLKW could wait forever on a lock another random owner holds;
            // DESTROY would end the session.
            if op == FUSEOpcode.setlkw.rawValue || op == FUSEOpcode.destroy.rawValue { op = FUSEOpcode.getattr.rawValue }
            let body = Bytes()
            for _ in 0..<Int(rng.next() % 6) {
                switch rng.next() % 4 {
                case 0: body.u64(nodes[Int(rng.next() % UInt64(nodes.count))])
                case 1: body.u32(UInt32(truncatingIfNeeded: rng.next() % 0o200000))
                case 2: body.name(names[Int(rng.next() % UInt64(names.count))])
                default: body.u64(rng.next() % 3 == 0 ? rng.next() : rng.next() % 4096)
                }
            }
            c.uid = rng.next() % 2 == 0 ? 0 : 1000
            let r = c.send(raw: c.header(op, node: nodes[Int(rng.next() % UInt64(nodes.count))], bodyLength: body.b.count) + body.b,
                           replySize: Int(rng.next() % 2 == 0 ? 4096 : 64))
            #expect(r.length == 0 || r.length >= 16)
            if r.length > 0 && r.error != 0 { #expect(r.length == 16 && r.error < 0 && r.error > -4096) }
        }
        var st = stat()
        #expect(lstat(outside, &st) == 0 && st.st_size == 8 && st.st_mode & 0o7777 == 0o644 && st.st_uid == 0)
        // Nothing new appeared beside the share (only the sentinel is there).
        let base = String(f.dir.split(separator: "/").last ?? "")
        #expect(try listHost("/tmp").filter { $0.hasPrefix(base) } == [base, base + "-sentinel"].sorted())
    }
}


/// The inode table without kernel file handles: entries are named by
/// (parent, name) and re-opened by a checked lookup.
@Suite struct NameBasedInodeTests {
    func fixture() throws -> Fixture {
        try Fixture(options: PassthroughOptions(pathFDCacheSize: 2, fileHandles: false))
    }

    /// Pushes every entry out of the 2-slot fd cache.
    func churn(_ f: Fixture) {
        for i in 0..<4 { f.writeHost("churn\(i)", ""); _ = f.client.getattr(f.client.lookup(1, "churn\(i)").nodeID) }
    }

    @Test func nestedEntriesReopenThroughTheirParents() throws {
        let f = try fixture()
        #expect(mkdir(f.path("a"), 0o755) == 0 && mkdir(f.path("a/b"), 0o755) == 0)
        f.writeHost("a/b/c", "deep")
        let c = f.client
        let a = c.lookup(1, "a").nodeID
        let b = c.lookup(a, "b").nodeID
        let n = c.lookup(b, "c").nodeID
        churn(f)
        #expect(f.fs.heldPathFDCount <= 3)
        #expect(c.getattr(n).attr.size == 4)
        let fh = c.open(n, flags: UInt32(O_RDONLY)).openHandle
        #expect(String(decoding: c.read(n, fh: fh, offset: 0, size: 10).body, as: UTF8.self) == "deep")
        // Children hold their parents: forgetting the guest's lookups of a
        // and b keeps them while c is known.
        _ = c.forget(a, 1); _ = c.forget(b, 1)
        churn(f)
        #expect(c.getattr(n).ok)
        _ = c.forget(n, 1)
        #expect(f.fs.lookupCount(of: a) == nil && f.fs.lookupCount(of: b) == nil)
    }

    @Test func renamesThroughTheServerAreFollowed() throws {
        let f = try fixture()
        #expect(mkdir(f.path("d"), 0o755) == 0)
        f.writeHost("d/x", "x!")
        let c = f.client
        let d = c.lookup(1, "d").nodeID
        let x = c.lookup(d, "x").nodeID
        #expect(c.rename(d, "x", 1, "y").ok)
        #expect(c.rename(1, "d", 1, "e").ok)
        churn(f)
        #expect(c.getattr(x).attr.size == 2)
        #expect(c.getattr(d).ok)
        // EXCHANGE swaps the two names.
        f.writeHost("z", "zzz")
        let z = c.lookup(1, "z").nodeID
        #expect(c.rename(1, "y", 1, "z", flags: 2).ok)
        churn(f)
        #expect(c.getattr(x).attr.size == 2 && c.getattr(z).attr.size == 3)
        #expect(f.readHost("z") == "x!")
    }

    @Test func changesBehindTheServersBackAreESTALE() throws {
        let f = try fixture()
        f.writeHost("moved", "m"); f.writeHost("deleted", "d"); f.writeHost("replaced", "r")
        let c = f.client
        let m = c.lookup(1, "moved").nodeID, d = c.lookup(1, "deleted").nodeID, r = c.lookup(1, "replaced").nodeID
        #expect(rename(f.path("moved"), f.path("elsewhere")) == 0)
        #expect(unlink(f.path("deleted")) == 0)
        #expect(unlink(f.path("replaced")) == 0)
        f.writeHost("replaced", "new inode")
        churn(f)
        #expect(c.getattr(m).errno == ESTALE)
        #expect(c.getattr(d).errno == ESTALE)
        #expect(c.getattr(r).errno == ESTALE)
        // A new LOOKUP finds the new inode under a new node id.
        let r2 = c.lookup(1, "replaced")
        #expect(r2.ok && r2.nodeID != r && r2.entryAttr.size == 9)
    }

    @Test func unlinkThroughTheServerForgetsTheName() throws {
        let f = try fixture()
        f.writeHost("u", "")
        let c = f.client
        let u = c.lookup(1, "u").nodeID
        #expect(c.unlink(1, "u").ok)
        f.writeHost("u", "another")
        churn(f)
        // The old node must not silently become the new file.
        #expect(c.getattr(u).errno == ESTALE)
    }

    @Test func manyEntriesStayWithinTheFDBound() throws {
        let f = try fixture()
        for i in 0..<50 { f.writeHost("f\(i)", String(repeating: "x", count: i)) }
        let c = f.client
        let nodes = (0..<50).map { c.lookup(1, "f\($0)").nodeID }
        for (i, n) in nodes.enumerated() { #expect(c.getattr(n).attr.size == UInt64(i)) }
        #expect(f.fs.heldPathFDCount <= 3)
        for n in nodes { _ = c.forget(n, 1) }
        #expect(f.fs.inodeCount == 1)
    }

    /// Without file handles, re-opening an evicted inode walks its parents
    /// by name: a guest-made chain deeper than the bound is refused with
    /// ELOOP instead of overflowing the stack.
    @Test func deepNameBasedReopenIsBounded() throws {
        let f = try Fixture(options: PassthroughOptions(pathFDCacheSize: 2, fileHandles: false))
        let c = f.client
        var parent: UInt64 = 1
        for _ in 0..<(PassthroughFileSystem.maxReopenDepth + 50) {
            let m = c.mkdir(parent, "d")
            #expect(m.ok)
            parent = m.nodeID
        }
        let deep = c.getattr(parent)
        #expect(deep.ok || deep.errno == ELOOP)
        // Evict by touching other inodes, then ask for the deepest again.
        for i in 0..<8 { _ = c.create(1, "x\(i)") }
        let again = c.getattr(parent)
        #expect(again.errno == ELOOP, "the walk up is refused, not a crash")
    }
}

@Suite struct SubmountTests {
    @Test func inodesOnAMountInsideTheShareReopenByHandle() throws {
        let f = try Fixture(options: PassthroughOptions(pathFDCacheSize: 1))
        #expect(mkdir(f.path("m"), 0o755) == 0)
        guard Glibc.mount("none", f.path("m"), "tmpfs", 0, "size=1m") == 0 else {
            Issue.record("cannot mount a tmpfs for the submount test: errno \(errno)")
            return
        }
        defer { _ = umount2(f.path("m"), Int32(MNT_DETACH)) }
        let c = f.client
        let m = c.lookup(1, "m").nodeID
        let r = c.create(m, "on-tmpfs")
        #expect(r.ok)
        _ = c.write(r.nodeID, fh: r.createHandle, offset: 0, Array("tmpfs!".utf8))
        _ = c.release(r.nodeID, fh: r.createHandle)
        for i in 0..<3 { f.writeHost("x\(i)", ""); _ = c.getattr(c.lookup(1, "x\(i)").nodeID) }  // evict
        #expect(c.getattr(r.nodeID).attr.size == 6)
        let fh = c.open(r.nodeID, flags: UInt32(O_RDONLY)).openHandle
        #expect(String(decoding: c.read(r.nodeID, fh: fh, offset: 0, size: 10).body, as: UTF8.self) == "tmpfs!")
        var st = stat(), mst = stat()
        #expect(stat(f.path("m/on-tmpfs"), &st) == 0 && stat(f.dir, &mst) == 0 && st.st_dev != mst.st_dev)
    }
}
