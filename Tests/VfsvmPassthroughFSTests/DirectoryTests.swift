import VfsvmFUSETestSupport
import Glibc
import CVfsvmLinux
import Testing
import VfsvmFUSE
import VfsvmPassthroughFS
import VfsvmSys

@Suite struct DirectoryTests {
    @Test func readdirListsEveryNameOnceAcrossSmallCalls() throws {
        let f = try Fixture()
        let names = (0..<60).map { "file-with-a-longish-name-\($0)" }
        for n in names { f.writeHost(n, "") }
        let c = f.client
        let dh = c.opendir(1)
        #expect(dh.ok)
        var seen: [String] = []
        var offset: UInt64 = 0
        var calls = 0
        while calls < 200 {
            calls += 1
            let r = c.readdir(1, fh: dh.openHandle, offset: offset, size: 256)
            #expect(r.ok)
            let ents = parseDirents(r.body, plus: false)
            if ents.isEmpty { break }
            #expect(r.body.count <= 256)
            seen += ents.map(\.name)
            offset = ents.last!.off
        }
        #expect(calls > 5)
        #expect(seen.filter { $0 != "." && $0 != ".." }.sorted() == names.sorted())
        #expect(seen.contains(".") && seen.contains(".."))
        // Offsets are stable: re-reading from a cookie gives the same next entry.
        let first = parseDirents(c.readdir(1, fh: dh.openHandle, offset: 0, size: 4096).body, plus: false)
        let again = parseDirents(c.readdir(1, fh: dh.openHandle, offset: first[2].off, size: 4096).body, plus: false)
        #expect(again.first == first[3])
        let fs = Bytes(); fs.u64(dh.openHandle).u32(0).u32(0)
        #expect(c.call(.fsyncdir, node: 1, fs).ok)
        #expect(c.release(1, fh: dh.openHandle, dir: true).ok)
        #expect(c.readdir(1, fh: dh.openHandle, offset: 0).errno == EBADF)
    }

    @Test func readdirplusEntersNodesAndCountsLookups() throws {
        let f = try Fixture()
        f.writeHost("a", "aaa")
        #expect(mkdir(f.path("sub"), 0o700) == 0)
        let c = f.client
        let dh = c.opendir(1).openHandle
        let r = c.readdir(1, fh: dh, offset: 0, plus: true)
        #expect(r.ok)
        let ents = parseDirents(r.body, plus: true)
        #expect(Set(ents.map(\.name)) == [".", "..", "a", "sub"])
        for e in ents where e.name == "." || e.name == ".." { #expect(e.nodeID == 0) }
        let a = try #require(ents.first { $0.name == "a" })
        #expect(a.nodeID > 1)
        #expect(f.fs.lookupCount(of: a.nodeID) == 1)
        #expect(c.getattr(a.nodeID).attr.size == 3)
        // A later LOOKUP reuses the node and adds one.
        #expect(c.lookup(1, "a").nodeID == a.nodeID)
        #expect(f.fs.lookupCount(of: a.nodeID) == 2)
    }

    @Test func readdirplusThatDoesNotFitTakesNoLookup() throws {
        let f = try Fixture()
        for i in 0..<5 { f.writeHost("n\(i)", "") }
        let c = f.client
        let dh = c.opendir(1).openHandle
        // Room for about one entry (152 bytes each with a 2-byte name).
        let r = c.readdir(1, fh: dh, offset: 0, size: 200, plus: true)
        let ents = parseDirents(r.body, plus: true)
        #expect(ents.count == 1)
        // Only entries actually returned hold lookups: the root and at most one more.
        #expect(f.fs.inodeCount <= 2)
    }

    @Test func opendirOfFileFails() throws {
        let f = try Fixture()
        f.writeHost("a", "")
        let c = f.client
        #expect(c.opendir(c.lookup(1, "a").nodeID).errno == ENOTDIR)
    }
}

@Suite struct XattrTests {
    @Test func setGetListRemove() throws {
        let f = try Fixture()
        f.writeHost("a", "")
        let c = f.client
        let n = c.lookup(1, "a").nodeID
        let s = Bytes(); s.u32(5).u32(0).u32(0).u32(0).name("user.color").raw(Array("green".utf8))
        #expect(c.call(.setxattr, node: n, s).ok)
        var buf = [UInt8](repeating: 0, count: 64)
        let got = getxattr(f.path("a"), "user.color", &buf, 64)
        #expect(String(decoding: buf.prefix(max(got, 0)), as: UTF8.self) == "green")
        // size 0: just the length
        let q = Bytes(); q.u32(0).u32(0).name("user.color")
        let qr = c.call(.getxattr, node: n, q)
        #expect(qr.ok && qr.u32 == 5)
        let g = Bytes(); g.u32(64).u32(0).name("user.color")
        #expect(String(decoding: c.call(.getxattr, node: n, g).body, as: UTF8.self) == "green")
        // too small → ERANGE
        let g2 = Bytes(); g2.u32(2).u32(0).name("user.color")
        #expect(c.call(.getxattr, node: n, g2).errno == ERANGE)
        let l = Bytes(); l.u32(256).u32(0)
        let lr = c.call(.listxattr, node: n, l)
        #expect(lr.ok && lr.body.split(separator: 0).map { String(decoding: $0, as: UTF8.self) }.contains("user.color"))
        // XATTR_CREATE on an existing name
        let s2 = Bytes(); s2.u32(1).u32(1).u32(0).u32(0).name("user.color").raw([0x41])
        #expect(c.call(.setxattr, node: n, s2).errno == EEXIST)
        let rm = Bytes(); rm.name("user.color")
        #expect(c.call(.removexattr, node: n, rm).ok)
        #expect(getxattr(f.path("a"), "user.color", &buf, 64) < 0)
        #expect(c.call(.getxattr, node: n, g).errno == ENODATA)
    }

    @Test func xattrsCanBeTurnedOff() throws {
        let f = try Fixture(options: PassthroughOptions(xattr: false))
        let c = f.client
        let g = Bytes(); g.u32(64).u32(0).name("user.x")
        #expect(c.call(.getxattr, node: 1, g).errno == ENOSYS)
    }
}
