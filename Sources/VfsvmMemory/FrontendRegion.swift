import CVfsvmLinux
import VfsvmSys

/// Guest memory shared by a vhost-user front-end through a file it owns
/// (a memfd, a tmpfs or hugetlbfs file) may be shrunk under our mapping;
/// touching a page past the file's new end raises SIGBUS. Two defences:
///
/// 1. Sealing. A memfd whose seals include F_SEAL_SHRINK cannot shrink
///    (QEMU's memory-backend-memfd seals by default, `seal=on`: GROW,
///    SHRINK and SEAL; libvirt's `<source type='memfd'/>` uses it). A file
///    that still allows sealing gets F_SEAL_SHRINK added here.
/// 2. A guard, for files that cannot be sealed (a memfd made with seal=off,
///    a file under /dev/shm or hugetlbfs from memory-backend-file, a
///    regular file): a SIGBUS inside the mapping is absorbed by mapping
///    zero pages over the rest of it (vfsvm_fault_guard.h); the region is
///    then marked truncated, and the queues on it stop with
///    `GuestMemoryError.truncated`. The process survives and says why.
final class TruncationGuard: Sendable {
    let slot: Int32
    /// Kept so the range stays mapped until the guard is removed.
    let mapping: MemoryMapping

    init(_ mapping: MemoryMapping) throws(SystemError) {
        let slot = vfsvm_fault_guard_add(mapping.base, mapping.count)
        guard slot >= 0 else { throw SystemError("guarding a \(mapping.count)-byte front-end mapping", .current) }
        self.slot = slot
        self.mapping = mapping
    }

    deinit { vfsvm_fault_guard_remove(slot) }

    var faulted: Bool { vfsvm_fault_guard_faulted(slot) != 0 }
}

extension GuestRegion {
    /// Maps `count` bytes of a front-end's file at `offset` as guest memory
    /// from `start`, sealed against shrinking where the file allows, guarded
    /// against it otherwise (see `TruncationGuard`).
    public static func frontendShared(start: GuestAddress, fd: FileDescriptor, offset: Int64, count: Int) throws(SystemError) -> GuestRegion {
        var sealed = false
        let seals = vfsvm_get_seals(fd.rawValue)
        if seals >= 0 {
            if seals & VFSVM_F_SEAL_SHRINK != 0 {
                sealed = true
            } else if seals & VFSVM_F_SEAL_SEAL == 0 {
                sealed = vfsvm_add_seals(fd.rawValue, VFSVM_F_SEAL_SHRINK) == 0
            }
        }
        let mapping = try MemoryMapping(fd: fd, offset: offset, count: count)
        return GuestRegion(start: start, mapping: mapping, guard: sealed ? nil : try TruncationGuard(mapping))
    }

    /// True when the front-end shrank this region's file and a SIGBUS was
    /// absorbed (the region now reads as zeros).
    public var isTruncated: Bool { truncationGuard?.faulted ?? false }
}

extension GuestMemory {
    /// Installs the SIGBUS handler behind `GuestRegion.frontendShared` now,
    /// while rt_sigaction is still allowed (before a seccomp filter).
    public static func installTruncationGuard() throws(SystemError) {
        _ = try sysCall("sigaction(SIGBUS)") { vfsvm_fault_guard_install() }
    }

    /// The first region whose file the front-end shrank, nil normally (one
    /// atomic load when no fault ever happened).
    public var truncatedRegion: GuestRegion? {
        guard vfsvm_fault_guard_count() > 0 else { return nil }
        return regions.first { $0.isTruncated }
    }
}
