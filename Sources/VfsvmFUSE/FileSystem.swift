import CVfsvmLinux
import VfsvmSys
import VfsvmMemory

/// Who sent a request (fuse_in_header). Plain words only (a test asserts
/// `_isPOD`): it is passed to every FileSystem call, and a reference in it
/// would cost a retain and a release per request in code that is not
/// specialised. A create's security context is a parameter of the five
/// methods that make nodes instead.
public struct FUSERequestContext: Sendable, Equatable {
    public var unique: UInt64
    public var nodeID: UInt64
    public var uid: UInt32
    public var gid: UInt32
    public var pid: UInt32

    public init(unique: UInt64 = 0, nodeID: UInt64 = 0, uid: UInt32 = 0, gid: UInt32 = 0, pid: UInt32 = 0) {
        self.unique = unique; self.nodeID = nodeID; self.uid = uid; self.gid = gid; self.pid = pid
    }
}

/// struct fuse_attr.
public struct FUSEAttributes: Sendable, Equatable {
    public var ino: UInt64 = 0, size: UInt64 = 0, blocks: UInt64 = 0
    public var atime: UInt64 = 0, mtime: UInt64 = 0, ctime: UInt64 = 0
    public var atimeNsec: UInt32 = 0, mtimeNsec: UInt32 = 0, ctimeNsec: UInt32 = 0
    public var mode: UInt32 = 0, nlink: UInt32 = 0, uid: UInt32 = 0, gid: UInt32 = 0
    public var rdev: UInt32 = 0, blksize: UInt32 = 0, flags: UInt32 = 0
    public init() {}
}

/// A cache validity period (seconds + nanoseconds).
public struct FUSETimeout: Sendable, Equatable {
    public var seconds: UInt64
    public var nanoseconds: UInt32
    public init(seconds: UInt64, nanoseconds: UInt32 = 0) { self.seconds = seconds; self.nanoseconds = nanoseconds }
    public static let zero = FUSETimeout(seconds: 0)
}

/// struct fuse_entry_out. A reply carrying an entry adds one to the
/// node's lookup count (the FileSystem does that before returning it).
public struct FUSEEntry: Sendable, Equatable {
    public var nodeID: UInt64
    public var generation: UInt64
    public var entryTimeout: FUSETimeout
    public var attrTimeout: FUSETimeout
    public var attributes: FUSEAttributes
    public init(nodeID: UInt64, generation: UInt64, entryTimeout: FUSETimeout, attrTimeout: FUSETimeout, attributes: FUSEAttributes) {
        self.nodeID = nodeID; self.generation = generation; self.entryTimeout = entryTimeout
        self.attrTimeout = attrTimeout; self.attributes = attributes
    }
}

/// struct fuse_open_out: the handle and FOPEN_* flags.
public struct FUSEOpenReply: Sendable, Equatable {
    public var handle: UInt64
    public var flags: UInt32
    /// With FOPEN_PASSTHROUGH in `flags`: the backing file's id.
    public var backingID: Int32 = 0
    public init(handle: UInt64, flags: UInt32 = 0) { self.handle = handle; self.flags = flags }
}

/// What SETATTR asks to change (struct fuse_setattr_in, decoded).
public struct FUSESetAttributes: Sendable, Equatable {
    public var handle: UInt64?
    public var mode: UInt32?
    public var uid: UInt32?
    public var gid: UInt32?
    public var size: UInt64?
    public var atime: TimeChange = .omit
    public var mtime: TimeChange = .omit
    /// FATTR_CTIME: Linux cannot set ctime; any change updates it.
    public var ctimeRequested = false
    /// FATTR_KILL_SUIDGID (HANDLE_KILLPRIV_V2): clear setuid/setgid.
    public var killSUIDGID = false
    public var lockOwner: UInt64?
    public init() {}
}

/// struct fuse_kstatfs.
public struct FUSEStatFS: Sendable, Equatable {
    public var blocks: UInt64, bfree: UInt64, bavail: UInt64, files: UInt64, ffree: UInt64
    public var bsize: UInt32, namelen: UInt32, frsize: UInt32
    public init(blocks: UInt64, bfree: UInt64, bavail: UInt64, files: UInt64, ffree: UInt64, bsize: UInt32, namelen: UInt32, frsize: UInt32) {
        self.blocks = blocks; self.bfree = bfree; self.bavail = bavail; self.files = files; self.ffree = ffree
        self.bsize = bsize; self.namelen = namelen; self.frsize = frsize
    }
}

/// struct fuse_file_lock: a byte range [start, end] (end inclusive,
/// OFFSET_MAX for "to end of file"), type F_RDLCK/F_WRLCK/F_UNLCK, owner pid.
public struct FUSEFileLock: Sendable, Equatable {
    public var start: UInt64
    public var end: UInt64
    public var type: UInt32
    public var pid: UInt32
    public init(start: UInt64, end: UInt64, type: UInt32, pid: UInt32) {
        self.start = start; self.end = end; self.type = type; self.pid = pid
    }
}

/// GETXATTR/LISTXATTR answer: the size only (request size 0) or the bytes.
public enum FUSEXattrReply: Sendable, Equatable {
    case size(Int)
    case data([UInt8])
}

/// What INIT settled, told to the file system.
public struct FUSESession: Sendable, Equatable {
    public var minor: UInt32
    /// Negotiated FUSE_* init flags (flags | flags2 << 32).
    public var flags: UInt64
    public var maxWrite: UInt32
    public func has(_ flag: UInt64) -> Bool { flags & flag != 0 }
}

/// Builds a READDIR / READDIRPLUS reply body of at most `limit` bytes.
/// struct fuse_dirent without its name (C's has a flexible array member,
/// which Swift does not import with an initializer): four fields in the
/// kernel's order, 24 bytes (FUSEWireSize.direntHeader; a test checks).
struct DirentHeader: BitwiseCopyable {
    var ino: UInt64
    var off: UInt64
    var namelen: UInt32
    var type: UInt32
}

public struct FUSEDirectoryBuffer: Sendable {
    public let limit: Int
    public let plus: Bool
    /// Empty until the first entry, which reserves room for the reply (up
    /// to 64 KiB) at once.
    public private(set) var writer = WireWriter(capacity: 0)
    /// Applied to READDIRPLUS entries' owners (see FUSEIDTranslation).
    let ids: FUSEIDTranslation?

    init(limit: Int, plus: Bool, ids: FUSEIDTranslation? = nil) {
        self.limit = limit
        self.plus = plus
        self.ids = ids
    }

    public var isEmpty: Bool { writer.bytes.isEmpty }

    /// Bytes the entry named `nameLength` takes.
    public func size(nameLength: Int) -> Int {
        let base = (plus ? FUSEWireSize.entryOut : 0) + FUSEWireSize.direntHeader + nameLength
        return (base + 7) & ~7
    }

    /// Whether an entry with this name length still fits.
    public func fits(nameLength: Int) -> Bool { writer.bytes.count + size(nameLength: nameLength) <= limit }

    /// Adds one entry; false (and nothing added) when it does not fit.
    /// `nextOffset` is the cookie that resumes after this entry. For
    /// READDIRPLUS `entry` is the entry_out (nil: a zeroed one, which the
    /// kernel ignores, as for "." and "..").
    @discardableResult
    public mutating func add(name: [UInt8], ino: UInt64, type: UInt32, nextOffset: UInt64, entry: FUSEEntry? = nil) -> Bool {
        name.withUnsafeBufferPointer { add(name: $0, ino: ino, type: type, nextOffset: nextOffset, entry: entry) }
    }

    /// `add` with the name where it lies (a getdents64 buffer): no copy of
    /// it is made first.
    @discardableResult
    public mutating func add(name: UnsafeBufferPointer<UInt8>, ino: UInt64, type: UInt32, nextOffset: UInt64, entry: FUSEEntry? = nil) -> Bool {
        guard fits(nameLength: name.count) else { return false }
        if writer.bytes.isEmpty { writer.reserve(min(limit, 1 << 16)) }
        if plus {
            if let entry { (ids?.toGuest(entry) ?? entry).encode(into: &writer) } else { writer.zeros(FUSEWireSize.entryOut) }
        }
        writer.pod(DirentHeader(ino: ino, off: nextOffset, namelen: UInt32(name.count), type: type))
        writer.raw(name)
        writer.align8()
        return true
    }
}

/// A file system served over FUSE. Node ids are the FileSystem's (1 is the
/// root); errors are `FUSEErrno`s whose errno goes back to the client.
/// Every method has a default that fails with ENOSYS, so a file system
/// implements what it supports. Names reaching these methods have been
/// checked by `FUSEServer`: no '/', no NUL, at most 255 bytes, and not "."
/// or ".." except for `lookup`.
public protocol FileSystem: Sendable {
    /// FUSE_* init flags this file system can honour (the server offers
    /// the intersection with its own).
    var supportedInitFlags: UInt64 { get }
    func initialize(_ session: FUSESession)
    func destroy()
    func backingFile(handle: UInt64) -> (node: UInt64, fd: FileDescriptor)?
    /// The host name a guest xattr name is stored under (a file system may
    /// rename them, --xattrmap); a name it refuses throws its errno.
    func hostXattrName(_ name: [UInt8]) throws(FUSEErrno) -> [UInt8]

    func lookup(_ ctx: FUSERequestContext, parent: UInt64, name: [UInt8]) throws(FUSEErrno) -> FUSEEntry
    func forget(nodeID: UInt64, count: UInt64)
    func getattr(_ ctx: FUSERequestContext, node: UInt64, handle: UInt64?) throws(FUSEErrno) -> (FUSEAttributes, FUSETimeout)
    func setattr(_ ctx: FUSERequestContext, node: UInt64, _ change: FUSESetAttributes) throws(FUSEErrno) -> (FUSEAttributes, FUSETimeout)
    func readlink(_ ctx: FUSERequestContext, node: UInt64) throws(FUSEErrno) -> [UInt8]
    func symlink(_ ctx: FUSERequestContext, parent: UInt64, name: [UInt8], target: [UInt8], label: FUSESecurityContext?) throws(FUSEErrno) -> FUSEEntry
    func mknod(_ ctx: FUSERequestContext, parent: UInt64, name: [UInt8], mode: UInt32, rdev: UInt32, umask: UInt32, label: FUSESecurityContext?) throws(FUSEErrno) -> FUSEEntry
    func mkdir(_ ctx: FUSERequestContext, parent: UInt64, name: [UInt8], mode: UInt32, umask: UInt32, label: FUSESecurityContext?) throws(FUSEErrno) -> FUSEEntry
    func unlink(_ ctx: FUSERequestContext, parent: UInt64, name: [UInt8]) throws(FUSEErrno)
    func rmdir(_ ctx: FUSERequestContext, parent: UInt64, name: [UInt8]) throws(FUSEErrno)
    func rename(_ ctx: FUSERequestContext, parent: UInt64, name: [UInt8], newParent: UInt64, newName: [UInt8], flags: UInt32) throws(FUSEErrno)
    func link(_ ctx: FUSERequestContext, node: UInt64, newParent: UInt64, newName: [UInt8]) throws(FUSEErrno) -> FUSEEntry
    func open(_ ctx: FUSERequestContext, node: UInt64, flags: UInt32, openFlags: UInt32) throws(FUSEErrno) -> FUSEOpenReply
    /// `label` (SYMLINK, MKNOD, MKDIR, CREATE, TMPFILE): the security
    /// context the request carried (FUSE_SECURITY_CTX), nil without one:
    /// the file system sets it on the node it makes before answering, and
    /// makes no node when it cannot.
    /// `openFlags`: FUSE_OPEN_* of fuse_create_in (FUSE_OPEN_KILL_SUIDGID).
    func create(_ ctx: FUSERequestContext, parent: UInt64, name: [UInt8], mode: UInt32, umask: UInt32, flags: UInt32, openFlags: UInt32, label: FUSESecurityContext?) throws(FUSEErrno) -> (FUSEEntry, FUSEOpenReply)
    func tmpfile(_ ctx: FUSERequestContext, parent: UInt64, mode: UInt32, umask: UInt32, flags: UInt32, label: FUSESecurityContext?) throws(FUSEErrno) -> (FUSEEntry, FUSEOpenReply)
    /// Reads into `reply[offset ..< offset + size]`; returns the bytes read.
    func read(_ ctx: FUSERequestContext, node: UInt64, handle: UInt64, offset: UInt64, size: Int, into reply: some ScatterGatherList, at replyOffset: Int) throws(FUSEErrno) -> Int
    /// Writes `size` bytes from `request[requestOffset...]`; returns the bytes written.
    func write(_ ctx: FUSERequestContext, node: UInt64, handle: UInt64, offset: UInt64, size: Int, writeFlags: UInt32, from request: some ScatterGatherList, at requestOffset: Int) throws(FUSEErrno) -> Int
    func flush(_ ctx: FUSERequestContext, node: UInt64, handle: UInt64, lockOwner: UInt64) throws(FUSEErrno)
    func release(_ ctx: FUSERequestContext, node: UInt64, handle: UInt64, flags: UInt32, releaseFlags: UInt32, lockOwner: UInt64) throws(FUSEErrno)
    func fsync(_ ctx: FUSERequestContext, node: UInt64, handle: UInt64, dataOnly: Bool) throws(FUSEErrno)
    func opendir(_ ctx: FUSERequestContext, node: UInt64, flags: UInt32) throws(FUSEErrno) -> FUSEOpenReply
    func readdir(_ ctx: FUSERequestContext, node: UInt64, handle: UInt64, offset: UInt64, into buffer: inout FUSEDirectoryBuffer) throws(FUSEErrno)
    func releasedir(_ ctx: FUSERequestContext, node: UInt64, handle: UInt64) throws(FUSEErrno)
    func fsyncdir(_ ctx: FUSERequestContext, node: UInt64, handle: UInt64, dataOnly: Bool) throws(FUSEErrno)
    func statfs(_ ctx: FUSERequestContext, node: UInt64) throws(FUSEErrno) -> FUSEStatFS
    func access(_ ctx: FUSERequestContext, node: UInt64, mask: UInt32) throws(FUSEErrno)
    func setxattr(_ ctx: FUSERequestContext, node: UInt64, name: [UInt8], value: [UInt8], flags: UInt32) throws(FUSEErrno)
    func getxattr(_ ctx: FUSERequestContext, node: UInt64, name: [UInt8], size: Int) throws(FUSEErrno) -> FUSEXattrReply
    func listxattr(_ ctx: FUSERequestContext, node: UInt64, size: Int) throws(FUSEErrno) -> FUSEXattrReply
    func removexattr(_ ctx: FUSERequestContext, node: UInt64, name: [UInt8]) throws(FUSEErrno)
    func getlk(_ ctx: FUSERequestContext, node: UInt64, handle: UInt64, owner: UInt64, lock: FUSEFileLock) throws(FUSEErrno) -> FUSEFileLock
    func setlk(_ ctx: FUSERequestContext, node: UInt64, handle: UInt64, owner: UInt64, lock: FUSEFileLock, wait: Bool, flock: Bool) throws(FUSEErrno)
    func fallocate(_ ctx: FUSERequestContext, node: UInt64, handle: UInt64, offset: UInt64, length: UInt64, mode: UInt32) throws(FUSEErrno)
    func lseek(_ ctx: FUSERequestContext, node: UInt64, handle: UInt64, offset: UInt64, whence: UInt32) throws(FUSEErrno) -> UInt64
    func copyFileRange(_ ctx: FUSERequestContext, node: UInt64, handleIn: UInt64, offsetIn: UInt64, nodeOut: UInt64, handleOut: UInt64, offsetOut: UInt64, length: UInt64, flags: UInt64) throws(FUSEErrno) -> Int
    func syncfs(_ ctx: FUSERequestContext, node: UInt64) throws(FUSEErrno)

    /// DAX (FUSE_SETUPMAPPING): lends `body` the open file a mapping is
    /// made from: the file behind `handle`, or for handle UInt64.max (a
    /// Linux guest names no handle) `node` opened afresh, read-write when
    /// `write`. What `body` throws is the reply's errno.
    func withMappableFile(_ ctx: FUSERequestContext, node: UInt64, handle: UInt64, write: Bool,
                          _ body: (DAXMappings.OpenFile) throws(SystemError) -> Void) throws(FUSEErrno)
    /// DAX: the mapping table over the server's window. The file system
    /// calls its `shrinking(file:to:refused:_:)` around everything that
    /// makes a file shorter (truncate, O_TRUNC, collapsing fallocate), so
    /// no mapped page outlives the end of its file, and `growing(file:)`
    /// after everything that can make one longer (WRITE, FALLOCATE,
    /// truncate, COPY_FILE_RANGE), so the guest sees the new end through
    /// the ranges it has mapped.
    /// Attached at most once, before the first request: returns false
    /// (and keeps the first) when a different table was attached already.
    @discardableResult
    func attachMappings(_ mappings: DAXMappings) -> Bool
}

private let notImplemented = FUSEErrno(.ENOSYS, "not implemented by this file system")

extension FileSystem {
    /// The host file behind an open file handle, for FUSE passthrough;
    /// nil where there is none (the default).
    public func backingFile(handle: UInt64) -> (node: UInt64, fd: FileDescriptor)? { nil }
    /// Names kept as they are (the default).
    public func hostXattrName(_ name: [UInt8]) throws(FUSEErrno) -> [UInt8] { name }
    public var supportedInitFlags: UInt64 { 0 }
    public func initialize(_ session: FUSESession) {}
    public func destroy() {}
    public func lookup(_ ctx: FUSERequestContext, parent: UInt64, name: [UInt8]) throws(FUSEErrno) -> FUSEEntry { throw notImplemented }
    public func forget(nodeID: UInt64, count: UInt64) {}
    public func getattr(_ ctx: FUSERequestContext, node: UInt64, handle: UInt64?) throws(FUSEErrno) -> (FUSEAttributes, FUSETimeout) { throw notImplemented }
    public func setattr(_ ctx: FUSERequestContext, node: UInt64, _ change: FUSESetAttributes) throws(FUSEErrno) -> (FUSEAttributes, FUSETimeout) { throw notImplemented }
    public func readlink(_ ctx: FUSERequestContext, node: UInt64) throws(FUSEErrno) -> [UInt8] { throw notImplemented }
    public func symlink(_ ctx: FUSERequestContext, parent: UInt64, name: [UInt8], target: [UInt8], label: FUSESecurityContext?) throws(FUSEErrno) -> FUSEEntry { throw notImplemented }
    public func mknod(_ ctx: FUSERequestContext, parent: UInt64, name: [UInt8], mode: UInt32, rdev: UInt32, umask: UInt32, label: FUSESecurityContext?) throws(FUSEErrno) -> FUSEEntry { throw notImplemented }
    public func mkdir(_ ctx: FUSERequestContext, parent: UInt64, name: [UInt8], mode: UInt32, umask: UInt32, label: FUSESecurityContext?) throws(FUSEErrno) -> FUSEEntry { throw notImplemented }
    public func unlink(_ ctx: FUSERequestContext, parent: UInt64, name: [UInt8]) throws(FUSEErrno) { throw notImplemented }
    public func rmdir(_ ctx: FUSERequestContext, parent: UInt64, name: [UInt8]) throws(FUSEErrno) { throw notImplemented }
    public func rename(_ ctx: FUSERequestContext, parent: UInt64, name: [UInt8], newParent: UInt64, newName: [UInt8], flags: UInt32) throws(FUSEErrno) { throw notImplemented }
    public func link(_ ctx: FUSERequestContext, node: UInt64, newParent: UInt64, newName: [UInt8]) throws(FUSEErrno) -> FUSEEntry { throw notImplemented }
    public func open(_ ctx: FUSERequestContext, node: UInt64, flags: UInt32, openFlags: UInt32) throws(FUSEErrno) -> FUSEOpenReply { throw notImplemented }
    public func create(_ ctx: FUSERequestContext, parent: UInt64, name: [UInt8], mode: UInt32, umask: UInt32, flags: UInt32, openFlags: UInt32, label: FUSESecurityContext?) throws(FUSEErrno) -> (FUSEEntry, FUSEOpenReply) { throw notImplemented }
    public func tmpfile(_ ctx: FUSERequestContext, parent: UInt64, mode: UInt32, umask: UInt32, flags: UInt32, label: FUSESecurityContext?) throws(FUSEErrno) -> (FUSEEntry, FUSEOpenReply) { throw notImplemented }
    public func read(_ ctx: FUSERequestContext, node: UInt64, handle: UInt64, offset: UInt64, size: Int, into reply: some ScatterGatherList, at replyOffset: Int) throws(FUSEErrno) -> Int { throw notImplemented }
    public func write(_ ctx: FUSERequestContext, node: UInt64, handle: UInt64, offset: UInt64, size: Int, writeFlags: UInt32, from request: some ScatterGatherList, at requestOffset: Int) throws(FUSEErrno) -> Int { throw notImplemented }
    public func flush(_ ctx: FUSERequestContext, node: UInt64, handle: UInt64, lockOwner: UInt64) throws(FUSEErrno) { throw notImplemented }
    public func release(_ ctx: FUSERequestContext, node: UInt64, handle: UInt64, flags: UInt32, releaseFlags: UInt32, lockOwner: UInt64) throws(FUSEErrno) {}
    public func fsync(_ ctx: FUSERequestContext, node: UInt64, handle: UInt64, dataOnly: Bool) throws(FUSEErrno) { throw notImplemented }
    public func opendir(_ ctx: FUSERequestContext, node: UInt64, flags: UInt32) throws(FUSEErrno) -> FUSEOpenReply { throw notImplemented }
    public func readdir(_ ctx: FUSERequestContext, node: UInt64, handle: UInt64, offset: UInt64, into buffer: inout FUSEDirectoryBuffer) throws(FUSEErrno) { throw notImplemented }
    public func releasedir(_ ctx: FUSERequestContext, node: UInt64, handle: UInt64) throws(FUSEErrno) {}
    public func fsyncdir(_ ctx: FUSERequestContext, node: UInt64, handle: UInt64, dataOnly: Bool) throws(FUSEErrno) { throw notImplemented }
    public func statfs(_ ctx: FUSERequestContext, node: UInt64) throws(FUSEErrno) -> FUSEStatFS { throw notImplemented }
    public func access(_ ctx: FUSERequestContext, node: UInt64, mask: UInt32) throws(FUSEErrno) { throw notImplemented }
    public func setxattr(_ ctx: FUSERequestContext, node: UInt64, name: [UInt8], value: [UInt8], flags: UInt32) throws(FUSEErrno) { throw notImplemented }
    public func getxattr(_ ctx: FUSERequestContext, node: UInt64, name: [UInt8], size: Int) throws(FUSEErrno) -> FUSEXattrReply { throw notImplemented }
    public func listxattr(_ ctx: FUSERequestContext, node: UInt64, size: Int) throws(FUSEErrno) -> FUSEXattrReply { throw notImplemented }
    public func removexattr(_ ctx: FUSERequestContext, node: UInt64, name: [UInt8]) throws(FUSEErrno) { throw notImplemented }
    public func getlk(_ ctx: FUSERequestContext, node: UInt64, handle: UInt64, owner: UInt64, lock: FUSEFileLock) throws(FUSEErrno) -> FUSEFileLock { throw notImplemented }
    public func setlk(_ ctx: FUSERequestContext, node: UInt64, handle: UInt64, owner: UInt64, lock: FUSEFileLock, wait: Bool, flock: Bool) throws(FUSEErrno) { throw notImplemented }
    public func fallocate(_ ctx: FUSERequestContext, node: UInt64, handle: UInt64, offset: UInt64, length: UInt64, mode: UInt32) throws(FUSEErrno) { throw notImplemented }
    public func lseek(_ ctx: FUSERequestContext, node: UInt64, handle: UInt64, offset: UInt64, whence: UInt32) throws(FUSEErrno) -> UInt64 { throw notImplemented }
    public func copyFileRange(_ ctx: FUSERequestContext, node: UInt64, handleIn: UInt64, offsetIn: UInt64, nodeOut: UInt64, handleOut: UInt64, offsetOut: UInt64, length: UInt64, flags: UInt64) throws(FUSEErrno) -> Int { throw notImplemented }
    public func syncfs(_ ctx: FUSERequestContext, node: UInt64) throws(FUSEErrno) { throw notImplemented }
    public func withMappableFile(_ ctx: FUSERequestContext, node: UInt64, handle: UInt64, write: Bool,
                                 _ body: (DAXMappings.OpenFile) throws(SystemError) -> Void) throws(FUSEErrno) { throw notImplemented }
    public func attachMappings(_ mappings: DAXMappings) -> Bool { false }
}
