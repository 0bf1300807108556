import CVfsvmLinux
import Glibc

/// Why a directory cannot be shared: one sentence naming it.
public struct ShareDirectoryError: Error, Hashable, Sendable, CustomStringConvertible {
    public let description: String
}

/// The shared directory, opened once: everything after (the sandbox's bind
/// mount, its chdir, the file server's root) works from this fd, never from
/// the path again, so the directory cannot be swapped for another between
/// the check and the use.
public enum ShareDirectory {
    /// Opens `path` (O_PATH | O_DIRECTORY, not following a symlink in its
    /// last component) and refuses it when any component of the path is a
    /// symbolic link: where the fd landed (/proc/self/fd) must be the path
    /// as given, made absolute with "." and ".." taken lexically. A root
    /// `vfsvm serve` is often started on a path inside a directory another
    /// user owns; that user could otherwise point it at /etc.
    public static func open(_ path: String) throws(ShareDirectoryError) -> FileDescriptor {
        let fd: FileDescriptor
        do { fd = try FileDescriptor.open(path, HostFSFlag.path | O_DIRECTORY | O_NOFOLLOW) } catch {
            if error.errno == .ENOTDIR || error.errno == .ELOOP, isSymbolicLink(path) {
                throw ShareDirectoryError(description: "cannot share \(path): it is a symbolic link (to \(target(of: path))); give the directory's real path")
            }
            throw ShareDirectoryError(description: "cannot share \(path): \(error.errno)")
        }
        let expected = lexicallyAbsolute(path)
        let actual: String
        do { actual = try linkText("/proc/self/fd/\(fd.rawValue)") } catch {
            throw ShareDirectoryError(description: "cannot share \(path): cannot read where it is (\(error))")
        }
        guard actual == expected else {
            throw ShareDirectoryError(description: "cannot share \(path): the path goes through a symbolic link (it is \(actual)); give the directory's real path")
        }
        return fd
    }

    /// Opens `path` again, as `open` does, and checks that it is the very
    /// directory `original` is open on (device and inode): the sandbox's
    /// new mount namespace needs an fd of its own mounts, and the path may
    /// have been swapped since.
    public static func reopen(_ path: String, sameAs original: FileDescriptor) throws(ShareDirectoryError) -> FileDescriptor {
        let fd = try open(path)
        do {
            let a = try original.stat()
            let b = try fd.stat()
            guard a.dev == b.dev && a.ino == b.ino else {
                throw ShareDirectoryError(description: "cannot share \(path): it was replaced by another directory while serve started")
            }
        } catch let error as ShareDirectoryError {
            throw error
        } catch {
            throw ShareDirectoryError(description: "cannot share \(path): \(error)")
        }
        return fd
    }

    /// `path` made absolute against the working directory, with empty and
    /// "." components dropped and ".." removing the one before it.
    public static func lexicallyAbsolute(_ path: String) -> String {
        var full = path
        if !path.hasPrefix("/") {
            var buffer = [CChar](repeating: 0, count: Int(PATH_MAX) + 1)
            let cwd = getcwd(&buffer, buffer.count).map { String(cString: $0) } ?? "/"
            full = cwd + "/" + path
        }
        var parts: [Substring] = []
        for part in full.split(separator: "/", omittingEmptySubsequences: true) {
            switch part {
            case ".": continue
            case "..": _ = parts.popLast()
            default: parts.append(part)
            }
        }
        return "/" + parts.joined(separator: "/")
    }

    private static func isSymbolicLink(_ path: String) -> Bool {
        var st = stat()
        return lstat(path, &st) == 0 && st.st_mode & S_IFMT == S_IFLNK
    }

    private static func target(of path: String) -> String {
        (try? linkText(path)) ?? "?"
    }

    private static func linkText(_ path: String) throws(SystemError) -> String {
        var buffer = [CChar](repeating: 0, count: Int(PATH_MAX) + 1)
        let n = try sysCall("readlink(\(path))") { readlink(path, &buffer, buffer.count - 1) }
        return String(decoding: buffer[0..<n].map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }
}
