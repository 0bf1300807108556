/// Register-sized accesses on a caller's buffer: the data of a vCPU's MMIO
/// or port I/O exit, a PCI configuration cycle, a vhost-user config read.
/// The one place a register file above this layer touches raw bytes, so
/// transports stay free of pointer code and allocate nothing per access.
///
/// Values are little-endian, as virtio (1.2, 1.4) and PCI are.
public enum RegisterBytes {
    /// Stores the low `buffer.count` bytes of `value` (little-endian);
    /// bytes past the eighth are zero.
    @inlinable
    public static func store(_ value: UInt64, into buffer: UnsafeMutableRawBufferPointer) {
        for i in 0..<buffer.count {
            // Safe: i < buffer.count.
            buffer[i] = i < 8 ? UInt8(truncatingIfNeeded: value >> (8 * UInt64(i))) : 0
        }
    }

    /// The little-endian value of `buffer`'s first eight bytes at most.
    @inlinable
    public static func load(_ buffer: UnsafeRawBufferPointer) -> UInt64 {
        var value: UInt64 = 0
        for i in 0..<min(buffer.count, 8) { value |= UInt64(buffer[i]) << (8 * UInt64(i)) }
        return value
    }

    /// Copies `bytes[offset...]` into `buffer`, zero where that runs past
    /// either end of `bytes` (any `offset`, negative or huge, is safe): a
    /// read of a device's configuration structure.
    @inlinable
    public static func copy(_ bytes: [UInt8], from offset: Int, into buffer: UnsafeMutableRawBufferPointer) {
        for i in 0..<buffer.count {
            let (source, overflow) = offset.addingReportingOverflow(i)
            buffer[i] = !overflow && source >= 0 && source < bytes.count ? bytes[source] : 0
        }
    }

    /// Sets every byte of `buffer` to zero (a read of nothing).
    @inlinable
    public static func zero(_ buffer: UnsafeMutableRawBufferPointer) {
        for i in 0..<buffer.count { buffer[i] = 0 }
    }
}
