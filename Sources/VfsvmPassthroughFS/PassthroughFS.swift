import Glibc
import Synchronization
import VfsvmSys
import VfsvmFUSE
import CVfsvmLinux

/// Options of the passthrough file system.
public struct PassthroughOptions: Sendable, Equatable {
    /// How long the guest may cache entries, attributes and data.
    public enum Cache: Sendable, Equatable {
        /// No caching: zero timeouts, FOPEN_DIRECT_IO on every open.
        case never
        /// One second timeouts; the page cache is dropped on open.
        case auto
        /// A day; FOPEN_KEEP_CACHE and FOPEN_CACHE_DIR.
        case always
        /// Entries, attributes and directory listings for a day (as
        /// `always`), file data not at all: FOPEN_DIRECT_IO on every file
        /// (virtiofsd's `--cache metadata`).
        case metadata
    }

    public var cache: Cache = .auto
    /// Entry and attribute timeout of every reply instead of the cache
    /// mode's (the C virtiofsd's `-o timeout=`); nil: the cache mode's.
    public var timeout: FUSETimeout?
    /// Serve extended attributes (else ENOSYS, which the kernel remembers).
    public var xattr = true
    /// How many O_PATH fds of inodes are kept open for reuse (the inodes
    /// themselves are named by kernel file handles and cost no fd).
    public var pathFDCacheSize = 512
    /// Name inodes by kernel file handles where the host file system has
    /// them. Off (or on a file system without handles) inodes are named by
    /// (parent node, name) and re-opened by a checked lookup.
    public var fileHandles = true
    /// How many fds the session may hold for the guest at once: open files
    /// and directories (FUSE handles), lock fds and pinned O_PATH fds.
    /// Past it OPEN, CREATE, TMPFILE and OPENDIR get EMFILE and new lock
    /// owners ENOLCK. nil: derived from RLIMIT_NOFILE each time a session
    /// starts (INIT), leaving room for the O_PATH cache and a reserve
    /// (`PassthroughFileSystem.fdBudget`).
    public var maxOpenHandles: Int?
    /// With `fileHandles`: an inode the host cannot name by a file handle
    /// is an error (EOPNOTSUPP to the guest; the root at start) instead of
    /// being named by (parent, name). virtiofsd's
    /// `--inode-file-handles=mandatory`. Entries that pin an O_PATH fd
    /// anyway (O_TMPFILE files, ".." lookups) still do.
    public var requireFileHandles = false
    /// Honour a guest's O_DIRECT: the host file is opened O_DIRECT too and
    /// the open gets FOPEN_DIRECT_IO (the guest page cache is bypassed).
    /// Off, O_DIRECT is dropped (virtiofsd's `--allow-direct-io`).
    public var allowDirectIO = false
    /// Pass a guest's O_NOATIME to the host open. Opening a file one does
    /// not own O_NOATIME needs CAP_FOWNER, so without it the flag is
    /// dropped rather than failing the open with EPERM (virtiofsd's
    /// `--preserve-noatime`, which it also implies when it has FOWNER).
    public var keepNoatime = true
    /// `--xattrmap`: guest xattr names translated, refused or hidden (see
    /// XattrNameMap); nil: names pass unchanged.
    public var xattrMap: XattrNameMap?
    /// POSIX ACLs (virtiofsd's `--posix-acl`): a new file in a directory
    /// with a default ACL gets its mode unmasked (the inherited ACL
    /// replaces the umask, as in a local create), and an access ACL set
    /// with FUSE_SETXATTR_ACL_KILL_SGID clears S_ISGID.
    public var posixACL = false

    public init(cache: Cache = .auto, xattr: Bool = true, pathFDCacheSize: Int = 512, fileHandles: Bool = true, maxOpenHandles: Int? = nil) {
        self.cache = cache; self.xattr = xattr; self.pathFDCacheSize = pathFDCacheSize; self.fileHandles = fileHandles
        self.maxOpenHandles = maxOpenHandles
    }
}

/// Failures setting the file system up.
public enum PassthroughError: Error, Equatable, CustomStringConvertible {
    case cannotOpenRoot(path: String, SystemError)
    case rootNotDirectory(path: String)
    case cannotOpenProc(SystemError)
    /// `requireFileHandles`, and the share's root has no file handle.
    case noFileHandles(path: String)
    /// `requireFileHandles`, and open_by_handle_at is not permitted.
    case fileHandlesNotOpenable(path: String)

    public var description: String {
        switch self {
        case let .cannotOpenRoot(path, e): "cannot open \(path): \(e)"
        case let .rootNotDirectory(path): "\(path) is not a directory"
        case let .cannotOpenProc(e): "cannot open /proc/self/fd: \(e)"
        case let .noFileHandles(path): "\(path) cannot be named by file handles (name_to_handle_at fails there), which --inode-file-handles=mandatory requires; use prefer or never"
        case let .fileHandlesNotOpenable(path): "\(path): --inode-file-handles=mandatory needs open_by_handle_at, which this process may not call (it needs CAP_DAC_READ_SEARCH: run as root); use prefer or never"
        }
    }
}

/// The `FileSystem` over a host directory.
///
/// **Inodes.** Each guest node id names a host inode, keyed by (st_dev,
/// st_ino) so hard links share one node. An inode entry remembers the
/// inode's kernel file handle (name_to_handle_at) and the mount it is on;
/// it holds no fd. When an operation needs the inode, an O_PATH fd is taken
/// from a bounded LRU cache or re-opened with open_by_handle_at (which needs
/// CAP_DAC_READ_SEARCH). If the inode is gone (deleted and no longer open
/// on the host), open_by_handle_at fails and the request gets ESTALE.
/// Where the host file system has no file handles (or `fileHandles` is
/// off), an entry remembers where it was last seen, (parent node, name),
/// and holds one lookup on its parent; it is re-opened by looking the name
/// up below the parent's fd (recursively) and checking (st_dev, st_ino,
/// birth time), so a deleted inode whose number was reused is not mistaken
/// for the new one. A mismatch or a missing name (renamed or deleted behind
/// vfsvm's back) is ESTALE. RENAME, UNLINK and RMDIR keep the locations
/// current. Only entries with no location (".." lookups, O_TMPFILE files)
/// pin an O_PATH fd for their lifetime.
///
/// Node ids are never reused within a session, so the generation is
/// always 0. Lookup counts follow LOOKUP/CREATE/MKDIR/... replies,
/// READDIRPLUS entries and FORGET/BATCH_FORGET; an entry dies when its count
/// reaches 0. Unknown or forgotten node ids get ESTALE; unknown file
/// handles EBADF.
///
/// **Confinement.** Every path the guest names is one component, resolved
/// relative to its parent's fd with openat2(RESOLVE_BENEATH |
/// RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS) and O_NOFOLLOW; symlinks are
/// never followed host-side (OPEN of a symlink node is ELOOP); ".." of the
/// root is the root, and ".." elsewhere is checked to lead back to the root.
/// Mode, ownership and time changes go through the inode's own fd (or
/// /proc/self/fd/N for fchmod, a path vfsvm makes from its own fd).
///
/// **Locks.** POSIX locks are OFD locks on one fd per (inode, lock owner):
/// locks of different owners conflict with each other and with host
/// processes' fcntl locks, and one owner's locks merge and split as POSIX
/// says. FLUSH and RELEASE with a lock owner close that owner's fd, which
/// drops its locks (POSIX close semantics). flock() requests lock the open
/// file's own fd. SETLKW blocks the calling worker thread until granted.
///
/// **Credentials.** Creating requests (CREATE, MKNOD, MKDIR, SYMLINK,
/// TMPFILE) and ACCESS run with the caller's fsuid/fsgid and without the
/// server's supplementary groups (both per thread), so new files get the
/// caller's owner and the host's group rules (a non-member's file in a
/// setgid directory loses S_ISGID); the requested umask is applied by us
/// (FUSE_DONT_MASK; the process umask is set to 0 at init). A CREATE that
/// finds its name taken opens the existing file as the caller too: the
/// guest kernel never checked permissions on a file it did not know. Other
/// requests run as vfsvm (root): virtiofs guests mount with
/// default_permissions, so the guest kernel checks permissions. A guest
/// root can therefore set setuid bits, security.* / trusted.* xattrs and
/// create device nodes in the share, as a local root could; hosts should
/// mount shared trees nosuid,nodev if host users must be protected from the
/// guest. vfsvm itself never opens special files (OPEN is for regular
/// files only).
///
/// **fds.** What the guest can make the server hold open (files,
/// directories, lock fds, pinned O_PATH fds) is bounded per session below
/// RLIMIT_NOFILE (`PassthroughOptions.maxOpenHandles`); past it the guest
/// gets EMFILE and the server keeps fds of its own.
public final class PassthroughFileSystem: FileSystem {
    public let options: PassthroughOptions
    public let engine: any IOEngine
    let root: FileDescriptor
    let rootKey: InodeKey
    let procSelfFD: FileDescriptor
    let state: Mutex<State>
    /// The DAX window's mapping table, when the server has one
    /// (`attachMappings`): written at most once, before `daxAttached` is
    /// set (release), and never again, so every WRITE, FALLOCATE and
    /// truncate reads it after one acquiring load of the flag instead of
    /// taking a lock (false: no window, nothing to do). (Synchronization's
    /// AtomicLazyReference measured ~570 instructions per load here: its
    /// generic metadata is looked up each time.)
    nonisolated(unsafe) var daxTable: DAXMappings?
    let daxAttached = Atomic<Bool>(false)
    /// Serialises `attachMappings` calls (never taken by requests).
    let daxAttach = Mutex<Void>(())
    /// Whether the root is named by a file handle (inodes below it then
    /// mostly are too), so a LOOKUP tries the table first (`enterHeld`).
    let handlesAtRoot: Bool

    /// Identifies a host inode. Without file handles, inode numbers can be
    /// reused after a delete, so the birth time (where the file system has
    /// one) tells a new inode from the old one.
    struct InodeKey: Hashable {
        let dev: UInt64
        let ino: UInt64
        var birth: Int64 = 0
        func sameInodeNumber(_ o: InodeKey) -> Bool { dev == o.dev && ino == o.ino }
        // One word into the (seeded) hasher instead of three: keys that
        // differ only in birth time are rare (a reused inode number), and
        // equality still compares all three fields.
        func hash(into h: inout Hasher) { h.combine(dev &* 0x9E37_79B9_7F4A_7C15 ^ ino) }
    }

    struct Location: Hashable { let parent: UInt64; let name: [UInt8] }

    struct Inode {
        let key: InodeKey
        let fileType: UInt32
        let handle: KernelFileHandle?
        let pinned: FileDescriptor?
        var lookups: UInt64
        /// Where a handle-less, unpinned entry was last seen.
        var location: Location? = nil
    }

    final class OpenFile: Sendable {
        let fd: FileDescriptor
        let node: UInt64
        let isDirectory: Bool
        /// The (host) uid that opened it, whose share it counts against.
        let uid: UInt32
        let directoryLock = Mutex<Void>(())
        init(fd: FileDescriptor, node: UInt64, isDirectory: Bool, uid: UInt32) {
            self.fd = fd; self.node = node; self.isDirectory = isDirectory; self.uid = uid
        }
    }

    /// An O_PATH fd in the cache and when it was last used. A class, so a
    /// hit updates its stamp after one plain lookup: changing a value in
    /// place through Dictionary's subscript runs a coroutine whose frame
    /// is allocated (two mallocs per GETATTR, measured).
    final class CachedFD {
        let fd: FileDescriptor
        var stamp: UInt64
        init(_ fd: FileDescriptor, _ stamp: UInt64) { self.fd = fd; self.stamp = stamp }
    }

    struct LockKey: Hashable { let node: UInt64; let owner: UInt64 }
    /// A lock owner's fd and the uid whose share it counts against.
    struct LockFD { let fd: FileDescriptor; let uid: UInt32 }

    struct State {
        var inodes: WordTable<Inode> = [:]
        var byKey: [InodeKey: UInt64] = [:]
        var nextNode: UInt64 = 2
        var pathCache: WordTable<CachedFD> = [:]
        var clock: UInt64 = 0
        var files: WordTable<OpenFile> = [:]
        var nextHandle: UInt64 = 1
        var mounts: [Int32: FileDescriptor] = [:]
        var lockFDs: [LockKey: LockFD] = [:]
        /// fds held per uid (handles, handles being opened, lock fds).
        var heldByUID: [UInt32: Int] = [:]
        var session: FUSESession?
        var byLocation: [Location: UInt64] = [:]
        /// fds the guest may make the server hold (see maxOpenHandles).
        var fdBudget = 0
        /// How many O_PATH fds the cache keeps.
        var pathCacheLimit = 1
        /// Handle slots taken by opens still under way.
        var reservedHandles = 0
        /// Entries that pin an O_PATH fd (the root's aside).
        var pinnedFDs = 0
        /// fds held for the guest now, counted against fdBudget.
        var guestFDs: Int { files.count + lockFDs.count + pinnedFDs + reservedHandles }

        /// Whether `uid` may take one more fd of the budget: every uid but
        /// root gets at most half of it, so one user (of a host mount, or of
        /// a multi-user guest) cannot leave the others none (EMFILE/ENOLCK
        /// for everyone else). Root is the host's or the guest's admin.
        func uidMayTake(_ uid: UInt32) -> Bool {
            uid == 0 || heldByUID[uid, default: 0] < max(fdBudget / 2, 1)
        }

        mutating func held(_ uid: UInt32, _ delta: Int) {
            let n = heldByUID[uid, default: 0] + delta
            heldByUID[uid] = n > 0 ? n : nil
        }
    }

    static let rootNode: UInt64 = 1
    static let sIFMT: UInt32 = 0o170000
    static let sIFDIR: UInt32 = 0o040000
    static let sIFREG: UInt32 = 0o100000
    static let sIFLNK: UInt32 = 0o120000

    /// Opens `path` as the shared directory.
    public convenience init(root path: String, options: PassthroughOptions = PassthroughOptions(), engine: any IOEngine = SyncIOEngine()) throws(PassthroughError) {
        let rootFD: FileDescriptor
        do {
            rootFD = try FileDescriptor.open(path, HostFSFlag.path | O_DIRECTORY)
        } catch {
            throw .cannotOpenRoot(path: path, error)
        }
        let procSelfFD: FileDescriptor
        do {
            procSelfFD = try FileDescriptor.open("/proc/self/fd", HostFSFlag.path | O_DIRECTORY)
        } catch {
            throw .cannotOpenProc(error)
        }
        try self.init(rootDirectory: rootFD, procSelfFD: procSelfFD, path: path, options: options, engine: engine)
    }

    /// Serves the directory `rootFD` is open on. A sandboxed server opens it
    /// after entering its sandbox, through the sandbox's root, so that ".."
    /// and a read-only bind mount hold for every *at call made from it and
    /// from the file-handle anchor opened here. `procSelfFD` is a
    /// /proc/self/fd directory; `path` names the share in errors.
    public init(rootDirectory rootFD: FileDescriptor, procSelfFD: FileDescriptor, path: String,
                options: PassthroughOptions = PassthroughOptions(), engine: any IOEngine = SyncIOEngine()) throws(PassthroughError) {
        let st: FileStat
        do { st = try rootFD.stat() } catch { throw .cannotOpenRoot(path: path, error) }
        guard st.isDirectory else { throw .rootNotDirectory(path: path) }
        self.procSelfFD = procSelfFD
        self.root = rootFD
        self.engine = engine
        var options = options
        var handle = options.fileHandles ? try? rootFD.kernelFileHandle() : nil
        // The anchor for open_by_handle_at on the root's mount must not be O_PATH.
        let anchor = try? rootFD.openAt([0x2e], flags: O_RDONLY | O_DIRECTORY)
        if anchor == nil { handle = nil }
        // name_to_handle_at works for anyone, open_by_handle_at only with
        // CAP_DAC_READ_SEARCH: without it (a server that is not root) every
        // inode named by a handle could never be opened again. Such a
        // server names inodes by (parent, name) instead.
        if let h = handle, let anchor, (try? anchor.openByHandle(h, flags: HostFSFlag.path)) == nil {
            if options.requireFileHandles { throw .fileHandlesNotOpenable(path: path) }
            handle = nil
            options.fileHandles = false
        }
        if options.fileHandles, options.requireFileHandles, handle == nil { throw .noFileHandles(path: path) }
        self.options = options
        // Keys of handle-less entries carry the birth time (see InodeKey).
        self.rootKey = InodeKey(dev: st.dev, ino: st.ino, birth: handle == nil ? rootFD.birthTime() ?? 0 : 0)
        self.handlesAtRoot = handle != nil
        var s = State()
        Self.setLimits(&s, options)
        s.inodes[Self.rootNode] = Inode(key: rootKey, fileType: st.fileType, handle: handle, pinned: rootFD, lookups: 1)
        s.byKey[rootKey] = Self.rootNode
        if let handle, let anchor { s.mounts[handle.mountID] = anchor }
        state = Mutex(s)
        // Modes are masked with the umask each request carries (FUSE_DONT_MASK).
        FSCredentials.setUmask(0)
    }

    // MARK: - FileSystem: session

    public var supportedInitFlags: UInt64 { UInt64.max & ~FUSEInitFlag.exportSupport }

    public func initialize(_ session: FUSESession) {
        state.withLock { s in
            s.session = session
            // The fd limit in force now (the sandbox may have raised it).
            Self.setLimits(&s, options)
        }
    }

    // MARK: - The fd budget

    /// fds kept back from the guest for everything else the process opens:
    /// vhost-user sockets and memory regions, the kick/call eventfds of a
    /// queue restart, io_uring rings, /proc, mounts' anchors.
    public static let fdReserve = 64

    /// The guest's share of `softLimit` fds (RLIMIT_NOFILE): the O_PATH
    /// cache gets at most a quarter of them, `fdReserve` stay with the
    /// process, the guest may make the server hold the rest (at least 16).
    public static func fdBudget(softLimit: Int, pathFDCacheSize: Int) -> (guest: Int, pathCache: Int) {
        let cache = max(min(pathFDCacheSize, softLimit / 4), 1)
        return (max(softLimit - cache - fdReserve, 16), cache)
    }

    private static func setLimits(_ s: inout State, _ options: PassthroughOptions) {
        var limit = rlimit()
        let soft = getrlimit(__rlimit_resource_t(RLIMIT_NOFILE.rawValue), &limit) == 0 ? Int(clamping: limit.rlim_cur) : 1024
        let (guest, cache) = fdBudget(softLimit: min(soft, 1 << 24), pathFDCacheSize: options.pathFDCacheSize)
        s.fdBudget = options.maxOpenHandles ?? guest
        s.pathCacheLimit = options.maxOpenHandles == nil ? cache : max(options.pathFDCacheSize, 1)
    }

    /// The session's fd budget now (`maxOpenHandles` or the derived one).
    public var openHandleLimit: Int { state.withLock { $0.fdBudget } }

    /// Open files and directories now.
    public var openHandleCount: Int { state.withLock { $0.files.count } }

    /// Takes a slot of the fd budget before a handle is opened; `register`
    /// fills it, `giveBackHandleSlot` returns it when the open fails.
    func takeHandleSlot(uid: UInt32) throws(FUSEErrno) {
        try state.withLock { s throws(FUSEErrno) in
            guard s.guestFDs < s.fdBudget else { throw FUSEErrno(.EMFILE, "the session's open files are at its limit") }
            guard s.uidMayTake(uid) else { throw FUSEErrno(.EMFILE, "this uid holds its share (half) of the session's open files") }
            s.reservedHandles += 1
            s.held(uid, 1)
        }
    }

    func giveBackHandleSlot(uid: UInt32) {
        state.withLock { $0.reservedHandles -= 1; $0.held(uid, -1) }
    }

    public func destroy() {
        state.withLock { s in
            let rootInode = s.inodes[Self.rootNode]
            s.inodes = [:]
            s.byKey = [:]
            if let rootInode {
                s.inodes[Self.rootNode] = Inode(key: rootInode.key, fileType: rootInode.fileType, handle: rootInode.handle, pinned: rootInode.pinned, lookups: 1)
                s.byKey[rootKey] = Self.rootNode
            }
            s.pathCache = [:]
            s.byLocation = [:]
            s.files = [:]
            s.lockFDs = [:]
            s.heldByUID = [:]
            s.pinnedFDs = 0
            s.session = nil
        }
    }

    var session: FUSESession? { state.withLock { $0.session } }
}

/// Runs host calls (VfsvmSys, which throws `SystemError`) and reports a
/// failure as the errno the client gets.
@inline(__always)
func host<R>(_ body: () throws(SystemError) -> R) throws(FUSEErrno) -> R {
    do { return try body() } catch { throw FUSEErrno(error) }
}
