import Glibc
import VfsvmSys
import VfsvmFUSE

// GETATTR, SETATTR, ACCESS and STATFS, and the attribute and entry
// replies built from a host stat.
extension PassthroughFileSystem {
    // MARK: - Replies

    var timeout: FUSETimeout {
        if let t = options.timeout { return t }
        switch options.cache {
        case .never: return .zero
        case .auto: return FUSETimeout(seconds: 1)
        case .always, .metadata: return FUSETimeout(seconds: 86400)
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

    func entry(_ node: UInt64, _ st: FileStat) -> FUSEEntry {
        FUSEEntry(nodeID: node, generation: 0, entryTimeout: timeout, attrTimeout: timeout, attributes: Self.attributes(st))
    }

    // MARK: - Attributes

    public func getattr(_ ctx: FUSERequestContext, node: UInt64, handle: UInt64?) throws(FUSEErrno) -> (FUSEAttributes, FUSETimeout) {
        let st: FileStat
        if let handle, let f = try? file(handle), f.node == node {
            st = try host { () throws(SystemError) in try f.fd.stat() }
        } else {
            let p = try pathFD(node)
            st = try host { () throws(SystemError) in try p.stat() }
        }
        return (Self.attributes(st), timeout)
    }

    func clearSetID(_ node: UInt64, fd: FileDescriptor?) throws(FUSEErrno) {
        let p = try pathFD(node)
        let st = try host { () throws(SystemError) in try p.stat() }
        guard st.isRegular else { return }
        var mode = st.mode & 0o7777
        let had = mode
        mode &= ~UInt32(0o4000)
        if mode & 0o010 != 0 { mode &= ~UInt32(0o2000) }  // S_ISGID only with group exec, as the kernel does
        guard mode != had else { return }
        try host { () throws(SystemError) in
            if let fd { try fd.chmod(mode: mode_t(mode)) } else { try procSelfFD.chmodAt(Array(String(p.rawValue).utf8), mode: mode_t(mode)) }
        }
    }

    public func setattr(_ ctx: FUSERequestContext, node: UInt64, _ c: FUSESetAttributes) throws(FUSEErrno) -> (FUSEAttributes, FUSETimeout) {
        let p = try pathFD(node)
        let type = try fileType(node)
        // FATTR_FH: only a handle of this very node (another node's handle
        // would change that node).
        let open: OpenFile? = c.handle.flatMap { try? file($0, directory: false) }.flatMap { $0.node == node ? $0 : nil }
        if let mode = c.mode {
            guard type != Self.sIFLNK else { throw FUSEErrno(.EOPNOTSUPP, "chmod: symlink") }
            try host { () throws(SystemError) in
                if let open { try open.fd.chmod(mode: mode_t(mode & 0o7777)) } else {
                    try procSelfFD.chmodAt(Array(String(p.rawValue).utf8), mode: mode_t(mode & 0o7777))
                }
            }
        }
        if c.uid != nil || c.gid != nil {
            try host { () throws(SystemError) in try p.chown(uid: c.uid, gid: c.gid) }
        }
        if let size = c.size {
            guard size <= UInt64(Int64.max) else { throw FUSEErrno(.EINVAL, "truncate: size") }
            if type == Self.sIFDIR { throw FUSEErrno(.EISDIR, "truncate: directory") }
            guard type == Self.sIFREG else { throw FUSEErrno(.EINVAL, "truncate: not a regular file") }
            let fd = if let open { open.fd } else { try reopen(node, flags: O_WRONLY | O_NONBLOCK) }
            try shrinking(node, to: size) { () throws(FUSEErrno) in
                try host { () throws(SystemError) in try fd.truncate(to: Int64(size)) }
            }
            grown(node)  // after a truncate up, the DAX mappings show the file up to its new end
        }
        if c.killSUIDGID { try clearSetID(node, fd: open?.fd) }
        if c.size != nil || c.uid != nil || c.gid != nil, type == Self.sIFREG || type == Self.sIFDIR { dropRemappedCapability(open?.fd ?? p) }
        if c.atime != .omit || c.mtime != .omit {
            try host { () throws(SystemError) in try p.setTimes(access: c.atime, modification: c.mtime) }
        }
        return (Self.attributes(try host { () throws(SystemError) in try p.stat() }), timeout)
    }

    // MARK: - File system

    public func statfs(_ ctx: FUSERequestContext, node: UInt64) throws(FUSEErrno) -> FUSEStatFS {
        let p = try pathFD(node)
        let s = try host { () throws(SystemError) in try p.statfs() }
        return FUSEStatFS(blocks: s.blocks, bfree: s.bfree, bavail: s.bavail, files: s.files, ffree: s.ffree,
                          bsize: UInt32(clamping: s.bsize), namelen: UInt32(clamping: s.namemax), frsize: UInt32(clamping: s.frsize))
    }

    public func access(_ ctx: FUSERequestContext, node: UInt64, mask: UInt32) throws(FUSEErrno) {
        let p = try pathFD(node)
        let name = Array(String(p.rawValue).utf8)
        try host { () throws(SystemError) in
            try FSCredentials.with(uid: ctx.uid, gid: ctx.gid) { () throws(SystemError) in
                try procSelfFD.accessAt(name, mode: Int32(bitPattern: mask & 7))
            }
        }
    }
}
