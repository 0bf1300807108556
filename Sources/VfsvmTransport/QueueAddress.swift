import VfsvmMemory
import VfsvmVirtio

/// Which 32-bit half of a 64-bit queue address a register holds
/// (virtio-mmio QueueDescLow/High, virtio-pci queue_desc_lo/hi, ...).
enum AddressHalf {
    case low, high
}

/// A transport's register map names the six queue address registers;
/// which area and half each holds is then decided here, once.
protocol QueueAddressRegisters {
    static var queueDescLow: UInt64 { get }
    static var queueDescHigh: UInt64 { get }
    static var queueAvailLow: UInt64 { get }
    static var queueAvailHigh: UInt64 { get }
    static var queueUsedLow: UInt64 { get }
    static var queueUsedHigh: UInt64 { get }
}

extension QueueAddressRegisters {
    /// The queue area and address half the register at `offset` holds.
    static func queueAddress(_ offset: UInt64) -> (QueueArea, AddressHalf)? {
        switch offset {
        case queueDescLow: (.descriptorTable, .low)
        case queueDescHigh: (.descriptorTable, .high)
        case queueAvailLow: (.driverArea, .low)
        case queueAvailHigh: (.driverArea, .high)
        case queueUsedLow: (.deviceArea, .low)
        case queueUsedHigh: (.deviceArea, .high)
        default: nil
        }
    }
}

extension GuestAddress {
    /// `self` with one 32-bit half replaced: the one place queue address
    /// halves are assembled, for every transport.
    func replacing(_ half: AddressHalf, with value: UInt32) -> GuestAddress {
        switch half {
        case .low: GuestAddress(rawValue & 0xffff_ffff_0000_0000 | UInt64(value))
        case .high: GuestAddress(rawValue & 0x0000_0000_ffff_ffff | UInt64(value) << 32)
        }
    }

    /// One 32-bit half of the address (virtio-pci reads them back).
    func half(_ half: AddressHalf) -> UInt32 {
        switch half {
        case .low: UInt32(truncatingIfNeeded: rawValue)
        case .high: UInt32(truncatingIfNeeded: rawValue >> 32)
        }
    }
}

extension Virtqueue {
    /// Writes one half of the address of `area`, as the driver programs it.
    mutating func setAddress(_ area: QueueArea, _ half: AddressHalf, to value: UInt32) {
        switch area {
        case .descriptorTable: descriptorTable = descriptorTable.replacing(half, with: value)
        case .driverArea: driverArea = driverArea.replacing(half, with: value)
        case .deviceArea: deviceArea = deviceArea.replacing(half, with: value)
        }
    }

    /// Reads one half of the address of `area` back.
    func address(_ area: QueueArea, _ half: AddressHalf) -> UInt32 {
        switch area {
        case .descriptorTable: descriptorTable.half(half)
        case .driverArea: driverArea.half(half)
        case .deviceArea: deviceArea.half(half)
        }
    }
}
