import Glibc
import CVfsvmLinux

/// An open file descriptor that vfsvm owns: closed exactly once, when the
/// last reference goes away. Hand `rawValue` to syscalls; never close it
/// yourself.
public final class FileDescriptor: Sendable, CustomStringConvertible {
    public let rawValue: Int32

    /// Takes ownership of `rawValue`.
    public init(owning rawValue: Int32) {
        precondition(rawValue >= 0, "FileDescriptor(owning:) needs an open fd, got \(rawValue)")
        self.rawValue = rawValue
    }

    deinit {
        // close(2) must not be retried on EINTR on Linux: the fd is gone.
        _ = Glibc.close(rawValue)
    }

    public var description: String { "fd \(rawValue)" }

    /// `open(2)` relative to the working directory; O_CLOEXEC is always added.
    public static func open(_ path: String, _ flags: Int32, mode: mode_t = 0) throws(SystemError) -> FileDescriptor {
        let fd = try sysCall("open(\(path))") { vfsvm_openat(AT_FDCWD, path, flags | O_CLOEXEC, mode) }
        return FileDescriptor(owning: fd)
    }

    /// `dup(2)` with O_CLOEXEC.
    public func duplicate() throws(SystemError) -> FileDescriptor {
        FileDescriptor(owning: try sysCall("fcntl(F_DUPFD_CLOEXEC)") { vfsvm_fcntl_int(rawValue, F_DUPFD_CLOEXEC, 0) })
    }

    public func read(into buffer: UnsafeMutableRawBufferPointer) throws(SystemError) -> Int {
        try sysCall("read") { Glibc.read(rawValue, buffer.baseAddress, buffer.count) }
    }

    public func write(_ buffer: UnsafeRawBufferPointer) throws(SystemError) -> Int {
        try sysCall("write") { Glibc.write(rawValue, buffer.baseAddress, buffer.count) }
    }

    /// Writes all of `bytes`, looping over short writes.
    public func writeAll(_ bytes: some Collection<UInt8>) throws(SystemError) {
        let array = Array(bytes)
        var done = 0
        while done < array.count {
            let result: Result<Int, SystemError> = array.withUnsafeBytes { raw in
                Result { () throws(SystemError) in try write(UnsafeRawBufferPointer(rebasing: raw[done...])) }
            }
            done += try result.get()
        }
    }

    public func pread(into buffer: UnsafeMutableRawBufferPointer, at offset: Int64) throws(SystemError) -> Int {
        try sysCall("pread") { Glibc.pread(rawValue, buffer.baseAddress, buffer.count, off_t(offset)) }
    }

    public func pwrite(_ buffer: UnsafeRawBufferPointer, at offset: Int64) throws(SystemError) -> Int {
        try sysCall("pwrite") { Glibc.pwrite(rawValue, buffer.baseAddress, buffer.count, off_t(offset)) }
    }

    public func truncate(to size: Int64) throws(SystemError) {
        _ = try sysCall("ftruncate") { ftruncate(rawValue, off_t(size)) }
    }

    /// Sets or clears O_NONBLOCK.
    public func setNonBlocking(_ on: Bool) throws(SystemError) {
        let flags = try sysCall("fcntl(F_GETFL)") { vfsvm_fcntl_int(rawValue, F_GETFL, 0) }
        let new = on ? flags | O_NONBLOCK : flags & ~O_NONBLOCK
        _ = try sysCall("fcntl(F_SETFL)") { vfsvm_fcntl_int(rawValue, F_SETFL, new) }
    }

    /// `ioctl(2)` with a pointer argument.
    @discardableResult
    public func ioctl(_ request: UInt, _ name: @autoclosure () -> String, _ arg: UnsafeMutableRawPointer?) throws(SystemError) -> Int32 {
        try sysCall("ioctl(\(name()))") { vfsvm_ioctl_ptr(rawValue, request, arg) }
    }

    /// `ioctl(2)` with an integer argument.
    @discardableResult
    public func ioctl(_ request: UInt, _ name: @autoclosure () -> String, value: UInt) throws(SystemError) -> Int32 {
        try sysCall("ioctl(\(name()))") { vfsvm_ioctl_val(rawValue, request, value) }
    }
}

/// A pipe's two ends.
public func makePipe() throws(SystemError) -> (read: FileDescriptor, write: FileDescriptor) {
    var fds: [Int32] = [-1, -1]
    _ = try sysCall("pipe2") { vfsvm_pipe2(&fds, O_CLOEXEC) }
    return (FileDescriptor(owning: fds[0]), FileDescriptor(owning: fds[1]))
}

/// Writes `text` to fd 2 in one write(2) (lines from several threads do not
/// interleave); errors are ignored, there is nowhere left to report them.
public func writeStandardError(_ text: String) {
    var bytes = Array(text.utf8)
    _ = bytes.withUnsafeMutableBytes { Glibc.write(2, $0.baseAddress, $0.count) }
}

/// One line to stderr (or to syslog after `logToSyslog`), written in a
/// single write(2) so lines from several threads do not interleave.
public func logLine(_ line: String) {
    if let sink = currentSyslogSink(), sink.send(line) { return }
    writeStandardError(line + "\n")
}

extension FileDescriptor {
    /// Closes every fd this process inherited above stderr except `keep`
    /// (close_range(2); a loop over the fds up to RLIMIT_NOFILE's soft
    /// limit where the kernel lacks it). Run first by the commands that
    /// face a guest: a launcher that leaks a directory fd (a shell's
    /// `9</`, a service manager) would otherwise hand a compromised server
    /// a way out of any sandbox, since ".." from it climbs the host's tree.
    public static func closeInherited(keeping keep: Set<Int32> = []) {
        var first: Int32 = 3
        for k in keep.filter({ $0 >= 3 }).sorted() + [Int32.max] {
            if k > first { closeRange(first, k == Int32.max ? UInt32.max : UInt32(k - 1)) }
            if k == Int32.max { break }
            first = k + 1
        }
    }

    private static func closeRange(_ first: Int32, _ last: UInt32) {
        if vfsvm_syscall3(Int(SYS_close_range), Int(first), Int(last), 0) == 0 { return }
        let top = min(OpenFileLimit.current().soft, UInt64(last))
        var fd = UInt64(first)
        while fd <= top {
            _ = Glibc.close(Int32(fd))
            fd += 1
        }
    }
}
