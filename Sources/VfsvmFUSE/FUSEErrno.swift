import VfsvmSys

/// What a `FileSystem` operation or the FUSE request decoder reports when
/// it fails: the errno the client gets (negated in fuse_out_header.error)
/// and, for the debug log, a fixed phrase saying what failed. Nothing is
/// formatted when one is made, so an ENOENT costs no string building; the
/// tracer (`-d`) writes the errno's name and the phrase.
public struct FUSEErrno: Error, Sendable, Equatable, CustomStringConvertible {
    public let errno: Errno
    /// What failed ("lookup: parent is not a directory"), or empty.
    public let context: StaticString

    public init(_ errno: Errno, _ context: StaticString = "") {
        self.errno = errno
        self.context = context
    }

    /// A failed host call: its errno. The call's name is not kept (it is a
    /// String, and this type carries none).
    public init(_ error: SystemError) {
        self.init(error.errno)
    }

    public static func == (a: FUSEErrno, b: FUSEErrno) -> Bool {
        a.errno == b.errno && a.context.description == b.context.description
    }

    /// "ENOENT (lookup: ...)", or just "ENOENT".
    public var description: String {
        let name = errno.symbolicName
        return context.utf8CodeUnitCount == 0 ? name : "\(name) (\(context))"
    }
}

extension Errno {
    /// "ENOENT", "EACCES", ...; "errno N" for one without a name here.
    public var symbolicName: String {
        if let name = Self.names[rawValue] { return name }
        return "errno \(rawValue)"
    }

    private static let names: [Int32: String] = {
        let all: [(Errno, String)] = [
            (.EPERM, "EPERM"), (.ENOENT, "ENOENT"), (.EINTR, "EINTR"), (.EIO, "EIO"), (.EBADF, "EBADF"),
            (.EAGAIN, "EAGAIN"), (.ENOMEM, "ENOMEM"), (.EACCES, "EACCES"), (.EFAULT, "EFAULT"),
            (.EEXIST, "EEXIST"), (.EBUSY, "EBUSY"), (.ESRCH, "ESRCH"), (.EDEADLK, "EDEADLK"),
            (.ENOLCK, "ENOLCK"), (.EMLINK, "EMLINK"), (.ETXTBSY, "ETXTBSY"), (.ENOTTY, "ENOTTY"),
            (.E2BIG, "E2BIG"), (.EXDEV, "EXDEV"), (.ENOTDIR, "ENOTDIR"), (.EISDIR, "EISDIR"),
            (.EINVAL, "EINVAL"), (.ENFILE, "ENFILE"), (.EMFILE, "EMFILE"), (.EFBIG, "EFBIG"),
            (.ENOSPC, "ENOSPC"), (.EROFS, "EROFS"), (.ERANGE, "ERANGE"), (.ENAMETOOLONG, "ENAMETOOLONG"),
            (.ENOSYS, "ENOSYS"), (.ENOTEMPTY, "ENOTEMPTY"), (.ELOOP, "ELOOP"), (.ENODATA, "ENODATA"),
            (.EOPNOTSUPP, "EOPNOTSUPP"), (.ENXIO, "ENXIO"), (.ENODEV, "ENODEV"), (.EOVERFLOW, "EOVERFLOW"),
            (.ESTALE, "ESTALE"), (.EPIPE, "EPIPE"), (.EPROTO, "EPROTO"),
        ]
        var d: [Int32: String] = [:]
        for (e, n) in all { d[e.rawValue] = n }
        return d
    }()
}
