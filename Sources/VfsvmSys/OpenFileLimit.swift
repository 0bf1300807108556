import Glibc

/// Why RLIMIT_NOFILE could not be set as asked.
public struct OpenFileLimitError: Error, Hashable, Sendable, CustomStringConvertible {
    public let description: String
}

/// RLIMIT_NOFILE for a file server: every open guest file is an fd, and so
/// is each entry of the O_PATH cache, so the common soft limit of 1,024 is
/// far too low. As virtiofsd does, serve sets soft and hard limit to
/// min(1,000,000, fs.nr_open) unless told otherwise (`--rlimit-nofile N`;
/// 0 leaves the limit alone).
public enum OpenFileLimit {
    public static let defaultTarget: UInt64 = 1_000_000

    /// /proc/sys/fs/nr_open: the most any process may have open.
    public static func systemMaximum() throws(SystemError) -> UInt64 {
        let fd = try FileDescriptor.open("/proc/sys/fs/nr_open", O_RDONLY)
        let text = String(decoding: try fd.readSome(limit: 64), as: UTF8.self)
        guard let value = UInt64(text.split(separator: "\n").first ?? "") else {
            throw SystemError("read /proc/sys/fs/nr_open (\(text))", .EINVAL)
        }
        return value
    }

    /// The current (soft, hard) limit.
    public static func current() -> (soft: UInt64, hard: UInt64) {
        var r = rlimit()
        // getrlimit(RLIMIT_NOFILE) cannot fail with a valid pointer.
        _ = getrlimit(Int32(RLIMIT_NOFILE.rawValue), &r)
        return (UInt64(r.rlim_cur), UInt64(r.rlim_max))
    }

    /// Sets soft and hard limit to `requested` (nil: the default target).
    /// An explicit value the process may not set is an error; the default
    /// falls back to raising the soft limit to the hard one when raising
    /// the hard limit is not allowed (no CAP_SYS_RESOURCE). Returns the
    /// limit now in force.
    @discardableResult
    public static func raise(to requested: UInt64?) throws(OpenFileLimitError) -> UInt64 {
        if requested == 0 { return current().soft }
        let maximum: UInt64
        do { maximum = try systemMaximum() } catch {
            throw OpenFileLimitError(description: "cannot read fs.nr_open to set the open-file limit: \(error)")
        }
        if let requested, requested > maximum {
            throw OpenFileLimitError(description: "--rlimit-nofile \(requested) is above fs.nr_open (\(maximum)), the most any process may have open")
        }
        let target = requested ?? min(defaultTarget, maximum)
        if set(soft: target, hard: target) { return target }
        let err = Errno.current
        if let requested {
            throw OpenFileLimitError(description: "--rlimit-nofile \(requested): setrlimit(RLIMIT_NOFILE): \(err) (the hard limit is \(current().hard); raising it needs CAP_SYS_RESOURCE)")
        }
        let hard = current().hard
        if set(soft: hard, hard: hard) { return hard }
        throw OpenFileLimitError(description: "cannot raise the open-file limit to \(hard): setrlimit(RLIMIT_NOFILE): \(Errno.current)")
    }

    private static func set(soft: UInt64, hard: UInt64) -> Bool {
        var r = rlimit(rlim_cur: rlim_t(soft), rlim_max: rlim_t(hard))
        return setrlimit(Int32(RLIMIT_NOFILE.rawValue), &r) == 0
    }
}
