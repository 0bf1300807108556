import Glibc
import Synchronization
import VfsvmSys
import VfsvmFUSE
import CVfsvmLinux

// DAX: the files SETUPMAPPING maps into the window; the requests that
// shrink a file, which must first take its mapped pages past the new end
// out of the window (DAXMappings: a mapped page past EOF would SIGBUS);
// and the ones that make it longer, after which its mappings show the
// file over their zero tails again.
extension PassthroughFileSystem {
    /// Attaches the window's table once; a later, different table is
    /// refused (false) and the first stays: requests read `dax` without a
    /// lock, so it must not change under them.
    @discardableResult
    public func attachMappings(_ mappings: DAXMappings) -> Bool {
        daxAttach.withLock { _ in
            if daxAttached.load(ordering: .acquiring) { return daxTable === mappings }
            daxTable = mappings
            daxAttached.store(true, ordering: .releasing)
            return true
        }
    }

    /// The attached table; nil (one atomic load, no lock) without a window.
    @inline(__always)
    var dax: DAXMappings? { daxAttached.load(ordering: .acquiring) ? daxTable : nil }

    public func withMappableFile(_ ctx: FUSERequestContext, node: UInt64, handle: UInt64, write: Bool,
                                 _ body: (DAXMappings.OpenFile) throws(SystemError) -> Void) throws(FUSEErrno) {
        let fd: FileDescriptor
        var isDirectory = false
        if handle == UInt64.max {
            // Linux sends no handle: the node itself, regular files only
            // (opening anything else here could block or reach a device).
            let type = try fileType(node)
            guard type == Self.sIFREG else { throw FUSEErrno(.ENODEV, "SETUPMAPPING: not a regular file") }
            fd = try reopen(node, flags: (write ? O_RDWR : O_RDONLY) | O_NONBLOCK)
        } else {
            let f = try file(handle)
            fd = f.fd
            isDirectory = f.isDirectory
        }
        // The OpenFile holds `fd` (the handle's own FileDescriptor, or the
        // one opened here), so a RELEASE on another queue can neither
        // close it nor let its number name another file before the mmap.
        let st = try host { () throws(SystemError) in try fd.stat() }
        let access = vfsvm_fcntl_int(fd.rawValue, F_GETFL, 0) & O_ACCMODE
        let file = DAXMappings.OpenFile(
            fd: fd, key: DAXMappings.FileKey(device: st.dev, inode: st.ino),
            isRegular: st.isRegular && !isDirectory, openForWriting: access == O_RDWR)
        try host { () throws(SystemError) in try body(file) }
    }

    /// Runs `shrink`, which makes `node` at most `size` bytes long, after
    /// the DAX window's mappings of it past `size` became zero pages and
    /// under the mapping table's lock (no SETUPMAPPING in between). Without
    /// a window, just `shrink`.
    /// When `shrink` fails the file keeps its length: its mappings are
    /// mapped over the zero pages again (`grown`), or the guest would read
    /// zeros where the file has data and its stores there would be lost.
    func shrinking(_ node: UInt64, to size: UInt64, _ shrink: () throws(FUSEErrno) -> Void) throws(FUSEErrno) {
        try shrinking(node, toSize: { () throws(FUSEErrno) in size }, shrink)
    }

    /// `shrinking(_:to:_:)` with the new size read by `size` under the
    /// mapping table's lock (FALLOC_FL_COLLAPSE_RANGE: it depends on the
    /// size now, which a racing truncate or write may change).
    func shrinking(_ node: UInt64, toSize size: () throws(FUSEErrno) -> UInt64, _ shrink: () throws(FUSEErrno) -> Void) throws(FUSEErrno) {
        guard let mappings = dax else { return try shrink() }
        do {
            try mappings.shrinking(file: try daxKey(node), toSize: size, refused: { FUSEErrno($0) }, shrink)
        } catch {
            grown(node)
            throw error
        }
    }

    /// After a request that may have made `node` longer succeeded: the
    /// DAX window's mappings of it show the file over their zero tails up
    /// to its new end (DAXMappings.growing). Without a window, nothing.
    func grown(_ node: UInt64) {
        guard let mappings = dax, mappings.anyZeroTail, let key = try? daxKey(node) else { return }
        mappings.growing(file: key) { writable in try? self.reopen(node, flags: (writable ? O_RDWR : O_RDONLY) | O_NONBLOCK) }
    }

    private func daxKey(_ node: UInt64) throws(FUSEErrno) -> DAXMappings.FileKey {
        let key = try state.withLock { s throws(FUSEErrno) -> InodeKey in
            guard let i = s.inodes[node] else { throw Self.stale }
            return i.key
        }
        return DAXMappings.FileKey(device: key.dev, inode: key.ino)
    }
}
