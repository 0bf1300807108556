import CVfsvmURing
import VfsvmMemory
import VfsvmSys

/// The data path between a host fd and guest buffers: the seam where an
/// io_uring engine can replace the synchronous one.
public protocol IOEngine: Sendable {
    /// Reads up to `count` bytes at `fileOffset` into `buffer[offset...]`.
    func read(_ fd: FileDescriptor, at fileOffset: Int64, into buffer: some ScatterGatherList, offset: Int, count: Int) throws(SystemError) -> Int
    /// Writes `count` bytes from `buffer[offset...]` at `fileOffset`.
    func write(_ fd: FileDescriptor, at fileOffset: Int64, from buffer: some ScatterGatherList, offset: Int, count: Int) throws(SystemError) -> Int
    /// fsync, or fdatasync when `dataOnly`.
    func sync(_ fd: FileDescriptor, dataOnly: Bool) throws(SystemError)
    /// fallocate(2).
    func allocate(_ fd: FileDescriptor, mode: Int32, offset: Int64, length: Int64) throws(SystemError)
}

/// io_uring (liburing): each worker thread submits through its own ring
/// and waits for the completion. `make()` returns nil where the kernel
/// refuses io_uring (disabled by sysctl, seccomp), so callers can fall
/// back to `SyncIOEngine`.
public struct IOURingEngine: IOEngine {
    private init() {}
    public static func make() -> IOURingEngine? { vfsvm_uring_available() == 1 ? IOURingEngine() : nil }
    public func read(_ fd: FileDescriptor, at fileOffset: Int64, into buffer: some ScatterGatherList, offset: Int, count: Int) throws(SystemError) -> Int {
        try buffer.transfer(vfsvm_uring_readv, "io_uring readv", fd: fd, fileOffset: fileOffset, offset: offset, count: count)
    }
    public func write(_ fd: FileDescriptor, at fileOffset: Int64, from buffer: some ScatterGatherList, offset: Int, count: Int) throws(SystemError) -> Int {
        try buffer.transfer(vfsvm_uring_writev, "io_uring writev", fd: fd, fileOffset: fileOffset, offset: offset, count: count)
    }
    public func sync(_ fd: FileDescriptor, dataOnly: Bool) throws(SystemError) {
        let r = vfsvm_uring_fsync(fd.rawValue, dataOnly ? 1 : 0)
        if r < 0 { throw SystemError(dataOnly ? "io_uring fdatasync" : "io_uring fsync", Errno(rawValue: Int32(-r))) }
    }
    public func allocate(_ fd: FileDescriptor, mode: Int32, offset: Int64, length: Int64) throws(SystemError) {
        let r = vfsvm_uring_fallocate(fd.rawValue, mode, offset, length)
        if r < 0 { throw SystemError("io_uring fallocate", Errno(rawValue: Int32(-r))) }
    }
}

/// preadv/pwritev on the calling thread.
public struct SyncIOEngine: IOEngine {
    public init() {}
    public func read(_ fd: FileDescriptor, at fileOffset: Int64, into buffer: some ScatterGatherList, offset: Int, count: Int) throws(SystemError) -> Int {
        try buffer.read(from: fd, fileOffset: fileOffset, into: offset, count: count)
    }
    public func write(_ fd: FileDescriptor, at fileOffset: Int64, from buffer: some ScatterGatherList, offset: Int, count: Int) throws(SystemError) -> Int {
        try buffer.write(to: fd, fileOffset: fileOffset, from: offset, count: count)
    }
    public func sync(_ fd: FileDescriptor, dataOnly: Bool) throws(SystemError) { try fd.sync(dataOnly: dataOnly) }
    public func allocate(_ fd: FileDescriptor, mode: Int32, offset: Int64, length: Int64) throws(SystemError) {
        try fd.allocate(mode: mode, offset: offset, length: length)
    }
}
