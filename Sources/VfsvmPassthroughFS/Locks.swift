import Glibc
import VfsvmSys
import VfsvmFUSE

// POSIX (OFD) and BSD (flock) locks, FLUSH's release of an owner's locks.
extension PassthroughFileSystem {
    func dropLocks(node: UInt64, owner: UInt64) {
        state.withLock { s in s.lockFDs[LockKey(node: node, owner: owner)] = nil }
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

    /// The OFD-lock fd of (node, owner), opened on first use. With
    /// `keep: false` an owner that has none gets a temporary fd that is not
    /// remembered (GETLK and unlocks: an owner without an fd holds no lock).
    func lockFD(node: UInt64, owner: UInt64, keep: Bool = true) throws(FUSEErrno) -> FileDescriptor {
        let key = LockKey(node: node, owner: owner)
        let (existing, count, full) = state.withLock { ($0.lockFDs[key], $0.lockFDs.count, $0.guestFDs >= $0.fdBudget) }
        if let existing { return existing }
        if keep, count >= Self.maxLockFDs || full { throw FUSEErrno(.ENOLCK, "lock: no fd left for another lock owner") }
        guard try fileType(node) == Self.sIFREG else { throw FUSEErrno(.EINVAL, "lock: not a regular file") }
        let fd: FileDescriptor
        do { fd = try reopen(node, flags: O_RDWR | O_NONBLOCK) } catch {
            fd = try reopen(node, flags: O_RDONLY | O_NONBLOCK)
        }
        guard keep else { return fd }
        return state.withLock { s in
            if let existing = s.lockFDs[key] { return existing }
            s.lockFDs[key] = fd
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
        let fd = try lockFD(node: node, owner: owner, keep: false)
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
            var op: Int32 = type == F_RDLCK ? LOCK_SH : type == F_WRLCK ? LOCK_EX : LOCK_UN
            if !wait { op |= LOCK_NB }
            // flock reports a conflict as EWOULDBLOCK, which is EAGAIN on Linux.
            try host { () throws(SystemError) in try f.fd.flock(op) }
            return
        }
        let fd = try lockFD(node: node, owner: owner, keep: type != F_UNLCK)
        let (start, length) = try range(lock)
        _ = try host { () throws(SystemError) in try fd.ofdLock(wait ? .setWait : .set, type: Int16(type), start: start, length: length) }
    }
}
