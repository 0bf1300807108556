import Glibc
import CVfsvmLinux

// Stat, birth time, statfs, and the calls that change owner, mode and
// times.
extension FileDescriptor {
    /// fstat of this fd (works on O_PATH fds; never follows a symlink).
    public func stat() throws(SystemError) -> FileStat {
        // The empty name as a C literal: no array made NUL-terminated per call.
        var st = Glibc.stat()
        _ = try sysCall("fstatat") { fstatat(rawValue, "", &st, AT_SYMLINK_NOFOLLOW | HostFSFlag.emptyPath) }
        return FileStat(st)
    }

    /// fstatat(self, name, flags); AT_SYMLINK_NOFOLLOW unless told otherwise.
    public func statAt(_ name: [UInt8], flags: Int32 = AT_SYMLINK_NOFOLLOW) throws(SystemError) -> FileStat {
        var st = Glibc.stat()
        _ = try withCName(name, "fstatat") { n in
            Result { () throws(SystemError) in try sysCall("fstatat") { fstatat(rawValue, n, &st, flags) } }
        }.get()
        return FileStat(st)
    }

    /// fstatat(self, cName, flags) with a name already NUL-terminated (a
    /// getdents64 entry's); AT_SYMLINK_NOFOLLOW unless told otherwise.
    public func statAt(cName: UnsafePointer<CChar>, flags: Int32 = AT_SYMLINK_NOFOLLOW) throws(SystemError) -> FileStat {
        var st = Glibc.stat()
        _ = try sysCall("fstatat") { fstatat(rawValue, cName, &st, flags) }
        return FileStat(st)
    }

    /// One statx of this fd (never following a symlink): its stat and its
    /// birth time (ns since the epoch, 0 where none is recorded, as
    /// `birthTime() ?? 0`), which otherwise cost a stat and a statx.
    public func statWithBirth() throws(SystemError) -> (FileStat, Int64) {
        try statWithBirth(cName: "", flags: AT_SYMLINK_NOFOLLOW | HostFSFlag.emptyPath)
    }

    /// One statx of `name` below this directory, not following a symlink:
    /// its stat and birth time as `statWithBirth` gives them.
    public func statWithBirth(at name: [UInt8]) throws(SystemError) -> (FileStat, Int64) {
        try withCName(name, "statx") { n in
            Result { () throws(SystemError) in try statWithBirth(cName: n) }
        }.get()
    }

    /// `statWithBirth(at:)` with a name already NUL-terminated (a
    /// getdents64 entry's).
    public func statWithBirth(cName: UnsafePointer<CChar>, flags: Int32 = AT_SYMLINK_NOFOLLOW) throws(SystemError) -> (FileStat, Int64) {
        var st = Glibc.stat()
        var birth: Int64 = 0
        _ = try sysCall("statx") { vfsvm_statx_stat(rawValue, cName, flags, &st, &birth) }
        return (FileStat(st), birth)
    }

    /// The inode's birth time (statx STATX_BTIME) as nanoseconds since the
    /// epoch, or nil where the file system does not record one.
    public func birthTime() -> Int64? {
        var sec: Int64 = 0
        var nsec: UInt32 = 0
        guard vfsvm_birth_time(rawValue, &sec, &nsec) == 0 else { return nil }
        return sec &* 1_000_000_000 &+ Int64(nsec)
    }

    public func statfs() throws(SystemError) -> FSStat {
        var s = statvfs()
        _ = try sysCall("fstatvfs") { fstatvfs(rawValue, &s) }
        return FSStat(blocks: UInt64(s.f_blocks), bfree: UInt64(s.f_bfree), bavail: UInt64(s.f_bavail),
                      files: UInt64(s.f_files), ffree: UInt64(s.f_ffree), bsize: UInt64(s.f_bsize),
                      frsize: UInt64(s.f_frsize), namemax: UInt64(s.f_namemax))
    }

    /// fchownat(self, "", uid, gid, AT_EMPTY_PATH | AT_SYMLINK_NOFOLLOW); nil leaves one alone.
    public func chown(uid: UInt32?, gid: UInt32?) throws(SystemError) {
        let u = uid ?? UInt32.max
        let g = gid ?? UInt32.max
        _ = try withCName(emptyName, "fchownat") { e in
            Result { () throws(SystemError) in
                try sysCall("fchownat") { fchownat(rawValue, e, u, g, HostFSFlag.emptyPath | AT_SYMLINK_NOFOLLOW) }
            }
        }.get()
    }

    /// fchmodat(self, name, mode, 0): with `self` = /proc/self/fd and `name`
    /// the decimal fd number, changes the mode of an O_PATH fd's inode.
    public func chmodAt(_ name: [UInt8], mode: mode_t) throws(SystemError) {
        _ = try withCName(name, "fchmodat") { n in
            Result { () throws(SystemError) in try sysCall("fchmodat") { fchmodat(rawValue, n, mode, 0) } }
        }.get()
    }

    /// faccessat(self, name, mode, AT_EACCESS): checks with the thread's
    /// effective (fs) ids.
    public func accessAt(_ name: [UInt8], mode: Int32) throws(SystemError) {
        _ = try withCName(name, "faccessat") { n in
            Result { () throws(SystemError) in try sysCall("faccessat") { faccessat(rawValue, n, mode, AT_EACCESS) } }
        }.get()
    }

    public func chmod(mode: mode_t) throws(SystemError) {
        _ = try sysCall("fchmod") { fchmod(rawValue, mode) }
    }

    /// utimensat(self, "", times, AT_EMPTY_PATH | AT_SYMLINK_NOFOLLOW).
    public func setTimes(access: TimeChange, modification: TimeChange) throws(SystemError) {
        func spec(_ c: TimeChange) -> timespec {
            switch c {
            case .omit: return timespec(tv_sec: 0, tv_nsec: (1 << 30) - 2)
            case .now: return timespec(tv_sec: 0, tv_nsec: (1 << 30) - 1)
            case let .set(s, ns): return timespec(tv_sec: Int(s), tv_nsec: Int(ns))
            }
        }
        var times = [spec(access), spec(modification)]
        _ = try withCName(emptyName, "utimensat") { e in
            Result { () throws(SystemError) in
                try sysCall("utimensat") { utimensat(rawValue, e, &times, HostFSFlag.emptyPath | AT_SYMLINK_NOFOLLOW) }
            }
        }.get()
    }
}
