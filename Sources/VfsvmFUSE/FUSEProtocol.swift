import VfsvmMemory
import VfsvmSys

/// FUSE_* flags of INIT (linux/fuse.h), low 32 bits in `flags`, high in `flags2`.
public enum FUSEInitFlag {
    public static let asyncRead: UInt64 = 1 << 0
    public static let posixLocks: UInt64 = 1 << 1
    public static let atomicOTrunc: UInt64 = 1 << 3
    public static let exportSupport: UInt64 = 1 << 4
    public static let bigWrites: UInt64 = 1 << 5
    public static let dontMask: UInt64 = 1 << 6
    public static let flockLocks: UInt64 = 1 << 10
    public static let autoInvalData: UInt64 = 1 << 12
    public static let doReaddirplus: UInt64 = 1 << 13
    public static let readdirplusAuto: UInt64 = 1 << 14
    public static let asyncDIO: UInt64 = 1 << 15
    public static let writebackCache: UInt64 = 1 << 16
    public static let parallelDirops: UInt64 = 1 << 18
    public static let handleKillpriv: UInt64 = 1 << 19
    /// The client enforces POSIX ACLs (kept in system.posix_acl_* xattrs).
    public static let posixACL: UInt64 = 1 << 20
    public static let maxPages: UInt64 = 1 << 22
    public static let cacheSymlinks: UInt64 = 1 << 23
    /// init_out.map_alignment holds log2 of the DAX mapping alignment;
    /// offered only by a server with a DAX window.
    public static let mapAlignment: UInt64 = 1 << 26
    /// The client mounts directories marked FUSE_ATTR_SUBMOUNT as submounts.
    public static let submounts: UInt64 = 1 << 27
    public static let handleKillprivV2: UInt64 = 1 << 28
    public static let setxattrExt: UInt64 = 1 << 29
    public static let initExt: UInt64 = 1 << 30
    /// FUSE_SECURITY_CTX (flags2 bit 0, 7.36): CREATE, MKNOD, MKDIR,
    /// SYMLINK and TMPFILE carry the new node's security context (an xattr
    /// name and value from the client's LSM) in a request extension.
    public static let securityContext: UInt64 = 1 << 32
    /// Shared mmap of files opened with FOPEN_DIRECT_IO (flags2 bit 4;
    /// linux/fuse.h 7.39).
    public static let directIOAllowMmap: UInt64 = 1 << 36
    /// FUSE passthrough (7.40): OPEN replies may name a backing file the
    /// kernel then reads and writes itself, without the server.
    public static let passthrough: UInt64 = 1 << 37
    /// FUSE over io_uring (7.42): requests reach the server through
    /// buffers it registers on io_uring rings (a host mount only).
    public static let overIOURing: UInt64 = 1 << 41
}

/// Bits `FUSEServer` adds to SETXATTR's `flags` (XATTR_CREATE and
/// XATTR_REPLACE keep the low two).
public enum FUSESetxattrFlag {
    /// FUSE_SETXATTR_ACL_KILL_SGID (fuse_setxattr_in.setxattr_flags):
    /// setting this access ACL clears S_ISGID (the caller is not in the
    /// file's group and lacks CAP_FSETID).
    public static let aclKillSGID: UInt32 = 1 << 31
}

/// fuse_attr.flags bits.
public enum FUSEAttrFlag {
    /// FUSE_ATTR_SUBMOUNT: the directory is the root of another mount.
    public static let submount: UInt32 = 1 << 0
}

/// FOPEN_PASSTHROUGH (7.40): the open reply's backing_id names the file
/// the kernel does this file's I/O on.
public let fopenPassthrough: UInt32 = 1 << 7

/// Backing files for FUSE passthrough, registered with the kernel
/// connection (FUSE_DEV_IOC_BACKING_OPEN). Only a host mount has one: a
/// virtio-fs guest's kernel cannot reach host file descriptors.
///
/// The kernel wants one backing file per inode while it is open (a second
/// open with another one fails with EIO), and reopens it with each FUSE
/// file's own flags: so the first open of a node registers its fd, later
/// opens share that id, and the last release closes it.
public protocol FUSEBackingFiles: Sendable {
    /// The backing id for `handle`, an open file of `node` whose host fd
    /// is `fd`; nil when the kernel refuses the file (it is then served
    /// through requests as usual).
    func open(node: UInt64, fd: FileDescriptor, handle: UInt64) -> Int32?
    /// `handle` is released: the node's id goes with its last handle.
    func release(handle: UInt64)
    /// The session ended (DESTROY, or a new INIT): every id goes.
    func reset()
    /// The largest stacking depth of a backing file system, plus one
    /// (init_out.max_stack_depth): 1 for plain host file systems.
    var maxStackDepth: UInt32 { get }
}

/// Server-side settings.
public struct FUSEServerOptions: Sendable, Equatable {
    /// Largest WRITE payload accepted (max_write in INIT); 1 MiB by default.
    public var maxWrite: UInt32 = 1 << 20
    /// Ask the kernel to use its writeback cache (FUSE_WRITEBACK_CACHE).
    public var writeback = false
    /// Refuse every mutating request with EROFS.
    public var readOnly = false
    /// Offer POSIX (fcntl) locks to the client (FUSE_POSIX_LOCKS).
    public var posixLocks = true
    /// Offer BSD (flock) locks to the client (FUSE_FLOCK_LOCKS).
    public var flockLocks = true
    /// Both kinds of lock on or off.
    public var locks: Bool { posixLocks || flockLocks }
    /// At most this many requests that wait for a lock (SETLKW) have a
    /// thread of their own at once, per server; past it they get ENOLCK.
    /// A waiter counts until its thread ends, even after the session or
    /// the queue it came from is gone.
    public var maxLockWaiters = 256
    /// The name those threads carry (15 bytes at most: what `ps -L` and
    /// /proc/PID/task/TID/comm show).
    public var lockWaiterThreadName = "vfsvm-fuse-wait"
    /// Offer READDIRPLUS (FUSE_DO_READDIRPLUS, FUSE_READDIRPLUS_AUTO).
    public var readdirplus = true
    /// With `readdirplus`: also offer FUSE_READDIRPLUS_AUTO, so that the
    /// client sends READDIRPLUS only for the first batch of a directory
    /// and where it has looked names of it up, plain READDIR otherwise.
    /// Off, every READDIR is a READDIRPLUS.
    public var readdirplusAuto = true
    /// Offer FUSE_ASYNC_READ: the client may keep several READs of one file
    /// in flight (readahead) instead of one at a time.
    public var asyncRead = true
    /// Offer FUSE_PARALLEL_DIROPS: the client may send LOOKUP and READDIR
    /// of one directory concurrently instead of serialising them on the
    /// directory's lock.
    public var parallelDirops = true
    /// init_out.max_background: background requests (readahead, async
    /// direct I/O, RELEASE) the client keeps in flight; congestion_threshold
    /// is three quarters of it. 0 leaves the kernel's default (12).
    public var maxBackground: UInt16 = 64
    /// Answer a LOOKUP of a missing name with node 0 and this entry timeout
    /// (a cached negative entry) instead of ENOENT; nil: ENOENT, as
    /// virtiofsd. A name created host-side stays invisible to the client
    /// for the timeout.
    public var negativeEntryTimeout: FUSETimeout?
    /// Offer FUSE_HANDLE_KILLPRIV_V2: the server clears setuid/setgid on
    /// WRITE, truncating OPEN and SETATTR when the client asks.
    public var killprivV2 = true
    /// Offer FUSE_DIRECT_IO_ALLOW_MMAP (shared mmap of direct-I/O files).
    public var directIOAllowMmap = false
    /// Accept FUSE_SUBMOUNTS, so that the file system may mark mount
    /// points with FUSE_ATTR_SUBMOUNT.
    public var announceSubmounts = false
    /// Offer FUSE_POSIX_ACL (the file system must honour default ACLs).
    public var posixACL = false
    /// Offer FUSE_SECURITY_CTX: the security context a create carries is
    /// set on the new node (virtiofsd's `--security-label`).
    public var securityLabel = false
    /// Guest <-> host uid/gid translation; nil: ids pass unchanged.
    public var idTranslation: FUSEIDTranslation? = nil
    /// Offer FUSE_OVER_IO_URING: the server registers io_uring queues right
    /// after INIT (`vfsvm mount` with rings ready; never for virtio-fs).
    public var overIOURing = false
    public init(maxWrite: UInt32 = 1 << 20, writeback: Bool = false, readOnly: Bool = false, locks: Bool = true) {
        self.init(maxWrite: maxWrite, writeback: writeback, readOnly: readOnly, posixLocks: locks, flockLocks: locks)
    }
    public init(maxWrite: UInt32 = 1 << 20, writeback: Bool = false, readOnly: Bool = false, posixLocks: Bool, flockLocks: Bool) {
        self.maxWrite = maxWrite; self.writeback = writeback; self.readOnly = readOnly
        self.posixLocks = posixLocks; self.flockLocks = flockLocks
    }
}

/// Our protocol version (linux/fuse.h 7.38) and the oldest minor accepted.
public enum FUSEProtocol {
    public static let major: UInt32 = 7
    public static let minor: UInt32 = 38
    public static let oldestMinor: UInt32 = 27
    public static let maxNameLength = 255
}

/// Anything that answers FUSE requests: request bytes in, reply bytes out.
/// `FUSEServer` is the real one.
public protocol FUSERequestHandler: Sendable {
    /// Answers `request` inline, writing the reply (fuse_out_header + body)
    /// into `reply` from offset 0; returns its length, 0 when there is none
    /// (FORGET, BATCH_FORGET, INTERRUPT, or `reply` shorter than a
    /// fuse_out_header). A request that waits for a lock blocks the caller.
    func handle(request: some ScatterGatherList, reply: some ScatterGatherList) -> Int

    /// Answers `request` inline (`.replied`, as above), or, for a request
    /// that may wait indefinitely (SETLKW), takes it to a thread of its own
    /// and returns `.deferred`: it then calls `deferral.deferReply()` once,
    /// before returning, and the late reply's `send` exactly once, from that
    /// thread, with the whole reply (fuse_out_header + body, at most
    /// `reply.byteCount` bytes; empty when there is none). `reply` is not
    /// touched after a `.deferred` return, and nothing of `request` is kept.
    /// Past the waiter budget, or when `deferral.admitsWait()` says no,
    /// the request is answered inline with ENOLCK.
    ///
    /// Generic over the deferral so the inline path (every request but a
    /// waiting lock) costs no allocation: a caller's deferral makes its
    /// late-reply object only when asked.
    func handle(request: some ScatterGatherList, reply: some ScatterGatherList,
                deferral: some FUSEReplyDeferral) -> FUSEHandling

    /// The virtqueue entry point: `handle(request:reply:deferral:)` for a
    /// request in guest memory, with concrete types so that the handler's
    /// own module compiles its request path for them (a call through the
    /// generic one from another module runs unspecialised code). A request
    /// that waits for a lock is not deferred here: it comes back as
    /// `.waitsForLock`, already admitted, and the caller passes it to
    /// `wait(_:late:)` exactly once with where its reply goes.
    func answer(request: GuestBufferList, reply: GuestBufferList) -> FUSEAnswer

    /// Runs a request `answer(request:reply:)` returned as waiting, on a
    /// thread of its own; `late.send` gets its whole reply once, from there.
    func wait(_ waiter: FUSELockWaiter, late: some FUSELateReply)
}

/// What `FUSERequestHandler.answer(request:reply:)` did with a request.
public enum FUSEAnswer {
    /// Answered: the reply is in `reply`, this many bytes (0: no reply).
    case replied(Int)
    /// It waits for a lock: hand it to `wait(_:late:)`.
    case waitsForLock(FUSELockWaiter)
}

/// A decoded request that waits for a lock (SETLKW), admitted under the
/// server's waiter budget, for `FUSERequestHandler.wait(_:late:)`.
public struct FUSELockWaiter: Sendable {
    let request: FUSERequest
    /// Reply bytes the late reply may have (the caller's reply buffer, at
    /// most 4 KiB: a lock reply is a header).
    let room: Int
}

/// Where a deferred request's reply goes later (see
/// `FUSERequestHandler.handle(request:reply:deferral:)`).
public protocol FUSEReplyDeferral {
    associatedtype LateReply: FUSELateReply
    /// Asked once, on the caller's thread, before a request would be
    /// deferred: false has it answered inline with ENOLCK instead. For a
    /// caller that can hold only so many requests at once (a FUSE ring's
    /// entries: one must stay free to carry the unlock that the waiters
    /// wait for). True by default.
    func admitsWait() -> Bool
    /// Called once, on the caller's thread, when the request is deferred.
    func deferReply() -> LateReply
}

extension FUSEReplyDeferral {
    public func admitsWait() -> Bool { true }
}

/// A deferred request's reply, sent once from the waiter's thread.
public protocol FUSELateReply: Sendable {
    func send(_ reply: [UInt8])
}

/// A deferral whose late reply is a closure (for callers that allocate per
/// request anyway, like `vfsvm mount`'s waiters, and tests).
public struct FUSEClosureDeferral: FUSEReplyDeferral, FUSELateReply {
    let completion: @Sendable ([UInt8]) -> Void
    public init(_ completion: @escaping @Sendable (_ reply: [UInt8]) -> Void) { self.completion = completion }
    public func deferReply() -> FUSEClosureDeferral { self }
    public func send(_ reply: [UInt8]) { completion(reply) }
}

extension FUSERequestHandler {
    /// `handle(request:reply:deferral:)` with the late reply as a closure.
    public func handle(request: some ScatterGatherList, reply: some ScatterGatherList,
                       completion: @escaping @Sendable (_ reply: [UInt8]) -> Void) -> FUSEHandling {
        handle(request: request, reply: reply, deferral: FUSEClosureDeferral(completion))
    }
}

/// How `FUSERequestHandler.handle(request:reply:deferral:)` dealt with a
/// request.
public enum FUSEHandling: Sendable, Equatable {
    /// Answered: the reply is in `reply`, this many bytes (0: no reply).
    case replied(Int)
    /// Running on a thread of its own; the completion will be called.
    case deferred
}
