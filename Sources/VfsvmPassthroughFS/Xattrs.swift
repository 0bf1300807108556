import Glibc
import VfsvmSys
import VfsvmFUSE

// Extended attributes, by /proc/self/fd/N path of the inode's O_PATH fd.
extension PassthroughFileSystem {
    func xattrPath(_ node: UInt64) throws(FUSEErrno) -> (String, FileDescriptor) {
        guard options.xattr else { throw FUSEErrno(.ENOSYS, "xattr: disabled") }
        let p = try pathFD(node)
        // Relative to procSelfFD (see XattrCall.inDirectory): no absolute
        // /proc path, which the sandbox hides.
        return (String(p.rawValue), p)
    }

    public func setxattr(_ ctx: FUSERequestContext, node: UInt64, name: [UInt8], value: [UInt8], flags: UInt32) throws(FUSEErrno) {
        let (path, keep) = try xattrPath(node)
        try withExtendedLifetime(keep) { () throws(FUSEErrno) in
            try host { () throws(SystemError) in
                    try XattrCall.inDirectory(procSelfFD) { () throws(SystemError) in
                    try XattrCall.set(path: path, name: name, value: value, flags: Int32(bitPattern: flags & 3))
                }
            }
        }
    }

    public func getxattr(_ ctx: FUSERequestContext, node: UInt64, name: [UInt8], size: Int) throws(FUSEErrno) -> FUSEXattrReply {
        let (path, keep) = try xattrPath(node)
        return try withExtendedLifetime(keep) { () throws(FUSEErrno) -> FUSEXattrReply in
            let r = try host { () throws(SystemError) in
                    try XattrCall.inDirectory(procSelfFD) { () throws(SystemError) in
                    try XattrCall.get(path: path, name: name, size: size)
                }
            }
            return size == 0 ? .size(r.length) : .data(r.value)
        }
    }

    public func listxattr(_ ctx: FUSERequestContext, node: UInt64, size: Int) throws(FUSEErrno) -> FUSEXattrReply {
        let (path, keep) = try xattrPath(node)
        return try withExtendedLifetime(keep) { () throws(FUSEErrno) -> FUSEXattrReply in
            let r = try host { () throws(SystemError) in
                    try XattrCall.inDirectory(procSelfFD) { () throws(SystemError) in
                    try XattrCall.list(path: path, size: size)
                }
            }
            return size == 0 ? .size(r.length) : .data(r.value)
        }
    }

    public func removexattr(_ ctx: FUSERequestContext, node: UInt64, name: [UInt8]) throws(FUSEErrno) {
        let (path, keep) = try xattrPath(node)
        try withExtendedLifetime(keep) { () throws(FUSEErrno) in
            try host { () throws(SystemError) in
                    try XattrCall.inDirectory(procSelfFD) { () throws(SystemError) in
                    try XattrCall.remove(path: path, name: name)
                }
            }
        }
    }
}
