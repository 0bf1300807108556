import Glibc
import VfsvmSys
import VfsvmFUSE
import CVfsvmLinux

// DAX: the files SETUPMAPPING maps into the window, and the requests that
// shrink a file, which must first take its mapped pages past the new end
// out of the window (DAXMappings: a mapped page past EOF would SIGBUS).
extension PassthroughFileSystem {
    public func attachMappings(_ mappings: DAXMappings) {
        dax.withLock { $0 = mappings }
    }

    public func withMappableFile(_ ctx: FUSERequestContext, node: UInt64, handle: UInt64, write: Bool,
                                 _ body: (DAXMappings.OpenFile) throws(SystemError) -> Void) throws(FUSEErrno) {
        let fd: FileDescriptor
        var isDirectory = false
        var open: OpenFile?
        if handle == UInt64.max {
            // Linux sends no handle: the node itself, regular files only
            // (opening anything else here could block or reach a device).
            let type = try fileType(node)
            guard type == Self.sIFREG else { throw FUSEErrno(.ENODEV, "SETUPMAPPING: not a regular file") }
            fd = try reopen(node, flags: (write ? O_RDWR : O_RDONLY) | O_NONBLOCK)
        } else {
            let f = try file(handle)
            open = f
            fd = f.fd
            isDirectory = f.isDirectory
        }
        // `open` keeps the handle's fd open while it is mapped, whatever a
        // RELEASE on another queue does meanwhile.
        try withExtendedLifetime(open) { () throws(FUSEErrno) in
            let st = try host { () throws(SystemError) in try fd.stat() }
            let access = vfsvm_fcntl_int(fd.rawValue, F_GETFL, 0) & O_ACCMODE
            let file = DAXMappings.OpenFile(
                fd: fd.rawValue, key: DAXMappings.FileKey(device: st.dev, inode: st.ino),
                isRegular: st.isRegular && !isDirectory, openForWriting: access == O_RDWR, size: UInt64(max(st.size, 0)))
            try host { () throws(SystemError) in try body(file) }
        }
    }

    /// Runs `shrink`, which makes `node` at most `size` bytes long, after
    /// the DAX window's mappings of it past `size` became zero pages and
    /// under the mapping table's lock (no SETUPMAPPING in between). Without
    /// a window, just `shrink`.
    func shrinking(_ node: UInt64, to size: UInt64, _ shrink: () throws(FUSEErrno) -> Void) throws(FUSEErrno) {
        guard let mappings = dax.withLock({ $0 }) else { return try shrink() }
        let key = try state.withLock { s throws(FUSEErrno) -> InodeKey in
            guard let i = s.inodes[node] else { throw Self.stale }
            return i.key
        }
        try mappings.shrinking(file: DAXMappings.FileKey(device: key.dev, inode: key.ino), to: size, shrink)
    }
}
