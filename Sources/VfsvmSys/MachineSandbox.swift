import CVfsvmLinux
import Glibc

extension Sandbox {
    /// A share `vfsvm run` attaches in its machine namespace.
    public struct MachineShare: Sendable {
        /// The host path, for errors and the check that the path still
        /// names the directory `fd` is open on.
        public let path: String
        /// The directory as `ShareDirectory.open` opened it (host side).
        public let fd: FileDescriptor
        public let readOnly: Bool

        public init(path: String, fd: FileDescriptor, readOnly: Bool) {
            self.path = path
            self.fd = fd
            self.readOnly = readOnly
        }
    }

    /// What a confined `vfsvm run` keeps of the host file system.
    public struct Machine: Sendable {
        /// One per `MachineShare`, in order: the share as its directory
        /// under the new root, opened after the pivot.
        public let shares: [Share]
        /// self/fd of the private procfs (for the capability drop's thread
        /// count and the shares' servers).
        public let procSelfFD: FileDescriptor
    }

    /// Where `enterMachineNamespace` attaches share `index`: `/index`.
    public static func machineShareDirectory(_ index: Int) -> String { "/\(index)" }

    /// New mount and network namespaces for the whole VMM process (vCPUs,
    /// devices and every share's FUSE server), whose `/` is an empty
    /// read-only tmpfs holding only the shares, share i on `/i`. Whatever
    /// the process does after this — a path with "..", an absolute path,
    /// IORING_OP_OPENAT, which seccomp cannot see — reaches the shares and
    /// nothing else of the host. Unlike `enterNamespace` (one share as
    /// `/`) a VM has any number of shares, none of them a natural root.
    ///
    /// Everything else the VMM needs by path — /dev/kvm, the disks, the
    /// kernel, the console — is opened before, so the caller calls this
    /// after opening those and before opening anything through a share.
    /// The shares are cloned from their fds (open_tree), nodev and nosuid
    /// and read-only ones read-only, recursively (`cloneTree`), then the tmpfs is attached over /dev of the
    /// new namespace only (pivot_root wants its new root attached, and
    /// /dev exists wherever /dev/kvm does; with no shares no share path
    /// could serve), the clones are moved onto its directories, and
    /// pivot_root moves into it and detaches the old root.
    public static func enterMachineNamespace(_ shares: [MachineShare]) throws(SandboxError) -> Machine {
        try requireSingleThread()
        try step("unshare(CLONE_NEWNS|CLONE_NEWNET)") { vfsvm_unshare(CLONE_NEWNS | CLONE_NEWNET) }
        let procSelfFD = try privateProcSelfFD()
        try step("make / private") { mount(nil, "/", nil, UInt(MS_REC | MS_PRIVATE), nil) }
        // Cloned before the tmpfs covers /dev: a share may lie below it.
        var trees: [ShareTree] = []
        for share in shares { trees.append(try cloneTree(root: share.path, rootFD: share.fd, readOnly: share.readOnly)) }

        let root: FileDescriptor
        do { root = FileDescriptor(owning: try sysCall("fsopen(tmpfs)") { vfsvm_open_detached_tmpfs() }) } catch {
            throw SandboxError(step: "make the machine's root (a tmpfs)", cause: error)
        }
        let anchor: FileDescriptor
        do { anchor = try FileDescriptor.open("/dev", HostFSFlag.path | O_DIRECTORY | O_NOFOLLOW) } catch {
            throw SandboxError(step: "open /dev to attach the machine's root on", cause: error)
        }
        try step("attach the machine's root") { vfsvm_attach_tree(root.rawValue, anchor.rawValue) }
        for (index, tree) in trees.enumerated() {
            let name = String(machineShareDirectory(index).dropFirst())
            let path = shares[index].path
            try step("mkdir \(machineShareDirectory(index)) for \(path)") { mkdirat(root.rawValue, name, 0o755) }
            try step("attach the bind mount of \(path)") { vfsvm_attach_tree_at(tree.tree.rawValue, root.rawValue, name) }
            if tree.needsRemount { try remount(tree, root: path) }
        }
        // The root itself read-only: nothing can be created beside the shares.
        var remountRoot = false
        if vfsvm_make_mount_read_only(root.rawValue) != 0 {
            guard Errno.current == .ENOSYS else {
                throw SandboxError(step: "make the machine's root read-only", cause: SystemError("mount_setattr(MOUNT_ATTR_RDONLY)", .current))
            }
            remountRoot = true
        }
        try step("fchdir(the machine's root)") { fchdir(root.rawValue) }
        try step("pivot_root") { vfsvm_pivot_root(".", ".") }
        try step("detach the old root") { umount2(".", Int32(MNT_DETACH)) }
        try step("chdir(/)") { chdir("/") }
        if remountRoot {
            try step("remount the machine's root read-only") {
                mount(nil, "/", nil, UInt(MS_REMOUNT | MS_BIND | MS_RDONLY | MS_NOSUID | MS_NODEV | MS_NOEXEC), nil)
            }
        }
        var roots: [Share] = []
        for index in shares.indices {
            do {
                let fd = try FileDescriptor.open(machineShareDirectory(index), HostFSFlag.path | O_DIRECTORY | O_NOFOLLOW)
                roots.append(Share(root: fd, procSelfFD: procSelfFD))
            } catch {
                throw SandboxError(step: "open \(shares[index].path) through the machine's root", cause: error)
            }
        }
        return Machine(shares: roots, procSelfFD: procSelfFD)
    }
}
