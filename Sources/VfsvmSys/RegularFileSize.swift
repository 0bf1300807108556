extension FileDescriptor {
    /// The size of the regular file behind this fd (`fstat(2)`), or nil when
    /// it is something else (a pipe, socket, device). Lets a caller check a
    /// peer-supplied fd is large enough before mapping it: touching a shared
    /// mapping past the end of its file raises SIGBUS.
    public func regularFileSize() throws(SystemError) -> Int64? {
        let st = try stat()
        return st.isRegular ? st.size : nil
    }
}
