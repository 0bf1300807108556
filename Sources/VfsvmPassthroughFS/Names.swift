import Glibc
import VfsvmSys
import VfsvmFUSE

// Names and directories: LOOKUP, MKDIR, MKNOD, SYMLINK, LINK, UNLINK,
// RMDIR, RENAME, READLINK, and OPENDIR / READDIR(PLUS) / RELEASEDIR.
extension PassthroughFileSystem {
    /// Looks `name` up below `parentFD` without following anything and
    /// enters it.
    ///
    /// Where the inode is one the table holds an fd on, one fstatat of the
    /// name answers (`enterHeld`). Without file handles an inode is known by
    /// (st_dev, st_ino, birth time) whether or not an fd is held, so one
    /// statx of the name answers for any inode the table knows
    /// (`enterKnown`): the stat describes what the name is now, and the
    /// match is the same one `enter` would make through an fd. Else the
    /// name is opened (openat2 below the parent), stat'ed through its fd
    /// and entered, and that fd kept in the O_PATH cache. The name is one
    /// component (the server checked: no '/', not "." or ".."), so a stat
    /// of it without following a symlink stays in the parent directory.
    func lookupEntry(parentFD: FileDescriptor, parent: UInt64, name: [UInt8]) throws(FUSEErrno) -> FUSEEntry {
        if handlesAtRoot {
            let st = try host { () throws(SystemError) in try parentFD.statAt(name) }
            if let id = enterHeld(st) { return submount(entry(id, st), st, parentFD: parentFD) }
        } else if !options.fileHandles {
            let (st, birth) = try host { () throws(SystemError) in try parentFD.statWithBirth(at: name) }
            if let id = enterKnown(st, birth: birth, parent: parent, name: name) {
                return submount(entry(id, st), st, parentFD: parentFD)
            }
        }
        return try openAndEnter(parentFD: parentFD, parent: parent, name: name)
    }

    func openAndEnter(parentFD: FileDescriptor, parent: UInt64, name: [UInt8]) throws(FUSEErrno) -> FUSEEntry {
        let (fd, st, birth) = try host { () throws(SystemError) in
            let fd = try parentFD.openAt(name, flags: HostFSFlag.path | O_NOFOLLOW)
            let (st, birth) = try fd.statWithBirth()
            return (fd, st, birth)
        }
        let id = try enter(fd, st, birth: birth, at: Location(parent: parent, name: name), cacheFD: true)
        return submount(entry(id, st), st, parentFD: parentFD)
    }

    /// `e` marked FUSE_ATTR_SUBMOUNT when it is a directory on another file
    /// system than its parent (a mount point inside the share) and the
    /// session announces submounts: the guest then gives it a superblock
    /// (and st_dev) of its own.
    func submount(_ e: FUSEEntry, _ st: FileStat, parentFD: FileDescriptor) -> FUSEEntry {
        guard st.isDirectory, session?.has(FUSEInitFlag.submounts) == true,
              let parentStat = try? parentFD.stat(), parentStat.dev != st.dev else { return e }
        var marked = e
        marked.attributes.flags |= FUSEAttrFlag.submount
        return marked
    }

    /// READDIRPLUS's entry for `e` (read from `directory`, node `parent`),
    /// or nil when the name cannot be looked up now (gone since getdents64):
    /// the kernel then ignores the entry_out. An inode the table holds an
    /// fd on costs one fstatat and no allocation.
    func plusEntry(directory: FileDescriptor, parent: UInt64, _ e: RawDirEntry) -> FUSEEntry? {
        if handlesAtRoot {
            guard let st = try? directory.statAt(cName: e.cName) else { return nil }
            if let id = enterHeld(st) { return submount(entry(id, st), st, parentFD: directory) }
        } else if !options.fileHandles {
            // As in `lookupEntry`: one statx for an inode the table knows.
            guard let (st, birth) = try? directory.statWithBirth(cName: e.cName) else { return nil }
            if let id = enterKnown(st, birth: birth, parent: parent, name: e.name) {
                return submount(entry(id, st), st, parentFD: directory)
            }
        }
        return try? openAndEnter(parentFD: directory, parent: parent, name: Array(e.name))
    }

    /// Whether walking ".." up from `fd` reaches the shared root.
    func isBelowRoot(_ start: FileDescriptor) -> Bool {
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

    public func lookup(_ ctx: FUSERequestContext, parent: UInt64, name: [UInt8]) throws(FUSEErrno) -> FUSEEntry {
        let parentFD = try pathFD(parent)
        guard try fileType(parent) == Self.sIFDIR else { throw FUSEErrno(.ENOTDIR, "lookup: parent is not a directory") }
        if name == [0x2e] || (name == [0x2e, 0x2e] && parent == Self.rootNode) {
            // "." and the root's "..": the directory itself.
            let st = try host { () throws(SystemError) in try parentFD.stat() }
            return entry(try enter(parentFD, st), st)
        }
        if name == [0x2e, 0x2e] {
            let up = try host { () throws(SystemError) in try parentFD.openAt(name, flags: HostFSFlag.path | O_DIRECTORY | O_NOFOLLOW, beneath: false) }
            guard isBelowRoot(up) else { throw FUSEErrno(.EACCES, "lookup ..: leads outside the share") }
            let st = try host { () throws(SystemError) in try up.stat() }
            return entry(try enter(up, st), st)
        }
        return try lookupEntry(parentFD: parentFD, parent: parent, name: name)
    }

    /// The mode a new file below `dir` is made with: the caller's umask
    /// applied (FUSE_DONT_MASK), unless ACLs are on and `dir` has a default
    /// ACL, which the host kernel applies instead.
    func mask(_ mode: UInt32, _ umask: UInt32, in dir: FileDescriptor) -> UInt32 {
        let dontMask = session?.has(FUSEInitFlag.dontMask) ?? false
        if dontMask, options.posixACL, session?.has(FUSEInitFlag.posixACL) == true, hasDefaultACL(dir) { return mode & 0o7777 }
        return (dontMask ? mode & ~umask : mode) & 0o7777
    }

    func hasDefaultACL(_ dir: FileDescriptor) -> Bool {
        let n = try? XattrCall.inDirectory(procSelfFD) { () throws(SystemError) -> Int in
            try XattrCall.get(path: String(dir.rawValue), name: Array("system.posix_acl_default".utf8), size: 0).length
        }
        return (n ?? 0) > 0
    }

    func parentDirectory(_ parent: UInt64) throws(FUSEErrno) -> FileDescriptor {
        let fd = try pathFD(parent)
        guard try fileType(parent) == Self.sIFDIR else { throw FUSEErrno(.ENOTDIR, "parent is not a directory") }
        return fd
    }

    public func mkdir(_ ctx: FUSERequestContext, parent: UInt64, name: [UInt8], mode: UInt32, umask: UInt32, label: FUSESecurityContext? = nil) throws(FUSEErrno) -> FUSEEntry {
        let dir = try parentDirectory(parent)
        try host { () throws(SystemError) in
            try FSCredentials.with(uid: ctx.uid, gid: ctx.gid) { () throws(SystemError) in
                try dir.mkdirAt(name, mode: mode_t(mask(mode, umask, in: dir)))
            }
        }
        return try labelNewName(label, lookupEntry(parentFD: dir, parent: parent, name: name), dir: dir, name: name, directory: true)
    }

    public func mknod(_ ctx: FUSERequestContext, parent: UInt64, name: [UInt8], mode: UInt32, rdev: UInt32, umask: UInt32, label: FUSESecurityContext? = nil) throws(FUSEErrno) -> FUSEEntry {
        let dir = try parentDirectory(parent)
        let type = mode & Self.sIFMT
        try host { () throws(SystemError) in
            try FSCredentials.with(uid: ctx.uid, gid: ctx.gid) { () throws(SystemError) in
                try dir.mknodAt(name, mode: mode_t(type | mask(mode, umask, in: dir)), device: dev_t(rdev))
            }
        }
        return try labelNewName(label, lookupEntry(parentFD: dir, parent: parent, name: name), dir: dir, name: name, directory: false)
    }

    public func symlink(_ ctx: FUSERequestContext, parent: UInt64, name: [UInt8], target: [UInt8], label: FUSESecurityContext? = nil) throws(FUSEErrno) -> FUSEEntry {
        let dir = try parentDirectory(parent)
        try host { () throws(SystemError) in
            try FSCredentials.with(uid: ctx.uid, gid: ctx.gid) { () throws(SystemError) in
                try dir.symlinkAt(name, target: target)
            }
        }
        return try labelNewName(label, lookupEntry(parentFD: dir, parent: parent, name: name), dir: dir, name: name, directory: false)
    }

    public func link(_ ctx: FUSERequestContext, node: UInt64, newParent: UInt64, newName: [UInt8]) throws(FUSEErrno) -> FUSEEntry {
        let dir = try parentDirectory(newParent)
        if try fileType(node) == Self.sIFDIR { throw FUSEErrno(.EPERM, "link: directory") }
        let fd = try pathFD(node)
        try host { () throws(SystemError) in try fd.link(into: dir, as: newName, through: procSelfFD) }
        return try lookupEntry(parentFD: dir, parent: newParent, name: newName)
    }

    public func unlink(_ ctx: FUSERequestContext, parent: UInt64, name: [UInt8]) throws(FUSEErrno) {
        let dir = try parentDirectory(parent)
        try host { () throws(SystemError) in try dir.unlinkAt(name, flags: 0) }
        nameGone(Location(parent: parent, name: name))
    }

    public func rmdir(_ ctx: FUSERequestContext, parent: UInt64, name: [UInt8]) throws(FUSEErrno) {
        let dir = try parentDirectory(parent)
        try host { () throws(SystemError) in try dir.unlinkAt(name, flags: AT_REMOVEDIR) }
        nameGone(Location(parent: parent, name: name))
    }

    func nameGone(_ location: Location) {
        state.withLock { s in
            if let node = s.byLocation[location] { clearLocation(of: node, &s) }
        }
    }

    public func rename(_ ctx: FUSERequestContext, parent: UInt64, name: [UInt8], newParent: UInt64, newName: [UInt8], flags: UInt32) throws(FUSEErrno) {
        let allowed = HostFSFlag.renameNoReplace | HostFSFlag.renameExchange
        guard flags & ~allowed == 0 else { throw FUSEErrno(.EINVAL, "rename: unknown flags") }
        let from = try parentDirectory(parent)
        let to = try parentDirectory(newParent)
        try host { () throws(SystemError) in try from.renameAt(name, to: to, newName, flags: flags) }
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

    public func readlink(_ ctx: FUSERequestContext, node: UInt64) throws(FUSEErrno) -> [UInt8] {
        guard try fileType(node) == Self.sIFLNK else { throw FUSEErrno(.EINVAL, "readlink: not a symlink") }
        let p = try pathFD(node)
        return try host { () throws(SystemError) in try p.readLink() }
    }

    // MARK: - Directories

    public func opendir(_ ctx: FUSERequestContext, node: UInt64, flags: UInt32) throws(FUSEErrno) -> FUSEOpenReply {
        guard try fileType(node) == Self.sIFDIR else { throw FUSEErrno(.ENOTDIR, "opendir: not a directory") }
        try takeHandleSlot(uid: ctx.uid)
        let fd: FileDescriptor
        do { fd = try reopen(node, flags: O_RDONLY | O_DIRECTORY) } catch {
            giveBackHandleSlot(uid: ctx.uid)
            throw error
        }
        return openReply(register(fd, node: node, directory: true, uid: ctx.uid), directory: true)
    }

    public func releasedir(_ ctx: FUSERequestContext, node: UInt64, handle: UInt64) throws(FUSEErrno) {
        let f = state.withLock { s -> OpenFile? in
            guard let f = s.files[handle], f.isDirectory else { return nil }
            s.held(f.uid, -1)
            return s.files.removeValue(forKey: handle)
        }
        guard f != nil else { throw FUSEErrno(.EBADF, "releasedir: handle not open") }
    }

    public func fsyncdir(_ ctx: FUSERequestContext, node: UInt64, handle: UInt64, dataOnly: Bool) throws(FUSEErrno) {
        let f = try file(handle, directory: true)
        try host { () throws(SystemError) in try f.fd.sync(dataOnly: dataOnly) }
    }

    public func readdir(_ ctx: FUSERequestContext, node: UInt64, handle: UInt64, offset: UInt64, into buffer: inout FUSEDirectoryBuffer) throws(FUSEErrno) {
        let f = try file(handle, directory: true)
        // Offsets are the host's d_off cookies, so they stay valid across
        // calls; each READDIR seeks to the cookie it was given.
        try f.directoryLock.withLock { _ throws(FUSEErrno) in
            _ = try host { () throws(SystemError) in try f.fd.seek(to: Int64(bitPattern: offset), whence: SEEK_SET) }
            // A host dirent is about as large as a FUSE dirent but a
            // quarter of a FUSE direntplus: read about as many entries as
            // fit the reply, so few are read twice when the reply fills up.
            // The host's entries land in a temporary (stack) buffer and are
            // used where they lie.
            let hostBuffer = min(max(buffer.plus ? buffer.limit / 4 : buffer.limit, 1024), 65536)
            try withUnsafeTemporaryAllocation(byteCount: hostBuffer, alignment: 8) { raw throws(FUSEErrno) in
                var full = false
                while !full {
                    let n = try host { () throws(SystemError) in try f.fd.readDirectory(into: raw) }
                    if n <= 0 { break }
                    forEachDirEntry(in: UnsafeRawBufferPointer(raw), count: n) { e in
                        guard buffer.fits(nameLength: e.name.count) else { full = true; return false }
                        let fuseEntry = buffer.plus && !e.isDotOrDotDot ? plusEntry(directory: f.fd, parent: f.node, e) : nil
                        let ok = buffer.add(name: e.name, ino: e.ino, type: UInt32(e.type), nextOffset: UInt64(bitPattern: e.nextOffset), entry: fuseEntry)
                        if !ok {
                            if let fuseEntry { forget(nodeID: fuseEntry.nodeID, count: 1) }
                            full = true
                        }
                        return ok
                    }
                    // getdents64 has already moved the position past this batch.
                }
            }
        }
    }
}
