import CVfsvmLinux

/// Where everything of a virtio-pci function lives: BAR0 (64-bit,
/// prefetchable memory) holds the four virtio structures and the MSI-X
/// table and PBA, one 4 KiB page each (a page per structure: KVM's MMIO
/// exits and the guest's mappings are page grained); the capability list
/// in configuration space points at them (virtio 1.2, 4.1.4).
public enum VirtioPCILayout {
    public static let bar = 0
    public static let barSize: UInt64 = 0x8000

    public static let commonOffset: UInt64 = 0x0000
    /// struct virtio_pci_modern_common_cfg: up to queue_reset.
    public static let commonLength: UInt64 = 0x40
    public static let isrOffset: UInt64 = 0x1000
    public static let isrLength: UInt64 = 1
    public static let deviceOffset: UInt64 = 0x2000
    public static let deviceLength: UInt64 = 0x1000
    public static let notifyOffset: UInt64 = 0x3000
    /// Queue q is notified at notifyOffset + q * notifyMultiplier.
    public static let notifyMultiplier: UInt64 = 4
    public static let msixTableOffset: UInt64 = 0x4000
    public static let msixPBAOffset: UInt64 = 0x5000
    static let pageSize: UInt64 = 0x1000

    // Capability list in configuration space.
    static let commonCap = 0x40
    static let notifyCap = 0x50
    static let isrCap = 0x64
    static let deviceCap = 0x74
    /// VIRTIO_PCI_CAP_PCI_CFG: a window onto BAR0 through config space.
    static let pciCfgCap = 0x84
    static let pciCfgData = pciCfgCap + 16
    static let msixCap = 0x98

    /// The MSI-X Message Control register (enable, function mask).
    static let msixControl = msixCap + Int(PCI_MSIX_FLAGS)
}

/// A virtio-pci function's 256-byte type-0 configuration space: the
/// header (IDs, command/status, BAR0 with the sizing protocol, interrupt
/// line and pin), the virtio vendor capabilities and the MSI-X
/// capability. Bytes not named here read as zero and ignore writes; each
/// writable byte has a mask of the bits the driver may change.
struct PCIConfigSpace {
    static let size = 256
    static let vendor: UInt16 = 0x1af4
    /// Modern devices: 0x1040 + the virtio device type (4.1.2).
    static let deviceBase: UInt16 = 0x1040

    private(set) var bytes = [UInt8](repeating: 0, count: size)
    private var writable = [UInt8](repeating: 0, count: size)
    /// BAR0's address as the driver programmed it (low bits as the sizing
    /// protocol leaves them).
    private(set) var bar0: UInt64 = 0

    init(deviceType: UInt32, queues: Int, msixVectors: Int) {
        let device = Self.deviceBase &+ UInt16(truncatingIfNeeded: deviceType)
        put16(Int(PCI_VENDOR_ID), Self.vendor)
        put16(Int(PCI_DEVICE_ID), device)
        put16(Int(PCI_STATUS), UInt16(PCI_STATUS_CAP_LIST))
        bytes[Int(PCI_REVISION_ID)] = 1  // non-transitional (4.1.2.1)
        let (base, sub) = Self.classCode(deviceType)
        bytes[Int(PCI_CLASS_DEVICE)] = sub
        bytes[Int(PCI_CLASS_DEVICE) + 1] = base
        bytes[Int(PCI_HEADER_TYPE)] = UInt8(PCI_HEADER_TYPE_NORMAL)
        put16(Int(PCI_SUBSYSTEM_VENDOR_ID), Self.vendor)
        put16(Int(PCI_SUBSYSTEM_ID), device)
        bytes[Int(PCI_CAPABILITY_LIST)] = UInt8(VirtioPCILayout.commonCap)
        bytes[Int(PCI_INTERRUPT_PIN)] = 1  // INTA#

        typealias L = VirtioPCILayout
        vendorCap(at: L.commonCap, next: L.notifyCap, length: 16, type: VIRTIO_PCI_CAP_COMMON_CFG, offset: L.commonOffset, size: L.commonLength)
        vendorCap(at: L.notifyCap, next: L.isrCap, length: 20, type: VIRTIO_PCI_CAP_NOTIFY_CFG,
                  offset: L.notifyOffset, size: L.notifyMultiplier * UInt64(max(queues, 1)))
        put32(L.notifyCap + 16, UInt32(L.notifyMultiplier))
        vendorCap(at: L.isrCap, next: L.deviceCap, length: 16, type: VIRTIO_PCI_CAP_ISR_CFG, offset: L.isrOffset, size: L.isrLength)
        vendorCap(at: L.deviceCap, next: L.pciCfgCap, length: 16, type: VIRTIO_PCI_CAP_DEVICE_CFG, offset: L.deviceOffset, size: L.deviceLength)
        // The PCI_CFG window: bar, offset and length are the driver's; the
        // data bytes are an access to BAR0 (4.1.4.9).
        vendorCap(at: L.pciCfgCap, next: L.msixCap, length: 20, type: VIRTIO_PCI_CAP_PCI_CFG, offset: 0, size: 0)
        writable[L.pciCfgCap + Int(VIRTIO_PCI_CAP_BAR)] = 0xff
        for i in 0..<8 { writable[L.pciCfgCap + Int(VIRTIO_PCI_CAP_OFFSET) + i] = 0xff }
        for i in 0..<4 { writable[L.pciCfgData + i] = 0xff }

        bytes[L.msixCap + Int(PCI_CAP_LIST_ID)] = UInt8(PCI_CAP_ID_MSIX)
        bytes[L.msixCap + Int(PCI_CAP_LIST_NEXT)] = 0
        put16(L.msixControl, UInt16(msixVectors - 1) & UInt16(PCI_MSIX_FLAGS_QSIZE))
        writable[L.msixControl + 1] = UInt8((PCI_MSIX_FLAGS_ENABLE | PCI_MSIX_FLAGS_MASKALL) >> 8)
        put32(L.msixCap + Int(PCI_MSIX_TABLE), UInt32(L.msixTableOffset) | UInt32(L.bar))
        put32(L.msixCap + Int(PCI_MSIX_PBA), UInt32(L.msixPBAOffset) | UInt32(L.bar))

        // Command: memory space, bus master, INTx disable.
        let command = UInt16(PCI_COMMAND_MEMORY | PCI_COMMAND_MASTER | PCI_COMMAND_INTX_DISABLE)
        writable[Int(PCI_COMMAND)] = UInt8(truncatingIfNeeded: command)
        writable[Int(PCI_COMMAND) + 1] = UInt8(command >> 8)
        writable[Int(PCI_INTERRUPT_LINE)] = 0xff
    }

    /// PCI class codes (base, sub): storage for fs and block, as QEMU
    /// presents them; "other" for the rest.
    static func classCode(_ deviceType: UInt32) -> (UInt8, UInt8) {
        switch Int32(deviceType) {
        // Base classes (linux/pci_ids.h, not UAPI): 0x01 storage, 0x02 network.
        case VIRTIO_ID_BLOCK: (0x01, 0x00)  // SCSI
        case VIRTIO_ID_FS: (0x01, 0x80)  // other
        case VIRTIO_ID_NET: (0x02, 0x00)
        default: (0xff, 0x00)
        }
    }

    private mutating func vendorCap(at cap: Int, next: Int, length: UInt8, type: Int32, offset: UInt64, size: UInt64) {
        bytes[cap + Int(VIRTIO_PCI_CAP_VNDR)] = UInt8(PCI_CAP_ID_VNDR)
        bytes[cap + Int(VIRTIO_PCI_CAP_NEXT)] = UInt8(next)
        bytes[cap + Int(VIRTIO_PCI_CAP_LEN)] = length
        bytes[cap + Int(VIRTIO_PCI_CAP_CFG_TYPE)] = UInt8(type)
        bytes[cap + Int(VIRTIO_PCI_CAP_BAR)] = UInt8(VirtioPCILayout.bar)
        put32(cap + Int(VIRTIO_PCI_CAP_OFFSET), UInt32(offset))
        put32(cap + Int(VIRTIO_PCI_CAP_LENGTH), UInt32(size))
    }

    private mutating func put16(_ offset: Int, _ v: UInt16) {
        bytes[offset] = UInt8(truncatingIfNeeded: v)
        bytes[offset + 1] = UInt8(v >> 8)
    }

    private mutating func put32(_ offset: Int, _ v: UInt32) {
        for i in 0..<4 { bytes[offset + i] = UInt8(truncatingIfNeeded: v >> (8 * UInt32(i))) }
    }

    func get32(_ offset: Int) -> UInt32 {
        (0..<4).reduce(0) { $0 | UInt32(bytes[offset + $1]) << (8 * UInt32($1)) }
    }

    var command: UInt16 { UInt16(bytes[Int(PCI_COMMAND)]) | UInt16(bytes[Int(PCI_COMMAND) + 1]) << 8 }
    var memoryEnabled: Bool { command & UInt16(PCI_COMMAND_MEMORY) != 0 }
    var intxDisabled: Bool { command & UInt16(PCI_COMMAND_INTX_DISABLE) != 0 }
    /// Bus Master Enable: the function may write to memory, which an MSI-X
    /// message is (6.8.2 of PCI 3.0).
    var busMasterEnabled: Bool { command & UInt16(PCI_COMMAND_MASTER) != 0 }
    var msixControl: UInt16 { UInt16(bytes[VirtioPCILayout.msixControl]) | UInt16(bytes[VirtioPCILayout.msixControl + 1]) << 8 }
    var msixEnabled: Bool { msixControl & UInt16(PCI_MSIX_FLAGS_ENABLE) != 0 }
    var msixFunctionMasked: Bool { msixControl & UInt16(PCI_MSIX_FLAGS_MASKALL) != 0 }
    var interruptLine: UInt8 { bytes[Int(PCI_INTERRUPT_LINE)] }

    /// The PCI_CFG window's BAR, offset and length as the driver set them.
    var pciCfgWindow: (bar: UInt8, offset: UInt32, length: UInt32) {
        (bytes[VirtioPCILayout.pciCfgCap + Int(VIRTIO_PCI_CAP_BAR)],
         get32(VirtioPCILayout.pciCfgCap + Int(VIRTIO_PCI_CAP_OFFSET)),
         get32(VirtioPCILayout.pciCfgCap + Int(VIRTIO_PCI_CAP_LENGTH)))
    }

    /// The BAR0 register bits: the address bits the size leaves writable,
    /// and the type bits (64-bit, prefetchable) that never change.
    static let bar0Flags = UInt64(PCI_BASE_ADDRESS_MEM_TYPE_64 | PCI_BASE_ADDRESS_MEM_PREFETCH)
    static let bar0Mask = ~(VirtioPCILayout.barSize - 1)

    /// BAR0's address while memory decoding is on and the BAR holds a
    /// usable address (not zero, not mid-sizing, not wrapping the space).
    var decodedBAR0: UInt64? {
        guard memoryEnabled, bar0 != 0, bar0 <= UInt64.max - VirtioPCILayout.barSize,
              bar0 != Self.bar0Mask else { return nil }
        return bar0
    }

    /// The board's placement, before the guest runs.
    mutating func assignBAR0(_ address: UInt64) { bar0 = address & Self.bar0Mask }

    /// Byte `offset` as the driver reads it; `interruptPending` is the
    /// INTx state (status bit 3).
    func byte(_ offset: Int, interruptPending: Bool) -> UInt8 {
        let bar0Register = Int(PCI_BASE_ADDRESS_0)
        if (bar0Register..<bar0Register + 8).contains(offset) {
            let value = bar0 | Self.bar0Flags
            return UInt8(truncatingIfNeeded: value >> (8 * UInt64(offset - bar0Register)))
        }
        if offset == Int(PCI_STATUS) && interruptPending { return bytes[offset] | UInt8(PCI_STATUS_INTERRUPT) }
        return bytes[offset]
    }

    /// Writes byte `offset` through its mask; BAR0 keeps its size's
    /// alignment, so writing all ones and reading back gives the size.
    mutating func write(_ offset: Int, _ value: UInt8) {
        let bar0Register = Int(PCI_BASE_ADDRESS_0)
        if (bar0Register..<bar0Register + 8).contains(offset) {
            let shift = 8 * UInt64(offset - bar0Register)
            bar0 = (bar0 & ~(0xff << shift) | UInt64(value) << shift) & Self.bar0Mask
            return
        }
        bytes[offset] = bytes[offset] & ~writable[offset] | value & writable[offset]
    }
}
