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
    }

    public var cache: Cache = .auto
    /// Serve extended attributes (else ENOSYS, which the kernel remembers).
    public var xattr = true
    /// How many O_PATH fds of inodes are kept open for reuse (the inodes
    /// themselves are named by kernel file handles and cost no fd).
    public var pathFDCacheSize = 512
    /// Name inodes by kernel file handles where the host file system has
    /// them. Off (or on a file system without handles) inodes are named by
    /// (parent node, name) and re-opened by a checked lookup.
    public var fileHandles = true

    public init(cache: Cache = .auto, xattr: Bool = true, pathFDCacheSize: Int = 512, fileHandles: Bool = true) {
        self.cache = cache; self.xattr = xattr; self.pathFDCacheSize = pathFDCacheSize; self.fileHandles = fileHandles
    }
}

/// Failures setting the file system up.
public enum PassthroughError: Error, Equatable {
    case cannotOpenRoot(path: String, SystemError)
    case rootNotDirectory(path: String)
    case cannotOpenProc(SystemError)
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
/// **Credentials.** Creating requests run with the caller's fsuid/fsgid
/// (per thread), so new files get the caller's owner and the group rules
/// of the host (setgid directories); the requested umask is applied by us
/// (FUSE_DONT_MASK; the process umask is set to 0 at init). Other requests
/// run as vfsvm (root): virtiofs guests mount with default_permissions, so
/// the guest kernel checks permissions. A guest root can therefore set
/// setuid bits, security.* / trusted.* xattrs and create device nodes in
/// the share, as a local root could; hosts should mount shared trees
/// nosuid,nodev if host users must be protected from the guest. vfsvm
/// itself never opens special files (OPEN is for regular files only).
public final class PassthroughFileSystem: FileSystem {
    public let options: PassthroughOptions
    public let engine: any IOEngine
    let root: FileDescriptor
    let rootKey: InodeKey
    let procSelfFD: FileDescriptor
    let state: Mutex<State>

    /// Identifies a host inode. Without file handles, inode numbers can be
    /// reused after a delete, so the birth time (where the file system has
    /// one) tells a new inode from the old one.
    struct InodeKey: Hashable {
        let dev: UInt64
        let ino: UInt64
        var birth: Int64 = 0
        func sameInodeNumber(_ o: InodeKey) -> Bool { dev == o.dev && ino == o.ino }
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
        let directoryLock = Mutex<Void>(())
        init(fd: FileDescriptor, node: UInt64, isDirectory: Bool) {
            self.fd = fd; self.node = node; self.isDirectory = isDirectory
        }
    }

    struct LockKey: Hashable { let node: UInt64; let owner: UInt64 }

    struct State {
        var inodes: [UInt64: Inode] = [:]
        var byKey: [InodeKey: UInt64] = [:]
        var nextNode: UInt64 = 2
        var pathCache: [UInt64: (fd: FileDescriptor, stamp: UInt64)] = [:]
        var clock: UInt64 = 0
        var files: [UInt64: OpenFile] = [:]
        var nextHandle: UInt64 = 1
        var mounts: [Int32: FileDescriptor] = [:]
        var lockFDs: [LockKey: FileDescriptor] = [:]
        var session: FUSESession?
        var byLocation: [Location: UInt64] = [:]
    }

    static let rootNode: UInt64 = 1
    static let sIFMT: UInt32 = 0o170000
    static let sIFDIR: UInt32 = 0o040000
    static let sIFREG: UInt32 = 0o100000
    static let sIFLNK: UInt32 = 0o120000

    /// Opens `path` as the shared directory.
    public init(root path: String, options: PassthroughOptions = PassthroughOptions(), engine: any IOEngine = SyncIOEngine()) throws(PassthroughError) {
        let rootFD: FileDescriptor
        do {
            rootFD = try FileDescriptor.open(path, HostFSFlag.path | O_DIRECTORY)
        } catch {
            throw .cannotOpenRoot(path: path, error)
        }
        let st: FileStat
        do { st = try rootFD.stat() } catch { throw .cannotOpenRoot(path: path, error) }
        guard st.isDirectory else { throw .rootNotDirectory(path: path) }
        do {
            procSelfFD = try FileDescriptor.open("/proc/self/fd", HostFSFlag.path | O_DIRECTORY)
        } catch {
            throw .cannotOpenProc(error)
        }
        self.root = rootFD
        self.options = options
        self.engine = engine
        var handle = options.fileHandles ? try? rootFD.kernelFileHandle() : nil
        // The anchor for open_by_handle_at on the root's mount must not be O_PATH.
        let anchor = try? rootFD.openAt([0x2e], flags: O_RDONLY | O_DIRECTORY)
        if anchor == nil { handle = nil }
        // Keys of handle-less entries carry the birth time (see InodeKey).
        self.rootKey = InodeKey(dev: st.dev, ino: st.ino, birth: handle == nil ? rootFD.birthTime() ?? 0 : 0)
        var s = State()
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
        state.withLock { $0.session = session }
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
