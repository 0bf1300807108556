import Glibc
import CVfsvmLinux

/// A memfd: anonymous memory with an fd, so the same pages can be mapped by
/// KVM (as a memory slot), by a vhost-user backend (passed with SCM_RIGHTS)
/// and by vfsvm itself.
public enum MemFD {
    public static func create(name: String, size: Int) throws(SystemError) -> FileDescriptor {
        let raw = try sysCall("memfd_create(\(name))") { vfsvm_memfd_create(name, UInt32(MFD_CLOEXEC)) }
        let fd = FileDescriptor(owning: raw)
        try fd.truncate(to: Int64(size))
        return fd
    }
}

/// A shared mmap(2) of a file: unmapped when the last reference goes away.
///
/// The base pointer is only handed out inside `VfsvmMemory`, which checks
/// every access against `count` before it touches the mapping.
public final class MemoryMapping: @unchecked Sendable {
    // @unchecked: the mapping's pointer and size never change after init;
    // concurrent access to the bytes themselves is the callers' protocol
    // (guest memory is shared with the guest by design).
    public let base: UnsafeMutableRawPointer
    public let count: Int
    /// The fd the mapping was made from, kept open for as long as the
    /// mapping so it can be passed on (KVM slots, vhost-user frontends).
    public let fd: FileDescriptor?
    public let fileOffset: Int64

    public init(fd: FileDescriptor?, offset: Int64 = 0, count: Int, writable: Bool = true) throws(SystemError) {
        precondition(count > 0, "MemoryMapping needs a non-zero size")
        let prot = PROT_READ | (writable ? PROT_WRITE : 0)
        let flags = fd == nil ? (MAP_PRIVATE | MAP_ANONYMOUS) : MAP_SHARED
        let raw = Glibc.mmap(nil, count, prot, flags, fd?.rawValue ?? -1, off_t(offset))
        guard let raw, raw != MAP_FAILED else { throw SystemError("mmap(\(count) bytes)", .current) }
        self.base = raw
        self.count = count
        self.fd = fd
        self.fileOffset = offset
    }

    deinit { _ = munmap(base, count) }
}
