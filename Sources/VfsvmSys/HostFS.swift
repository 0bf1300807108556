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
    /// FALLOC_FL_COLLAPSE_RANGE (linux/falloc.h): the range leaves the file, which shrinks.
    public static let fallocCollapseRange: Int32 = 0x08
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

let emptyName: [UInt8] = []
