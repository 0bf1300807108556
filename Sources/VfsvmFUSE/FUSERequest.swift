import Glibc
import VfsvmSys

/// struct fuse_in_header, decoded.
public struct FUSEInHeader: Sendable, Equatable {
    /// `len`: the request's length, header included.
    public var length: UInt32
    /// `opcode` as sent (it may name no opcode we know).
    public var opcode: UInt32
    public var unique: UInt64
    public var nodeID: UInt64
    public var uid: UInt32
    public var gid: UInt32
    public var pid: UInt32

    public init(length: UInt32 = 0, opcode: UInt32 = 0, unique: UInt64 = 0, nodeID: UInt64 = 0, uid: UInt32 = 0, gid: UInt32 = 0, pid: UInt32 = 0) {
        self.length = length; self.opcode = opcode; self.unique = unique; self.nodeID = nodeID
        self.uid = uid; self.gid = gid; self.pid = pid
    }

    /// Who sent it, as the file system sees it.
    public var context: FUSERequestContext {
        FUSERequestContext(unique: unique, nodeID: nodeID, uid: uid, gid: gid, pid: pid)
    }
}

/// One FUSE request, decoded: its header and the opcode's arguments, every
/// length and field checked once (`FUSERequestDecoder`). Everything but a
/// WRITE's payload has been copied out of the request buffers, so what runs
/// is what was checked, whatever the sender writes into them afterwards.
public struct FUSERequest: Sendable {
    public var header: FUSEInHeader
    /// nil when the header is malformed or names no opcode we know
    /// (`operation` is then `.malformed`).
    public var opcode: FUSEOpcode?
    public var operation: FUSEOperation

    public init(header: FUSEInHeader, opcode: FUSEOpcode?, operation: FUSEOperation) {
        self.header = header
        self.opcode = opcode
        self.operation = operation
    }

    /// A SETLKW that takes a lock: it may wait until another request,
    /// perhaps queued behind it, releases one. A SETLKW that unlocks (what
    /// flock(LOCK_UN) sends) never waits, and is answered inline: it must
    /// not need a waiter's place, which may all be taken by the very
    /// waiters it would wake.
    public var waitsForALock: Bool {
        if case let .setlk(_, _, lock, _, wait: true) = operation { return lock.type != UInt32(F_UNLCK) }
        return false
    }
}

/// A new node's security context (struct fuse_secctx and what follows it):
/// the xattr that holds it and its value, e.g. "security.selinux" and
/// "system_u:object_r:container_file_t:s0\0".
public struct FUSESecurityContext: Sendable, Equatable {
    /// The xattr name, 1...255 bytes, without its NUL.
    public var name: [UInt8]
    /// The value exactly as sent (fuse_secctx.size bytes, not empty).
    public var value: [UInt8]
    public init(name: [UInt8], value: [UInt8]) { self.name = name; self.value = value }
}

/// One entry of a BATCH_FORGET (struct fuse_forget_one).
public struct FUSEForget: Sendable, Equatable {
    public var nodeID: UInt64
    public var count: UInt64
}

/// One range of the DAX window (struct fuse_removemapping_one).
public struct FUSEWindowRange: Sendable, Equatable {
    public var offset: UInt64
    public var length: UInt64
    public init(offset: UInt64, length: UInt64) { self.offset = offset; self.length = length }
}

/// The arguments of each opcode (the fuse_*_in structs of linux/fuse.h and
/// the names after them), checked: names are not empty, at most 255 bytes,
/// without '/' and (except for LOOKUP) not "." or ".."; xattr names are
/// 1...255 bytes; offsets and sizes do not overflow a signed 64-bit offset.
/// `label`: the security context a create carried (FUSE_SECURITY_CTX
/// negotiated and the client's LSM gave one), nil otherwise.
public enum FUSEOperation: Sendable {
    /// fuse_init_in; `flags` holds flags2 in its high half when the client
    /// sent it (FUSE_INIT_EXT, 7.36+).
    case `init`(major: UInt32, minor: UInt32, maxReadahead: UInt32, flags: UInt64)
    case destroy
    case lookup(name: [UInt8])
    case forget(count: UInt64)
    /// Only the entries the request really holds, whatever its count says.
    case batchForget([FUSEForget])
    case interrupt(unique: UInt64)
    /// `handle` only with FUSE_GETATTR_FH.
    case getattr(handle: UInt64?)
    case setattr(FUSESetAttributes)
    case readlink
    case symlink(name: [UInt8], target: [UInt8], label: FUSESecurityContext?)
    case mknod(name: [UInt8], mode: UInt32, rdev: UInt32, umask: UInt32, label: FUSESecurityContext?)
    case mkdir(name: [UInt8], mode: UInt32, umask: UInt32, label: FUSESecurityContext?)
    case unlink(name: [UInt8])
    case rmdir(name: [UInt8])
    /// RENAME (flags 0) and RENAME2.
    case rename(name: [UInt8], newParent: UInt64, newName: [UInt8], flags: UInt32)
    case link(node: UInt64, newName: [UInt8])
    case open(flags: UInt32, openFlags: UInt32)
    case create(name: [UInt8], flags: UInt32, mode: UInt32, umask: UInt32, openFlags: UInt32, label: FUSESecurityContext?)
    case tmpfile(flags: UInt32, mode: UInt32, umask: UInt32, openFlags: UInt32, label: FUSESecurityContext?)
    case read(handle: UInt64, offset: UInt64, size: UInt32)
    /// The `size` payload bytes stay in the request at `FUSERequestDecoder.writePayloadOffset`.
    case write(handle: UInt64, offset: UInt64, size: UInt32, writeFlags: UInt32)
    case statfs
    case release(handle: UInt64, flags: UInt32, releaseFlags: UInt32, lockOwner: UInt64)
    case releasedir(handle: UInt64)
    case fsync(handle: UInt64, dataOnly: Bool)
    case fsyncdir(handle: UInt64, dataOnly: Bool)
    case setxattr(name: [UInt8], value: [UInt8], flags: UInt32)
    case getxattr(name: [UInt8], size: UInt32)
    case listxattr(size: UInt32)
    case removexattr(name: [UInt8])
    case flush(handle: UInt64, lockOwner: UInt64)
    case opendir(flags: UInt32)
    case readdir(handle: UInt64, offset: UInt64, size: UInt32, plus: Bool)
    case getlk(handle: UInt64, owner: UInt64, lock: FUSEFileLock, flock: Bool)
    case setlk(handle: UInt64, owner: UInt64, lock: FUSEFileLock, flock: Bool, wait: Bool)
    case access(mask: UInt32)
    case fallocate(handle: UInt64, offset: UInt64, length: UInt64, mode: UInt32)
    case lseek(handle: UInt64, offset: UInt64, whence: UInt32)
    case copyFileRange(handleIn: UInt64, offsetIn: UInt64, nodeOut: UInt64, handleOut: UInt64, offsetOut: UInt64, length: UInt64, flags: UInt64)
    case syncfs
    /// fuse_setupmapping_in: map `length` bytes of the file at
    /// `fileOffset` over DAX window offset `windowOffset`. `handle`
    /// UInt64.max: no handle, the node itself (what Linux sends).
    case setupMapping(handle: UInt64, fileOffset: UInt64, length: UInt64, flags: UInt64, windowOffset: UInt64)
    /// fuse_removemapping_in + its fuse_removemapping_one entries, exactly
    /// as many as `count` said (a count the request cannot hold is EINVAL).
    case removeMapping([FUSEWindowRange])
    /// An opcode we know but do not serve (BMAP, IOCTL, POLL...).
    case unsupported
    /// The request cannot be run: a bad header, an unknown opcode or bad
    /// arguments. The error is the reply.
    case malformed(FUSEErrno)
}
