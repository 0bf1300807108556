import Glibc
import CVfsvmLinux

/// Stream-mode unix sockets: the vhost-user control channel, which carries
/// file descriptors (guest memory, kick/call eventfds) as SCM_RIGHTS.
public enum UnixSocket {
    /// The most fds one `receive` or `send` passes (the C shim's buffer size).
    public static let maxPassedFDs = 16

    /// A listening socket bound to `path`, mode 0600 (only its owner may
    /// connect; the umask cannot widen it): the libvirt hook hands it to the
    /// user QEMU runs as. A stale socket file left there by
    /// an earlier run is replaced; any other kind of file at `path` is left
    /// alone and the call fails with EEXIST.
    public static func listen(path: String, backlog: Int32 = 1) throws(SystemError) -> FileDescriptor {
        var st = stat()
        if lstat(path, &st) == 0 {
            guard st.st_mode & S_IFMT == S_IFSOCK else { throw SystemError("bind(\(path)): not a socket", .EEXIST) }
            _ = try sysCall("unlink(\(path))") { unlink(path) }
        }
        let fd = FileDescriptor(owning: try sysCall("socket(AF_UNIX)") { vfsvm_unix_stream_socket() })
        _ = try sysCall("bind(\(path))") { vfsvm_unix_bind_private(fd.rawValue, path) }
        _ = try sysCall("listen(\(path))") { Glibc.listen(fd.rawValue, backlog) }
        return fd
    }

    /// A stream socket connected to the listening socket at `path`.
    public static func connect(path: String) throws(SystemError) -> FileDescriptor {
        let fd = FileDescriptor(owning: try sysCall("socket(AF_UNIX)") { vfsvm_unix_stream_socket() })
        _ = try sysCall("connect(\(path))") { vfsvm_unix_connect(fd.rawValue, path) }
        return fd
    }

    /// Two connected stream sockets (`socketpair(2)`).
    public static func pair() throws(SystemError) -> (FileDescriptor, FileDescriptor) {
        var fds: [Int32] = [-1, -1]
        _ = try sysCall("socketpair(AF_UNIX)") { vfsvm_unix_stream_socketpair(&fds) }
        return (FileDescriptor(owning: fds[0]), FileDescriptor(owning: fds[1]))
    }

    /// Whether `fd` is a socket in the listening state (SO_ACCEPTCONN), as an
    /// fd inherited from libvirt (`--fd N`) must be.
    public static func isListening(_ fd: FileDescriptor) -> Bool {
        var value: Int32 = 0
        var length = socklen_t(MemoryLayout<Int32>.size)
        guard getsockopt(fd.rawValue, SOL_SOCKET, SO_ACCEPTCONN, &value, &length) == 0 else { return false }
        return value != 0
    }
}

/// What one `receive` call got.
public struct ReceivedMessage {
    /// Bytes read; 0 means the peer closed the connection.
    public var count: Int
    /// The fds that came with the bytes, owned (closed when dropped).
    public var fds: [FileDescriptor]
    /// The peer sent more fds than asked for (the extra ones were closed).
    public var fdsTruncated: Bool
}

extension FileDescriptor {
    /// `accept4(2)`, close-on-exec.
    public func accept() throws(SystemError) -> FileDescriptor {
        FileDescriptor(owning: try sysCall("accept") { vfsvm_accept_cloexec(rawValue) })
    }

    /// `shutdown(2)` both directions: the peer sees end-of-file now, even
    /// while other references keep this fd open.
    public func shutdownSocket() {
        _ = Glibc.shutdown(rawValue, Int32(SHUT_RDWR))
    }

    /// `recvmsg(2)` into `buffer` with room for `maxFDs` passed descriptors.
    public func receive(into buffer: UnsafeMutableRawBufferPointer, maxFDs: Int) throws(SystemError) -> ReceivedMessage {
        precondition(maxFDs >= 0 && maxFDs <= UnixSocket.maxPassedFDs)
        var raw = [Int32](repeating: -1, count: UnixSocket.maxPassedFDs)
        var count: Int32 = 0
        var truncated: Int32 = 0
        let n = try sysCall("recvmsg") {
            vfsvm_recv_with_fds(rawValue, buffer.baseAddress, UInt(buffer.count), &raw, Int32(maxFDs), &count, &truncated)
        }
        let fds = raw[0..<Int(count)].map { FileDescriptor(owning: $0) }
        return ReceivedMessage(count: n, fds: fds, fdsTruncated: truncated != 0)
    }

    /// `recvmsg(2)` of up to `count` bytes (returned in `bytes`) with room
    /// for `maxFDs` passed descriptors: the safe form of
    /// `receive(into:maxFDs:)` for layers above this one.
    public func receive(upTo count: Int, maxFDs: Int) throws(SystemError) -> (bytes: [UInt8], message: ReceivedMessage) {
        var bytes = [UInt8](repeating: 0, count: count)
        let result: Result<ReceivedMessage, SystemError> = bytes.withUnsafeMutableBytes { buf in
            Result { () throws(SystemError) in try receive(into: buf, maxFDs: maxFDs) }
        }
        let message = try result.get()
        bytes.removeSubrange(message.count...)
        return (bytes, message)
    }

    /// `sendmsg(2)` of `bytes` with `fds` as SCM_RIGHTS; loops over short
    /// writes (the fds go with the first chunk). Never raises SIGPIPE: a
    /// closed peer is an EPIPE error.
    public func send(_ bytes: [UInt8], fds: [FileDescriptor] = []) throws(SystemError) {
        precondition(fds.count <= UnixSocket.maxPassedFDs)
        let raw = fds.map(\.rawValue)
        var done = 0
        repeat {
            let chunkFDs = done == 0 ? raw : []
            let result: Result<Int, SystemError> = bytes.withUnsafeBytes { buf in
                Result { () throws(SystemError) in
                    try sysCall("sendmsg") {
                        vfsvm_send_with_fds(rawValue, buf.baseAddress.map { $0 + done }, UInt(buf.count - done),
                                            chunkFDs, Int32(chunkFDs.count))
                    }
                }
            }
            done += try result.get()
        } while done < bytes.count
        // The fds must stay open until sendmsg has duplicated them.
        withExtendedLifetime(fds) {}
    }

    /// Reads exactly `count` bytes; nil when the peer closed the connection
    /// before the first byte, `SystemError("read", EPROTO)` when it closed
    /// part way.
    public func readExactly(_ count: Int) throws(SystemError) -> [UInt8]? {
        var out = [UInt8](repeating: 0, count: count)
        var done = 0
        while done < count {
            let result: Result<Int, SystemError> = out.withUnsafeMutableBytes { buf in
                Result { () throws(SystemError) in try read(into: UnsafeMutableRawBufferPointer(rebasing: buf[done...])) }
            }
            let n = try result.get()
            if n == 0 {
                if done == 0 { return nil }
                throw SystemError("read: connection closed after \(done) of \(count) bytes", .EPROTO)
            }
            done += n
        }
        return out
    }
}

/// Waits until at least one of `fds` is readable (or hung up / in error),
/// or `timeoutMilliseconds` pass (-1: forever). Returns, per fd, whether it
/// is ready.
public func pollReadable(_ fds: [FileDescriptor], timeoutMilliseconds: Int32 = -1) throws(SystemError) -> [Bool] {
    try withExtendedLifetime(fds) { () throws(SystemError) in
        try pollReadable(fds.map(\.rawValue), timeoutMilliseconds: timeoutMilliseconds)
    }
}
