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

/// io_uring (liburing) for reads: each worker thread submits through its
/// own ring and waits for the completion. `make()` returns nil where the
/// kernel refuses io_uring (disabled by sysctl, seccomp), so callers can
/// fall back to `SyncIOEngine`.
///
/// Writes, fsync and fallocate are plain pwritev/fsync/fallocate on the
/// calling thread. With one request in flight per call, io_uring cannot
/// finish those inline on ext4: it hands each to an io-wq worker thread and
/// the submitter sleeps until that thread wakes it, two context switches
/// per request. Measured with bench-backend (1 in flight, 1000 requests):
/// WRITE 4 KiB 36.4 µs CPU per request through io_uring against 15.4 µs
/// with pwritev, FSYNC 42.1 against 21.6 µs; page-cache reads complete
/// inline in io_uring_enter and cost the same either way (11.3 / 11.2 µs).
public struct IOURingEngine: IOEngine {
    private init() {}
    public static func make() -> IOURingEngine? { vfsvm_uring_available() == 1 ? IOURingEngine() : nil }
    public func read(_ fd: FileDescriptor, at fileOffset: Int64, into buffer: some ScatterGatherList, offset: Int, count: Int) throws(SystemError) -> Int {
        try buffer.transfer(vfsvm_uring_readv, "io_uring readv", fd: fd, fileOffset: fileOffset, offset: offset, count: count)
    }
    public func write(_ fd: FileDescriptor, at fileOffset: Int64, from buffer: some ScatterGatherList, offset: Int, count: Int) throws(SystemError) -> Int {
        try buffer.write(to: fd, fileOffset: fileOffset, from: offset, count: count)
    }
    public func sync(_ fd: FileDescriptor, dataOnly: Bool) throws(SystemError) { try fd.sync(dataOnly: dataOnly) }
    public func allocate(_ fd: FileDescriptor, mode: Int32, offset: Int64, length: Int64) throws(SystemError) {
        try fd.allocate(mode: mode, offset: offset, length: length)
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
