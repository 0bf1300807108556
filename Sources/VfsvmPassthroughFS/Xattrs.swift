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

    /// The host name of guest xattr `name` (`xattrMap`).
    public func hostXattrName(_ name: [UInt8]) throws(FUSEErrno) -> [UInt8] {
        guard let map = options.xattrMap else { return name }
        switch map.client(name) {
        case let .host(h): return h
        case let .refused(e): throw FUSEErrno(e, "xattr name refused by --xattrmap")
        }
    }

    /// Where `xattrMap` keeps the guest's security.capability under another
    /// name, the host kernel no longer drops it when the file is written,
    /// truncated or given away: vfsvm does (as a local kernel would).
    func dropRemappedCapability(_ fd: FileDescriptor) {
        guard let name = options.xattrMap?.remappedCapability else { return }
        try? XattrCall.inDirectory(procSelfFD) { () throws(SystemError) in
            try XattrCall.remove(path: String(fd.rawValue), name: name)
        }
    }

    public func setxattr(_ ctx: FUSERequestContext, node: UInt64, name: [UInt8], value: [UInt8], flags: UInt32) throws(FUSEErrno) {
        let name = try hostXattrName(name)
        let (path, keep) = try xattrPath(node)
        try withExtendedLifetime(keep) { () throws(FUSEErrno) in
            try host { () throws(SystemError) in
                    try XattrCall.inDirectory(procSelfFD) { () throws(SystemError) in
                    try XattrCall.set(path: path, name: name, value: value, flags: Int32(bitPattern: flags & 3))
                }
            }
            if options.posixACL, flags & FUSESetxattrFlag.aclKillSGID != 0, name == Array("system.posix_acl_access".utf8) {
                // The host kernel keeps S_ISGID for vfsvm (CAP_FSETID); the
                // guest's caller would have lost it.
                let st = try host { () throws(SystemError) in try keep.stat() }
                if st.mode & 0o2000 != 0 {
                    try host { () throws(SystemError) in
                        try procSelfFD.chmodAt(Array(path.utf8), mode: mode_t(st.mode & 0o7777 & ~0o2000))
                    }
                }
            }
        }
    }

    public func getxattr(_ ctx: FUSERequestContext, node: UInt64, name: [UInt8], size: Int) throws(FUSEErrno) -> FUSEXattrReply {
        let name = try hostXattrName(name)
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
            guard let map = options.xattrMap else {
                let r = try host { () throws(SystemError) in
                    try XattrCall.inDirectory(procSelfFD) { () throws(SystemError) in
                        try XattrCall.list(path: path, size: size)
                    }
                }
                return size == 0 ? .size(r.length) : .data(r.value)
            }
            // The guest's list is the host's, renamed and filtered: read it
            // whole (its size may change between the calls: retry), then
            // answer the size or the names from the mapped list.
            for _ in 0..<8 {
                let all: [UInt8]
                do throws(FUSEErrno) {
                    all = try host { () throws(SystemError) -> [UInt8] in
                        try XattrCall.inDirectory(procSelfFD) { () throws(SystemError) -> [UInt8] in
                            let n = try XattrCall.list(path: path, size: 0).length
                            return n == 0 ? [] : try XattrCall.list(path: path, size: n).value
                        }
                    }
                } catch where error.errno == .ERANGE { continue }
                let mapped = map.serverList(all)
                if size == 0 { return .size(mapped.count) }
                guard mapped.count <= size else { throw FUSEErrno(.ERANGE, "listxattr: the mapped list is larger than the buffer") }
                return .data(mapped)
            }
            throw FUSEErrno(.EAGAIN, "listxattr: the list kept changing")
        }
    }

    public func removexattr(_ ctx: FUSERequestContext, node: UInt64, name: [UInt8]) throws(FUSEErrno) {
        let name = try hostXattrName(name)
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
