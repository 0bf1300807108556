import Glibc
import Synchronization
import VfsvmSys
import VfsvmMemory
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
    private let root: FileDescriptor
    private let rootKey: InodeKey
    private let procSelfFD: FileDescriptor
    private let state: Mutex<State>

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

    private var session: FUSESession? { state.withLock { $0.session } }

    // MARK: - Inode table

    private func stale(_ node: UInt64) -> SystemError { SystemError("node \(node): unknown or forgotten", .ESTALE) }

    /// An O_PATH fd for `node`.
    func pathFD(_ node: UInt64) throws(SystemError) -> FileDescriptor { try pathFD(node, depth: 0) }

    /// Re-opening by name walks up to the nearest ancestor that is still
    /// open; a deeper walk than this is refused (ELOOP) instead of growing
    /// the stack without bound (a guest can make directories nested
    /// 100,000 deep).
    public static let maxReopenDepth = 1024

    private func pathFD(_ node: UInt64, depth: Int) throws(SystemError) -> FileDescriptor {
        enum Plan { case ready(FileDescriptor), reopen(KernelFileHandle, FileDescriptor), lookup(Location, InodeKey) }
        let plan: Plan = try state.withLock { s throws(SystemError) -> Plan in
            guard let inode = s.inodes[node] else { throw stale(node) }
            if let fd = inode.pinned { return .ready(fd) }
            s.clock += 1
            if let cached = s.pathCache[node] {
                s.pathCache[node] = (cached.fd, s.clock)
                return .ready(cached.fd)
            }
            if let handle = inode.handle, let mount = s.mounts[handle.mountID] { return .reopen(handle, mount) }
            if let location = inode.location { return .lookup(location, inode.key) }
            throw stale(node)
        }
        switch plan {
        case let .ready(fd): return fd
        case let .lookup(location, key):
            // The parent chain ends at the root, which is pinned; names form
            // a tree, so this recursion is bounded by the directory depth,
            // and by maxReopenDepth.
            guard depth < Self.maxReopenDepth else {
                throw SystemError("re-open node \(node) by name: more than \(Self.maxReopenDepth) uncached ancestors", .ELOOP)
            }
            let parentFD = try pathFD(location.parent, depth: depth + 1)
            let fd: FileDescriptor
            do {
                fd = try parentFD.openAt(location.name, flags: HostFSFlag.path | O_NOFOLLOW)
            } catch {
                throw SystemError("re-open node \(node) by name", error.errno == .ENOENT ? .ESTALE : error.errno)
            }
            let st = try fd.stat()
            guard InodeKey(dev: st.dev, ino: st.ino, birth: fd.birthTime() ?? 0) == key else {
                throw SystemError("re-open node \(node) by name: another inode is there now", .ESTALE)
            }
            cache(fd, for: node)
            return fd
        case let .reopen(handle, mount):
            let fd: FileDescriptor
            do {
                fd = try mount.openByHandle(handle, flags: HostFSFlag.path | O_NOFOLLOW)
            } catch {
                throw SystemError("open_by_handle_at(node \(node))", error.errno == .ENOENT ? .ESTALE : error.errno)
            }
            cache(fd, for: node)
            return fd
        }
    }

    private func cache(_ fd: FileDescriptor, for node: UInt64) {
        state.withLock { s in
            guard s.inodes[node] != nil else { return }
            s.clock += 1
            s.pathCache[node] = (fd, s.clock)
            trimCache(&s)
        }
    }

    private func trimCache(_ s: inout State) {
        guard s.pathCache.count > max(options.pathFDCacheSize, 1) else { return }
        // Drop the oldest quarter at once so the scan is amortised.
        let drop = max(s.pathCache.count / 4, 1)
        let oldest = s.pathCache.sorted { $0.value.stamp < $1.value.stamp }.prefix(drop)
        for (k, _) in oldest { s.pathCache[k] = nil }
    }

    /// Number of O_PATH fds held for inodes (pinned + cached): for tests of
    /// the fd bound.
    public var heldPathFDCount: Int {
        state.withLock { s in s.pathCache.count + s.inodes.values.filter { $0.pinned != nil }.count }
    }

    /// Number of live inode entries (root included).
    public var inodeCount: Int { state.withLock { $0.inodes.count } }

    /// The lookup count of `node`, nil when it has no entry.
    public func lookupCount(of node: UInt64) -> UInt64? { state.withLock { $0.inodes[node]?.lookups } }

    /// Enters the inode `fd` (O_PATH or not) refers to, adding one lookup.
    private func enter(_ fd: FileDescriptor, _ st: FileStat, pin: Bool = false, at location: Location? = nil) throws(SystemError) -> UInt64 {
        var key = InodeKey(dev: st.dev, ino: st.ino)
        var handle: KernelFileHandle? = pin || !options.fileHandles ? nil : (try? fd.kernelFileHandle())
        if handle == nil { key.birth = fd.birthTime() ?? 0 }
        // open_by_handle_at needs a real (not O_PATH) fd on the handle's
        // mount. The first inode vfsvm meets on a mount is the mount's root
        // directory (mounts are entered through it): open that one.
        var anchor: FileDescriptor? = nil
        if let h = handle, state.withLock({ $0.mounts[h.mountID] == nil }) {
            if st.isDirectory {
                anchor = try? procSelfFD.openAt(Array(String(fd.rawValue).utf8), flags: O_RDONLY | O_DIRECTORY, beneath: false)
            }
            if anchor == nil { handle = nil }
        }
        var pathFD: FileDescriptor? = nil
        let byName = handle == nil && !pin && location != nil
        if handle == nil {
            // An O_PATH fd: pinned when the entry has neither a handle nor a
            // location (a tmpfile, a ".." lookup), else put in the cache.
            pathFD = try procSelfFD.openAt(Array(String(fd.rawValue).utf8), flags: HostFSFlag.path, beneath: false)
        }
        return state.withLock { s in
            if let id = s.byKey[key], var inode = s.inodes[id], inode.handle == handle || handle == nil || inode.handle == nil {
                inode.lookups += 1
                s.inodes[id] = inode
                if byName, inode.pinned == nil, inode.handle == nil, let location { setLocation(id, location, &s) }
                return id
            }
            let id = s.nextNode
            s.nextNode += 1
            s.inodes[id] = Inode(key: key, fileType: st.fileType, handle: handle, pinned: byName ? nil : pathFD, lookups: 1)
            s.byKey[key] = id
            if let handle, let anchor, s.mounts[handle.mountID] == nil {
                s.mounts[handle.mountID] = anchor
            }
            if byName, let location, let pathFD {
                setLocation(id, location, &s)
                s.clock += 1
                s.pathCache[id] = (pathFD, s.clock)
                trimCache(&s)
            }
            return id
        }
    }

    /// Records that handle-less `node` is now `location`; it holds one
    /// lookup on the new parent and gives back the one on the old.
    private func setLocation(_ node: UInt64, _ location: Location, _ s: inout State) {
        guard var inode = s.inodes[node], inode.location != location, s.inodes[location.parent] != nil else { return }
        if let other = s.byLocation[location], other != node { clearLocation(of: other, &s) }
        s.inodes[location.parent]?.lookups += 1
        let old = inode.location
        inode.location = location
        s.inodes[node] = inode
        s.byLocation[location] = node
        if let old {
            if s.byLocation[old] == node { s.byLocation[old] = nil }
            dropLookups(old.parent, 1, &s)
        }
    }

    /// Forgets where `node` is (its name went away).
    private func clearLocation(of node: UInt64, _ s: inout State) {
        guard var inode = s.inodes[node], let old = inode.location else { return }
        inode.location = nil
        s.inodes[node] = inode
        if s.byLocation[old] == node { s.byLocation[old] = nil }
        dropLookups(old.parent, 1, &s)
    }

    /// Takes `count` lookups from `node`; an entry at 0 dies and gives back
    /// the lookup it held on its parent, and so on up.
    private func dropLookups(_ node: UInt64, _ count: UInt64, _ s: inout State) {
        var node = node
        var count = count
        while node != Self.rootNode, var inode = s.inodes[node] {
            inode.lookups -= min(count, inode.lookups)
            guard inode.lookups == 0 else { s.inodes[node] = inode; return }
            s.inodes[node] = nil
            if s.byKey[inode.key] == node { s.byKey[inode.key] = nil }
            s.pathCache[node] = nil
            guard let location = inode.location else { return }
            if s.byLocation[location] == node { s.byLocation[location] = nil }
            node = location.parent
            count = 1
        }
    }

    public func forget(nodeID: UInt64, count: UInt64) {
        guard nodeID != Self.rootNode else { return }
        state.withLock { s in dropLookups(nodeID, count, &s) }
    }

    private func fileType(_ node: UInt64) throws(SystemError) -> UInt32 {
        try state.withLock { s throws(SystemError) -> UInt32 in
            guard let i = s.inodes[node] else { throw stale(node) }
            return i.fileType
        }
    }

    /// A new open file description of `node` (never following a symlink):
    /// open_by_handle_at, or /proc/self/fd/N of its O_PATH fd.
    private func reopen(_ node: UInt64, flags: Int32) throws(SystemError) -> FileDescriptor {
        let (handle, mount) = try state.withLock { s throws(SystemError) -> (KernelFileHandle?, FileDescriptor?) in
            guard let i = s.inodes[node] else { throw stale(node) }
            if let h = i.handle { return (h, s.mounts[h.mountID]) }
            return (nil, nil)
        }
        if let handle, let mount {
            do {
                return try mount.openByHandle(handle, flags: flags | O_NOFOLLOW)
            } catch {
                throw SystemError("open_by_handle_at(node \(node))", error.errno == .ENOENT ? .ESTALE : error.errno)
            }
        }
        let p = try pathFD(node)
        return try procSelfFD.openAt(Array(String(p.rawValue).utf8), flags: flags, beneath: false)
    }

    // MARK: - Replies

    private var timeout: FUSETimeout {
        switch options.cache {
        case .never: return .zero
        case .auto: return FUSETimeout(seconds: 1)
        case .always: return FUSETimeout(seconds: 86400)
        }
    }

    static func attributes(_ st: FileStat) -> FUSEAttributes {
        var a = FUSEAttributes()
        a.ino = st.ino
        a.size = UInt64(max(st.size, 0))
        a.blocks = UInt64(max(st.blocks, 0))
        a.atime = UInt64(bitPattern: Int64(st.atime.tv_sec)); a.atimeNsec = UInt32(truncatingIfNeeded: st.atime.tv_nsec)
        a.mtime = UInt64(bitPattern: Int64(st.mtime.tv_sec)); a.mtimeNsec = UInt32(truncatingIfNeeded: st.mtime.tv_nsec)
        a.ctime = UInt64(bitPattern: Int64(st.ctime.tv_sec)); a.ctimeNsec = UInt32(truncatingIfNeeded: st.ctime.tv_nsec)
        a.mode = st.mode
        a.nlink = UInt32(clamping: st.nlink)
        a.uid = st.uid
        a.gid = st.gid
        a.rdev = UInt32(truncatingIfNeeded: st.rdev)
        a.blksize = UInt32(clamping: st.blksize)
        return a
    }

    private func entry(_ node: UInt64, _ st: FileStat) -> FUSEEntry {
        FUSEEntry(nodeID: node, generation: 0, entryTimeout: timeout, attrTimeout: timeout, attributes: Self.attributes(st))
    }

    private func openReply(_ handle: UInt64, directory: Bool) -> FUSEOpenReply {
        switch options.cache {
        case .never: return FUSEOpenReply(handle: handle, flags: directory ? 0 : UInt32(FOPEN_DIRECT_IO))
        case .auto: return FUSEOpenReply(handle: handle, flags: 0)
        case .always: return FUSEOpenReply(handle: handle, flags: UInt32(FOPEN_KEEP_CACHE) | (directory ? UInt32(FOPEN_CACHE_DIR) : 0))
        }
    }

    private func register(_ fd: FileDescriptor, node: UInt64, directory: Bool) -> UInt64 {
        state.withLock { s in
            let h = s.nextHandle
            s.nextHandle += 1
            s.files[h] = OpenFile(fd: fd, node: node, isDirectory: directory)
            return h
        }
    }

    private func file(_ handle: UInt64, directory: Bool? = nil) throws(SystemError) -> OpenFile {
        try state.withLock { s throws(SystemError) -> OpenFile in
            guard let f = s.files[handle], directory == nil || f.isDirectory == directory else {
                throw SystemError("file handle \(handle): not open", .EBADF)
            }
            return f
        }
    }

    // MARK: - Names

    /// Looks `name` up below `parentFD` without following anything and
    /// enters it.
    private func lookupEntry(parentFD: FileDescriptor, parent: UInt64, name: [UInt8]) throws(SystemError) -> FUSEEntry {
        let fd = try parentFD.openAt(name, flags: HostFSFlag.path | O_NOFOLLOW)
        let st = try fd.stat()
        return entry(try enter(fd, st, at: Location(parent: parent, name: name)), st)
    }

    /// Whether walking ".." up from `fd` reaches the shared root.
    private func isBelowRoot(_ start: FileDescriptor) -> Bool {
        var fd = start
        for _ in 0..<4096 {
            guard let st = try? fd.stat() else { return false }
            if InodeKey(dev: st.dev, ino: st.ino).sameInodeNumber(rootKey) { return true }
            guard let up = try? fd.openAt([0x2e, 0x2e], flags: HostFSFlag.path | O_DIRECTORY | O_NOFOLLOW, beneath: false),
                  let ust = try? up.stat() else { return false }
            if ust.dev == st.dev && ust.ino == st.ino { return false }  // reached "/"
            fd = up
        }
        return false
    }

    public func lookup(_ ctx: FUSERequestContext, parent: UInt64, name: [UInt8]) throws(SystemError) -> FUSEEntry {
        let parentFD = try pathFD(parent)
        guard try fileType(parent) == Self.sIFDIR else { throw SystemError("lookup: parent \(parent) is not a directory", .ENOTDIR) }
        if name == [0x2e] || (name == [0x2e, 0x2e] && parent == Self.rootNode) {
            // "." and the root's "..": the directory itself.
            let st = try parentFD.stat()
            return entry(try enter(parentFD, st), st)
        }
        if name == [0x2e, 0x2e] {
            let up = try parentFD.openAt(name, flags: HostFSFlag.path | O_DIRECTORY | O_NOFOLLOW, beneath: false)
            guard isBelowRoot(up) else { throw SystemError("lookup ..: leads outside the share", .EACCES) }
            let st = try up.stat()
            return entry(try enter(up, st), st)
        }
        return try lookupEntry(parentFD: parentFD, parent: parent, name: name)
    }

    private func mask(_ mode: UInt32, _ umask: UInt32) -> UInt32 {
        let dontMask = session?.has(FUSEInitFlag.dontMask) ?? false
        return (dontMask ? mode & ~umask : mode) & 0o7777
    }

    private func parentDirectory(_ parent: UInt64) throws(SystemError) -> FileDescriptor {
        let fd = try pathFD(parent)
        guard try fileType(parent) == Self.sIFDIR else { throw SystemError("parent \(parent) is not a directory", .ENOTDIR) }
        return fd
    }

    public func mkdir(_ ctx: FUSERequestContext, parent: UInt64, name: [UInt8], mode: UInt32, umask: UInt32) throws(SystemError) -> FUSEEntry {
        let dir = try parentDirectory(parent)
        try FSCredentials.with(uid: ctx.uid, gid: ctx.gid) { () throws(SystemError) in
            try dir.mkdirAt(name, mode: mode_t(mask(mode, umask)))
        }
        return try lookupEntry(parentFD: dir, parent: parent, name: name)
    }

    public func mknod(_ ctx: FUSERequestContext, parent: UInt64, name: [UInt8], mode: UInt32, rdev: UInt32, umask: UInt32) throws(SystemError) -> FUSEEntry {
        let dir = try parentDirectory(parent)
        let type = mode & Self.sIFMT
        try FSCredentials.with(uid: ctx.uid, gid: ctx.gid) { () throws(SystemError) in
            try dir.mknodAt(name, mode: mode_t(type | mask(mode, umask)), device: dev_t(rdev))
        }
        return try lookupEntry(parentFD: dir, parent: parent, name: name)
    }

    public func symlink(_ ctx: FUSERequestContext, parent: UInt64, name: [UInt8], target: [UInt8]) throws(SystemError) -> FUSEEntry {
        let dir = try parentDirectory(parent)
        try FSCredentials.with(uid: ctx.uid, gid: ctx.gid) { () throws(SystemError) in
            try dir.symlinkAt(name, target: target)
        }
        return try lookupEntry(parentFD: dir, parent: parent, name: name)
    }

    public func link(_ ctx: FUSERequestContext, node: UInt64, newParent: UInt64, newName: [UInt8]) throws(SystemError) -> FUSEEntry {
        let dir = try parentDirectory(newParent)
        if try fileType(node) == Self.sIFDIR { throw SystemError("link: directory", .EPERM) }
        let fd = try pathFD(node)
        try fd.link(into: dir, as: newName)
        return try lookupEntry(parentFD: dir, parent: newParent, name: newName)
    }

    public func unlink(_ ctx: FUSERequestContext, parent: UInt64, name: [UInt8]) throws(SystemError) {
        try parentDirectory(parent).unlinkAt(name, flags: 0)
        nameGone(Location(parent: parent, name: name))
    }

    public func rmdir(_ ctx: FUSERequestContext, parent: UInt64, name: [UInt8]) throws(SystemError) {
        try parentDirectory(parent).unlinkAt(name, flags: AT_REMOVEDIR)
        nameGone(Location(parent: parent, name: name))
    }

    private func nameGone(_ location: Location) {
        state.withLock { s in
            if let node = s.byLocation[location] { clearLocation(of: node, &s) }
        }
    }

    public func rename(_ ctx: FUSERequestContext, parent: UInt64, name: [UInt8], newParent: UInt64, newName: [UInt8], flags: UInt32) throws(SystemError) {
        let allowed = HostFSFlag.renameNoReplace | HostFSFlag.renameExchange
        guard flags & ~allowed == 0 else { throw SystemError("rename: flags \(flags)", .EINVAL) }
        let from = try parentDirectory(parent)
        let to = try parentDirectory(newParent)
        try from.renameAt(name, to: to, newName, flags: flags)
        let old = Location(parent: parent, name: name), new = Location(parent: newParent, name: newName)
        state.withLock { s in
            let moved = s.byLocation[old], target = s.byLocation[new]
            if flags & HostFSFlag.renameExchange != 0 {
                if let moved { clearLocation(of: moved, &s) }
                if let target { clearLocation(of: target, &s) }
                if let moved { setLocation(moved, new, &s) }
                if let target { setLocation(target, old, &s) }
            } else {
                if let target { clearLocation(of: target, &s) }
                if let moved { setLocation(moved, new, &s) }
            }
        }
    }

    public func readlink(_ ctx: FUSERequestContext, node: UInt64) throws(SystemError) -> [UInt8] {
        guard try fileType(node) == Self.sIFLNK else { throw SystemError("readlink: not a symlink", .EINVAL) }
        return try pathFD(node).readLink()
    }

    // MARK: - Attributes

    public func getattr(_ ctx: FUSERequestContext, node: UInt64, handle: UInt64?) throws(SystemError) -> (FUSEAttributes, FUSETimeout) {
        let st: FileStat
        if let handle, let f = try? file(handle), f.node == node {
            st = try f.fd.stat()
        } else {
            st = try pathFD(node).stat()
        }
        return (Self.attributes(st), timeout)
    }

    private func clearSetID(_ node: UInt64, fd: FileDescriptor?) throws(SystemError) {
        let p = try pathFD(node)
        let st = try p.stat()
        guard st.isRegular else { return }
        var mode = st.mode & 0o7777
        let had = mode
        mode &= ~UInt32(0o4000)
        if mode & 0o010 != 0 { mode &= ~UInt32(0o2000) }  // S_ISGID only with group exec, as the kernel does
        guard mode != had else { return }
        if let fd { try fd.chmod(mode: mode_t(mode)) } else { try procSelfFD.chmodAt(Array(String(p.rawValue).utf8), mode: mode_t(mode)) }
    }

    public func setattr(_ ctx: FUSERequestContext, node: UInt64, _ c: FUSESetAttributes) throws(SystemError) -> (FUSEAttributes, FUSETimeout) {
        let p = try pathFD(node)
        let type = try fileType(node)
        // FATTR_FH: only a handle of this very node (another node's handle
        // would change that node).
        let open: OpenFile? = c.handle.flatMap { try? file($0, directory: false) }.flatMap { $0.node == node ? $0 : nil }
        if let mode = c.mode {
            guard type != Self.sIFLNK else { throw SystemError("chmod: symlink", .EOPNOTSUPP) }
            if let open { try open.fd.chmod(mode: mode_t(mode & 0o7777)) } else {
                try procSelfFD.chmodAt(Array(String(p.rawValue).utf8), mode: mode_t(mode & 0o7777))
            }
        }
        if c.uid != nil || c.gid != nil {
            try p.chown(uid: c.uid, gid: c.gid)
        }
        if let size = c.size {
            guard size <= UInt64(Int64.max) else { throw SystemError("truncate: size", .EINVAL) }
            if type == Self.sIFDIR { throw SystemError("truncate: directory", .EISDIR) }
            guard type == Self.sIFREG else { throw SystemError("truncate: not a regular file", .EINVAL) }
            if let open { try open.fd.truncate(to: Int64(size)) } else {
                try reopen(node, flags: O_WRONLY | O_NONBLOCK).truncate(to: Int64(size))
            }
        }
        if c.killSUIDGID { try clearSetID(node, fd: open?.fd) }
        if c.atime != .omit || c.mtime != .omit {
            try p.setTimes(access: c.atime, modification: c.mtime)
        }
        return (Self.attributes(try p.stat()), timeout)
    }

    // MARK: - Files

    /// Guest open flags reduced to what is passed to the host.
    private func hostFlags(_ flags: UInt32) -> Int32 {
        let f = Int32(bitPattern: flags)
        // O_DIRECT is dropped: guest buffers need not meet its alignment rules.
        var keep: Int32 = O_ACCMODE | O_APPEND | O_TRUNC | O_NONBLOCK | O_SYNC | O_DSYNC | HostFSFlag.noatime
        let writeback = session?.has(FUSEInitFlag.writebackCache) ?? false
        if writeback { keep &= ~O_APPEND }
        var out = f & keep
        if writeback, out & O_ACCMODE == O_WRONLY { out = (out & ~O_ACCMODE) | O_RDWR }
        return out
    }

    public func open(_ ctx: FUSERequestContext, node: UInt64, flags: UInt32, openFlags: UInt32) throws(SystemError) -> FUSEOpenReply {
        let type = try fileType(node)
        // Only regular files are opened host-side. A guest kernel opens
        // directories with OPENDIR and handles device nodes, FIFOs and
        // sockets itself; opening them here would hand the guest a host
        // device (mknod c 1 1 → host memory) or block on a FIFO.
        if type == Self.sIFLNK { throw SystemError("open: symlink", .ELOOP) }
        if type == Self.sIFDIR { throw SystemError("open: directory", .EISDIR) }
        guard type == Self.sIFREG else { throw SystemError("open: not a regular file", .EPERM) }
        let host = hostFlags(flags)
        let fd = try reopen(node, flags: host)
        if openFlags & UInt32(FUSE_OPEN_KILL_SUIDGID) != 0, host & O_TRUNC != 0 { try clearSetID(node, fd: fd) }
        return openReply(register(fd, node: node, directory: false), directory: false)
    }

    public func create(_ ctx: FUSERequestContext, parent: UInt64, name: [UInt8], mode: UInt32, umask: UInt32, flags: UInt32) throws(SystemError) -> (FUSEEntry, FUSEOpenReply) {
        let dir = try parentDirectory(parent)
        let host = hostFlags(flags) | O_CREAT | O_EXCL | O_NOFOLLOW
        do {
            // Always O_EXCL host-side, so an existing name is never opened
            // by this path (it could be a FIFO or a device node).
            let fd = try FSCredentials.with(uid: ctx.uid, gid: ctx.gid) { () throws(SystemError) -> FileDescriptor in
                try dir.openAt(name, flags: host, mode: mode_t(mask(mode, umask)))
            }
            let st = try fd.stat()
            let node = try enter(fd, st, at: Location(parent: parent, name: name))
            return (entry(node, st), openReply(register(fd, node: node, directory: false), directory: false))
        } catch where error.errno == .EEXIST && Int32(bitPattern: flags) & O_EXCL == 0 {
            // CREATE without O_EXCL of an existing name: open it as OPEN does.
            let e = try lookupEntry(parentFD: dir, parent: parent, name: name)
            do {
                let o = try open(ctx, node: e.nodeID, flags: flags & ~UInt32(O_CREAT | O_EXCL), openFlags: 0)
                return (e, o)
            } catch {
                forget(nodeID: e.nodeID, count: 1)
                throw error
            }
        }
    }

    public func tmpfile(_ ctx: FUSERequestContext, parent: UInt64, mode: UInt32, umask: UInt32, flags: UInt32) throws(SystemError) -> (FUSEEntry, FUSEOpenReply) {
        let dir = try parentDirectory(parent)
        var host = hostFlags(flags) | HostFSFlag.tmpfile
        if host & O_ACCMODE == O_RDONLY { host |= O_RDWR }
        let fd = try FSCredentials.with(uid: ctx.uid, gid: ctx.gid) { () throws(SystemError) -> FileDescriptor in
            try dir.openAt([0x2e], flags: host, mode: mode_t(mask(mode, umask)))
        }
        let st = try fd.stat()
        let node = try enter(fd, st, pin: true)
        return (entry(node, st), openReply(register(fd, node: node, directory: false), directory: false))
    }

    public func read(_ ctx: FUSERequestContext, node: UInt64, handle: UInt64, offset: UInt64, size: Int, into reply: some ScatterGatherList, at replyOffset: Int) throws(SystemError) -> Int {
        let f = try file(handle, directory: false)
        return try engine.read(f.fd, at: Int64(offset), into: reply, offset: replyOffset, count: size)
    }

    public func write(_ ctx: FUSERequestContext, node: UInt64, handle: UInt64, offset: UInt64, size: Int, writeFlags: UInt32, from request: some ScatterGatherList, at requestOffset: Int) throws(SystemError) -> Int {
        let f = try file(handle, directory: false)
        if writeFlags & UInt32(FUSE_WRITE_KILL_SUIDGID) != 0 { try clearSetID(f.node, fd: f.fd) }
        return try engine.write(f.fd, at: Int64(offset), from: request, offset: requestOffset, count: size)
    }

    private func dropLocks(node: UInt64, owner: UInt64) {
        state.withLock { s in s.lockFDs[LockKey(node: node, owner: owner)] = nil }
    }

    public func flush(_ ctx: FUSERequestContext, node: UInt64, handle: UInt64, lockOwner: UInt64) throws(SystemError) {
        let f = try file(handle, directory: false)
        dropLocks(node: f.node, owner: lockOwner)
    }

    public func release(_ ctx: FUSERequestContext, node: UInt64, handle: UInt64, flags: UInt32, releaseFlags: UInt32, lockOwner: UInt64) throws(SystemError) {
        let f = state.withLock { s -> OpenFile? in
            guard let f = s.files[handle], !f.isDirectory else { return nil }
            return s.files.removeValue(forKey: handle)
        }
        guard let f else { throw SystemError("release: handle \(handle) not open", .EBADF) }
        if releaseFlags & UInt32(FUSE_RELEASE_FLOCK_UNLOCK) != 0 { try? f.fd.flock(LOCK_UN) }
        if releaseFlags & UInt32(FUSE_RELEASE_FLUSH) != 0 { dropLocks(node: f.node, owner: lockOwner) }
    }

    public func fsync(_ ctx: FUSERequestContext, node: UInt64, handle: UInt64, dataOnly: Bool) throws(SystemError) {
        try engine.sync(file(handle, directory: false).fd, dataOnly: dataOnly)
    }

    public func fallocate(_ ctx: FUSERequestContext, node: UInt64, handle: UInt64, offset: UInt64, length: UInt64, mode: UInt32) throws(SystemError) {
        try engine.allocate(file(handle, directory: false).fd, mode: Int32(bitPattern: mode), offset: Int64(offset), length: Int64(length))
    }

    public func lseek(_ ctx: FUSERequestContext, node: UInt64, handle: UInt64, offset: UInt64, whence: UInt32) throws(SystemError) -> UInt64 {
        let f = try file(handle, directory: false)
        let w = Int32(bitPattern: whence)
        guard w == SEEK_SET || w == SEEK_END || w == HostFSFlag.seekData || w == HostFSFlag.seekHole else {
            throw SystemError("lseek: whence \(whence)", .EINVAL)
        }
        return UInt64(try f.fd.seek(to: Int64(offset), whence: w))
    }

    public func copyFileRange(_ ctx: FUSERequestContext, node: UInt64, handleIn: UInt64, offsetIn: UInt64, nodeOut: UInt64, handleOut: UInt64, offsetOut: UInt64, length: UInt64, flags: UInt64) throws(SystemError) -> Int {
        guard flags == 0 else { throw SystemError("copy_file_range: flags", .EINVAL) }
        let i = try file(handleIn, directory: false), o = try file(handleOut, directory: false)
        return try i.fd.copyRange(from: Int64(offsetIn), to: o.fd, at: Int64(offsetOut), length: Int(min(length, 1 << 30)), flags: 0)
    }

    // MARK: - Directories

    public func opendir(_ ctx: FUSERequestContext, node: UInt64, flags: UInt32) throws(SystemError) -> FUSEOpenReply {
        guard try fileType(node) == Self.sIFDIR else { throw SystemError("opendir: not a directory", .ENOTDIR) }
        let fd = try reopen(node, flags: O_RDONLY | O_DIRECTORY)
        return openReply(register(fd, node: node, directory: true), directory: true)
    }

    public func releasedir(_ ctx: FUSERequestContext, node: UInt64, handle: UInt64) throws(SystemError) {
        let f = state.withLock { s -> OpenFile? in
            guard let f = s.files[handle], f.isDirectory else { return nil }
            return s.files.removeValue(forKey: handle)
        }
        guard f != nil else { throw SystemError("releasedir: handle \(handle) not open", .EBADF) }
    }

    public func fsyncdir(_ ctx: FUSERequestContext, node: UInt64, handle: UInt64, dataOnly: Bool) throws(SystemError) {
        try file(handle, directory: true).fd.sync(dataOnly: dataOnly)
    }

    public func readdir(_ ctx: FUSERequestContext, node: UInt64, handle: UInt64, offset: UInt64, into buffer: inout FUSEDirectoryBuffer) throws(SystemError) {
        let f = try file(handle, directory: true)
        // Offsets are the host's d_off cookies, so they stay valid across
        // calls; each READDIR seeks to the cookie it was given.
        try f.directoryLock.withLock { _ throws(SystemError) in
            _ = try f.fd.seek(to: Int64(bitPattern: offset), whence: SEEK_SET)
            // A host dirent is about as large as a FUSE dirent but a
            // quarter of a FUSE direntplus: read about as many entries as
            // fit the reply, so few are read twice when the reply fills up.
            let hostBuffer = min(max(buffer.plus ? buffer.limit / 4 : buffer.limit, 1024), 65536)
            outer: while true {
                let batch = try f.fd.readDirectory(bufferSize: hostBuffer)
                if batch.isEmpty { break }
                for e in batch {
                    guard buffer.fits(nameLength: e.name.count) else { break outer }
                    let isDot = e.name == [0x2e] || e.name == [0x2e, 0x2e]
                    var fuseEntry: FUSEEntry? = nil
                    if buffer.plus, !isDot {
                        fuseEntry = try? lookupEntry(parentFD: f.fd, parent: f.node, name: e.name)
                    }
                    let ok = buffer.add(name: e.name, ino: e.ino, type: UInt32(e.type), nextOffset: UInt64(bitPattern: e.nextOffset), entry: fuseEntry)
                    if !ok {
                        if let fuseEntry { forget(nodeID: fuseEntry.nodeID, count: 1) }
                        break outer
                    }
                }
                // getdents64 has already moved the position past this batch.
            }
        }
    }

    // MARK: - File system

    public func statfs(_ ctx: FUSERequestContext, node: UInt64) throws(SystemError) -> FUSEStatFS {
        let s = try pathFD(node).statfs()
        return FUSEStatFS(blocks: s.blocks, bfree: s.bfree, bavail: s.bavail, files: s.files, ffree: s.ffree,
                          bsize: UInt32(clamping: s.bsize), namelen: UInt32(clamping: s.namemax), frsize: UInt32(clamping: s.frsize))
    }

    public func syncfs(_ ctx: FUSERequestContext, node: UInt64) throws(SystemError) {
        try reopen(Self.rootNode, flags: O_RDONLY | O_DIRECTORY).syncFileSystem()
    }

    public func access(_ ctx: FUSERequestContext, node: UInt64, mask: UInt32) throws(SystemError) {
        let p = try pathFD(node)
        let name = Array(String(p.rawValue).utf8)
        try FSCredentials.with(uid: ctx.uid, gid: ctx.gid) { () throws(SystemError) in
            try procSelfFD.accessAt(name, mode: Int32(bitPattern: mask & 7))
        }
    }

    // MARK: - Extended attributes

    private func xattrPath(_ node: UInt64) throws(SystemError) -> (String, FileDescriptor) {
        guard options.xattr else { throw SystemError("xattr: disabled", .ENOSYS) }
        let p = try pathFD(node)
        // Relative to procSelfFD (see XattrCall.inDirectory): no absolute
        // /proc path, which the sandbox hides.
        return (String(p.rawValue), p)
    }

    public func setxattr(_ ctx: FUSERequestContext, node: UInt64, name: [UInt8], value: [UInt8], flags: UInt32) throws(SystemError) {
        let (path, keep) = try xattrPath(node)
        try withExtendedLifetime(keep) { () throws(SystemError) in
            try XattrCall.inDirectory(procSelfFD) { () throws(SystemError) in
                try XattrCall.set(path: path, name: name, value: value, flags: Int32(bitPattern: flags & 3))
            }
        }
    }

    public func getxattr(_ ctx: FUSERequestContext, node: UInt64, name: [UInt8], size: Int) throws(SystemError) -> FUSEXattrReply {
        let (path, keep) = try xattrPath(node)
        return try withExtendedLifetime(keep) { () throws(SystemError) -> FUSEXattrReply in
            let r = try XattrCall.inDirectory(procSelfFD) { () throws(SystemError) in
                try XattrCall.get(path: path, name: name, size: size)
            }
            return size == 0 ? .size(r.length) : .data(r.value)
        }
    }

    public func listxattr(_ ctx: FUSERequestContext, node: UInt64, size: Int) throws(SystemError) -> FUSEXattrReply {
        let (path, keep) = try xattrPath(node)
        return try withExtendedLifetime(keep) { () throws(SystemError) -> FUSEXattrReply in
            let r = try XattrCall.inDirectory(procSelfFD) { () throws(SystemError) in
                try XattrCall.list(path: path, size: size)
            }
            return size == 0 ? .size(r.length) : .data(r.value)
        }
    }

    public func removexattr(_ ctx: FUSERequestContext, node: UInt64, name: [UInt8]) throws(SystemError) {
        let (path, keep) = try xattrPath(node)
        try withExtendedLifetime(keep) { () throws(SystemError) in
            try XattrCall.inDirectory(procSelfFD) { () throws(SystemError) in
                try XattrCall.remove(path: path, name: name)
            }
        }
    }

    // MARK: - Locks

    static let offsetMax: UInt64 = UInt64(Int64.max)

    /// At most this many (node, owner) lock fds are kept; a new owner past
    /// it gets ENOLCK. An owner's fd lives until FLUSH/RELEASE of that
    /// owner or DESTROY, so without a bound a guest inventing owners would
    /// use up the host's fds.
    public static let maxLockFDs = 4096

    /// The OFD-lock fd of (node, owner), opened on first use. With
    /// `keep: false` an owner that has none gets a temporary fd that is not
    /// remembered (GETLK and unlocks: an owner without an fd holds no lock).
    private func lockFD(node: UInt64, owner: UInt64, keep: Bool = true) throws(SystemError) -> FileDescriptor {
        let key = LockKey(node: node, owner: owner)
        let (existing, count) = state.withLock { ($0.lockFDs[key], $0.lockFDs.count) }
        if let existing { return existing }
        if keep, count >= Self.maxLockFDs { throw SystemError("lock: \(count) lock owners already", .ENOLCK) }
        guard try fileType(node) == Self.sIFREG else { throw SystemError("lock: not a regular file", .EINVAL) }
        let fd: FileDescriptor
        do { fd = try reopen(node, flags: O_RDWR | O_NONBLOCK) } catch {
            fd = try reopen(node, flags: O_RDONLY | O_NONBLOCK)
        }
        guard keep else { return fd }
        return state.withLock { s in
            if let existing = s.lockFDs[key] { return existing }
            s.lockFDs[key] = fd
            return fd
        }
    }

    private func range(_ l: FUSEFileLock) throws(SystemError) -> (start: Int64, length: Int64) {
        guard l.start <= Self.offsetMax else { throw SystemError("lock: start", .EINVAL) }
        if l.end >= Self.offsetMax { return (Int64(l.start), 0) }
        guard l.end >= l.start else { throw SystemError("lock: end before start", .EINVAL) }
        return (Int64(l.start), Int64(l.end - l.start + 1))
    }

    public func getlk(_ ctx: FUSERequestContext, node: UInt64, handle: UInt64, owner: UInt64, lock: FUSEFileLock) throws(SystemError) -> FUSEFileLock {
        guard lock.type == UInt32(F_RDLCK) || lock.type == UInt32(F_WRLCK) else { throw SystemError("getlk: type", .EINVAL) }
        let fd = try lockFD(node: node, owner: owner, keep: false)
        let (start, length) = try range(lock)
        let r = try fd.ofdLock(.get, type: Int16(lock.type), start: start, length: length)
        if r.type == Int16(F_UNLCK) { return FUSEFileLock(start: lock.start, end: lock.end, type: UInt32(F_UNLCK), pid: 0) }
        let from = UInt64(clamping: r.start)
        let end = r.length <= 0 ? Self.offsetMax : min(from &+ UInt64(r.length) &- 1, Self.offsetMax)
        return FUSEFileLock(start: from, end: end, type: UInt32(clamping: r.type), pid: r.pid > 0 ? UInt32(r.pid) : 0)
    }

    public func setlk(_ ctx: FUSERequestContext, node: UInt64, handle: UInt64, owner: UInt64, lock: FUSEFileLock, wait: Bool, flock: Bool) throws(SystemError) {
        let type = Int32(bitPattern: lock.type)
        guard type == F_RDLCK || type == F_WRLCK || type == F_UNLCK else { throw SystemError("setlk: type", .EINVAL) }
        if flock {
            let f = try file(handle, directory: nil)
            var op: Int32 = type == F_RDLCK ? LOCK_SH : type == F_WRLCK ? LOCK_EX : LOCK_UN
            if !wait { op |= LOCK_NB }
            do { try f.fd.flock(op) } catch where error.errno == .EWOULDBLOCK {
                throw SystemError("flock", .EAGAIN)
            }
            return
        }
        let fd = try lockFD(node: node, owner: owner, keep: type != F_UNLCK)
        let (start, length) = try range(lock)
        _ = try fd.ofdLock(wait ? .setWait : .set, type: Int16(type), start: start, length: length)
    }
}

extension Errno {
    static let EWOULDBLOCK = Errno.EAGAIN
}
