/// A guest-physical address. A newtype so a guest address is never confused
/// with a host pointer, a length or an offset into a region.
public struct GuestAddress: RawRepresentable, Hashable, Comparable, Sendable, CustomStringConvertible {
    public var rawValue: UInt64
    public init(rawValue: UInt64) { self.rawValue = rawValue }
    public init(_ rawValue: UInt64) { self.rawValue = rawValue }

    public static func < (lhs: GuestAddress, rhs: GuestAddress) -> Bool { lhs.rawValue < rhs.rawValue }

    /// `self + offset`, or nil when the sum wraps past 2^64.
    @inlinable
    public func adding(_ offset: UInt64) -> GuestAddress? {
        let (sum, overflow) = rawValue.addingReportingOverflow(offset)
        return overflow ? nil : GuestAddress(sum)
    }

    /// `self + offset` for offsets the caller has already proven in range
    /// (both come from a checked region or queue layout).
    @inlinable
    public func unchecked(plus offset: UInt64) -> GuestAddress { GuestAddress(rawValue &+ offset) }

    public func isAligned(to alignment: UInt64) -> Bool {
        precondition(alignment.nonzeroBitCount == 1)
        return rawValue & (alignment - 1) == 0
    }

    public var description: String { "0x" + String(rawValue, radix: 16) }
}

/// Why a guest memory access was refused. Every case names what was asked
/// for, so the log line says exactly what the guest did.
public enum GuestMemoryError: Error, Hashable, Sendable, CustomStringConvertible {
    /// `address + length` wraps past 2^64.
    case overflow(address: GuestAddress, length: UInt64)
    /// Some byte in `[address, address + length)` is not backed by any region.
    case outOfRange(address: GuestAddress, length: UInt64)
    /// An access that must be naturally aligned (ring indices) was not.
    case misaligned(address: GuestAddress, alignment: Int)
    /// An access that must lie inside one region (ring structures, atomics)
    /// spans two.
    case crossesRegion(address: GuestAddress, length: UInt64)
    /// A copy stopped short: the scatter-gather list holds fewer bytes than asked.
    case partialBuffer(expected: Int, completed: Int)
    /// Regions passed to `GuestMemory` overlap or are empty.
    case badRegion(String)
    /// The front-end shrank the file behind the region at `region` under
    /// its mapping (see `GuestRegion.frontendShared`).
    case truncated(region: GuestAddress)

    public var description: String {
        switch self {
        case let .overflow(a, l): "guest range \(a)+\(l) overflows the address space"
        case let .outOfRange(a, l): "guest range \(a)+\(l) is not backed by guest memory"
        case let .misaligned(a, al): "guest address \(a) is not \(al)-byte aligned"
        case let .crossesRegion(a, l): "guest range \(a)+\(l) crosses a memory region boundary"
        case let .partialBuffer(e, c): "buffer too short: expected \(e) bytes, completed \(c)"
        case let .badRegion(why): "bad guest memory region: \(why)"
        case let .truncated(r): "the front-end shrank the file behind guest memory region \(r) under its mapping"
        }
    }
}
