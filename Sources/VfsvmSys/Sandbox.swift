import CVfsvmLinux
import Glibc

/// Why the process could not confine itself. `vfsvm serve` refuses to
/// start on any of these unless the user asked for `--sandbox none`.
public struct SandboxError: Error, Hashable, Sendable, CustomStringConvertible {
    public let step: String
    public let cause: SystemError
    public var description: String { "cannot sandbox (\(step)): \(cause)" }
}

/// Process confinement for the file server: the FUSE core already refuses
/// to leave the share; the sandbox makes the rest of the host file system
/// unreachable even if it had a bug.
public enum Sandbox {
    /// What a confined file server keeps of the host: the share's root,
    /// opened through the sandbox's own root after the sandbox is in place
    /// (so ".." from it stops at the share and a read-only bind mount holds
    /// for every *at call made from it), and a /proc/self/fd directory for
    /// the calls that need a path to one of its own fds.
    public struct Share: Sendable {
        /// O_PATH | O_DIRECTORY fd of the shared directory.
        public let root: FileDescriptor
        /// O_PATH | O_DIRECTORY fd of /proc/self/fd.
        public let procSelfFD: FileDescriptor
    }

    /// Enters new mount and network namespaces in which the directory
    /// `rootFD` is open on (see `ShareDirectory.open`; `root` names it in
    /// errors) is `/`, as virtiofsd's `--sandbox=namespace` does: mounts are
    /// made private, the share's mounts are cloned from the fd (open_tree)
    /// and attached on the share itself, the working directory becomes the
    /// clone's root (fchdir on the clone's fd), `pivot_root` moves into it
    /// and the old root is detached. The path is never looked up again, so a
    /// symbolic link swapped in after the check is not followed. Fds opened
    /// before (the vhost-user socket) stay valid. With `readOnly` the clone
    /// and every mount in it are read-only too.
    ///
    /// /proc is not reachable from inside, so a procfs of its own is made
    /// first: mounted nowhere (fsmount), so ".." from it cannot climb back
    /// into the host's tree the way it could from the host's /proc, and
    /// limited to process directories (`subset=pid`).
    public static func enterNamespace(root: String, rootFD: FileDescriptor, readOnly: Bool) throws(SandboxError) -> Share {
        try requireSingleThread()
        try step("unshare(CLONE_NEWNS|CLONE_NEWNET)") { vfsvm_unshare(CLONE_NEWNS | CLONE_NEWNET) }
        let procSelfFD = try privateProcSelfFD()
        try step("make / private") { mount(nil, "/", nil, UInt(MS_REC | MS_PRIVATE), nil) }
        let clone = try cloneTree(root: root, rootFD: rootFD, readOnly: readOnly)
        let tree = clone.tree
        try step("attach the bind mount of \(root)") { vfsvm_attach_tree(tree.rawValue, clone.here.rawValue) }
        if clone.needsRemount { try remount(clone, root: root) }
        try step("fchdir(\(root))") { fchdir(tree.rawValue) }
        try step("pivot_root") { vfsvm_pivot_root(".", ".") }
        try step("detach the old root") { umount2(".", Int32(MNT_DETACH)) }
        try step("chdir(/)") { chdir("/") }
        return Share(root: try openRoot(), procSelfFD: procSelfFD)
    }

    /// chroot(2) into the directory `rootFD` is open on (virtiofsd's
    /// `--sandbox=chroot`; fchdir, then chroot(".")). The private procfs of
    /// `enterNamespace` is used where the kernel lets us make one, else the
    /// host's /proc/self/fd, opened before the chroot.
    public static func chroot(root: String, rootFD: FileDescriptor) throws(SandboxError) -> Share {
        try requireSingleThread()
        let procSelfFD: FileDescriptor
        do {
            procSelfFD = try privateProcSelfFD()
        } catch {
            do { procSelfFD = try FileDescriptor.open("/proc/self/fd", HostFSFlag.path | O_DIRECTORY) } catch {
                throw SandboxError(step: "open /proc/self/fd", cause: error)
            }
        }
        try step("fchdir(\(root))") { fchdir(rootFD.rawValue) }
        try step("chroot(\(root))") { Glibc.chroot(".") }
        try step("chdir(/)") { chdir("/") }
        return Share(root: try openRoot(), procSelfFD: procSelfFD)
    }

    /// A detached recursive bind mount of the share `rootFD` is open on,
    /// made in the current (new) mount namespace: nodev and nosuid, and
    /// read-only with `readOnly`, recursively (file systems mounted below
    /// the share are part of it). nodev: the server keeps CAP_MKNOD for the
    /// guest's device nodes, and opens only regular files for it; without
    /// nodev a compromised server could make a node of the host's disk in
    /// the share and open it.
    struct ShareTree {
        /// The clone, not attached yet.
        let tree: FileDescriptor
        /// The share's directory through this namespace's mounts.
        let here: FileDescriptor
        /// mount_setattr is missing (before Linux 5.12): once attached, the
        /// share's own mount gets the flags by a remount instead (`remount`).
        let needsRemount: Bool
        let readOnly: Bool
    }

    static func cloneTree(root: String, rootFD: FileDescriptor, readOnly: Bool) throws(SandboxError) -> ShareTree {
        // rootFD lies on the old namespace's mounts, which open_tree and
        // move_mount refuse: the same directory (checked) through this one's.
        let here: FileDescriptor
        do { here = try ShareDirectory.reopen(root, sameAs: rootFD) } catch {
            throw SandboxError(step: "reopen \(root) in the new mount namespace", cause: SystemError(error.description, .ESTALE))
        }
        let tree: FileDescriptor
        do { tree = FileDescriptor(owning: try sysCall("open_tree(\(root), OPEN_TREE_CLONE|AT_RECURSIVE)") { vfsvm_clone_tree(here.rawValue) }) } catch {
            throw SandboxError(step: "bind-mount \(root)", cause: error)
        }
        if vfsvm_restrict_tree(tree.rawValue, readOnly ? 1 : 0) != 0 {
            guard Errno.current == .ENOSYS else {
                throw SandboxError(step: "make \(root) nodev, nosuid\(readOnly ? " and read-only" : "")",
                                   cause: SystemError("mount_setattr(AT_RECURSIVE)", .current))
            }
            return ShareTree(tree: tree, here: here, needsRemount: true, readOnly: readOnly)
        }
        return ShareTree(tree: tree, here: here, needsRemount: false, readOnly: readOnly)
    }

    /// Before Linux 5.12: the attached share's own mount (only) nodev,
    /// nosuid, and read-only with `readOnly`.
    static func remount(_ tree: ShareTree, root: String) throws(SandboxError) {
        let flags = MS_REMOUNT | MS_BIND | MS_NODEV | MS_NOSUID | (tree.readOnly ? MS_RDONLY : 0)
        try step("remount \(root) nodev, nosuid\(tree.readOnly ? " and read-only" : "")") {
            mount(nil, "/proc/self/fd/\(tree.tree.rawValue)", nil, UInt(flags), nil)
        }
    }

    static func step(_ name: String, _ body: () -> Int32) throws(SandboxError) {
        do { _ = try sysCall(name, body) } catch { throw SandboxError(step: name, cause: error) }
    }

    /// The share as the sandbox's `/`.
    static func openRoot() throws(SandboxError) -> FileDescriptor {
        do { return try FileDescriptor.open("/", HostFSFlag.path | O_DIRECTORY) } catch {
            throw SandboxError(step: "open the share through the new root", cause: error)
        }
    }

    /// self/fd of a procfs instance mounted nowhere, reached through a
    /// detached bind mount of this process's own directory in it
    /// (/proc/PID): ".." stops there. The procfs shows the host's
    /// processes (there is no pid namespace), and /proc/OTHER/root is the
    /// root of any process this one passes the ptrace check for (the same
    /// uid with no more capabilities, or any uid it can setfsuid to), so
    /// from a self/fd with the whole procfs above it a compromised server
    /// would climb to the host's root.
    static func privateProcSelfFD() throws(SandboxError) -> FileDescriptor {
        let proc: FileDescriptor
        do { proc = FileDescriptor(owning: try sysCall("fsopen(proc)") { vfsvm_open_detached_procfs() }) } catch {
            throw SandboxError(step: "mount a private procfs", cause: error)
        }
        let own: FileDescriptor
        do { own = FileDescriptor(owning: try sysCall("open_tree(self, OPEN_TREE_CLONE)") { vfsvm_clone_subtree(proc.rawValue, "self") }) } catch {
            throw SandboxError(step: "bind-mount the private procfs's self", cause: error)
        }
        do { return try own.openAt(Array("fd".utf8), flags: HostFSFlag.path | O_DIRECTORY, beneath: false) } catch {
            throw SandboxError(step: "open self/fd in the private procfs", cause: error)
        }
    }

    /// Namespaces, the root, capabilities and no_new_privs belong to the
    /// calling thread only: a thread started before the sandbox would stay
    /// outside it. The sandbox is entered before any thread starts; this
    /// checks that it is. Inside the sandbox /proc is reached through the
    /// share's `procSelfFD` (self/fd: its parent's task directory lists the
    /// threads).
    static func requireSingleThread(procSelfFD: FileDescriptor? = nil) throws(SandboxError) {
        let threads: Int
        do { threads = try threadCount(procSelfFD: procSelfFD) } catch { throw SandboxError(step: "count threads", cause: error) }
        guard threads == 1 else {
            throw SandboxError(step: "check that no other thread runs yet", cause: SystemError("\(threads) threads in /proc/self/task", .EBUSY))
        }
    }

    /// Entries of /proc/self/task.
    static func threadCount(procSelfFD: FileDescriptor? = nil) throws(SystemError) -> Int {
        let fd = try sysCall("open(/proc/self/task)") {
            vfsvm_openat(procSelfFD?.rawValue ?? AT_FDCWD, procSelfFD == nil ? "/proc/self/task" : "../task", O_RDONLY | O_DIRECTORY | O_CLOEXEC, 0)
        }
        guard let dir = fdopendir(fd) else {
            let err = Errno.current
            close(fd)
            throw SystemError("fdopendir(/proc/self/task)", err)
        }
        defer { closedir(dir) }
        var count = 0
        while let entry = readdir(dir) {
            if entry.pointee.d_name.0 != 0x2e { count += 1 }
        }
        return count
    }

    /// The calling thread's effective capabilities, as numbers.
    public static func effectiveCapabilities() throws(SandboxError) -> [Int32] {
        var effective: UInt64 = 0
        var permitted: UInt64 = 0
        try step("capget") { vfsvm_capget(&effective, &permitted) }
        return (0..<64).filter { effective & (1 << UInt64($0)) != 0 }.map(Int32.init)
    }

    /// Keeps only `keep` (capability numbers) of what the process has in
    /// its effective, permitted and bounding sets, and clears the
    /// inheritable and ambient sets. Capabilities are per thread: this runs
    /// before any other thread starts (checked), and every thread started
    /// later inherits the result. Without CAP_SETPCAP (an unprivileged
    /// `--sandbox none`) the bounding set cannot change and is left alone.
    /// `procSelfFD`: the confined share's, where /proc is out of reach.
    public static func dropCapabilities(keeping keep: some Sequence<Int32>, procSelfFD: FileDescriptor?) throws(SandboxError) {
        try requireSingleThread(procSelfFD: procSelfFD)
        var mask: UInt64 = 0
        for c in keep where (0..<64).contains(c) { mask |= 1 << UInt64(c) }
        var effective: UInt64 = 0
        var permitted: UInt64 = 0
        try step("capget") { vfsvm_capget(&effective, &permitted) }
        let setpcap: UInt64 = 1 << UInt64(CAP_SETPCAP)
        if effective & setpcap != 0 {
            // Drop from the bounding set first: that needs CAP_SETPCAP, which
            // the capset below removes. EINVAL marks the end of known caps.
            var cap: Int32 = 0
            while cap < 64 {
                if mask & (1 << UInt64(cap)) == 0, vfsvm_capbset_drop(cap) != 0 {
                    if Errno.current == .EINVAL { break }
                    throw SandboxError(step: "drop capability \(cap) from the bounding set", cause: SystemError("prctl(PR_CAPBSET_DROP)", .current))
                }
                cap += 1
            }
        }
        try step("clear the ambient capabilities") { vfsvm_clear_ambient_capabilities() }
        try step("capset") { vfsvm_capset(mask & permitted) }
    }
}
