import Glibc

/// A device's shared-memory window (virtio 1.2, 2.10; the virtio-fs DAX
/// cache): one host reservation of `size` bytes that the VMM hands to KVM
/// as a memory slot wherever the guest puts the window's BAR. Until file
/// ranges are mapped over it, it is anonymous private memory with no swap
/// reservation (MAP_NORESERVE): reading gives zero pages, so a guest
/// touching an unmapped part of the window reads zeros instead of making
/// KVM fail the access (EFAULT) or the VMM fault.
public final class SharedMemoryWindow: @unchecked Sendable {
    // @unchecked: base and size never change; the bytes are shared with
    // the guest by design, and what is mapped over them is the owner's
    // protocol (the DAX mapping table, under its lock).
    public let base: UnsafeMutableRawPointer
    public let size: UInt64

    public init(size: UInt64) throws(SystemError) {
        precondition(size > 0 && size % 4096 == 0, "a window is a whole number of pages")
        // Read-only zero pages where nothing is mapped: a guest store there
        // would otherwise commit a private host page each, up to the
        // window's size beyond the guest's RAM. A store faults in KVM
        // (EFAULT: the vCPU stops), the guest's own doing.
        let raw = Glibc.mmap(nil, Int(size), PROT_READ, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0)
        guard let raw, raw != MAP_FAILED else { throw SystemError("mmap(\(size)-byte shared-memory window)", .current) }
        base = raw
        self.size = size
    }

    /// The host address KVM's slot points at.
    public var hostAddress: UInt64 { UInt64(UInt(bitPattern: base)) }

    deinit { _ = munmap(base, Int(size)) }
}
