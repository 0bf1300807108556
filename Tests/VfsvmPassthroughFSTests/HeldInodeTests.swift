import VfsvmFUSETestSupport
import Glibc
import Testing
import VfsvmFUSE
import VfsvmPassthroughFS
import VfsvmSys

/// LOOKUP and READDIRPLUS answer an inode the table holds an fd on with one
/// stat of its name (`enterHeld`); an inode without one is opened and its
/// file handle compared. What the guest sees must be the same either way:
/// fresh attributes, one more lookup per entry, and a new node for a name
/// whose inode was replaced on the host, even when the new inode got the
/// old one's number.
@Suite struct HeldInodeTests {
    func inode(_ f: Fixture, _ name: String) -> UInt64? { f.statHost(name).map { UInt64($0.st_ino) } }

    @Test func aKnownNameIsAnsweredWithTheHostsCurrentAttributes() throws {
        let f = try Fixture()
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
        // A name that went away is ENOENT, not the node it had.
        #expect(unlink(f.path("a")) == 0)
        #expect(c.lookup(1, "a").errno == ENOENT)
        #expect(f.fs.lookupCount(of: first.nodeID) == 2)
    }

    /// The cache keeps one fd: "a"'s is dropped when "b" is looked up, so
    /// the host may free a's inode and give its number to the new "a".
    @Test(arguments: [false, true])
    func aNameReplacedOnTheHostGetsANewNode(readdirplus: Bool) throws {
        let f = try Fixture(options: PassthroughOptions(pathFDCacheSize: 1))
        f.writeHost("a", "old")
        f.writeHost("b", "")
        let c = f.client
        let old = c.lookup(1, "a")
        #expect(old.ok)
        #expect(c.lookup(1, "b").ok)
        let oldIno = inode(f, "a")
        #expect(unlink(f.path("a")) == 0)
        f.writeHost("a", "the new one")
        let reused = inode(f, "a") == oldIno
        var node: UInt64 = 0, size: UInt64 = 0
        if readdirplus {
            let dh = c.opendir(1).openHandle
            let r = c.readdir(1, fh: dh, offset: 0, plus: true)
            #expect(r.ok)
            let body = r.body
            // Walk the reply to the entry for "a": its entry_out's node id and
            // attr.size (fuse_entry_out: nodeid at 0, attr at 40, size at 48).
            var p = 0
            while p < body.count {
                var d = Decoder(body, at: p + 128 + 16)
                let namelen = Int(d.u32())
                let name = String(decoding: body[(p + 152)..<(p + 152 + namelen)], as: UTF8.self)
                if name == "a" {
                    var e = Decoder(body, at: p)
                    node = e.u64()
                    var s = Decoder(body, at: p + 48)
                    size = s.u64()
                }
                p = (p + 152 + namelen + 7) & ~7
            }
        } else {
            let r = c.lookup(1, "a")
            #expect(r.ok)
            node = r.nodeID
            size = r.entryAttr.size
        }
        #expect(node != 0 && node != old.nodeID, "inode number reused by the host: \(reused)")
        #expect(size == 11)
        let now = c.getattr(node)
        #expect(now.ok && now.attr.size == 11)
        // The old node names the deleted inode: gone (ESTALE), never the new file.
        let stale = c.getattr(old.nodeID)
        #expect(stale.errno == ESTALE || (stale.ok && stale.attr.size == 3))
    }

    @Test func readdirplusAgainReusesEveryNodeWithOneMoreLookup() throws {
        let f = try Fixture()
        let names = (0..<40).map { "entry-\($0)" }
        for n in names { f.writeHost(n, "") }
        let c = f.client
        let dh = c.opendir(1).openHandle
        func listing() -> [String: UInt64] {
            let r = c.readdir(1, fh: dh, offset: 0, plus: true)
            #expect(r.ok)
            var out: [String: UInt64] = [:]
            for e in parseDirents(r.body, plus: true) where e.name.hasPrefix("entry-") { out[e.name] = e.nodeID }
            return out
        }
        let first = listing()
        #expect(Set(first.keys) == Set(names))
        f.writeHost("entry-7", "grown")
        let second = listing()
        #expect(second == first)
        for (_, node) in first { #expect(f.fs.lookupCount(of: node) == 2) }
        #expect(c.getattr(first["entry-7"]!).attr.size == 5)
        // The O_PATH fds held stay within the cache's bound (plus the root's).
        #expect(f.fs.heldPathFDCount <= PassthroughOptions().pathFDCacheSize + 1)
    }
}
