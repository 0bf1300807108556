import Glibc
import CVfsvmLinux

// File data calls that are not reads or writes (those go through
// VfsvmMemory's scatter-gather file I/O): sync, fallocate, seek,
// copy_file_range.
extension FileDescriptor {
    public func sync(dataOnly: Bool) throws(SystemError) {
        if dataOnly {
            _ = try sysCall("fdatasync") { fdatasync(rawValue) }
        } else {
            _ = try sysCall("fsync") { fsync(rawValue) }
        }
    }

    public func syncFileSystem() throws(SystemError) {
        _ = try sysCall("syncfs") { vfsvm_syncfs(rawValue) }
    }

    public func allocate(mode: Int32, offset: Int64, length: Int64) throws(SystemError) {
        _ = try sysCall("fallocate") { vfsvm_fallocate(rawValue, mode, offset, length) }
    }

    public func seek(to offset: Int64, whence: Int32) throws(SystemError) -> Int64 {
        Int64(try sysCall("lseek") { lseek(rawValue, off_t(offset), whence) })
    }

    /// copy_file_range from this fd at `sourceOffset` to `destination` at
    /// `destinationOffset`; returns bytes copied.
    public func copyRange(from sourceOffset: Int64, to destination: FileDescriptor, at destinationOffset: Int64,
                          length: Int, flags: UInt32) throws(SystemError) -> Int {
        var i = sourceOffset
        var o = destinationOffset
        return try sysCall("copy_file_range") { vfsvm_copy_file_range(rawValue, &i, destination.rawValue, &o, length, flags) }
    }

    /// Reads directory entries with getdents64 (`bufferSize` bytes at most).
}
