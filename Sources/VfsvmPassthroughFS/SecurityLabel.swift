import Glibc
import VfsvmSys
import VfsvmFUSE

// FUSE_SECURITY_CTX (virtiofsd's --security-label): the security context
// a create carries becomes an xattr of the new node.
//
// The xattr is set after the node is made and before its entry is
// returned, so no guest process sees the node unlabelled (the guest kernel
// holds the parent directory locked across the create). Host processes
// may see it for that moment; TMPFILE nodes are labelled before they have
// a name anywhere. When the label cannot be set, the node is removed again
// and the create fails with that error: a node never stays unlabelled.
extension PassthroughFileSystem {
    /// Sets a create's security context `label` (nil: none) on the node `fd` is open on (any fd
    /// of it, O_PATH included), as the server, not as the caller: the label
    /// comes from the guest kernel's LSM, not from the user creating the
    /// node, as in virtiofsd. The name goes through --xattrmap like any
    /// guest xattr name, so ":map:security.:user.virtiofs.security.:"
    /// keeps guest labels off the host's own security.* namespace; writing
    /// security.* itself needs CAP_SYS_ADMIN on a host without an LSM that
    /// takes it (`--modcaps=+sys_admin`), else the create gets EPERM.
    func applySecurityContext(_ label: FUSESecurityContext?, on fd: FileDescriptor) throws(FUSEErrno) {
        guard let label else { return }
        guard options.xattr else { throw FUSEErrno(.EOPNOTSUPP, "security context: xattrs are off") }
        let name = try hostXattrName(label.name)
        try host { () throws(SystemError) in
            try XattrCall.inDirectory(procSelfFD) { () throws(SystemError) in
                try XattrCall.set(path: String(fd.rawValue), name: name, value: label.value, flags: 0)
            }
        }
    }

    /// After MKDIR, MKNOD or SYMLINK made `name` in `dir` and `entry` came
    /// back for it: labels it, or removes it again (and forgets the
    /// lookup) and throws why.
    func labelNewName(_ label: FUSESecurityContext?, _ entry: FUSEEntry, dir: FileDescriptor, name: [UInt8], directory: Bool) throws(FUSEErrno) -> FUSEEntry {
        guard label != nil else { return entry }
        do throws(FUSEErrno) {
            try applySecurityContext(label, on: try pathFD(entry.nodeID))
            return entry
        } catch {
            removeUnlabelled(dir: dir, name: name, ino: entry.attributes.ino, directory: directory)
            forget(nodeID: entry.nodeID, count: 1)
            throw error
        }
    }

    /// Removes `name` from `dir` if it still is inode `ino` (the node a
    /// create just made, whose label could not be set).
    func removeUnlabelled(dir: FileDescriptor, name: [UInt8], ino: UInt64, directory: Bool) {
        guard let st = try? dir.statAt(name), st.ino == ino else { return }
        try? dir.unlinkAt(name, flags: directory ? AT_REMOVEDIR : 0)
    }
}
