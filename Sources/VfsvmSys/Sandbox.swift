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
    /// Capabilities a passthrough file server running as root needs:
    /// ownership and mode changes on behalf of guest users, reading every
    /// file, per-request uid/gid switching, device nodes, file capabilities,
    /// and file handles (open_by_handle_at needs CAP_DAC_READ_SEARCH).
    public static let fileServerCapabilities: [Int32] = [
        CAP_CHOWN, CAP_DAC_OVERRIDE, CAP_DAC_READ_SEARCH, CAP_FOWNER, CAP_FSETID,
        CAP_SETGID, CAP_SETUID, CAP_MKNOD, CAP_SETFCAP, CAP_LEASE,
    ]

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

    /// Enters new mount and network namespaces in which `root` is `/`, as
    /// virtiofsd's `--sandbox=namespace` does: mounts are made private,
    /// `root` is bind-mounted on itself, `pivot_root` moves into it and the
    /// old root is detached. Fds opened before (the vhost-user socket) stay
    /// valid. With `readOnly` the bind mount is read-only too.
    ///
    /// /proc is not reachable from inside, so a procfs of its own is made
    /// first: mounted nowhere (fsmount), so ".." from it cannot climb back
    /// into the host's tree the way it could from the host's /proc, and
    /// limited to process directories (`subset=pid`).
    public static func enterNamespace(root: String, readOnly: Bool) throws(SandboxError) -> Share {
        try requireSingleThread()
        try step("unshare(CLONE_NEWNS|CLONE_NEWNET)") { vfsvm_unshare(CLONE_NEWNS | CLONE_NEWNET) }
        let procSelfFD = try privateProcSelfFD()
        try step("make / private") { mount(nil, "/", nil, UInt(MS_REC | MS_PRIVATE), nil) }
        try step("bind-mount \(root)") { mount(root, root, nil, UInt(MS_BIND | MS_REC), nil) }
        if readOnly {
            try step("remount \(root) read-only") {
                mount(nil, root, nil, UInt(MS_REMOUNT | MS_BIND | MS_RDONLY), nil)
            }
        }
        try step("chdir(\(root))") { chdir(root) }
        try step("pivot_root") { vfsvm_pivot_root(".", ".") }
        try step("detach the old root") { umount2(".", Int32(MNT_DETACH)) }
        try step("chdir(/)") { chdir("/") }
        return Share(root: try openRoot(), procSelfFD: procSelfFD)
    }

    /// chroot(2) into `root` (virtiofsd's `--sandbox=chroot`). The private
    /// procfs of `enterNamespace` is used where the kernel lets us make one,
    /// else the host's /proc/self/fd, opened before the chroot.
    public static func chroot(root: String) throws(SandboxError) -> Share {
        try requireSingleThread()
        let procSelfFD: FileDescriptor
        do {
            procSelfFD = try privateProcSelfFD()
        } catch {
            do { procSelfFD = try FileDescriptor.open("/proc/self/fd", HostFSFlag.path | O_DIRECTORY) } catch {
                throw SandboxError(step: "open /proc/self/fd", cause: error)
            }
        }
        try step("chdir(\(root))") { chdir(root) }
        try step("chroot(\(root))") { Glibc.chroot(".") }
        try step("chdir(/)") { chdir("/") }
        return Share(root: try openRoot(), procSelfFD: procSelfFD)
    }

    private static func step(_ name: String, _ body: () -> Int32) throws(SandboxError) {
        do { _ = try sysCall(name, body) } catch { throw SandboxError(step: name, cause: error) }
    }

    /// The share as the sandbox's `/`.
    private static func openRoot() throws(SandboxError) -> FileDescriptor {
        do { return try FileDescriptor.open("/", HostFSFlag.path | O_DIRECTORY) } catch {
            throw SandboxError(step: "open the share through the new root", cause: error)
        }
    }

    /// self/fd of a procfs instance mounted nowhere.
    private static func privateProcSelfFD() throws(SandboxError) -> FileDescriptor {
        let proc: FileDescriptor
        do { proc = FileDescriptor(owning: try sysCall("fsopen(proc)") { vfsvm_open_detached_procfs() }) } catch {
            throw SandboxError(step: "mount a private procfs", cause: error)
        }
        do { return try proc.openAt(Array("self/fd".utf8), flags: HostFSFlag.path | O_DIRECTORY, beneath: false) } catch {
            throw SandboxError(step: "open self/fd in the private procfs", cause: error)
        }
    }

    /// Namespaces, the root, capabilities and no_new_privs belong to the
    /// calling thread only: a thread started before the sandbox would stay
    /// outside it. The sandbox is entered before any thread starts; this
    /// checks that it is.
    private static func requireSingleThread() throws(SandboxError) {
        let threads: Int
        do { threads = try threadCount() } catch { throw SandboxError(step: "count threads", cause: error) }
        guard threads == 1 else {
            throw SandboxError(step: "check that no other thread runs yet", cause: SystemError("\(threads) threads in /proc/self/task", .EBUSY))
        }
    }

    /// Entries of /proc/self/task.
    static func threadCount() throws(SystemError) -> Int {
        guard let dir = opendir("/proc/self/task") else { throw SystemError("opendir(/proc/self/task)", .current) }
        defer { closedir(dir) }
        var count = 0
        while let entry = readdir(dir) {
            if entry.pointee.d_name.0 != 0x2e { count += 1 }
        }
        return count
    }

    /// Keeps only `keep` in the effective, permitted and bounding sets;
    /// clears the inheritable set.
    public static func dropCapabilities(keeping keep: [Int32]) throws(SandboxError) {
        var mask: UInt64 = 0
        for c in keep { mask |= 1 << UInt64(c) }
        var cap: Int32 = 0
        // Drop from the bounding set first: that needs CAP_SETPCAP, which
        // the capset below removes. EINVAL marks the end of known caps.
        while cap < 64 {
            if mask & (1 << UInt64(cap)) == 0, vfsvm_capbset_drop(cap) != 0 {
                if Errno.current == .EINVAL { break }
                throw SandboxError(step: "drop capability \(cap) from the bounding set", cause: SystemError("prctl(PR_CAPBSET_DROP)", .current))
            }
            cap += 1
        }
        do { _ = try sysCall("capset") { vfsvm_capset(mask) } } catch {
            throw SandboxError(step: "capset", cause: error)
        }
    }
}
