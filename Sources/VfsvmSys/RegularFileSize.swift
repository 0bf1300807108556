import Glibc

extension FileDescriptor {
    /// The size of the regular file behind this fd (`fstat(2)`), or nil when
    /// it is something else (a pipe, socket, device). Lets a caller check a
    /// peer-supplied fd is large enough before mapping it: touching a shared
    /// mapping past the end of its file raises SIGBUS.
    public func regularFileSize() throws(SystemError) -> Int64? {
        var st = stat()
        _ = try sysCall("fstat") { fstat(rawValue, &st) }
        guard st.st_mode & S_IFMT == S_IFREG else { return nil }
        return Int64(st.st_size)
    }
}
