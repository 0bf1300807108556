import Synchronization

/// A PCI function on bus 0: its 256-byte configuration space.
public protocol PCIFunction: AnyObject, Sendable {
    /// Reads `size` (1, 2 or 4) bytes at `offset` (aligned to `size`).
    func readConfig(offset: Int, size: Int) -> UInt32
    func writeConfig(offset: Int, size: Int, value: UInt32)
}

/// PCI configuration mechanism #1 (PCI Local Bus 3.0, 3.2.2.3.2): the
/// address register at 0xCF8 (bit 31 enable, bus 23:16, device 15:11,
/// function 10:8, register 7:2) and the data window 0xCFC–0xCFF. Bus 0
/// only; functions by slot, function 0 each. Reads of an absent function
/// return all ones, as a master abort does; writes to it are dropped.
public final class PCIHostBridge: PortDevice {
    public static let portCount: UInt64 = 8

    private struct Slot {
        var function: any PCIFunction
        var afterWrite: (@Sendable () -> Void)?
    }

    private let address = Mutex<UInt32>(0)
    private let slots = Mutex<[UInt8: Slot]>([:])

    public init() {
        slots.withLock { $0[0] = Slot(function: HostBridgeFunction(), afterWrite: nil) }
    }

    /// Puts `function` at device `slot` (1–31) of bus 0. `afterWrite` runs
    /// after each configuration write to it (the board follows BAR moves).
    public func attach(_ function: any PCIFunction, slot: UInt8, afterWrite: (@Sendable () -> Void)? = nil) {
        precondition((1...31).contains(slot), "PCI slot \(slot)")
        slots.withLock { s in
            precondition(s[slot] == nil, "PCI slot \(slot) taken")
            s[slot] = Slot(function: function, afterWrite: afterWrite)
        }
    }

    public func function(at slot: UInt8) -> (any PCIFunction)? { slots.withLock { $0[slot]?.function } }

    /// The slot and register the address register selects, or nil.
    private func selected(_ dataOffset: UInt16) -> (Slot, Int)? {
        let a = address.withLock { $0 }
        guard a & 0x8000_0000 != 0, a >> 16 & 0xff == 0, a >> 8 & 0x7 == 0 else { return nil }
        guard let s = slots.withLock({ $0[UInt8(a >> 11 & 0x1f)] }) else { return nil }
        return (s, Int(a & 0xfc) + Int(dataOffset))
    }

    public func read(offset: UInt16, size: Int) -> UInt32 {
        if offset < 4 {
            guard offset == 0 && size == 4 else { return 0xffff_ffff }
            return address.withLock { $0 }
        }
        guard Self.aligned(offset - 4, size), let (s, register) = selected(offset - 4) else { return 0xffff_ffff }
        return s.function.readConfig(offset: register, size: size)
    }

    public func write(offset: UInt16, size: Int, value: UInt32) {
        if offset < 4 {
            if offset == 0 && size == 4 { address.withLock { $0 = value & 0x80ff_fffc } }
            return
        }
        guard Self.aligned(offset - 4, size), let (s, register) = selected(offset - 4) else { return }
        s.function.writeConfig(offset: register, size: size, value: value)
        s.afterWrite?()
    }

    static func aligned(_ offset: UInt16, _ size: Int) -> Bool {
        (size == 1 || size == 2 || size == 4) && Int(offset) % size == 0
    }
}

/// The host bridge at 00.0: identification only (class 06.00), no BARs.
final class HostBridgeFunction: PCIFunction {
    // Vendor 8086, device 0D57: the ID Firecracker's host bridge presents.
    static let header: [UInt8] = {
        var h = [UInt8](repeating: 0, count: 64)
        h[0] = 0x86; h[1] = 0x80; h[2] = 0x57; h[3] = 0x0d
        h[0xa] = 0x00; h[0xb] = 0x06  // class: bridge, host bridge
        return h
    }()

    func readConfig(offset: Int, size: Int) -> UInt32 {
        var v: UInt32 = 0
        for i in 0..<size where offset + i < Self.header.count { v |= UInt32(Self.header[offset + i]) << (8 * i) }
        return v
    }

    func writeConfig(offset: Int, size: Int, value: UInt32) {}
}
