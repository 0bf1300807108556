import CVfsvmLinux

/// A range of guest memory inside one region, resolved to its host address
/// once: a virtqueue's descriptor table, driver area or device area, which
/// the queue touches several times per request. Accesses take an offset
/// into the area and are checked against its length (one comparison), so
/// a wrong offset is an error, never an access outside the area.
///
/// It does not keep the mapping alive: the holder keeps the `GuestMemory`
/// it came from (and uses the area only with that same object; a new memory
/// table is a new object, see `GuestMemory`); only the package makes one
/// (`GuestMemory.area`). Public so its accessors inline across modules.
public struct GuestArea: @unchecked Sendable {
    // @unchecked: a view into a mapping its holder keeps alive.
    public let address: GuestAddress
    public let length: UInt64
    @usableFromInline let base: UnsafeMutableRawPointer

    @inlinable
    func pointer(_ offset: UInt64, _ size: Int) throws(GuestMemoryError) -> UnsafeMutableRawPointer {
        guard offset <= length, UInt64(size) <= length - offset else {
            throw .outOfRange(address: address.unchecked(plus: offset), length: UInt64(size))
        }
        return base + Int(offset)
    }

    @inlinable
    func aligned(_ offset: UInt64, _ size: Int) throws(GuestMemoryError) -> UnsafeMutableRawPointer {
        let p = try pointer(offset, size)
        guard UInt(bitPattern: p) & UInt(size - 1) == 0 else {
            throw .misaligned(address: address.unchecked(plus: offset), alignment: size)
        }
        return p
    }

    @inlinable
    public func load<T: BitwiseCopyable>(_ type: T.Type = T.self, at offset: UInt64) throws(GuestMemoryError) -> T {
        // Safe: inside the area, which lies inside a live mapping.
        try pointer(offset, MemoryLayout<T>.size).loadUnaligned(as: T.self)
    }

    @inlinable
    public func store<T: BitwiseCopyable>(_ value: T, at offset: UInt64) throws(GuestMemoryError) {
        try pointer(offset, MemoryLayout<T>.size).storeBytes(of: value, as: T.self)
    }

    /// As `GuestMemory.loadAcquireUInt16(at:)`, at an offset into the area.
    @inlinable
    public func loadAcquireUInt16(at offset: UInt64) throws(GuestMemoryError) -> UInt16 {
        UInt16(littleEndian: vfsvm_load_acquire_u16(try aligned(offset, 2)))
    }

    @inlinable
    public func storeReleaseUInt16(_ value: UInt16, at offset: UInt64) throws(GuestMemoryError) {
        vfsvm_store_release_u16(try aligned(offset, 2), value.littleEndian)
    }

    @inlinable
    public func loadAcquireUInt32(at offset: UInt64) throws(GuestMemoryError) -> UInt32 {
        UInt32(littleEndian: vfsvm_load_acquire_u32(try aligned(offset, 4)))
    }
}

extension GuestMemory {
    /// `[address, address + length)`, which must lie inside one region, as
    /// a `GuestArea` valid while this object lives.
    package func area(at address: GuestAddress, length: UInt64) throws(GuestMemoryError) -> GuestArea {
        GuestArea(address: address, length: length, base: try contiguousPointer(at: address, length: length))
    }
}
