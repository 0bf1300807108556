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

/// One `struct linux_dirent64` as it lies in a getdents64 buffer: the name
/// points into that buffer (valid only while it is), NUL-terminated there.
public struct RawDirEntry {
    public let ino: UInt64
    /// The cookie that resumes reading after this entry.
    public let nextOffset: Int64
    public let type: UInt8
    /// The name's bytes, without the NUL.
    public let name: UnsafeBufferPointer<UInt8>
    /// The same name as a C string.
    public var cName: UnsafePointer<CChar> { UnsafeRawPointer(name.baseAddress!).assumingMemoryBound(to: CChar.self) }
    /// "." or "..".
    public var isDotOrDotDot: Bool { (name.count == 1 && name[0] == 0x2e) || (name.count == 2 && name[0] == 0x2e && name[1] == 0x2e) }
}

/// Calls `body` for each entry of the first `count` bytes a getdents64 call
/// left in `buffer`, in order, until it returns false. An entry whose
/// record is malformed (too short, past the end, no NUL) ends the walk.
public func forEachDirEntry(in buffer: UnsafeRawBufferPointer, count: Int, _ body: (RawDirEntry) -> Bool) {
    let n = min(count, buffer.count)
    guard n > 0, let base = buffer.baseAddress else { return }
    var p = 0
    // linux_dirent64: u64 ino, s64 off, u16 reclen, u8 type, name NUL-terminated.
    while p + 19 <= n {
        let ino = base.loadUnaligned(fromByteOffset: p, as: UInt64.self)
        let off = base.loadUnaligned(fromByteOffset: p + 8, as: Int64.self)
        let reclen = Int(base.loadUnaligned(fromByteOffset: p + 16, as: UInt16.self))
        guard reclen >= 19, p + reclen <= n else { return }
        let type = base.load(fromByteOffset: p + 18, as: UInt8.self)
        let namePtr = (base + p + 19).assumingMemoryBound(to: UInt8.self)
        let len = strnlen(UnsafeRawPointer(namePtr).assumingMemoryBound(to: CChar.self), reclen - 19)
        guard 19 + len < reclen else { return }  // no NUL inside the record
        guard body(RawDirEntry(ino: ino, nextOffset: off, type: type, name: UnsafeBufferPointer(start: namePtr, count: len))) else { return }
        p += reclen
    }
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
    // A copy with the NUL in a temporary (stack, for names of file-system
    // size) allocation, not a new array per call.
    // Safe: the copy lives across the call and is NUL-terminated; the
    // kernel only reads up to the NUL.
    return withUnsafeTemporaryAllocation(of: CChar.self, capacity: name.count + 1) { z in
        name.withUnsafeBytes { src in
            if src.count > 0 { UnsafeMutableRawPointer(z.baseAddress!).copyMemory(from: src.baseAddress!, byteCount: src.count) }
        }
        z[name.count] = 0
        return body(UnsafePointer(z.baseAddress!))
    }
}

let emptyName: [UInt8] = []
