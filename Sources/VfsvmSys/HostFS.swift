import Glibc
import CVfsvmLinux

// Safe wrappers for the file-system calls the passthrough FUSE file system
// makes. Names are byte arrays (a Linux file name is bytes, not UTF-8); the
// caller validates them (no '/', no NUL) before they get here, and every
// wrapper re-checks for NUL so a C string can never be cut short silently.

/// `struct stat`, field by field.
public struct FileStat: Sendable, Equatable {
    public var dev: UInt64
    public var ino: UInt64
    public var mode: UInt32
    public var nlink: UInt64
    public var uid: UInt32
    public var gid: UInt32
    public var rdev: UInt64
    public var size: Int64
    public var blksize: Int64
    public var blocks: Int64
    public var atime: timespec
    public var mtime: timespec
    public var ctime: timespec

    init(_ s: stat) {
        dev = UInt64(s.st_dev); ino = UInt64(s.st_ino); mode = UInt32(s.st_mode)
        nlink = UInt64(s.st_nlink); uid = s.st_uid; gid = s.st_gid; rdev = UInt64(s.st_rdev)
        size = Int64(s.st_size); blksize = Int64(s.st_blksize); blocks = Int64(s.st_blocks)
        atime = s.st_atim; mtime = s.st_mtim; ctime = s.st_ctim
    }

    public var fileType: UInt32 { mode & 0o170000 }
    public var isDirectory: Bool { fileType == 0o040000 }
    public var isRegular: Bool { fileType == 0o100000 }
    public var isSymlink: Bool { fileType == 0o120000 }

    public static func == (a: FileStat, b: FileStat) -> Bool {
        a.dev == b.dev && a.ino == b.ino && a.mode == b.mode && a.size == b.size && a.uid == b.uid && a.gid == b.gid
            && a.nlink == b.nlink && a.mtime.tv_sec == b.mtime.tv_sec && a.mtime.tv_nsec == b.mtime.tv_nsec
    }
}

/// `struct statvfs`, the fields FUSE reports.
public struct FSStat: Sendable, Equatable {
    public var blocks: UInt64, bfree: UInt64, bavail: UInt64, files: UInt64, ffree: UInt64
    public var bsize: UInt64, frsize: UInt64, namemax: UInt64
}

/// An opaque kernel file handle (name_to_handle_at) plus the mount it
/// belongs to: names an inode without holding it open.
public struct KernelFileHandle: Hashable, Sendable {
    public let bytes: [UInt8]
    public let type: Int32
    public let mountID: Int32
}

/// One `struct linux_dirent64`.
public struct DirEntry: Sendable, Equatable {
    public var ino: UInt64
    /// The cookie that resumes reading after this entry.
    public var nextOffset: Int64
    public var type: UInt8
    public var name: [UInt8]
}

/// A timestamp to set: a value, "now", or leave alone.
public enum TimeChange: Sendable, Equatable {
    case omit, now
    case set(seconds: Int64, nanoseconds: Int64)
}

/// Constants that need _GNU_SOURCE.
public enum HostFSFlag {
    public static let path = vfsvm_o_path()
    public static let tmpfile = vfsvm_o_tmpfile()
    public static let direct = vfsvm_o_direct()
    public static let noatime = vfsvm_o_noatime()
    public static let seekData = vfsvm_seek_data()
    public static let seekHole = vfsvm_seek_hole()
    public static let emptyPath = vfsvm_at_empty_path()
    public static let renameNoReplace = UInt32(vfsvm_rename_noreplace())
    public static let renameExchange = UInt32(vfsvm_rename_exchange())
    public static let renameWhiteout = UInt32(vfsvm_rename_whiteout())
}

/// Calls `body` with `name` as a NUL-terminated C string; EINVAL if the
/// name holds a NUL byte.
@inline(__always)
func withCName<R>(_ name: [UInt8], _ call: String, _ body: (UnsafePointer<CChar>) -> R) throws(SystemError) -> R {
    if name.contains(0) { throw SystemError(call, .EINVAL) }
    var z = name
    z.append(0)
    // Safe: `z` lives across the call and is NUL-terminated; the kernel
    // only reads up to the NUL.
    return z.withUnsafeBufferPointer { p in
        p.withMemoryRebound(to: CChar.self) { body($0.baseAddress!) }
    }
}

private let emptyName: [UInt8] = []

extension FileDescriptor {
    // MARK: open

    /// Opens the single component `name` below this directory. With
    /// `beneath`, uses openat2 with RESOLVE_BENEATH | RESOLVE_NO_MAGICLINKS |
    /// RESOLVE_NO_SYMLINKS (falling back to openat when the kernel lacks
    /// openat2). O_CLOEXEC is always added.
    public func openAt(_ name: [UInt8], flags: Int32, mode: mode_t = 0, beneath: Bool = true) throws(SystemError) -> FileDescriptor {
        let dir = rawValue
        if beneath {
            do {
                let fd = try withCName(name, "openat2") { n in
                    Result { () throws(SystemError) in try sysCall("openat2") { vfsvm_openat2_beneath(dir, n, flags, mode) } }
                }.get()
                return FileDescriptor(owning: fd)
            } catch where error.errno == .ENOSYS {
                // fall through to openat
            }
        }
        let fd = try withCName(name, "openat") { n in
            Result { () throws(SystemError) in try sysCall("openat") { vfsvm_openat(dir, n, flags | O_CLOEXEC, mode) } }
        }.get()
        return FileDescriptor(owning: fd)
    }

    /// `open_by_handle_at(self (any fd on the mount), handle, flags)`.
    public func openByHandle(_ handle: KernelFileHandle, flags: Int32) throws(SystemError) -> FileDescriptor {
        let fd = try sysCall("open_by_handle_at") {
            handle.bytes.withUnsafeBufferPointer { b in
                // Safe: the C side copies at most `count` bytes (checked ≤ MAX_HANDLE_SZ).
                vfsvm_open_by_handle(rawValue, b.baseAddress, UInt32(b.count), handle.type, flags)
            }
        }
        return FileDescriptor(owning: fd)
    }

    /// The kernel file handle of this fd's inode.
    public func kernelFileHandle() throws(SystemError) -> KernelFileHandle {
        var bytes = [UInt8](repeating: 0, count: Int(VFSVM_MAX_HANDLE_SZ))
        var size: UInt32 = 0
        var type: Int32 = 0
        var mount: Int32 = 0
        _ = try sysCall("name_to_handle_at") {
            // Safe: `bytes` has room for VFSVM_MAX_HANDLE_SZ, which the C side respects.
            bytes.withUnsafeMutableBufferPointer { vfsvm_name_to_handle_fd(rawValue, $0.baseAddress, &size, &type, &mount) }
        }
        return KernelFileHandle(bytes: Array(bytes.prefix(Int(size))), type: type, mountID: mount)
    }

    // MARK: stat

    /// fstat of this fd (works on O_PATH fds; never follows a symlink).
    public func stat() throws(SystemError) -> FileStat {
        try statAt(emptyName, flags: AT_SYMLINK_NOFOLLOW | HostFSFlag.emptyPath)
    }

    /// fstatat(self, name, flags); AT_SYMLINK_NOFOLLOW unless told otherwise.
    public func statAt(_ name: [UInt8], flags: Int32 = AT_SYMLINK_NOFOLLOW) throws(SystemError) -> FileStat {
        var st = Glibc.stat()
        _ = try withCName(name, "fstatat") { n in
            Result { () throws(SystemError) in try sysCall("fstatat") { fstatat(rawValue, n, &st, flags) } }
        }.get()
        return FileStat(st)
    }

    public func statfs() throws(SystemError) -> FSStat {
        var s = statvfs()
        _ = try sysCall("fstatvfs") { fstatvfs(rawValue, &s) }
        return FSStat(blocks: UInt64(s.f_blocks), bfree: UInt64(s.f_bfree), bavail: UInt64(s.f_bavail),
                      files: UInt64(s.f_files), ffree: UInt64(s.f_ffree), bsize: UInt64(s.f_bsize),
                      frsize: UInt64(s.f_frsize), namemax: UInt64(s.f_namemax))
    }

    // MARK: names in a directory

    public func mkdirAt(_ name: [UInt8], mode: mode_t) throws(SystemError) {
        _ = try withCName(name, "mkdirat") { n in
            Result { () throws(SystemError) in try sysCall("mkdirat") { mkdirat(rawValue, n, mode) } }
        }.get()
    }

    public func mknodAt(_ name: [UInt8], mode: mode_t, device: dev_t) throws(SystemError) {
        _ = try withCName(name, "mknodat") { n in
            Result { () throws(SystemError) in try sysCall("mknodat") { mknodat(rawValue, n, mode, device) } }
        }.get()
    }

    public func symlinkAt(_ name: [UInt8], target: [UInt8]) throws(SystemError) {
        _ = try withCName(target, "symlinkat") { t in
            Result { () throws(SystemError) in
                try withCName(name, "symlinkat") { n in
                    Result { () throws(SystemError) in try sysCall("symlinkat") { symlinkat(t, rawValue, n) } }
                }.get()
            }
        }.get()
    }

    /// unlinkat(self, name, flags) (AT_REMOVEDIR for rmdir).
    public func unlinkAt(_ name: [UInt8], flags: Int32) throws(SystemError) {
        _ = try withCName(name, "unlinkat") { n in
            Result { () throws(SystemError) in try sysCall("unlinkat") { unlinkat(rawValue, n, flags) } }
        }.get()
    }

    /// renameat2(self, name, newDirectory, newName, flags).
    public func renameAt(_ name: [UInt8], to newDirectory: FileDescriptor, _ newName: [UInt8], flags: UInt32) throws(SystemError) {
        let nd = newDirectory.rawValue
        _ = try withCName(name, "renameat2") { o in
            Result { () throws(SystemError) in
                try withCName(newName, "renameat2") { n in
                    Result { () throws(SystemError) in try sysCall("renameat2") { vfsvm_renameat2(rawValue, o, nd, n, flags) } }
                }.get()
            }
        }.get()
    }

    /// Hard-links this fd's inode (O_PATH fd) as `newName` in `directory`
    /// (linkat with AT_EMPTY_PATH; needs CAP_DAC_READ_SEARCH).
    public func link(into directory: FileDescriptor, as newName: [UInt8]) throws(SystemError) {
        let nd = directory.rawValue
        _ = try withCName(emptyName, "linkat") { e in
            Result { () throws(SystemError) in
                try withCName(newName, "linkat") { n in
                    Result { () throws(SystemError) in try sysCall("linkat") { linkat(rawValue, e, nd, n, HostFSFlag.emptyPath) } }
                }.get()
            }
        }.get()
    }

    /// readlinkat(self, "") on an O_PATH symlink fd.
    public func readLink() throws(SystemError) -> [UInt8] {
        var buf = [UInt8](repeating: 0, count: Int(PATH_MAX) + 1)
        let n = try withCName(emptyName, "readlinkat") { e in
            Result { () throws(SystemError) in
                try sysCall("readlinkat") {
                    // Safe: the kernel writes at most buf.count bytes.
                    buf.withUnsafeMutableBufferPointer { b in
                        b.withMemoryRebound(to: CChar.self) { readlinkat(rawValue, e, $0.baseAddress!, $0.count) }
                    }
                }
            }
        }.get()
        return Array(buf.prefix(n))
    }

    // MARK: attributes

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

    // MARK: data

    public func sync(dataOnly: Bool) throws(SystemError) {
        if dataOnly {
            _ = try sysCall("fdatasync") { fdatasync(rawValue) }
        } else {
            _ = try sysCall("fsync") { fsync(rawValue) }
        }
    }

    public func syncFileSystem() throws(SystemError) {
        _ = try sysCall("syncfs") { vfsvm_syncfs(rawValue) }
    }

    public func allocate(mode: Int32, offset: Int64, length: Int64) throws(SystemError) {
        _ = try sysCall("fallocate") { vfsvm_fallocate(rawValue, mode, offset, length) }
    }

    public func seek(to offset: Int64, whence: Int32) throws(SystemError) -> Int64 {
        Int64(try sysCall("lseek") { lseek(rawValue, off_t(offset), whence) })
    }

    /// copy_file_range from this fd at `sourceOffset` to `destination` at
    /// `destinationOffset`; returns bytes copied.
    public func copyRange(from sourceOffset: Int64, to destination: FileDescriptor, at destinationOffset: Int64,
                          length: Int, flags: UInt32) throws(SystemError) -> Int {
        var i = sourceOffset
        var o = destinationOffset
        return try sysCall("copy_file_range") { vfsvm_copy_file_range(rawValue, &i, destination.rawValue, &o, length, flags) }
    }

    /// Reads directory entries with getdents64 (`bufferSize` bytes at most).
    /// An empty result means the end of the directory.
    public func readDirectory(bufferSize: Int = 32768) throws(SystemError) -> [DirEntry] {
        var buf = [UInt8](repeating: 0, count: max(bufferSize, 1024))
        let n = try sysCall("getdents64") {
            // Safe: the kernel writes at most buf.count bytes.
            buf.withUnsafeMutableBytes { vfsvm_getdents64(rawValue, $0.baseAddress, $0.count) }
        }
        var out: [DirEntry] = []
        var p = 0
        // linux_dirent64: u64 ino, s64 off, u16 reclen, u8 type, name NUL-terminated.
        while p + 19 <= n {
            func u64(_ at: Int) -> UInt64 {
                var v: UInt64 = 0
                for k in 0..<8 { v |= UInt64(buf[at + k]) << (8 * UInt64(k)) }
                return v
            }
            let reclen = Int(buf[p + 16]) | Int(buf[p + 17]) << 8
            guard reclen >= 19, p + reclen <= n else { break }
            var end = p + 19
            while end < p + reclen, buf[end] != 0 { end += 1 }
            out.append(DirEntry(ino: u64(p), nextOffset: Int64(bitPattern: u64(p + 8)), type: buf[p + 18],
                                name: Array(buf[(p + 19)..<end])))
            p += reclen
        }
        return out
    }

    // MARK: locks

    /// An OFD lock request. `type` is F_RDLCK/F_WRLCK/F_UNLCK; `length` 0 is
    /// "to end of file". For `.get` the answer is the conflicting lock, or
    /// type F_UNLCK.
    public func ofdLock(_ command: OFDLockCommand, type: Int16, start: Int64, length: Int64)
        throws(SystemError) -> (type: Int16, start: Int64, length: Int64, pid: Int32) {
        var t = type, s = start, l = length, pid: Int32 = 0
        let cmd: Int32
        switch command {
        case .get: cmd = vfsvm_f_ofd_getlk()
        case .set: cmd = vfsvm_f_ofd_setlk()
        case .setWait: cmd = vfsvm_f_ofd_setlkw()
        }
        _ = try sysCall("fcntl(OFD lock)") { vfsvm_ofd_lock(rawValue, cmd, &t, &s, &l, &pid) }
        return (t, s, l, pid)
    }

    /// flock(2).
    public func flock(_ operation: Int32) throws(SystemError) {
        _ = try sysCall("flock") { vfsvm_flock(rawValue, operation) }
    }

    /// A classic (process-associated) fcntl lock: F_SETLK/F_SETLKW/F_GETLK.
    /// Returns 0 on success.
    public func posixLock(command: Int32, type: Int16, start: Int64, length: Int64) throws(SystemError) {
        _ = try sysCall("fcntl(POSIX lock)") { vfsvm_posix_lock(rawValue, command, type, start, length) }
    }
}

public enum OFDLockCommand: Sendable { case get, set, setWait }

// MARK: - Extended attributes by path (used with /proc/self/fd/N so O_PATH
// fds work; the path is vfsvm's own, never a guest string)

public enum XattrCall {
    /// Runs `body` with the calling thread's working directory set to
    /// `directory`, so `body` can name "/proc/self/fd/N" as the relative
    /// path "N" even where /proc is not reachable by absolute path (inside
    /// the serve sandbox, whose root is the share). The thread first takes
    /// a private copy of its fs context (unshare(CLONE_FS)), so other
    /// threads' working directories never change; the directory is left
    /// set afterwards, which is harmless because everything else uses *at()
    /// calls relative to fds.
    public static func inDirectory<R>(_ directory: FileDescriptor, _ body: () throws(SystemError) -> R) throws(SystemError) -> R {
        _ = try sysCall("unshare(CLONE_FS)") { vfsvm_unshare_fs() }
        _ = try sysCall("fchdir(/proc/self/fd)") { fchdir(directory.rawValue) }
        return try body()
    }

    /// getxattr(path, name): the value, or with `size` 0 its length only
    /// (as an empty array and the length).
    public static func get(path: String, name: [UInt8], size: Int) throws(SystemError) -> (value: [UInt8], length: Int) {
        var buf = [UInt8](repeating: 0, count: max(size, 1))
        let n = try withCName(name, "getxattr") { nm in
            Result { () throws(SystemError) in
                try sysCall("getxattr") {
                    // Safe: the kernel writes at most `size` bytes into buf (count ≥ size).
                    buf.withUnsafeMutableBytes { getxattr(path, nm, size == 0 ? nil : $0.baseAddress, size) }
                }
            }
        }.get()
        return (size == 0 ? [] : Array(buf.prefix(n)), n)
    }

    public static func list(path: String, size: Int) throws(SystemError) -> (value: [UInt8], length: Int) {
        var buf = [UInt8](repeating: 0, count: max(size, 1))
        let n = try sysCall("listxattr") {
            // Safe: the kernel writes at most `size` bytes into buf.
            buf.withUnsafeMutableBytes { b in
                b.withMemoryRebound(to: CChar.self) { listxattr(path, size == 0 ? nil : $0.baseAddress, size) }
            }
        }
        return (size == 0 ? [] : Array(buf.prefix(n)), n)
    }

    public static func set(path: String, name: [UInt8], value: [UInt8], flags: Int32) throws(SystemError) {
        _ = try withCName(name, "setxattr") { nm in
            Result { () throws(SystemError) in
                try sysCall("setxattr") { value.withUnsafeBytes { setxattr(path, nm, $0.baseAddress, $0.count, flags) } }
            }
        }.get()
    }

    public static func remove(path: String, name: [UInt8]) throws(SystemError) {
        _ = try withCName(name, "removexattr") { nm in
            Result { () throws(SystemError) in try sysCall("removexattr") { removexattr(path, nm) } }
        }.get()
    }
}

// MARK: - Per-thread file-system credentials

public enum FSCredentials {
    /// Runs `body` with this thread's fsuid/fsgid set to `uid`/`gid`, so
    /// what it creates is owned by them and permission checks are theirs;
    /// restores the previous ids afterwards. setfsuid is per thread on
    /// Linux. EPERM if the kernel did not take the ids (setfsuid reports
    /// failure only by not changing anything, so the result is read back).
    public static func with<R>(uid: UInt32, gid: UInt32, _ body: () throws(SystemError) -> R) throws(SystemError) -> R {
        let oldGid = vfsvm_setfsgid(gid)
        let oldUid = vfsvm_setfsuid(uid)
        defer {
            _ = vfsvm_setfsuid(UInt32(bitPattern: oldUid))
            _ = vfsvm_setfsgid(UInt32(bitPattern: oldGid))
        }
        // setfsuid(-1) changes nothing and returns the current id.
        guard UInt32(bitPattern: vfsvm_setfsuid(UInt32.max)) == uid,
              UInt32(bitPattern: vfsvm_setfsgid(UInt32.max)) == gid else {
            throw SystemError("setfsuid(\(uid))/setfsgid(\(gid))", .EPERM)
        }
        return try body()
    }

    /// Sets the process umask; returns the old one.
    @discardableResult
    public static func setUmask(_ mask: mode_t) -> mode_t { umask(mask) }
}
