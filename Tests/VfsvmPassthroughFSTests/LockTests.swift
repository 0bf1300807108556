import VfsvmFUSETestSupport
import Glibc
import Testing
import VfsvmFUSE
import VfsvmPassthroughFS
import VfsvmSys

private let rd = UInt32(F_RDLCK), wr = UInt32(F_WRLCK), un = UInt32(F_UNLCK)
private let eof = UInt64(Int64.max)

@Suite struct LockTests {
    @Test func ownersConflictAndSameOwnerMerges() throws {
        let f = try Fixture()
        let c = f.client
        let r = c.create(1, "l")
        let n = r.nodeID, fh = r.createHandle
        #expect(c.lk(.setlk, node: n, fh: fh, owner: 1, start: 0, end: 99, type: wr).ok)
        // Same owner: may re-lock (convert) its own range.
        #expect(c.lk(.setlk, node: n, fh: fh, owner: 1, start: 50, end: 149, type: rd).ok)
        // Another owner conflicts.
        #expect(c.lk(.setlk, node: n, fh: fh, owner: 2, start: 10, end: 20, type: rd).errno == EAGAIN)
        #expect(c.lk(.setlk, node: n, fh: fh, owner: 2, start: 100, end: 120, type: rd).ok)  // read vs read
        #expect(c.lk(.setlk, node: n, fh: fh, owner: 2, start: 200, end: eof, type: wr).ok)
        // GETLK reports the conflicting lock.
        let g = c.lk(.getlk, node: n, fh: fh, owner: 3, start: 0, end: eof, type: wr)
        #expect(g.ok)
        var d = Decoder(g.body)
        let start = d.u64(), end = d.u64(), type = d.u32()
        #expect(type == wr && start == 0 && end == 49)
        let free = c.lk(.getlk, node: n, fh: fh, owner: 3, start: 150, end: 199, type: wr)
        var fd = Decoder(free.body, at: 16)
        #expect(free.ok && fd.u32() == un)
        // FLUSH with owner 1 drops owner 1's locks (POSIX close semantics).
        let fl = Bytes(); fl.u64(fh).u32(0).u32(0).u64(1)
        #expect(c.call(.flush, node: n, fl).ok)
        #expect(c.lk(.setlk, node: n, fh: fh, owner: 3, start: 0, end: 49, type: wr).ok)
        // Explicit unlock.
        #expect(c.lk(.setlk, node: n, fh: fh, owner: 3, start: 0, end: 49, type: un).ok)
        #expect(c.lk(.setlk, node: n, fh: fh, owner: 4, start: 0, end: 49, type: wr).ok)
    }

    @Test func guestLockBlocksAHostFcntlLock() throws {
        let f = try Fixture()
        let c = f.client
        let r = c.create(1, "l")
        #expect(c.lk(.setlk, node: r.nodeID, fh: r.createHandle, owner: 7, start: 0, end: 9, type: wr).ok)
        // A classic fcntl lock conflicts with the OFD lock even from this
        // process (fcntl(2), "Open file description locks").
        let host = try FileDescriptor.open(f.path("l"), O_RDWR)
        #expect(throws: SystemError.self) {
            try host.posixLock(command: F_SETLK, type: Int16(F_WRLCK), start: 5, length: 1)
        }
        try host.posixLock(command: F_SETLK, type: Int16(F_WRLCK), start: 10, length: 1)
    }

    @Test func hostProcessLockBlocksTheGuest() throws {
        let f = try Fixture()
        f.writeHost("l", "0123456789")
        let ready = f.path("ready"), done = f.path("done")
        let script = """
        import fcntl,os,time
        fd=os.open('\(f.path("l"))',os.O_RDWR)
        fcntl.lockf(fd,fcntl.LOCK_EX,5,0)
        open('\(ready)','w').close()
        t=time.time()
        while not os.path.exists('\(done)') and time.time()-t<20: time.sleep(0.02)
        """
        let scriptPath = f.path("locker.py")
        f.writeHost("locker.py", script)
        #expect(system("python3 '\(scriptPath)' >/dev/null 2>&1 &") == 0)
        var waited = 0
        while !f.exists("ready") && waited < 1000 { usleep(10_000); waited += 1 }
        #expect(f.exists("ready"))
        let c = f.client
        let n = c.lookup(1, "l").nodeID
        let fh = c.open(n).openHandle
        #expect(c.lk(.setlk, node: n, fh: fh, owner: 1, start: 2, end: 3, type: rd).errno == EAGAIN)
        let g = c.lk(.getlk, node: n, fh: fh, owner: 1, start: 0, end: eof, type: wr)
        var d = Decoder(g.body)
        #expect(d.u64() == 0 && d.u64() == 4 && d.u32() == wr)
        #expect(d.u32() != 0)  // the host process's pid
        #expect(c.lk(.setlk, node: n, fh: fh, owner: 1, start: 5, end: 6, type: wr).ok)
        f.writeHost("done", "")
        var ok = false
        for _ in 0..<1000 {
            if c.lk(.setlk, node: n, fh: fh, owner: 1, start: 0, end: 4, type: wr).ok { ok = true; break }
            usleep(10_000)
        }
        #expect(ok)
    }

    @Test func setlkwWaitsUntilTheHolderUnlocks() async throws {
        let f = try Fixture()
        let c = f.client
        let r = c.create(1, "l")
        let n = r.nodeID, fh = r.createHandle
        #expect(c.lk(.setlk, node: n, fh: fh, owner: 1, start: 0, end: eof, type: wr).ok)
        let other = Client(f.server)
        other.unique = 10_000
        let server = f.server
        let waiter = Task.detached { () -> Int32 in
            let c2 = Client(server)
            c2.unique = 20_000
            return c2.lk(.setlkw, node: n, fh: fh, owner: 2, start: 0, end: 0, type: wr).errno
        }
        try await Task.sleep(nanoseconds: 200_000_000)
        #expect(other.lk(.setlk, node: n, fh: fh, owner: 1, start: 0, end: eof, type: un).ok)
        #expect(await waiter.value == 0)
        #expect(c.lk(.setlk, node: n, fh: fh, owner: 1, start: 0, end: 0, type: wr).errno == EAGAIN)
    }

    @Test func flockLocksPerOpenFile() throws {
        let f = try Fixture()
        let c = f.client
        let r = c.create(1, "l")
        let n = r.nodeID
        let fh1 = r.createHandle, fh2 = c.open(n).openHandle
        #expect(c.lk(.setlk, node: n, fh: fh1, owner: 1, start: 0, end: 0, type: wr, flock: true).ok)
        #expect(c.lk(.setlk, node: n, fh: fh2, owner: 2, start: 0, end: 0, type: rd, flock: true).errno == EAGAIN)
        // A host flock conflicts too.
        let host = try FileDescriptor.open(f.path("l"), O_RDONLY)
        #expect(throws: SystemError.self) { try host.flock(LOCK_SH | LOCK_NB) }
        // RELEASE with FUSE_RELEASE_FLOCK_UNLOCK drops it.
        #expect(c.release(n, fh: fh1, releaseFlags: 2).ok)
        #expect(c.lk(.setlk, node: n, fh: fh2, owner: 2, start: 0, end: 0, type: rd, flock: true).ok)
        try host.flock(LOCK_SH | LOCK_NB)
    }

    @Test func badLockRequests() throws {
        let f = try Fixture()
        let c = f.client
        let r = c.create(1, "l")
        #expect(c.lk(.setlk, node: r.nodeID, fh: r.createHandle, owner: 1, start: 10, end: 5, type: wr).errno == EINVAL)
        #expect(c.lk(.setlk, node: r.nodeID, fh: r.createHandle, owner: 1, start: 0, end: 5, type: 77).errno == EINVAL)
        #expect(c.lk(.setlk, node: 1, fh: 0, owner: 1, start: 0, end: 5, type: wr).errno == EINVAL)  // a directory
    }

    /// GETLK and unlocks with ever new lock owners must not keep an fd each.
    @Test func lockQueriesFromNewOwnersDoNotPinFDs() throws {
        let f = try Fixture()
        let c = f.client
        let r = c.create(1, "l")
        #expect(c.lk(.setlk, node: r.nodeID, fh: r.createHandle, owner: 1, start: 0, end: 9, type: UInt32(F_WRLCK)).ok)
        let before = procEntries("/proc/self/fd")
        for owner in UInt64(100)..<UInt64(1100) {
            let g = c.lk(.getlk, node: r.nodeID, fh: r.createHandle, owner: owner, start: 0, end: 9, type: UInt32(F_RDLCK))
            #expect(g.ok)
            #expect(c.lk(.setlk, node: r.nodeID, fh: r.createHandle, owner: owner, start: 0, end: 9, type: UInt32(F_UNLCK)).ok)
        }
        #expect(procEntries("/proc/self/fd") - before < 10, "1000 owners asked and unlocked; no fd kept for them")
        // GETLK from a fresh owner still sees owner 1's lock.
        var d = Decoder(c.lk(.getlk, node: r.nodeID, fh: r.createHandle, owner: 5000, start: 0, end: 9, type: UInt32(F_RDLCK)).body, at: 16)
        #expect(d.u32() == UInt32(F_WRLCK))
    }
}
