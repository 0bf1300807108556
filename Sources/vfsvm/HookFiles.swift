import Glibc
import VfsvmSys

/// What `vfsvm libvirt-hook` (root) creates next to a share's socket, and
/// the checks that keep another user from steering it: the socket's
/// directory must be root's and writable by root alone (else that user
/// could plant a symlink where the pid file goes, or swap the socket QEMU
/// connects to), the pid file is created afresh and never through a
/// symlink, and the socket is handed to the user QEMU runs as.
extension LibvirtHook {
    /// Refuses `socket` unless its directory (symbolic links resolved) is a
    /// directory owned by root with no group or other write permission,
    /// and every directory above it is owned by root and either not
    /// writable by group or others or sticky (as /tmp: others cannot move
    /// root's entries).
    static func checkSocketDirectory(_ socket: String) throws(HookError) {
        let given = socket.lastIndex(of: "/").map { String(socket[..<$0]) }.map { $0.isEmpty ? "/" : $0 } ?? "."
        guard let real = realpath(given, nil) else {
            throw HookError(message: "the socket directory \(given) of \(socket): \(String(cString: strerror(errno)))")
        }
        let dir = String(cString: real)
        free(real)
        var path = dir
        var first = true
        while true {
            var st = stat()
            guard lstat(path, &st) == 0 else {
                throw HookError(message: "the socket directory \(path) of \(socket): \(String(cString: strerror(errno)))")
            }
            let othersWrite = st.st_mode & 0o022 != 0
            let sticky = st.st_mode & S_ISVTX != 0
            if st.st_uid != 0 || othersWrite && (first || !sticky) {
                let mode = String(st.st_mode & 0o7777, radix: 8)
                let what = first ? "the socket directory" : "\(path), above the socket directory \(dir),"
                throw HookError(message: "refusing socket \(socket): \(what) is \(st.st_uid != 0 ? "owned by uid \(st.st_uid)" : "writable by other users (mode \(mode))"); the hook (root) makes the socket and its pid file there, so keep them in a root-owned directory only root can write to, such as /run/vfsvm")
            }
            if path == "/" { return }
            first = false
            let up = path[..<path.lastIndex(of: "/")!]
            path = up.isEmpty ? "/" : String(up)
        }
    }

    /// Creates the pid file afresh: a stale one (a regular file of root's)
    /// is removed first; a symlink or anything else there is refused, and
    /// O_EXCL | O_NOFOLLOW make sure the open creates the file itself.
    /// Returns the open fd.
    static func createPidFile(_ path: String) throws(HookError) -> FileDescriptor {
        var st = stat()
        if lstat(path, &st) == 0 {
            guard st.st_mode & S_IFMT == S_IFREG, st.st_uid == 0 else {
                throw HookError(message: "refusing pid file \(path): it exists and is not a regular file of root's (a symbolic link?); remove it")
            }
            unlink(path)
        }
        do {
            return try FileDescriptor.open(path, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW, mode: 0o644)
        } catch {
            throw HookError(message: "cannot create the pid file \(path): \(error.errno)")
        }
    }

    /// Where libvirt's QEMU driver configuration is read (for the user
    /// QEMU runs as).
    static var qemuConfPath: String { getenv("VFSVM_HOOK_QEMU_CONF").map { String(cString: $0) } ?? "/etc/libvirt/qemu.conf" }

    /// The `user = "..."` setting of a qemu.conf, nil when not set
    /// (comments and other keys skipped).
    static func qemuUser(inConf text: String) -> String? {
        var found: String?
        for line in text.split(separator: "\n") {
            let t = line.drop { $0 == " " || $0 == "\t" }
            guard t.hasPrefix("user") else { continue }
            let rest = t.dropFirst(4).drop { $0 == " " || $0 == "\t" }
            guard rest.first == "=" else { continue }
            let value = rest.dropFirst().drop { $0 == " " || $0 == "\t" }
            guard value.first == "\"", let end = value.dropFirst().firstIndex(of: "\"") else { continue }
            found = String(value[value.index(after: value.startIndex)..<end])
        }
        return found
    }

    /// A qemu.conf user as libvirt reads it: "+N" is uid N, a name is
    /// looked up (then a number is taken as a uid). Returns uid and gid.
    static func account(_ user: String) -> (uid: uid_t, gid: gid_t)? {
        if user.hasPrefix("+"), let uid = uid_t(user.dropFirst()) {
            let pw = getpwuid(uid)
            return (uid, pw?.pointee.pw_gid ?? gid_t(uid))
        }
        if let pw = getpwnam(user) { return (pw.pointee.pw_uid, pw.pointee.pw_gid) }
        if let uid = uid_t(user) { return (uid, getpwuid(uid)?.pointee.pw_gid ?? gid_t(uid)) }
        return nil
    }

    /// Gives the listening socket (0600, root's, as `vfsvm serve` binds
    /// it) to the user QEMU runs as: the share's `user=` in the vfsvm
    /// metadata, else qemu.conf's `user =`; with neither it stays root's
    /// (QEMU running as root).
    static func handOverSocket(_ socket: String, user metadataUser: String?) throws(HookError) {
        let configured = metadataUser ?? (try? String(contentsOfFile: qemuConfPath)).flatMap(qemuUser(inConf:))
        guard let user = configured else { return }
        guard let id = account(user) else {
            throw HookError(message: "cannot give \(socket) to QEMU's user '\(user)': no such user")
        }
        guard fchownat(AT_FDCWD, socket, id.uid, id.gid, AT_SYMLINK_NOFOLLOW) == 0 else {
            throw HookError(message: "cannot give \(socket) to QEMU's user '\(user)': \(String(cString: strerror(errno)))")
        }
    }
}
