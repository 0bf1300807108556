import Glibc
import CVfsvmLinux

// Opening and naming: openat2 below a directory, kernel file handles,
// the *at() calls that make, remove and rename names, readlink, getdents64.

/// Whether openat2 exists here (not before Linux 5.6, nor under some
/// container seccomp profiles or valgrind), asked once with a call that no
/// file system sees. Not learnt from an open's ENOSYS: a path walk returns
/// that too when a FUSE file system mounted below the share answers LOOKUP
/// with it, and one such answer must not turn RESOLVE_BENEATH off for every
/// later open.
private let openat2Present = vfsvm_openat2_present() != 0

extension FileDescriptor {
    /// Opens the single component `name` below this directory. With
    /// `beneath`, uses openat2 with RESOLVE_BENEATH | RESOLVE_NO_MAGICLINKS |
    /// RESOLVE_NO_SYMLINKS; where the kernel lacks openat2, openat with
    /// O_NOFOLLOW of a name without "/" that is not "..", so it cannot climb
    /// out either (EXDEV, as openat2 says). O_CLOEXEC is always added.
    public func openAt(_ name: [UInt8], flags: Int32, mode: mode_t = 0, beneath: Bool = true) throws(SystemError) -> FileDescriptor {
        let dir = rawValue
        if beneath {
            if openat2Present {
                let fd = try withCName(name, "openat2") { n in
                    Result { () throws(SystemError) in try sysCall("openat2") { vfsvm_openat2_beneath(dir, n, flags, mode) } }
                }.get()
                return FileDescriptor(owning: fd)
            }
            guard !name.contains(UInt8(ascii: "/")), name != [UInt8(ascii: "."), UInt8(ascii: ".")] else {
                throw SystemError("openat", .EXDEV)
            }
        }
        // Without openat2, O_NOFOLLOW stands in for RESOLVE_NO_SYMLINKS: a
        // symlink the guest made is not followed out of the share.
        let plain = beneath ? flags | O_NOFOLLOW : flags
        let fd = try withCName(name, "openat") { n in
            Result { () throws(SystemError) in try sysCall("openat") { vfsvm_openat(dir, n, plain | O_CLOEXEC, mode) } }
        }.get()
        return FileDescriptor(owning: fd)
    }

    /// `open_by_handle_at(self (any fd on the mount), handle, flags)`.
    public func openByHandle(_ handle: KernelFileHandle, flags: Int32) throws(SystemError) -> FileDescriptor {
        let fd = try sysCall("open_by_handle_at") {
            handle.bytes.withUnsafeBufferPointer { b in
                // Safe: the C side copies at most `count` bytes (checked ≤ MAX_HANDLE_SZ).
                vfsvm_open_by_handle(rawValue, b.baseAddress, UInt32(b.count), handle.type, flags)
            }
        }
        return FileDescriptor(owning: fd)
    }

    /// The kernel file handle of this fd's inode.
    public func kernelFileHandle() throws(SystemError) -> KernelFileHandle {
        var bytes = [UInt8](repeating: 0, count: Int(VFSVM_MAX_HANDLE_SZ))
        var size: UInt32 = 0
        var type: Int32 = 0
        var mount: Int32 = 0
        _ = try sysCall("name_to_handle_at") {
            // Safe: `bytes` has room for VFSVM_MAX_HANDLE_SZ, which the C side respects.
            bytes.withUnsafeMutableBufferPointer { vfsvm_name_to_handle_fd(rawValue, $0.baseAddress, &size, &type, &mount) }
        }
        return KernelFileHandle(bytes: Array(bytes.prefix(Int(size))), type: type, mountID: mount)
    }

    public func mkdirAt(_ name: [UInt8], mode: mode_t) throws(SystemError) {
        _ = try withCName(name, "mkdirat") { n in
            Result { () throws(SystemError) in try sysCall("mkdirat") { mkdirat(rawValue, n, mode) } }
        }.get()
    }

    public func mknodAt(_ name: [UInt8], mode: mode_t, device: dev_t) throws(SystemError) {
        _ = try withCName(name, "mknodat") { n in
            Result { () throws(SystemError) in try sysCall("mknodat") { mknodat(rawValue, n, mode, device) } }
        }.get()
    }

    public func symlinkAt(_ name: [UInt8], target: [UInt8]) throws(SystemError) {
        _ = try withCName(target, "symlinkat") { t in
            Result { () throws(SystemError) in
                try withCName(name, "symlinkat") { n in
                    Result { () throws(SystemError) in try sysCall("symlinkat") { symlinkat(t, rawValue, n) } }
                }.get()
            }
        }.get()
    }

    /// unlinkat(self, name, flags) (AT_REMOVEDIR for rmdir).
    public func unlinkAt(_ name: [UInt8], flags: Int32) throws(SystemError) {
        _ = try withCName(name, "unlinkat") { n in
            Result { () throws(SystemError) in try sysCall("unlinkat") { unlinkat(rawValue, n, flags) } }
        }.get()
    }

    /// renameat2(self, name, newDirectory, newName, flags).
    public func renameAt(_ name: [UInt8], to newDirectory: FileDescriptor, _ newName: [UInt8], flags: UInt32) throws(SystemError) {
        let nd = newDirectory.rawValue
        _ = try withCName(name, "renameat2") { o in
            Result { () throws(SystemError) in
                try withCName(newName, "renameat2") { n in
                    Result { () throws(SystemError) in try sysCall("renameat2") { vfsvm_renameat2(rawValue, o, nd, n, flags) } }
                }.get()
            }
        }.get()
    }

    /// Hard-links this fd's inode (an O_PATH fd) as `newName` in
    /// `directory`: linkat of its /proc/self/fd entry with
    /// AT_SYMLINK_FOLLOW (`procSelfFD` is open on a procfs's self/fd),
    /// which needs no capability, where linkat(fd, "", AT_EMPTY_PATH)
    /// needs CAP_DAC_READ_SEARCH (which the sandbox drops).
    public func link(into directory: FileDescriptor, as newName: [UInt8], through procSelfFD: FileDescriptor) throws(SystemError) {
        let nd = directory.rawValue, proc = procSelfFD.rawValue
        _ = try withCName(Array(String(rawValue).utf8), "linkat") { e in
            Result { () throws(SystemError) in
                try withCName(newName, "linkat") { n in
                    Result { () throws(SystemError) in try sysCall("linkat") { linkat(proc, e, nd, n, AT_SYMLINK_FOLLOW) } }
                }.get()
            }
        }.get()
    }

    /// readlinkat(self, "") on an O_PATH symlink fd.
    public func readLink() throws(SystemError) -> [UInt8] {
        var buf = [UInt8](repeating: 0, count: Int(PATH_MAX) + 1)
        let n = try withCName(emptyName, "readlinkat") { e in
            Result { () throws(SystemError) in
                try sysCall("readlinkat") {
                    // Safe: the kernel writes at most buf.count bytes.
                    buf.withUnsafeMutableBufferPointer { b in
                        b.withMemoryRebound(to: CChar.self) { readlinkat(rawValue, e, $0.baseAddress!, $0.count) }
                    }
                }
            }
        }.get()
        return Array(buf.prefix(n))
    }

    /// One getdents64 call into `buffer`: the bytes it filled (0 at the
    /// end of the directory); walk them with `forEachDirEntry`.
    public func readDirectory(into buffer: UnsafeMutableRawBufferPointer) throws(SystemError) -> Int {
        try sysCall("getdents64") { vfsvm_getdents64(rawValue, buffer.baseAddress, buffer.count) }
    }

    public func readDirectory(bufferSize: Int = 32768) throws(SystemError) -> [DirEntry] {
        var buf = [UInt8](repeating: 0, count: max(bufferSize, 1024))
        let n = try sysCall("getdents64") {
            // Safe: the kernel writes at most buf.count bytes.
            buf.withUnsafeMutableBytes { vfsvm_getdents64(rawValue, $0.baseAddress, $0.count) }
        }
        var out: [DirEntry] = []
        var p = 0
        // linux_dirent64: u64 ino, s64 off, u16 reclen, u8 type, name NUL-terminated.
        while p + 19 <= n {
            func u64(_ at: Int) -> UInt64 {
                var v: UInt64 = 0
                for k in 0..<8 { v |= UInt64(buf[at + k]) << (8 * UInt64(k)) }
                return v
            }
            let reclen = Int(buf[p + 16]) | Int(buf[p + 17]) << 8
            guard reclen >= 19, p + reclen <= n else { break }
            var end = p + 19
            while end < p + reclen, buf[end] != 0 { end += 1 }
            out.append(DirEntry(ino: u64(p), nextOffset: Int64(bitPattern: u64(p + 8)), type: buf[p + 18],
                                name: Array(buf[(p + 19)..<end])))
            p += reclen
        }
        return out
    }
}
