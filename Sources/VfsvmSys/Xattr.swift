import Glibc
import CVfsvmLinux

// Extended attributes by path (used with /proc/self/fd/N so O_PATH fds
// work; the path is vfsvm's own, never a guest string).

public enum XattrCall {
    /// Runs `body` with the calling thread's working directory set to
    /// `directory`, so `body` can name "/proc/self/fd/N" as the relative
    /// path "N" even where /proc is not reachable by absolute path (inside
    /// the serve sandbox, whose root is the share). The thread first takes
    /// a private copy of its fs context (unshare(CLONE_FS)), so other
    /// threads' working directories never change; the directory is left
    /// set afterwards, which is harmless because everything else uses *at()
    /// calls relative to fds.
    public static func inDirectory<R>(_ directory: FileDescriptor, _ body: () throws(SystemError) -> R) throws(SystemError) -> R {
        _ = try sysCall("unshare(CLONE_FS)") { vfsvm_unshare_fs() }
        _ = try sysCall("fchdir(/proc/self/fd)") { fchdir(directory.rawValue) }
        return try body()
    }

    /// getxattr(path, name): the value, or with `size` 0 its length only
    /// (as an empty array and the length).
    public static func get(path: String, name: [UInt8], size: Int) throws(SystemError) -> (value: [UInt8], length: Int) {
        var buf = [UInt8](repeating: 0, count: max(size, 1))
        let n = try withCName(name, "getxattr") { nm in
            Result { () throws(SystemError) in
                try sysCall("getxattr") {
                    // Safe: the kernel writes at most `size` bytes into buf (count ≥ size).
                    buf.withUnsafeMutableBytes { getxattr(path, nm, size == 0 ? nil : $0.baseAddress, size) }
                }
            }
        }.get()
        return (size == 0 ? [] : Array(buf.prefix(n)), n)
    }

    public static func list(path: String, size: Int) throws(SystemError) -> (value: [UInt8], length: Int) {
        var buf = [UInt8](repeating: 0, count: max(size, 1))
        let n = try sysCall("listxattr") {
            // Safe: the kernel writes at most `size` bytes into buf.
            buf.withUnsafeMutableBytes { b in
                b.withMemoryRebound(to: CChar.self) { listxattr(path, size == 0 ? nil : $0.baseAddress, size) }
            }
        }
        return (size == 0 ? [] : Array(buf.prefix(n)), n)
    }

    public static func set(path: String, name: [UInt8], value: [UInt8], flags: Int32) throws(SystemError) {
        _ = try withCName(name, "setxattr") { nm in
            Result { () throws(SystemError) in
                try sysCall("setxattr") { value.withUnsafeBytes { setxattr(path, nm, $0.baseAddress, $0.count, flags) } }
            }
        }.get()
    }

    public static func remove(path: String, name: [UInt8]) throws(SystemError) {
        _ = try withCName(name, "removexattr") { nm in
            Result { () throws(SystemError) in try sysCall("removexattr") { removexattr(path, nm) } }
        }.get()
    }
}
