import Glibc
import VfsvmSys
import VfsvmFUSE

// The inode table: node ids to host inodes (kernel file handles or
// (parent, name) locations), lookup counts, and the bounded LRU cache of
// O_PATH fds that operations borrow.
extension PassthroughFileSystem {
    static let stale = FUSEErrno(.ESTALE, "node unknown or forgotten")

    /// An O_PATH fd for `node`.
    func pathFD(_ node: UInt64) throws(FUSEErrno) -> FileDescriptor { try pathFD(node, depth: 0) }

    /// Re-opening by name walks up to the nearest ancestor that is still
    /// open; a deeper walk than this is refused (ELOOP) instead of growing
    /// the stack without bound (a guest can make directories nested
    /// 100,000 deep).
    public static let maxReopenDepth = 1024

    func pathFD(_ node: UInt64, depth: Int) throws(FUSEErrno) -> FileDescriptor {
        enum Plan { case ready(FileDescriptor), reopen(KernelFileHandle, FileDescriptor), lookup(Location, InodeKey, UInt32) }
        if node == Self.rootNode { return root }  // pinned for the server's life
        let plan: Plan = try state.withLock { s throws(FUSEErrno) -> Plan in
            s.clock += 1
            // A cached fd is found and marked used in one probe of one
            // table: an entry is in the cache only while its inode is in
            // the table, unpinned (dropLookups and destroy take both out).
            if let cached = s.pathCache[node] {
                cached.stamp = s.clock
                return .ready(cached.fd)
            }
            guard let inode = s.inodes[node] else { throw Self.stale }
            if let fd = inode.pinned { return .ready(fd) }
            if let handle = inode.handle, let mount = s.mounts[handle.mountID] { return .reopen(handle, mount) }
            if let location = inode.location { return .lookup(location, inode.key, inode.fileType) }
            throw Self.stale
        }
        switch plan {
        case let .ready(fd): return fd
        case let .lookup(location, key, fileType):
            // The parent chain ends at the root, which is pinned; names form
            // a tree, so this recursion is bounded by the directory depth,
            // and by maxReopenDepth.
            guard depth < Self.maxReopenDepth else {
                throw FUSEErrno(.ELOOP, "re-open by name: more than maxReopenDepth uncached ancestors")
            }
            let parentFD = try pathFD(location.parent, depth: depth + 1)
            let fd: FileDescriptor
            do {
                fd = try parentFD.openAt(location.name, flags: HostFSFlag.path | O_NOFOLLOW)
            } catch {
                throw FUSEErrno(error.errno == .ENOENT ? .ESTALE : error.errno, "re-open by name")
            }
            let st = try host { () throws(SystemError) in try fd.stat() }
            // The file type too: where the file system has no birth time, an
            // inode number freed and reused (a file deleted, a device node
            // made) would otherwise pass for the old inode.
            guard InodeKey(dev: st.dev, ino: st.ino, birth: fd.birthTime() ?? 0) == key, st.fileType == fileType else {
                throw FUSEErrno(.ESTALE, "re-open by name: another inode is there now")
            }
            cache(fd, for: node)
            return fd
        case let .reopen(handle, mount):
            let fd: FileDescriptor
            do {
                fd = try mount.openByHandle(handle, flags: HostFSFlag.path | O_NOFOLLOW)
            } catch {
                throw FUSEErrno(error.errno == .ENOENT ? .ESTALE : error.errno, "open_by_handle_at")
            }
            cache(fd, for: node)
            return fd
        }
    }

    func cache(_ fd: FileDescriptor, for node: UInt64) {
        state.withLock { s in
            guard s.inodes[node] != nil else { return }
            s.clock += 1
            s.pathCache[node] = CachedFD(fd, s.clock)
            trimCache(&s)
        }
    }

    func trimCache(_ s: inout State) {
        guard s.pathCache.count > s.pathCacheLimit else { return }
        // Drop the oldest quarter at once so the scan is amortised.
        let drop = max(s.pathCache.count / 4, 1)
        let oldest = s.pathCache.entries.sorted { $0.value.stamp < $1.value.stamp }.prefix(drop)
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

    /// The node of a host inode the table holds an fd on (pinned or in
    /// the cache), found by the (st_dev, st_ino) a stat of one of its names
    /// gave, with one more lookup; nil when the table holds none (then the
    /// caller opens the name and `enter`s it). An open fd keeps its inode
    /// alive, so that number cannot name another inode now: no file handle
    /// needs comparing and no fd of the caller's is needed. Only entries
    /// named by file handles (keys without a birth time) are found here.
    func enterHeld(_ st: FileStat) -> UInt64? {
        state.withLock { s -> UInt64? in
            guard let id = s.byKey[InodeKey(dev: st.dev, ino: st.ino)], let i = s.inodes.index(forKey: id) else { return nil }
            // Each table is probed once; the entry is changed in place
            // through its index (Dictionary's subscript modify copied the
            // Inode out and back, with its retains).
            s.clock += 1
            let cached = Self.touch(s.pathCache[id], s.clock)
            return Self.addLookup(&s.inodes.values[i], fileType: st.fileType, cached: cached) ? id : nil
        }
    }

    /// The node of an inode the table knows by `st`'s (st_dev, st_ino) and
    /// `birth` (a statx of one of its names), with one more lookup, moved to
    /// (`parent`, `name`) as `enter` would; nil (nothing changed) when there
    /// is none. For sessions without file handles, where that key is all
    /// `enter` compares, so no fd of the name is needed to match it. A name
    /// equal to the entry's location costs no allocation (READDIRPLUS calls
    /// this per entry).
    func enterKnown<Name: Collection<UInt8>>(_ st: FileStat, birth: Int64, parent: UInt64, name: Name) -> UInt64? {
        let key = InodeKey(dev: st.dev, ino: st.ino, birth: birth)
        return state.withLock { s -> UInt64? in
            guard let id = s.byKey[key], let i = s.inodes.index(forKey: id), s.inodes.values[i].fileType == st.fileType else { return nil }
            s.inodes.values[i].lookups += 1
            let inode = s.inodes.values[i]
            if inode.pinned == nil, inode.handle == nil,
               inode.location?.parent != parent || !(inode.location?.name.elementsEqual(name) ?? false) {
                setLocation(id, Location(parent: parent, name: Array(name)), &s)
            }
            return id
        }
    }

    /// Marks a cached fd as just used; false when there is none.
    private static func touch(_ entry: CachedFD?, _ clock: UInt64) -> Bool {
        guard let entry else { return false }
        entry.stamp = clock
        return true
    }

    /// One more lookup on a handle-named entry of `fileType` whose fd is
    /// held (pinned, or `cached`); false (nothing changed) otherwise.
    private static func addLookup(_ inode: inout Inode, fileType: UInt32, cached: Bool) -> Bool {
        guard inode.handle != nil, inode.fileType == fileType, cached || inode.pinned != nil else { return false }
        inode.lookups += 1
        return true
    }

    /// Enters the inode `fd` (O_PATH or not) refers to, adding one lookup.
    /// With `cacheFD` (an O_PATH fd the caller opened for this and hands
    /// over) an entry named by a file handle keeps `fd` in the O_PATH cache
    /// when it has none there, so the next LOOKUP or READDIRPLUS of the
    /// name finds it with one stat (`enterHeld`).
    /// `birth` is the inode's birth time where the caller's statx gave it
    /// (saving a statx here).
    func enter(_ fd: FileDescriptor, _ st: FileStat, birth: Int64? = nil, pin: Bool = false, at location: Location? = nil,
               cacheFD: Bool = false) throws(FUSEErrno) -> UInt64 {
        var key = InodeKey(dev: st.dev, ino: st.ino)
        var handle: KernelFileHandle? = pin || !options.fileHandles ? nil : (try? fd.kernelFileHandle())
        if handle == nil { key.birth = birth ?? fd.birthTime() ?? 0 }
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
        if handle == nil, options.fileHandles, options.requireFileHandles, !pin, location != nil {
            throw FUSEErrno(.EOPNOTSUPP, "no file handle for this inode (file handles are mandatory)")
        }
        var pathFD: FileDescriptor? = nil
        let byName = handle == nil && !pin && location != nil
        if handle == nil {
            // An inode the table knows needs no fd of its own: before, every
            // LOOKUP of a known name reopened its fd through /proc/self/fd
            // (a path formatted, an openat and a close) only to drop it.
            let known = state.withLock { s in
                reenter(key, st, handle: nil, fd, byName: byName, location: location, cacheFD: cacheFD, &s)
            }
            if let known { return known }
            // An O_PATH fd: pinned when the entry has neither a handle nor a
            // location (a tmpfile, a ".." lookup), else put in the cache.
            // The caller's own O_PATH fd (`cacheFD`) serves as it is; any
            // other is reopened as O_PATH through /proc/self/fd.
            pathFD = cacheFD ? fd : try host { () throws(SystemError) in
                try procSelfFD.openAt(Array(String(fd.rawValue).utf8), flags: HostFSFlag.path, beneath: false)
            }
        }
        return try state.withLock { s throws(FUSEErrno) in
            // Again: another thread may have entered it meanwhile.
            if let id = reenter(key, st, handle: handle, fd, byName: byName, location: location, cacheFD: cacheFD, &s) {
                return id
            }
            let pinned = byName ? nil : pathFD
            if pinned != nil {
                // A pinned fd lives as long as the entry: it counts against
                // the session's fds like an open file.
                guard s.guestFDs < s.fdBudget else { throw FUSEErrno(.EMFILE, "the session's fds are at its limit") }
                s.pinnedFDs += 1
            }
            let id = s.nextNode
            s.nextNode += 1
            s.inodes[id] = Inode(key: key, fileType: st.fileType, handle: handle, pinned: pinned, lookups: 1)
            s.byKey[key] = id
            if let handle, let anchor, s.mounts[handle.mountID] == nil {
                s.mounts[handle.mountID] = anchor
            }
            if byName, let location, let pathFD {
                setLocation(id, location, &s)
                s.clock += 1
                s.pathCache[id] = CachedFD(pathFD, s.clock)
                trimCache(&s)
            } else if cacheFD, handle != nil {
                s.clock += 1
                s.pathCache[id] = CachedFD(fd, s.clock)
                trimCache(&s)
            }
            return id
        }
    }

    /// The entry `key` names, if the table has one of `st`'s type that
    /// `handle` does not contradict, with one more lookup; a handle-less
    /// one found by name moves to `location`, a handle-named one without a
    /// cached fd keeps `fd` (with `cacheFD`). Nil (nothing changed) when
    /// there is none.
    private func reenter(_ key: InodeKey, _ st: FileStat, handle: KernelFileHandle?, _ fd: FileDescriptor, byName: Bool,
                         location: Location?, cacheFD: Bool, _ s: inout State) -> UInt64? {
        guard let id = s.byKey[key], var inode = s.inodes[id], inode.fileType == st.fileType,
              inode.handle == handle || handle == nil || inode.handle == nil else { return nil }
        inode.lookups += 1
        s.inodes[id] = inode
        if byName, inode.pinned == nil, inode.handle == nil, let location { setLocation(id, location, &s) }
        if cacheFD, let handle, inode.handle == handle, inode.pinned == nil, s.pathCache[id] == nil {
            s.clock += 1
            s.pathCache[id] = CachedFD(fd, s.clock)
            trimCache(&s)
        }
        return id
    }

    /// Records that handle-less `node` is now `location`; it holds one
    /// lookup on the new parent and gives back the one on the old.
    func setLocation(_ node: UInt64, _ location: Location, _ s: inout State) {
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
    func clearLocation(of node: UInt64, _ s: inout State) {
        guard var inode = s.inodes[node], let old = inode.location else { return }
        inode.location = nil
        s.inodes[node] = inode
        if s.byLocation[old] == node { s.byLocation[old] = nil }
        dropLookups(old.parent, 1, &s)
    }

    /// Takes `count` lookups from `node`; an entry at 0 dies and gives back
    /// the lookup it held on its parent, and so on up.
    func dropLookups(_ node: UInt64, _ count: UInt64, _ s: inout State) {
        var node = node
        var count = count
        while node != Self.rootNode, var inode = s.inodes[node] {
            inode.lookups -= min(count, inode.lookups)
            guard inode.lookups == 0 else { s.inodes[node] = inode; return }
            s.inodes[node] = nil
            if inode.pinned != nil { s.pinnedFDs -= 1 }
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

    func fileType(_ node: UInt64) throws(FUSEErrno) -> UInt32 {
        try state.withLock { s throws(FUSEErrno) -> UInt32 in
            guard let i = s.inodes[node] else { throw Self.stale }
            return i.fileType
        }
    }

    /// A new open file description of `node`, opened as the caller: the
    /// kernel checks the inode's permissions against the caller's ids. By
    /// /proc/self/fd/N of its O_PATH fd (open_by_handle_at needs
    /// CAP_DAC_READ_SEARCH, which a non-zero fsuid drops); the process may
    /// always open its own /proc/self/fd entries.
    func reopen(_ node: UInt64, flags: Int32, as ctx: FUSERequestContext) throws(FUSEErrno) -> FileDescriptor {
        let p = try pathFD(node)
        let name = Array(String(p.rawValue).utf8)
        return try host { () throws(SystemError) in
            try FSCredentials.with(uid: ctx.uid, gid: ctx.gid) { () throws(SystemError) in
                try procSelfFD.openAt(name, flags: flags, beneath: false)
            }
        }
    }

    /// A new open file description of `node` (never following a symlink):
    /// open_by_handle_at, or /proc/self/fd/N of its O_PATH fd.
    func reopen(_ node: UInt64, flags: Int32) throws(FUSEErrno) -> FileDescriptor {
        let (handle, mount) = try state.withLock { s throws(FUSEErrno) -> (KernelFileHandle?, FileDescriptor?) in
            guard let i = s.inodes[node] else { throw Self.stale }
            if let h = i.handle { return (h, s.mounts[h.mountID]) }
            return (nil, nil)
        }
        if let handle, let mount {
            do {
                return try mount.openByHandle(handle, flags: flags | O_NOFOLLOW)
            } catch {
                throw FUSEErrno(error.errno == .ENOENT ? .ESTALE : error.errno, "open_by_handle_at")
            }
        }
        let p = try pathFD(node)
        return try host { () throws(SystemError) in try procSelfFD.openAt(Array(String(p.rawValue).utf8), flags: flags, beneath: false) }
    }
}
