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

    /// Enters new mount and network namespaces in which `root` is `/`, as
    /// virtiofsd's `--sandbox=namespace` does: mounts are made private,
    /// `root` is bind-mounted on itself, `pivot_root` moves into it and the
    /// old root is detached. Open fds (the vhost-user socket, the share's
    /// root fd) stay valid. With `readOnly` the bind mount is read-only too.
    public static func enterNamespace(root: String, readOnly: Bool) throws(SandboxError) {
        func step(_ name: String, _ body: () -> Int32) throws(SandboxError) {
            do { _ = try sysCall(name, body) } catch { throw SandboxError(step: name, cause: error) }
        }
        try step("unshare(CLONE_NEWNS|CLONE_NEWNET)") { vfsvm_unshare(CLONE_NEWNS | CLONE_NEWNET) }
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
    }

    /// chroot(2) into `root` (virtiofsd's `--sandbox=chroot`).
    public static func chroot(root: String) throws(SandboxError) {
        do {
            _ = try sysCall("chdir(\(root))") { chdir(root) }
            _ = try sysCall("chroot(\(root))") { Glibc.chroot(".") }
            _ = try sysCall("chdir(/)") { chdir("/") }
        } catch { throw SandboxError(step: "chroot", cause: error) }
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
