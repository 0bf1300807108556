import VfsvmFUSETestSupport
import Glibc
import Testing
import VfsvmFUSE
import VfsvmPassthroughFS
import VfsvmSys

/// Without kernel file handles (`vfsvm serve`'s default) LOOKUP and
/// READDIRPLUS answer an inode the table knows with one statx of the name,
/// matched by (st_dev, st_ino, birth time) and no fd of the name; with them
/// an inode the table holds an fd on is answered by one stat of its name
/// (`enterHeld`) and any other is opened and its handle compared. What the
/// guest sees must be the same either way, and what the name is now on the
/// host: its current attributes, a new node once the name names another
/// inode (even one that got the old inode's number), the same node for
/// every name of one inode, and a symlink as the symlink. The tests that
/// take `fileHandles` run both ways; the others run as `serve` does.
@Suite struct StatLookupTests {
    func fixture(cache: Int = 512, fileHandles: Bool = false) throws -> Fixture {
        try Fixture(options: PassthroughOptions(pathFDCacheSize: cache, fileHandles: fileHandles))
    }

    /// The node READDIRPLUS of the root gives `name`, and its attr.size.
    func plusEntry(_ c: Client, _ name: String) -> (node: UInt64, size: UInt64)? {
        let dh = c.opendir(1).openHandle
        defer { _ = c.release(1, fh: dh, dir: true) }
        let r = c.readdir(1, fh: dh, offset: 0, plus: true)
        guard r.ok else { return nil }
        let body = r.body
        // fuse_direntplus: fuse_entry_out (nodeid at 0, attr at 40, attr.size
        // at 48, 128 bytes), then fuse_dirent (namelen at 16, name at 24).
        var p = 0
        while p + 152 <= body.count {
            var d = Decoder(body, at: p + 128 + 16)
            let namelen = Int(d.u32())
            guard p + 152 + namelen <= body.count else { return nil }
            if String(decoding: body[(p + 152)..<(p + 152 + namelen)], as: UTF8.self) == name {
                var e = Decoder(body, at: p)
                var s = Decoder(body, at: p + 48)
                return (e.u64(), s.u64())
            }
            p = (p + 152 + namelen + 7) & ~7
        }
        return nil
    }

    @Test(arguments: [false, true])
    func aKnownNameIsAnsweredWithTheHostsCurrentAttributes(fileHandles: Bool) throws {
        let f = try fixture(fileHandles: fileHandles)
        f.writeHost("a", "aaa")
        let c = f.client
        let first = c.lookup(1, "a")
        #expect(first.ok && first.entryAttr.size == 3)
        f.writeHost("a", "now ten b.")
        #expect(chmod(f.path("a"), 0o600) == 0)
        let again = c.lookup(1, "a")
        #expect(again.nodeID == first.nodeID)
        #expect(again.entryAttr.size == 10)
        #expect(again.entryAttr.mode & 0o7777 == 0o600)
        #expect(f.fs.lookupCount(of: first.nodeID) == 2)
        let plus = plusEntry(c, "a")
        #expect(plus?.node == first.nodeID && plus?.size == 10)
        #expect(f.fs.lookupCount(of: first.nodeID) == 3)
        // A name that went away is ENOENT and takes no lookup.
        #expect(unlink(f.path("a")) == 0)
        #expect(c.lookup(1, "a").errno == ENOENT)
        #expect(f.fs.lookupCount(of: first.nodeID) == 3)
    }

    /// A cache of one fd: looking up "b" drops a's, so the host may free a's
    /// inode and give its number to the new "a"; the birth time tells them
    /// apart.
    @Test(arguments: [false, true], [false, true])
    func aNameReplacedOnTheHostBetweenTwoLookupsGetsTheNewInode(readdirplus: Bool, fileHandles: Bool) throws {
        let f = try fixture(cache: 1, fileHandles: fileHandles)
        f.writeHost("a", "old")
        f.writeHost("b", "")
        let c = f.client
        let old = c.lookup(1, "a")
        #expect(old.ok)
        #expect(c.lookup(1, "b").ok)
        let oldIno = f.statHost("a").map { UInt64($0.st_ino) }
        #expect(unlink(f.path("a")) == 0)
        f.writeHost("a", "the new one")
        let reused = f.statHost("a").map { UInt64($0.st_ino) } == oldIno
        let (node, size): (UInt64, UInt64)
        if readdirplus {
            (node, size) = plusEntry(c, "a") ?? (0, 0)
        } else {
            let r = c.lookup(1, "a")
            #expect(r.ok)
            (node, size) = (r.nodeID, r.entryAttr.size)
        }
        #expect(node != 0 && node != old.nodeID, "inode number reused by the host: \(reused)")
        #expect(size == 11)
        let now = c.getattr(node)
        #expect(now.ok && now.attr.size == 11)
        // The old node names the deleted inode: gone (ESTALE), never the new file.
        let stale = c.getattr(old.nodeID)
        #expect(stale.errno == ESTALE || (stale.ok && stale.attr.size == 3))
    }

    @Test func aNameReplacedByADirectoryGetsANewNodeOfThatType() throws {
        let f = try fixture()
        f.writeHost("a", "file")
        let c = f.client
        let old = c.lookup(1, "a")
        #expect(old.ok && old.entryAttr.mode & S_IFMT == S_IFREG)
        #expect(unlink(f.path("a")) == 0 && mkdir(f.path("a"), 0o755) == 0)
        let now = c.lookup(1, "a")
        #expect(now.ok && now.nodeID != old.nodeID)
        #expect(now.entryAttr.mode & S_IFMT == S_IFDIR)
    }

    @Test func aHardLinkFoundByItsSecondNameIsTheSameNode() throws {
        let f = try fixture()
        f.writeHost("first", "linked")
        #expect(link(f.path("first"), f.path("second")) == 0)
        let c = f.client
        let one = c.lookup(1, "first")
        let two = c.lookup(1, "second")
        #expect(one.ok && two.ok)
        #expect(two.nodeID == one.nodeID)
        #expect(two.entryAttr.nlink == 2)
        #expect(f.fs.lookupCount(of: one.nodeID) == 2)
        // The node now lives at the name it was last found by: with the
        // first name gone it still opens and reads.
        #expect(unlink(f.path("first")) == 0)
        let attr = c.getattr(one.nodeID)
        #expect(attr.ok && attr.attr.nlink == 1 && attr.attr.size == 6)
        let fh = c.open(one.nodeID, flags: UInt32(O_RDONLY))
        #expect(fh.ok)
        #expect(c.read(one.nodeID, fh: fh.openHandle, offset: 0, size: 100).body == Array("linked".utf8))
    }

    @Test func aNameRenamedOnTheHostIsFoundAtItsNewNameOnly() throws {
        let f = try fixture()
        f.writeHost("a", "moved")
        let c = f.client
        let old = c.lookup(1, "a")
        #expect(rename(f.path("a"), f.path("z")) == 0)
        #expect(c.lookup(1, "a").errno == ENOENT)
        let moved = c.lookup(1, "z")
        #expect(moved.ok && moved.nodeID == old.nodeID && moved.entryAttr.size == 5)
    }

    /// A symlink whose target is outside the share is reported as the link:
    /// the stat of the name never follows it, not even for a target the
    /// table knows.
    @Test func aSymlinkIsTheLinkNotItsTarget() throws {
        let f = try fixture()
        f.writeHost("inside", "0123456789")
        #expect(symlink("/etc/passwd", f.path("out")) == 0)
        #expect(symlink("inside", f.path("in")) == 0)
        let c = f.client
        let inside = c.lookup(1, "inside")
        for (name, target) in [("out", "/etc/passwd"), ("in", "inside")] {
            for _ in 0..<2 {
                let r = c.lookup(1, name)
                #expect(r.ok && r.entryAttr.mode & S_IFMT == S_IFLNK, "\(name)")
                #expect(r.entryAttr.size == UInt64(target.utf8.count), "\(name)")
                #expect(r.nodeID != inside.nodeID, "\(name)")
            }
        }
        #expect(f.fs.lookupCount(of: inside.nodeID) == 1)
    }
}
