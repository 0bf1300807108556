import VfsvmMemory
import VfsvmSys

/// One region of a SET_MEM_TABLE message (`VhostUserMemoryRegion`).
public struct VhostUserMemoryRegion: Sendable, Equatable {
    public var guestAddress: UInt64
    public var size: UInt64
    /// Where the front-end has the region mapped in its own address space;
    /// ring addresses in SET_VRING_ADDR are given in this space.
    public var userAddress: UInt64
    /// Offset of the region in the passed fd.
    public var mmapOffset: UInt64

    public init(guestAddress: UInt64, size: UInt64, userAddress: UInt64, mmapOffset: UInt64) {
        self.guestAddress = guestAddress
        self.size = size
        self.userAddress = userAddress
        self.mmapOffset = mmapOffset
    }

    static let encodedSize = 32
}

/// The guest memory the front-end shared, plus the map from its virtual
/// addresses to guest-physical ones.
struct VhostUserMemoryTable {
    let memory: GuestMemory
    let regions: [VhostUserMemoryRegion]

    /// Decodes the payload `u32 nregions, u32 padding, regions[nregions]`
    /// (the size check is done here, since it depends on `nregions`).
    static func decode(_ payload: [UInt8]) throws(VhostUserError) -> [VhostUserMemoryRegion] {
        guard payload.count >= 8 else {
            throw .wrongPayloadSize(.setMemTable, expected: 8, got: payload.count)
        }
        var r = PayloadReader(payload)
        let count = Int(r.u32())
        _ = r.u32()
        guard count <= VhostUserConstants.maxMemoryRegions else {
            throw .badMemoryTable("\(count) regions (at most \(VhostUserConstants.maxMemoryRegions))")
        }
        let expected = 8 + count * VhostUserMemoryRegion.encodedSize
        guard payload.count == expected else {
            throw .wrongPayloadSize(.setMemTable, expected: expected, got: payload.count)
        }
        return (0..<count).map { _ in
            VhostUserMemoryRegion(guestAddress: r.u64(), size: r.u64(), userAddress: r.u64(), mmapOffset: r.u64())
        }
    }

    /// Decodes ADD_MEM_REG / REM_MEM_REG's payload: `u64 padding, region`.
    static func decodeSingle(_ payload: [UInt8]) -> VhostUserMemoryRegion {
        var r = PayloadReader(payload)
        _ = r.u64()
        return VhostUserMemoryRegion(guestAddress: r.u64(), size: r.u64(), userAddress: r.u64(), mmapOffset: r.u64())
    }

    /// Checks every region, maps each fd at its offset and builds the guest
    /// memory. Nothing stays mapped when it throws.
    init(regions: [VhostUserMemoryRegion], fds: [FileDescriptor]) throws(VhostUserError) {
        guard regions.count == fds.count else {
            throw .wrongFDCount(.setMemTable, expected: regions.count, got: fds.count)
        }
        try Self.validate(regions)
        var mapped: [GuestRegion] = []
        for (i, (r, fd)) in zip(regions, fds).enumerated() {
            mapped.append(try Self.map(r, fd, index: i))
        }
        try self.init(regions: regions, mapped: mapped)
    }

    private init(regions: [VhostUserMemoryRegion], mapped: [GuestRegion]) throws(VhostUserError) {
        do {
            memory = try GuestMemory(regions: mapped)
        } catch {
            throw .badMemoryTable("\(error)")
        }
        self.regions = regions
        self.mapped = mapped
    }

    private let mapped: [GuestRegion]

    /// No memory (CONFIGURE_MEM_SLOTS front-ends start from this and add
    /// regions one by one).
    static func empty() throws(VhostUserError) -> VhostUserMemoryTable {
        try VhostUserMemoryTable(regions: [], mapped: [])
    }

    /// ADD_MEM_REG: this table plus `region` backed by `fd`.
    func adding(_ region: VhostUserMemoryRegion, fd: FileDescriptor, limit: Int) throws(VhostUserError) -> VhostUserMemoryTable {
        guard regions.count < limit else { throw .badMemoryTable("ADD_MEM_REG beyond \(limit) regions") }
        try Self.validate(regions + [region])
        let new = try Self.map(region, fd, index: regions.count)
        return try VhostUserMemoryTable(regions: regions + [region], mapped: mapped + [new])
    }

    /// REM_MEM_REG: this table without the region with `region`'s guest
    /// address, size and front-end address (its mmap offset is ignored).
    func removing(_ region: VhostUserMemoryRegion) throws(VhostUserError) -> VhostUserMemoryTable {
        guard let i = regions.firstIndex(where: {
            $0.guestAddress == region.guestAddress && $0.size == region.size && $0.userAddress == region.userAddress
        }) else {
            throw .badMemoryTable("REM_MEM_REG names no mapped region (guest 0x\(String(region.guestAddress, radix: 16)), \(region.size) bytes)")
        }
        var keptRegions = regions, keptMappings = mapped
        keptRegions.remove(at: i)
        keptMappings.remove(at: i)
        return try VhostUserMemoryTable(regions: keptRegions, mapped: keptMappings)
    }

    /// Each region is non-empty and does not wrap, and no two overlap in
    /// guest-physical or front-end address space.
    private static func validate(_ regions: [VhostUserMemoryRegion]) throws(VhostUserError) {
        for (i, r) in regions.enumerated() {
            guard r.size > 0 else { throw .badMemoryTable("region \(i) is empty") }
            guard r.size <= UInt64(Int.max) else { throw .badMemoryTable("region \(i) size 0x\(String(r.size, radix: 16)) is too large") }
            guard r.guestAddress.addingReportingOverflow(r.size).overflow == false,
                  r.userAddress.addingReportingOverflow(r.size).overflow == false else {
                throw .badMemoryTable("region \(i) wraps the address space")
            }
            let (end, over) = r.mmapOffset.addingReportingOverflow(r.size)
            guard !over, end <= UInt64(Int64.max) else {
                throw .badMemoryTable("region \(i) mmap offset 0x\(String(r.mmapOffset, radix: 16)) + size overflows")
            }
            for (j, other) in regions.enumerated() where j < i {
                if r.userAddress < other.userAddress + other.size && other.userAddress < r.userAddress + r.size {
                    throw .badMemoryTable("regions \(j) and \(i) overlap in the front-end's address space")
                }
                if r.guestAddress < other.guestAddress + other.size && other.guestAddress < r.guestAddress + r.size {
                    throw .badMemoryTable("regions \(j) and \(i) overlap in guest-physical memory")
                }
            }
        }
    }

    /// Maps one validated region from `fd`.
    private static func map(_ r: VhostUserMemoryRegion, _ fd: FileDescriptor, index i: Int) throws(VhostUserError) -> GuestRegion {
        do {
            // A shared mapping touched past the end of its file raises
            // SIGBUS, so the file must cover the whole region.
            guard let fileSize = try fd.regularFileSize() else {
                throw VhostUserError.badMemoryTable("region \(i) fd is not a regular file or memfd")
            }
            guard UInt64(fileSize) >= r.mmapOffset + r.size else {
                throw VhostUserError.badMemoryTable(
                    "region \(i) needs \(r.mmapOffset + r.size) bytes of its fd, which has \(fileSize)")
            }
            // Sealed against shrinking where the file allows, guarded
            // against a SIGBUS where it does not (GuestRegion.frontendShared).
            return try GuestRegion.frontendShared(start: GuestAddress(r.guestAddress), fd: fd,
                                                  offset: Int64(r.mmapOffset), count: Int(r.size))
        } catch let e as VhostUserError {
            throw e
        } catch let e as SystemError {
            throw .badMemoryTable("region \(i): \(e)")
        } catch {
            throw .badMemoryTable("region \(i): \(error)")
        }
    }

    /// The guest-physical address the front-end's virtual address `user`
    /// stands for, or nil when no region holds it.
    func translate(userAddress user: UInt64) -> GuestAddress? {
        for r in regions where user >= r.userAddress && user - r.userAddress < r.size {
            return GuestAddress(r.guestAddress + (user - r.userAddress))
        }
        return nil
    }
}
