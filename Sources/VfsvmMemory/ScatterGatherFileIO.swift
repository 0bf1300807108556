import Glibc
import VfsvmSys
import CVfsvmLinux

// File data straight between a host fd and a scatter-gather list: the
// zero-copy data path of FUSE READ and WRITE (preadv into the reply's
// writable buffers, pwritev from the request's readable ones).

extension ScatterGatherList {
    /// preadv(fd) at `fileOffset` into `[offset, offset + count)` of this
    /// list (clamped to its end). Loops over short reads until `count`
    /// bytes or end of file; returns the bytes read.
    public func read(from fd: FileDescriptor, fileOffset: Int64, into offset: Int, count: Int) throws(SystemError) -> Int {
        try Self.repeatVectored(self, "preadv", offset: offset, count: count) { iov, done in
            // Safe: the iovecs cover live segments of this list, clamped to its end.
            preadv(fd.rawValue, iov.baseAddress, Int32(min(iov.count, 1024)), off_t(fileOffset) &+ off_t(done))
        }
    }

    /// pwritev(fd) at `fileOffset` from `[offset, offset + count)` of this
    /// list. Loops over short writes; returns the bytes written (fewer only
    /// when the list ends first).
    public func write(to fd: FileDescriptor, fileOffset: Int64, from offset: Int, count: Int) throws(SystemError) -> Int {
        try Self.repeatVectored(self, "pwritev", offset: offset, count: count) { iov, done in
            // Safe: the iovecs cover live segments of this list, clamped to its end.
            // On an O_APPEND fd Linux ignores the offset and appends.
            pwritev(fd.rawValue, iov.baseAddress, Int32(min(iov.count, 1024)), off_t(fileOffset) &+ off_t(done))
        }
    }

    /// Moves `[offset, offset + count)` of this list to or from `fd` at
    /// `fileOffset` with `call`, a C function of preadv/pwritev's shape that
    /// returns the byte count or a negative errno (an io_uring engine's
    /// readv/writev). Loops over short transfers until `count` bytes or a
    /// transfer of 0 (end of file); returns the bytes moved. `what` names
    /// the call in errors.
    public func transfer(_ call: VectoredTransfer, _ what: String, fd: FileDescriptor, fileOffset: Int64, offset: Int, count: Int) throws(SystemError) -> Int {
        var done = 0
        while done < count {
            let n = vectored(offset: offset + done, length: count - done) { iov -> Int in
                if iov.isEmpty { return 0 }
                // Safe: the iovecs cover live segments of this list, clamped
                // to its end; `call` uses them only until it returns.
                return call(fd.rawValue, iov.baseAddress, UInt32(min(iov.count, 1024)), fileOffset &+ Int64(done))
            }
            if n < 0 { throw SystemError(what, Errno(rawValue: Int32(clamping: -n))) }
            if n == 0 { break }
            done += n
        }
        return done
    }

    /// `call(iovecs, done)` (a preadv/pwritev: -1 and errno on failure,
    /// retried on EINTR) over `[offset + done, offset + count)` of `list`
    /// until `count` bytes or a transfer of 0; returns the bytes moved.
    /// Always inlined into `read` and `write`, which are compiled for each
    /// list type, and `withIOVecs` directly (not the `vectored` witness):
    /// the whole READ then runs as one specialised function.
    @inline(__always)
    private static func repeatVectored(_ list: Self, _ what: String, offset: Int, count: Int,
                                       _ call: (UnsafeBufferPointer<iovec>, Int) -> Int) throws(SystemError) -> Int {
        var done = 0
        while done < count {
            // Negative: -errno (the closure lends no typed error, which
            // would make it generic again).
            let n = list.withIOVecs(offset: offset + done, length: count - done) { iov -> Int in
                if iov.isEmpty { return 0 }
                while true {
                    let r = call(iov, done)
                    if r >= 0 { return r }
                    let e = Glibc.errno
                    if e != EINTR { return e == 0 ? -Int(EIO) : -Int(e) }
                }
            }
            if n < 0 { throw SystemError(what, Errno(rawValue: Int32(clamping: -n))) }
            if n == 0 { break }
            done += n
        }
        return done
    }
}

/// A vectored file transfer: (fd, iovecs, iovec count, file offset) → bytes
/// moved or a negative errno. Must not keep the iovec pointer after it
/// returns.
public typealias VectoredTransfer = @convention(c) (Int32, UnsafePointer<iovec>?, UInt32, Int64) -> Int
