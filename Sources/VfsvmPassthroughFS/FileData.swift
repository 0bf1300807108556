import Glibc
import VfsvmSys
import VfsvmMemory
import VfsvmFUSE
import CVfsvmLinux

// File data: READ and WRITE through the I/O engine, FSYNC, FALLOCATE,
// LSEEK, COPY_FILE_RANGE, SYNCFS.
extension PassthroughFileSystem {
    public func read(_ ctx: FUSERequestContext, node: UInt64, handle: UInt64, offset: UInt64, size: Int, into reply: some ScatterGatherList, at replyOffset: Int) throws(FUSEErrno) -> Int {
        let f = try file(handle, directory: false)
        return try host { () throws(SystemError) in try engine.read(f.fd, at: Int64(offset), into: reply, offset: replyOffset, count: size) }
    }

    public func write(_ ctx: FUSERequestContext, node: UInt64, handle: UInt64, offset: UInt64, size: Int, writeFlags: UInt32, from request: some ScatterGatherList, at requestOffset: Int) throws(FUSEErrno) -> Int {
        let f = try file(handle, directory: false)
        if writeFlags & UInt32(FUSE_WRITE_KILL_SUIDGID) != 0 { try clearSetID(f.node, fd: f.fd) }
        dropRemappedCapability(f.fd)
        let n = try host { () throws(SystemError) in try engine.write(f.fd, at: Int64(offset), from: request, offset: requestOffset, count: size) }
        // A Linux guest sends a write that extends the file this way, not
        // through the DAX window: its mappings show the new end.
        grown(f.node)
        return n
    }

    public func fsync(_ ctx: FUSERequestContext, node: UInt64, handle: UInt64, dataOnly: Bool) throws(FUSEErrno) {
        let f = try file(handle, directory: false)
        try host { () throws(SystemError) in try engine.sync(f.fd, dataOnly: dataOnly) }
    }

    public func fallocate(_ ctx: FUSERequestContext, node: UInt64, handle: UInt64, offset: UInt64, length: UInt64, mode: UInt32) throws(FUSEErrno) {
        let f = try file(handle, directory: false)
        let allocate = { () throws(FUSEErrno) in
            try host { () throws(SystemError) in try self.engine.allocate(f.fd, mode: Int32(bitPattern: mode), offset: Int64(offset), length: Int64(length)) }
        }
        // FALLOC_FL_COLLAPSE_RANGE takes `length` bytes out of the file:
        // the end of its DAX mappings goes first.
        guard Int32(bitPattern: mode) & HostFSFlag.fallocCollapseRange != 0 else {
            try allocate()
            return grown(f.node)  // without FALLOC_FL_KEEP_SIZE the file may be longer
        }
        // The new end is read under the mapping table's lock, with the
        // collapse: a truncate or write between the two cannot leave a
        // mapped page past it.
        try shrinking(f.node, toSize: { () throws(FUSEErrno) -> UInt64 in
            let size = UInt64(max(try host { () throws(SystemError) in try f.fd.stat() }.size, 0))
            return size >= length ? size - length : 0
        }, allocate)
    }

    public func lseek(_ ctx: FUSERequestContext, node: UInt64, handle: UInt64, offset: UInt64, whence: UInt32) throws(FUSEErrno) -> UInt64 {
        let f = try file(handle, directory: false)
        let w = Int32(bitPattern: whence)
        guard w == SEEK_SET || w == SEEK_END || w == HostFSFlag.seekData || w == HostFSFlag.seekHole else {
            throw FUSEErrno(.EINVAL, "lseek: whence")
        }
        return UInt64(try host { () throws(SystemError) in try f.fd.seek(to: Int64(offset), whence: w) })
    }

    public func copyFileRange(_ ctx: FUSERequestContext, node: UInt64, handleIn: UInt64, offsetIn: UInt64, nodeOut: UInt64, handleOut: UInt64, offsetOut: UInt64, length: UInt64, flags: UInt64) throws(FUSEErrno) -> Int {
        guard flags == 0 else { throw FUSEErrno(.EINVAL, "copy_file_range: flags") }
        let i = try file(handleIn, directory: false), o = try file(handleOut, directory: false)
        let n = try host { () throws(SystemError) in try i.fd.copyRange(from: Int64(offsetIn), to: o.fd, at: Int64(offsetOut), length: Int(min(length, 1 << 30)), flags: 0) }
        grown(o.node)
        return n
    }

    public func syncfs(_ ctx: FUSERequestContext, node: UInt64) throws(FUSEErrno) {
        let root = try reopen(Self.rootNode, flags: O_RDONLY | O_DIRECTORY)
        try host { () throws(SystemError) in try root.syncFileSystem() }
    }
}
