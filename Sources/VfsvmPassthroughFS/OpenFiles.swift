import Glibc
import VfsvmSys
import VfsvmFUSE
import CVfsvmLinux

// The table of open files and directories (FUSE file handles), and the
// requests that open and release files: OPEN, CREATE, TMPFILE, RELEASE.
extension PassthroughFileSystem {
    /// The FOPEN_* flags of an open: the cache mode's, plus FOPEN_DIRECT_IO
    /// for a guest O_DIRECT open of a file with `allowDirectIO`.
    func openReply(_ handle: UInt64, directory: Bool, guestFlags: UInt32 = 0) -> FUSEOpenReply {
        var flags: UInt32
        switch options.cache {
        case .never: flags = directory ? 0 : UInt32(FOPEN_DIRECT_IO)
        case .auto: flags = 0
        case .always: flags = UInt32(FOPEN_KEEP_CACHE) | (directory ? UInt32(FOPEN_CACHE_DIR) : 0)
        case .metadata: flags = directory ? UInt32(FOPEN_KEEP_CACHE) | UInt32(FOPEN_CACHE_DIR) : UInt32(FOPEN_DIRECT_IO)
        }
        if !directory, options.allowDirectIO, Int32(bitPattern: guestFlags) & HostFSFlag.direct != 0 {
            flags |= UInt32(FOPEN_DIRECT_IO)
        }
        return FUSEOpenReply(handle: handle, flags: flags)
    }

    /// Enters an open fd into the table, filling the slot taken for it
    /// (`takeHandleSlot`); returns its handle.
    func register(_ fd: FileDescriptor, node: UInt64, directory: Bool, uid: UInt32) -> UInt64 {
        state.withLock { s in
            s.reservedHandles -= 1
            let h = s.nextHandle
            s.nextHandle += 1
            s.files[h] = OpenFile(fd: fd, node: node, isDirectory: directory, uid: uid)
            return h
        }
    }

    /// The open regular file behind `handle`, for FUSE passthrough: the
    /// fd OPEN or CREATE opened with the guest's access mode.
    public func backingFile(handle: UInt64) -> (node: UInt64, fd: FileDescriptor)? {
        state.withLock { s in
            guard let f = s.files[handle], !f.isDirectory else { return nil }
            return (f.node, f.fd)
        }
    }

    func file(_ handle: UInt64, directory: Bool? = nil) throws(FUSEErrno) -> OpenFile {
        try state.withLock { s throws(FUSEErrno) -> OpenFile in
            guard let f = s.files[handle], directory == nil || f.isDirectory == directory else {
                throw FUSEErrno(.EBADF, "file handle not open")
            }
            return f
        }
    }

    // MARK: - Files

    /// Guest open flags reduced to what is passed to the host.
    func hostFlags(_ flags: UInt32) -> Int32 {
        let f = Int32(bitPattern: flags)
        // O_DIRECT is dropped unless allowed: guest buffers need not meet
        // its alignment rules. O_NOATIME only where it is kept (see
        // PassthroughOptions.keepNoatime).
        var keep: Int32 = O_ACCMODE | O_APPEND | O_TRUNC | O_NONBLOCK | O_SYNC | O_DSYNC
        if options.keepNoatime { keep |= HostFSFlag.noatime }
        if options.allowDirectIO { keep |= HostFSFlag.direct }
        let writeback = session?.has(FUSEInitFlag.writebackCache) ?? false
        if writeback { keep &= ~O_APPEND }
        var out = f & keep
        if writeback, out & O_ACCMODE == O_WRONLY { out = (out & ~O_ACCMODE) | O_RDWR }
        return out
    }

    public func open(_ ctx: FUSERequestContext, node: UInt64, flags: UInt32, openFlags: UInt32) throws(FUSEErrno) -> FUSEOpenReply {
        try open(ctx, node: node, flags: flags, openFlags: openFlags, asCaller: false)
    }

    /// OPEN runs as vfsvm (the guest kernel checks permissions: virtiofs
    /// mounts use default_permissions); `asCaller` makes the kernel check
    /// them here, for a CREATE that found its name taken.
    func open(_ ctx: FUSERequestContext, node: UInt64, flags: UInt32, openFlags: UInt32, asCaller: Bool) throws(FUSEErrno) -> FUSEOpenReply {
        let type = try fileType(node)
        // Only regular files are opened host-side. A guest kernel opens
        // directories with OPENDIR and handles device nodes, FIFOs and
        // sockets itself; opening them here would hand the guest a host
        // device (mknod c 1 1 → host memory) or block on a FIFO.
        if type == Self.sIFLNK { throw FUSEErrno(.ELOOP, "open: symlink") }
        if type == Self.sIFDIR { throw FUSEErrno(.EISDIR, "open: directory") }
        guard type == Self.sIFREG else { throw FUSEErrno(.EPERM, "open: not a regular file") }
        let hostOpenFlags = hostFlags(flags)
        try takeHandleSlot(uid: ctx.uid)
        let fd: FileDescriptor
        do throws(FUSEErrno) {
            if hostOpenFlags & O_TRUNC != 0 {
                // O_TRUNC empties the file: its DAX mappings go first.
                var opened: FileDescriptor?
                try shrinking(node, to: 0) { () throws(FUSEErrno) in
                    opened = asCaller ? try reopen(node, flags: hostOpenFlags, as: ctx) : try reopen(node, flags: hostOpenFlags)
                }
                guard let opened else { throw FUSEErrno(.EIO, "open: no fd") }
                fd = opened
            } else {
                fd = asCaller ? try reopen(node, flags: hostOpenFlags, as: ctx) : try reopen(node, flags: hostOpenFlags)
            }
            if openFlags & UInt32(FUSE_OPEN_KILL_SUIDGID) != 0, hostOpenFlags & O_TRUNC != 0 { try clearSetID(node, fd: fd) }
        } catch {
            giveBackHandleSlot(uid: ctx.uid)
            throw error
        }
        return openReply(register(fd, node: node, directory: false, uid: ctx.uid), directory: false, guestFlags: flags)
    }

    public func create(_ ctx: FUSERequestContext, parent: UInt64, name: [UInt8], mode: UInt32, umask: UInt32, flags: UInt32, openFlags: UInt32,
                       label: FUSESecurityContext? = nil) throws(FUSEErrno) -> (FUSEEntry, FUSEOpenReply) {
        let dir = try parentDirectory(parent)
        let hostOpenFlags = hostFlags(flags) | O_CREAT | O_EXCL | O_NOFOLLOW
        // A slot first, so a CREATE past the limit makes no file (as a
        // local open(2) at EMFILE creates none).
        try takeHandleSlot(uid: ctx.uid)
        let fd: FileDescriptor
        do {
            // Always O_EXCL host-side, so an existing name is never opened
            // by this path (it could be a FIFO or a device node).
            fd = try FSCredentials.with(uid: ctx.uid, gid: ctx.gid) { () throws(SystemError) -> FileDescriptor in
                try dir.openAt(name, flags: hostOpenFlags, mode: mode_t(mask(mode, umask, in: dir)))
            }
        } catch where error.errno == .EEXIST && Int32(bitPattern: flags) & O_EXCL == 0 {
            giveBackHandleSlot(uid: ctx.uid)  // open() takes its own
            // CREATE without O_EXCL of an existing name (made after the
            // guest's LOOKUP, by the host or another client): open it as OPEN
            // does, regular files only, with CREATE's open flags, but as the
            // caller, whose permissions the guest kernel never checked for
            // a file it did not know.
            let e = try lookupEntry(parentFD: dir, parent: parent, name: name)
            do {
                let o = try open(ctx, node: e.nodeID, flags: flags & ~UInt32(O_CREAT | O_EXCL), openFlags: openFlags, asCaller: true)
                return (e, o)
            } catch {
                forget(nodeID: e.nodeID, count: 1)
                throw error
            }
        } catch {
            giveBackHandleSlot(uid: ctx.uid)
            throw FUSEErrno(error)
        }
        let st: FileStat, node: UInt64
        do throws(FUSEErrno) {
            st = try host { () throws(SystemError) in try fd.stat() }
            do throws(FUSEErrno) {
                try applySecurityContext(label, on: fd)
            } catch {
                removeUnlabelled(dir: dir, name: name, ino: st.ino, directory: false)
                throw error
            }
            node = try enter(fd, st, at: Location(parent: parent, name: name))
        } catch {
            giveBackHandleSlot(uid: ctx.uid)
            throw error
        }
        return (entry(node, st), openReply(register(fd, node: node, directory: false, uid: ctx.uid), directory: false, guestFlags: flags))
    }

    public func tmpfile(_ ctx: FUSERequestContext, parent: UInt64, mode: UInt32, umask: UInt32, flags: UInt32,
                        label: FUSESecurityContext? = nil) throws(FUSEErrno) -> (FUSEEntry, FUSEOpenReply) {
        let dir = try parentDirectory(parent)
        var hostOpenFlags = hostFlags(flags) | HostFSFlag.tmpfile
        if hostOpenFlags & O_ACCMODE == O_RDONLY { hostOpenFlags |= O_RDWR }
        try takeHandleSlot(uid: ctx.uid)
        let fd: FileDescriptor, st: FileStat, node: UInt64
        do {
            (fd, st) = try host { () throws(SystemError) in
                let fd = try FSCredentials.with(uid: ctx.uid, gid: ctx.gid) { () throws(SystemError) -> FileDescriptor in
                    try dir.openAt([0x2e], flags: hostOpenFlags, mode: mode_t(mask(mode, umask, in: dir)))
                }
                return (fd, try fd.stat())
            }
            // Before it has a name anywhere: a failure leaves nothing behind.
            try applySecurityContext(label, on: fd)
            node = try enter(fd, st, pin: true)
        } catch {
            giveBackHandleSlot(uid: ctx.uid)
            throw error
        }
        return (entry(node, st), openReply(register(fd, node: node, directory: false, uid: ctx.uid), directory: false, guestFlags: flags))
    }

    public func release(_ ctx: FUSERequestContext, node: UInt64, handle: UInt64, flags: UInt32, releaseFlags: UInt32, lockOwner: UInt64) throws(FUSEErrno) {
        let f = state.withLock { s -> OpenFile? in
            guard let f = s.files[handle], !f.isDirectory else { return nil }
            s.held(f.uid, -1)
            return s.files.removeValue(forKey: handle)
        }
        guard let f else { throw FUSEErrno(.EBADF, "release: handle not open") }
        if releaseFlags & UInt32(FUSE_RELEASE_FLOCK_UNLOCK) != 0 { try? f.fd.flock(LOCK_UN) }
        if releaseFlags & UInt32(FUSE_RELEASE_FLUSH) != 0 { dropLocks(node: f.node, owner: lockOwner) }
    }
}
