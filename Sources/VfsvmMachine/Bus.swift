import Synchronization
import VfsvmSys

/// A device on the I/O port bus: a vCPU's `in`/`out` to a port in its range
/// arrive here with the port's offset from the range's start.
public protocol PortDevice: AnyObject, Sendable {
    /// `size` is 1, 2 or 4; the result's low `size` bytes are returned.
    func read(offset: UInt16, size: Int) -> UInt32
    func write(offset: UInt16, size: Int, value: UInt32)
}

/// A device on the MMIO bus: a vCPU's access to guest-physical memory no
/// slot backs, inside the device's window. Data moves through the
/// caller's buffer (the `kvm_run` data lent by VfsvmKVM), so no exit
/// allocates.
public protocol MMIODevice: AnyObject, Sendable {
    func read(offset: UInt64, into data: UnsafeMutableRawBufferPointer)
    func write(offset: UInt64, bytes data: UnsafeRawBufferPointer)
    /// What `-d` calls exits at `offset` (a register group), appended to
    /// the device's name; nil for none.
    func exitGroup(offset: UInt64) -> String?
}

extension MMIODevice {
    public func exitGroup(offset: UInt64) -> String? { nil }
}

/// Ranges of an address space mapped to devices; lookups by address.
/// Ranges never overlap (`insert` refuses an overlap: a board bug).
public final class Bus<Device: Sendable>: Sendable {
    public struct Mapping: Sendable {
        public let base: UInt64
        public let size: UInt64
        public let device: Device
        public let name: String
    }

    private let mappings = Mutex<[Mapping]>([])

    public init() {}

    public func insert(_ device: Device, base: UInt64, size: UInt64, name: String) {
        guard tryInsert(device, base: base, size: size, name: name) else {
            preconditionFailure("bus range \(name) at 0x\(String(base, radix: 16)) overlaps another or wraps")
        }
    }

    /// Inserts the range unless it wraps or overlaps one already mapped
    /// (any byte of it, checked and inserted under one lock, so two vCPUs
    /// moving BARs onto one address cannot both win). False when refused.
    public func tryInsert(_ device: Device, base: UInt64, size: UInt64, name: String) -> Bool {
        guard size > 0, !base.addingReportingOverflow(size - 1).overflow else { return false }
        let last = base + (size - 1)
        return mappings.withLock { m in
            if m.contains(where: { base <= $0.base + ($0.size - 1) && $0.base <= last }) { return false }
            m.append(Mapping(base: base, size: size, device: device, name: name))
            m.sort { $0.base < $1.base }
            return true
        }
    }

    /// Removes the range `name` mapped at `base` (a BAR the guest moved),
    /// and nothing else: another device's range at the same address is not
    /// touched.
    public func remove(base: UInt64, name: String) {
        mappings.withLock { $0.removeAll { $0.base == base && $0.name == name } }
    }

    /// The device whose range holds `address`, and the offset into it; nil
    /// when no device claims the address.
    public func find(_ address: UInt64) -> (device: Device, offset: UInt64)? {
        mappings.withLock { m in
            for e in m where address >= e.base && address - e.base < e.size { return (e.device, address - e.base) }
            return nil
        }
    }

    public var all: [Mapping] { mappings.withLock { $0 } }
}

public typealias PortBus = Bus<any PortDevice>
public typealias MMIOBus = Bus<any MMIODevice>
