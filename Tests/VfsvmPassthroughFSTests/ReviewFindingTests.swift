import VfsvmFUSETestSupport
import Glibc
import Testing
import VfsvmFUSE
import VfsvmPassthroughFS
import VfsvmSys

/// Cases found in a review of what a hostile guest can do.
@Suite struct ReviewFindingTests {
    private func openFDs() -> Int {
        guard let d = opendir("/proc/self/fd") else { return -1 }
        defer { closedir(d) }
        var n = 0
        while readdir(d) != nil { n += 1 }
        return n
    }

    /// GETLK and unlocks with ever new lock owners must not keep an fd each.
    @Test func lockQueriesFromNewOwnersDoNotPinFDs() throws {
        let f = try Fixture()
        let c = f.client
        let r = c.create(1, "l")
        #expect(c.lk(.setlk, node: r.nodeID, fh: r.createHandle, owner: 1, start: 0, end: 9, type: UInt32(F_WRLCK)).ok)
        let before = openFDs()
        for owner in UInt64(100)..<UInt64(1100) {
            let g = c.lk(.getlk, node: r.nodeID, fh: r.createHandle, owner: owner, start: 0, end: 9, type: UInt32(F_RDLCK))
            #expect(g.ok)
            #expect(c.lk(.setlk, node: r.nodeID, fh: r.createHandle, owner: owner, start: 0, end: 9, type: UInt32(F_UNLCK)).ok)
        }
        #expect(openFDs() - before < 10, "1000 owners asked and unlocked; no fd kept for them")
        // GETLK from a fresh owner still sees owner 1's lock.
        var d = Decoder(c.lk(.getlk, node: r.nodeID, fh: r.createHandle, owner: 5000, start: 0, end: 9, type: UInt32(F_RDLCK)).body, at: 16)
        #expect(d.u32() == UInt32(F_WRLCK))
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
