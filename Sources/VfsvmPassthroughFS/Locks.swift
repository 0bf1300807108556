import Glibc
import VfsvmSys
import VfsvmFUSE
import CVfsvmLinux

// POSIX (OFD) and BSD (flock) locks, FLUSH's release of an owner's locks.
extension PassthroughFileSystem {
    func dropLocks(node: UInt64, owner: UInt64) {
        state.withLock { s in
            if let l = s.lockFDs.removeValue(forKey: LockKey(node: node, owner: owner)) { s.held(l.uid, -1) }
        }
    }

    public func flush(_ ctx: FUSERequestContext, node: UInt64, handle: UInt64, lockOwner: UInt64) throws(FUSEErrno) {
        let f = try file(handle, directory: false)
        dropLocks(node: f.node, owner: lockOwner)
    }

    // MARK: - Locks

    static let offsetMax: UInt64 = UInt64(Int64.max)

    /// At most this many (node, owner) lock fds are kept; a new owner past
    /// it gets ENOLCK. An owner's fd lives until FLUSH/RELEASE of that
    /// owner or DESTROY, so without a bound a guest inventing owners would
    /// use up the host's fds.
    public static let maxLockFDs = 4096

    /// The access mode (O_RDONLY, O_WRONLY or O_RDWR) of `handle`, which
    /// must be an open file of `node`: a lock request names the file it was
    /// made through (Linux fills fuse_lk_in.fh with the file's fh), and the
    /// lock may do no more than that file may. As fcntl(2): a read lock
    /// needs a file open for reading, a write lock one open for writing,
    /// else EBADF; GETLK and unlocks need either.
    func lockAccess(_ handle: UInt64, node: UInt64, type: Int32) throws(FUSEErrno) -> Int32 {
        let f: OpenFile
        do { f = try file(handle, directory: false) } catch { throw FUSEErrno(.EBADF, "lock: fh is not an open file") }
        guard f.node == node else { throw FUSEErrno(.EBADF, "lock: fh is an open file of another node") }
        let access = vfsvm_fcntl_int(f.fd.rawValue, F_GETFL, 0) & O_ACCMODE
        if type == F_RDLCK, access == O_WRONLY { throw FUSEErrno(.EBADF, "lock: a read lock through a file not open for reading") }
        if type == F_WRLCK, access == O_RDONLY { throw FUSEErrno(.EBADF, "lock: a write lock through a file not open for writing") }
        return access
    }

    /// The OFD-lock fd of (node, owner), opened on first use with no more
    /// access than the handle the request came through (`access`): O_RDONLY
    /// for a read-only handle, else O_RDWR (the handle's own fd already
    /// makes the host file open for writing). Never for writing otherwise:
    /// a host file open for writing cannot be executed (ETXTBSY), its read
    /// leases break and its watchers see IN_CLOSE_WRITE. With `keep: false`
    /// an owner that has none gets a temporary O_RDONLY fd that is not
    /// remembered (GETLK and unlocks: an owner without an fd holds no lock).
    func lockFD(node: UInt64, owner: UInt64, uid: UInt32, access: Int32, needsWrite: Bool, keep: Bool = true) throws(FUSEErrno) -> FileDescriptor {
        let key = LockKey(node: node, owner: owner)
        let (existing, full) = state.withLock { s -> (FileDescriptor?, Bool) in
            if let l = s.lockFDs[key] { return (l.fd, false) }
            // A uid other than root gets at most half of the lock owners too
            // (counted only for a new owner: up to maxLockFDs entries).
            let ownShare = uid == 0 || s.lockFDs.values.lazy.filter { $0.uid == uid }.count < Self.maxLockFDs / 2
            return (nil, s.lockFDs.count >= Self.maxLockFDs || s.guestFDs >= s.fdBudget || !s.uidMayTake(uid) || !ownShare)
        }
        if let existing {
            guard needsWrite, vfsvm_fcntl_int(existing.rawValue, F_GETFL, 0) & O_ACCMODE == O_RDONLY else { return existing }
            // The owner's locks live on an fd opened for reading (its first
            // lock came through a read-only file); they cannot move to a new
            // fd atomically, so a write lock cannot join them.
            throw FUSEErrno(.ENOLCK, "lock: this owner's locks were taken through a read-only file; a write lock cannot join them")
        }
        if keep, full { throw FUSEErrno(.ENOLCK, "lock: no fd left for another lock owner") }
        let writable = keep && access != O_RDONLY
        let fd = try reopen(node, flags: (writable ? O_RDWR : O_RDONLY) | O_NONBLOCK)
        guard keep else { return fd }
        return state.withLock { s in
            if let existing = s.lockFDs[key] { return existing.fd }
            s.lockFDs[key] = LockFD(fd: fd, uid: uid)
            s.held(uid, 1)
            return fd
        }
    }

    func range(_ l: FUSEFileLock) throws(FUSEErrno) -> (start: Int64, length: Int64) {
        guard l.start <= Self.offsetMax else { throw FUSEErrno(.EINVAL, "lock: start") }
        if l.end >= Self.offsetMax { return (Int64(l.start), 0) }
        guard l.end >= l.start else { throw FUSEErrno(.EINVAL, "lock: end before start") }
        return (Int64(l.start), Int64(l.end - l.start + 1))
    }

    public func getlk(_ ctx: FUSERequestContext, node: UInt64, handle: UInt64, owner: UInt64, lock: FUSEFileLock) throws(FUSEErrno) -> FUSEFileLock {
        guard lock.type == UInt32(F_RDLCK) || lock.type == UInt32(F_WRLCK) else { throw FUSEErrno(.EINVAL, "getlk: type") }
        guard try fileType(node) == Self.sIFREG else { throw FUSEErrno(.EINVAL, "lock: not a regular file") }
        let access = try lockAccess(handle, node: node, type: F_UNLCK)
        let fd = try lockFD(node: node, owner: owner, uid: ctx.uid, access: access, needsWrite: false, keep: false)
        let (start, length) = try range(lock)
        let r = try host { () throws(SystemError) in try fd.ofdLock(.get, type: Int16(lock.type), start: start, length: length) }
        if r.type == Int16(F_UNLCK) { return FUSEFileLock(start: lock.start, end: lock.end, type: UInt32(F_UNLCK), pid: 0) }
        let from = UInt64(clamping: r.start)
        let end = r.length <= 0 ? Self.offsetMax : min(from &+ UInt64(r.length) &- 1, Self.offsetMax)
        return FUSEFileLock(start: from, end: end, type: UInt32(clamping: r.type), pid: r.pid > 0 ? UInt32(r.pid) : 0)
    }

    public func setlk(_ ctx: FUSERequestContext, node: UInt64, handle: UInt64, owner: UInt64, lock: FUSEFileLock, wait: Bool, flock: Bool) throws(FUSEErrno) {
        let type = Int32(bitPattern: lock.type)
        guard type == F_RDLCK || type == F_WRLCK || type == F_UNLCK else { throw FUSEErrno(.EINVAL, "setlk: type") }
        if flock {
            let f = try file(handle, directory: nil)
            guard f.node == node else { throw FUSEErrno(.EBADF, "flock: fh is an open file of another node") }
            var op: Int32 = type == F_RDLCK ? LOCK_SH : type == F_WRLCK ? LOCK_EX : LOCK_UN
            if !wait { op |= LOCK_NB }
            // flock reports a conflict as EWOULDBLOCK, which is EAGAIN on Linux.
            try host { () throws(SystemError) in try f.fd.flock(op) }
            return
        }
        guard try fileType(node) == Self.sIFREG else { throw FUSEErrno(.EINVAL, "lock: not a regular file") }
        let access = try lockAccess(handle, node: node, type: type)
        let fd = try lockFD(node: node, owner: owner, uid: ctx.uid, access: access, needsWrite: type == F_WRLCK, keep: type != F_UNLCK)
        let (start, length) = try range(lock)
        _ = try host { () throws(SystemError) in try fd.ofdLock(wait ? .setWait : .set, type: Int16(type), start: start, length: length) }
    }
}
