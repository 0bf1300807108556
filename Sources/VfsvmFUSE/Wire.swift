import CVfsvmLinux
import VfsvmSys

// The FUSE wire format (linux/fuse.h, protocol 7.38): opcodes, struct sizes
// and the reply encoders. Requests are decoded by FUSERequestDecoder.
// Multi-byte fields are little-endian (every host vfsvm runs on is; FUSE
// uses host byte order).

/// FUSE opcodes (enum fuse_opcode in linux/fuse.h).
public enum FUSEOpcode: UInt32, Sendable, CaseIterable {
    case lookup = 1, forget = 2, getattr = 3, setattr = 4, readlink = 5, symlink = 6
    case mknod = 8, mkdir = 9, unlink = 10, rmdir = 11, rename = 12, link = 13
    case open = 14, read = 15, write = 16, statfs = 17, release = 18
    case fsync = 20, setxattr = 21, getxattr = 22, listxattr = 23, removexattr = 24
    case flush = 25, `init` = 26, opendir = 27, readdir = 28, releasedir = 29
    case fsyncdir = 30, getlk = 31, setlk = 32, setlkw = 33, access = 34
    case create = 35, interrupt = 36, bmap = 37, destroy = 38, ioctl = 39
    case poll = 40, notifyReply = 41, batchForget = 42, fallocate = 43
    case readdirplus = 44, rename2 = 45, lseek = 46, copyFileRange = 47
    case setupMapping = 48, removeMapping = 49, syncfs = 50, tmpfile = 51
}

/// Sizes of the fixed wire structs (checked against the C structs in tests).
public enum FUSEWireSize {
    public static let inHeader = 40
    public static let outHeader = 16
    public static let attr = 88
    public static let entryOut = 128
    public static let attrOut = 104
    public static let openOut = 16
    public static let initOut = 64
    public static let kstatfs = 80
    public static let writeOut = 8
    public static let lkOut = 24
    public static let direntHeader = 24
}

/// Appends little-endian fields.
public struct WireWriter: Sendable {
    public private(set) var bytes: [UInt8] = []

    public init(capacity: Int = 128) { if capacity > 0 { bytes.reserveCapacity(capacity) } }

    /// Makes room for `capacity` bytes in all (one allocation now instead
    /// of several as the bytes grow).
    public mutating func reserve(_ capacity: Int) { bytes.reserveCapacity(capacity) }

    // Each field goes in as one block of its little-endian bytes, not byte
    // by byte (one capacity check per field).
    @inline(__always) private mutating func put<T: FixedWidthInteger>(_ v: T) {
        withUnsafeBytes(of: v.littleEndian) { append($0) }
    }

    /// Appends raw bytes as typed UInt8s: Array's append of a typed buffer
    /// is one memcpy, of an UnsafeRawBufferPointer a loop over its bytes.
    @inline(__always) private mutating func append(_ raw: UnsafeRawBufferPointer) {
        raw.withMemoryRebound(to: UInt8.self) { bytes.append(contentsOf: $0) }
    }

    /// Appends `value`, a struct of linux/fuse.h (the kernel's own layout,
    /// host byte order), as one block.
    @inline(__always) public mutating func pod<T: BitwiseCopyable>(_ value: T) {
        withUnsafeBytes(of: value) { append($0) }
    }

    public mutating func u16(_ v: UInt16) { put(v) }
    public mutating func u32(_ v: UInt32) { put(v) }
    public mutating func i32(_ v: Int32) { put(v) }
    public mutating func u64(_ v: UInt64) { put(v) }
    public mutating func raw(_ b: [UInt8]) { bytes.append(contentsOf: b) }
    public mutating func raw(_ b: UnsafeBufferPointer<UInt8>) { bytes.append(contentsOf: b) }
    public mutating func zeros(_ n: Int) { bytes.append(contentsOf: repeatElement(0, count: n)) }
    /// Pads with zeros to a multiple of 8 (FUSE_DIRENT_ALIGN).
    public mutating func align8() { zeros((8 - bytes.count % 8) % 8) }
}

// MARK: - Encoders for reply structs

// Fixed-layout replies are filled in as the C structs of linux/fuse.h and
// appended in one block each (not field by field).

extension FUSEAttributes {
    var wire: fuse_attr {
        fuse_attr(ino: ino, size: size, blocks: blocks, atime: atime, mtime: mtime, ctime: ctime,
                  atimensec: atimeNsec, mtimensec: mtimeNsec, ctimensec: ctimeNsec, mode: mode, nlink: nlink,
                  uid: uid, gid: gid, rdev: rdev, blksize: blksize, flags: flags)
    }

    func encode(into w: inout WireWriter) { w.pod(wire) }

    /// struct fuse_attr_out.
    func attrOut(_ timeout: FUSETimeout) -> fuse_attr_out {
        fuse_attr_out(attr_valid: timeout.seconds, attr_valid_nsec: timeout.nanoseconds, dummy: 0, attr: wire)
    }
}

extension FUSEEntry {
    /// struct fuse_entry_out.
    var wire: fuse_entry_out {
        fuse_entry_out(nodeid: nodeID, generation: generation,
                       entry_valid: entryTimeout.seconds, attr_valid: attrTimeout.seconds,
                       entry_valid_nsec: entryTimeout.nanoseconds, attr_valid_nsec: attrTimeout.nanoseconds,
                       attr: attributes.wire)
    }

    func encode(into w: inout WireWriter) { w.pod(wire) }
}

extension FUSEOpenReply {
    func encode(into w: inout WireWriter) {
        w.u64(handle); w.u32(flags); w.u32(UInt32(bitPattern: backingID))
    }
}
