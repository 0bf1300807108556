import VfsvmFUSETestSupport
import Glibc
import Testing
import VfsvmFUSE
import VfsvmPassthroughFS
import VfsvmSys

/// A lock may do no more than the open file it came through (fcntl(2)):
/// the fh must be an open file of the node, a read lock needs it open for
/// reading, a write lock open for writing.
@Suite struct LockHandleTests {
    private let rd = UInt32(F_RDLCK), wr = UInt32(F_WRLCK), un = UInt32(F_UNLCK)

    @Test func theHandleDecidesWhatALockMayDo() throws {
        let f = try Fixture()
        f.writeHost("a", "a")
        f.writeHost("b", "b")
        let c = f.client
        let a = c.lookup(1, "a").nodeID, b = c.lookup(1, "b").nodeID
        let ro = c.open(a, flags: UInt32(O_RDONLY)).openHandle
        let wo = c.open(a, flags: UInt32(O_WRONLY)).openHandle
        let rw = c.open(a).openHandle
        let other = c.open(b).openHandle
        #expect(c.lk(.setlk, node: a, fh: ro, owner: 1, start: 0, end: 0, type: wr).errno == EBADF)
        #expect(c.lk(.setlk, node: a, fh: wo, owner: 2, start: 0, end: 0, type: rd).errno == EBADF)
        #expect(c.lk(.setlk, node: a, fh: other, owner: 3, start: 0, end: 0, type: rd).errno == EBADF)
        #expect(c.lk(.getlk, node: a, fh: 999, owner: 3, start: 0, end: 0, type: rd).errno == EBADF)
        #expect(c.lk(.setlk, node: a, fh: 999, owner: 3, start: 0, end: 0, type: un).errno == EBADF)
        #expect(c.lk(.setlk, node: a, fh: other, owner: 3, start: 0, end: 0, type: rd, flock: true).errno == EBADF)
        // What the handle allows works.
        #expect(c.lk(.setlk, node: a, fh: ro, owner: 4, start: 0, end: 9, type: rd).ok)
        #expect(c.lk(.setlk, node: a, fh: wo, owner: 5, start: 10, end: 19, type: wr).ok)
        #expect(c.lk(.setlk, node: a, fh: rw, owner: 6, start: 20, end: 29, type: wr).ok)
        #expect(c.lk(.setlk, node: a, fh: rw, owner: 6, start: 20, end: 29, type: rd).ok)
        // GETLK through a read-only file sees the write lock of owner 5.
        let g = c.lk(.getlk, node: a, fh: ro, owner: 7, start: 10, end: 15, type: rd)
        var d = Decoder(g.body, at: 16)
        #expect(g.ok && d.u32() == wr)
        // An owner whose lock came through the read-only file cannot add a
        // write lock to it (its locks cannot move to a writable fd): ENOLCK.
        #expect(c.lk(.setlk, node: a, fh: rw, owner: 4, start: 50, end: 59, type: wr).errno == ENOLCK)
        #expect(c.lk(.setlk, node: a, fh: rw, owner: 4, start: 0, end: 9, type: un).ok)
    }

    /// Read locks of many owners and a GETLK through a read-only file of a
    /// host executable: the server holds it open for reading only, so the
    /// host still executes it (an fd open for writing would give ETXTBSY).
    @Test func readLocksLeaveHostExecutablesRunnable() throws {
        let f = try Fixture()
        #expect(system("cp /bin/true '\(f.path("tool"))' && chmod 0755 '\(f.path("tool"))'") == 0)
        let c = f.client
        let n = c.lookup(1, "tool").nodeID
        let fh = c.open(n, flags: UInt32(O_RDONLY)).openHandle
        for owner in UInt64(1)...8 {
            #expect(c.lk(.setlk, node: n, fh: fh, owner: owner, start: owner, end: owner, type: rd).ok)
        }
        #expect(c.lk(.getlk, node: n, fh: fh, owner: 50, start: 0, end: 0, type: wr).ok)
        #expect(system("'\(f.path("tool"))' 2>/dev/null") == 0)
    }
}

/// review3 finding 4: one uid (other than root) holds at most half of the
/// fd budget, lock owners' fds included.
@Suite struct UIDShareTests {
    @Test func lockOwnersCountAgainstTheUIDsShare() throws {
        var o = PassthroughOptions()
        o.maxOpenHandles = 8
        let f = try Fixture(options: o)
        f.writeHost("s", "x")
        let c = f.client
        let n = c.lookup(1, "s").nodeID
        c.uid = 1000; c.gid = 1000
        let fh = c.open(n, flags: UInt32(O_RDONLY)).openHandle
        var owners = 0
        for owner in UInt64(1)...16 {
            let r = c.lk(.setlk, node: n, fh: fh, owner: owner, start: owner, end: owner, type: UInt32(F_RDLCK))
            if r.ok { owners += 1 } else { #expect(r.errno == ENOLCK); break }
        }
        #expect(owners == 3, "uid 1000: 1 handle + \(owners) lock owners of a share of 4")
        #expect(c.open(n, flags: UInt32(O_RDONLY)).errno == EMFILE)
        c.uid = 1001; c.gid = 1001
        let other = c.open(n, flags: UInt32(O_RDONLY))
        #expect(other.ok)
        #expect(c.lk(.setlk, node: n, fh: other.openHandle, owner: 99, start: 0, end: 0, type: UInt32(F_RDLCK)).ok)
        // Root is not held to a share.
        c.uid = 0; c.gid = 0
        #expect(c.open(n, flags: UInt32(O_RDONLY)).ok && c.open(n, flags: UInt32(O_RDONLY)).ok)
        // Closing gives the share back: uid 1000 unlocks one owner (FLUSH).
        c.uid = 1000; c.gid = 1000
        let fl = Bytes(); fl.u64(fh).u32(0).u32(0).u64(1)
        #expect(c.call(.flush, node: n, fl).ok)
        #expect(c.lk(.setlk, node: n, fh: fh, owner: 50, start: 0, end: 0, type: UInt32(F_RDLCK)).ok)
    }
}
