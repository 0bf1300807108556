import Glibc

/// A Linux errno value. The FUSE layer sends these to the guest negated, so
/// the raw value is the wire value too.
public struct Errno: RawRepresentable, Hashable, Sendable, CustomStringConvertible {
    public let rawValue: Int32
    public init(rawValue: Int32) { self.rawValue = rawValue }

    /// The calling thread's current `errno`.
    public static var current: Errno { Errno(rawValue: Glibc.errno) }

    public var description: String {
        guard let text = strerror(rawValue) else { return "errno \(rawValue)" }
        return String(cString: text)
    }

    public static let EPERM = Errno(rawValue: Glibc.EPERM)
    public static let ENOENT = Errno(rawValue: Glibc.ENOENT)
    public static let EINTR = Errno(rawValue: Glibc.EINTR)
    public static let EIO = Errno(rawValue: Glibc.EIO)
    public static let EBADF = Errno(rawValue: Glibc.EBADF)
    public static let EAGAIN = Errno(rawValue: Glibc.EAGAIN)
    public static let ENOMEM = Errno(rawValue: Glibc.ENOMEM)
    public static let EACCES = Errno(rawValue: Glibc.EACCES)
    public static let EFAULT = Errno(rawValue: Glibc.EFAULT)
    public static let EEXIST = Errno(rawValue: Glibc.EEXIST)
    public static let EBUSY = Errno(rawValue: Glibc.EBUSY)
    public static let ESRCH = Errno(rawValue: Glibc.ESRCH)
    public static let EDEADLK = Errno(rawValue: Glibc.EDEADLK)
    public static let ENOLCK = Errno(rawValue: Glibc.ENOLCK)
    public static let EMLINK = Errno(rawValue: Glibc.EMLINK)
    public static let ETXTBSY = Errno(rawValue: Glibc.ETXTBSY)
    public static let ENOTTY = Errno(rawValue: Glibc.ENOTTY)
    public static let E2BIG = Errno(rawValue: Glibc.E2BIG)
    public static let EXDEV = Errno(rawValue: Glibc.EXDEV)
    public static let ENOTDIR = Errno(rawValue: Glibc.ENOTDIR)
    public static let EISDIR = Errno(rawValue: Glibc.EISDIR)
    public static let EINVAL = Errno(rawValue: Glibc.EINVAL)
    public static let ENFILE = Errno(rawValue: Glibc.ENFILE)
    public static let EMFILE = Errno(rawValue: Glibc.EMFILE)
    public static let EFBIG = Errno(rawValue: Glibc.EFBIG)
    public static let ENOSPC = Errno(rawValue: Glibc.ENOSPC)
    public static let EROFS = Errno(rawValue: Glibc.EROFS)
    public static let ERANGE = Errno(rawValue: Glibc.ERANGE)
    public static let ENAMETOOLONG = Errno(rawValue: Glibc.ENAMETOOLONG)
    public static let ENOSYS = Errno(rawValue: Glibc.ENOSYS)
    public static let ENOTEMPTY = Errno(rawValue: Glibc.ENOTEMPTY)
    public static let ELOOP = Errno(rawValue: Glibc.ELOOP)
    public static let ENODATA = Errno(rawValue: Glibc.ENODATA)
    public static let EOPNOTSUPP = Errno(rawValue: Glibc.EOPNOTSUPP)
    public static let ENOTSUP = Errno(rawValue: Glibc.ENOTSUP)
    public static let ENXIO = Errno(rawValue: Glibc.ENXIO)
    public static let ENODEV = Errno(rawValue: Glibc.ENODEV)
    public static let EOVERFLOW = Errno(rawValue: Glibc.EOVERFLOW)
    public static let ESTALE = Errno(rawValue: Glibc.ESTALE)
    public static let EPIPE = Errno(rawValue: Glibc.EPIPE)
    public static let ECONNRESET = Errno(rawValue: Glibc.ECONNRESET)
    public static let ENOTCONN = Errno(rawValue: Glibc.ENOTCONN)
    public static let EPROTO = Errno(rawValue: Glibc.EPROTO)
}

/// A failed system call: which call, and the errno it returned.
public struct SystemError: Error, Hashable, Sendable, CustomStringConvertible {
    public let call: String
    public let errno: Errno

    public init(_ call: String, _ errno: Errno) {
        self.call = call
        self.errno = errno
    }

    public var description: String { "\(call): \(errno) (errno \(errno.rawValue))" }
}

/// The one funnel every system call in vfsvm goes through: runs `body`,
/// retries while it fails with EINTR, and turns a `-1` return into a typed
/// `SystemError` naming `call`.
@inlinable
public func sysCall<R: FixedWidthInteger>(_ call: @autoclosure () -> String, _ body: () -> R) throws(SystemError) -> R {
    while true {
        let result = body()
        if result != -1 { return result }
        let err = Errno.current
        if err == .EINTR { continue }
        throw SystemError(call(), err)
    }
}
