import CVfsvmLinux
import Synchronization
import VfsvmMemory
import VfsvmSys
import VfsvmVirtio

/// virtio-mmio register offsets (linux/virtio_mmio.h), as the register
/// file's `switch` uses them.
enum MMIORegister: QueueAddressRegisters {
    static let magicValue = UInt64(VIRTIO_MMIO_MAGIC_VALUE)
    static let version = UInt64(VIRTIO_MMIO_VERSION)
    static let deviceID = UInt64(VIRTIO_MMIO_DEVICE_ID)
    static let vendorID = UInt64(VIRTIO_MMIO_VENDOR_ID)
    static let deviceFeatures = UInt64(VIRTIO_MMIO_DEVICE_FEATURES)
    static let deviceFeaturesSelect = UInt64(VIRTIO_MMIO_DEVICE_FEATURES_SEL)
    static let driverFeatures = UInt64(VIRTIO_MMIO_DRIVER_FEATURES)
    static let driverFeaturesSelect = UInt64(VIRTIO_MMIO_DRIVER_FEATURES_SEL)
    static let queueSelect = UInt64(VIRTIO_MMIO_QUEUE_SEL)
    static let queueNumMax = UInt64(VIRTIO_MMIO_QUEUE_NUM_MAX)
    static let queueNum = UInt64(VIRTIO_MMIO_QUEUE_NUM)
    static let queueReady = UInt64(VIRTIO_MMIO_QUEUE_READY)
    static let queueNotify = UInt64(VIRTIO_MMIO_QUEUE_NOTIFY)
    static let interruptStatus = UInt64(VIRTIO_MMIO_INTERRUPT_STATUS)
    static let interruptACK = UInt64(VIRTIO_MMIO_INTERRUPT_ACK)
    static let status = UInt64(VIRTIO_MMIO_STATUS)
    static let queueDescLow = UInt64(VIRTIO_MMIO_QUEUE_DESC_LOW)
    static let queueDescHigh = UInt64(VIRTIO_MMIO_QUEUE_DESC_HIGH)
    static let queueAvailLow = UInt64(VIRTIO_MMIO_QUEUE_AVAIL_LOW)
    static let queueAvailHigh = UInt64(VIRTIO_MMIO_QUEUE_AVAIL_HIGH)
    static let queueUsedLow = UInt64(VIRTIO_MMIO_QUEUE_USED_LOW)
    static let queueUsedHigh = UInt64(VIRTIO_MMIO_QUEUE_USED_HIGH)
    static let shmSelect = UInt64(VIRTIO_MMIO_SHM_SEL)
    static let shmLengthLow = UInt64(VIRTIO_MMIO_SHM_LEN_LOW)
    static let shmLengthHigh = UInt64(VIRTIO_MMIO_SHM_LEN_HIGH)
    static let shmBaseLow = UInt64(VIRTIO_MMIO_SHM_BASE_LOW)
    static let shmBaseHigh = UInt64(VIRTIO_MMIO_SHM_BASE_HIGH)
    static let configGeneration = UInt64(VIRTIO_MMIO_CONFIG_GENERATION)
    static let config = UInt64(VIRTIO_MMIO_CONFIG)
}

/// virtio-mmio, version 2 (virtio 1.2, section 4.2.2): the register file a
/// VMM maps at a guest-physical window, dispatching the vCPU's MMIO exits
/// to `read` and `write`.
///
/// The seam: `notifications` lists one entry per queue, all at
/// QueueNotify (`windowSize` window, offset 0x050, 4 bytes) with data match
/// = the queue index; the VMM registers each as a KVM ioeventfd so a kick
/// never leaves the kernel. Interrupts: the one `InterruptLine` given at
/// init (an `EventFDInterruptLine` registered as an irqfd on the device's
/// GSI), with InterruptStatus saying why (bit 0: used buffer, bit 1:
/// configuration change).
///
/// `read` writes into the caller's buffer and `write` reads from it: no
/// allocation per exit. Register accesses other than the configuration
/// space must be 32 bits wide and aligned (4.2.2.2); others read as zero
/// and are ignored on write (logged once). Configuration space reads past
/// its end read zero.
public final class VirtioMMIOTransport: VirtioTransport, CoreInterrupt {
    public static let windowSize: UInt64 = 0x200
    public static let notifyOffset = MMIORegister.queueNotify
    public static let magic: UInt32 = 0x7472_6976  // "virt"
    public static let vendorID: UInt32 = 0x5346_5656  // "VVFS"

    let core: TransportCore
    private let line: any InterruptLine
    /// Shared-memory region 0 (a virtio-fs DAX window): its guest-physical
    /// base and length, which the VMM maps as a KVM slot there.
    public let sharedMemory: (base: UInt64, length: UInt64)?
    /// SHMSel: the region the SHMLen/SHMBase registers describe.
    private let shmSelect = Mutex<UInt32>(0)

    public init(device: any VirtioDevice, memory: GuestMemory, line: any InterruptLine,
                sharedMemory: (base: UInt64, length: UInt64)? = nil) throws(SystemError) {
        core = try TransportCore(name: "virtio-mmio", device: device, memory: memory)
        self.line = line
        self.sharedMemory = sharedMemory
    }

    /// SHMLen/SHMBase of the selected region (4.2.2.1): region 0 is the
    /// window, if any; a region that does not exist reads length -1 (and
    /// base -1).
    private func sharedMemoryRegister(_ offset: UInt64) -> UInt32 {
        guard shmSelect.withLock({ $0 }) == 0, let shm = sharedMemory else { return 0xffff_ffff }
        switch offset {
        case MMIORegister.shmLengthLow: return UInt32(truncatingIfNeeded: shm.length)
        case MMIORegister.shmLengthHigh: return UInt32(truncatingIfNeeded: shm.length >> 32)
        case MMIORegister.shmBaseLow: return UInt32(truncatingIfNeeded: shm.base)
        default: return UInt32(truncatingIfNeeded: shm.base >> 32)
        }
    }

    public var device: any VirtioDevice { core.device }
    public var memory: GuestMemory { core.memory }
    /// The queues' kick eventfds, in queue order.
    public var kicks: [EventFD] { core.kicks }

    /// The device status as the driver reads it.
    public var status: DeviceStatus { core.status }

    public var notifications: [QueueNotification] {
        core.kicks.enumerated().map { i, kick in
            QueueNotification(queue: i, eventfd: kick, bar: nil, offset: MMIORegister.queueNotify, length: 4, dataMatch: UInt64(i))
        }
    }

    // MARK: - Register reads

    public func read(offset: UInt64, into buffer: UnsafeMutableRawBufferPointer) {
        guard offset < Self.windowSize else {
            core.logOnce("range", "read at 0x\(String(offset, radix: 16)) past the register window; reads zero")
            return RegisterBytes.zero(buffer)
        }
        if offset >= MMIORegister.config {
            return device.readConfig(offset: Int(offset - MMIORegister.config), into: buffer)
        }
        guard buffer.count == 4, offset & 3 == 0 else {
            core.logOnce("width", "\(buffer.count)-byte read at 0x\(String(offset, radix: 16)) (registers are aligned 32-bit); reads zero")
            return RegisterBytes.zero(buffer)
        }
        let value: UInt32 = core.withRegisters { r in
            switch offset {
            case MMIORegister.magicValue: return Self.magic
            case MMIORegister.version: return 2
            case MMIORegister.deviceID: return device.deviceType
            case MMIORegister.vendorID: return Self.vendorID
            case MMIORegister.deviceFeatures: return r.deviceFeatureWord
            case MMIORegister.queueNumMax: return r.selected.map { UInt32(r.queues[$0].maxSize) } ?? 0
            case MMIORegister.queueReady: return r.selected.map { r.queues[$0].ready ? 1 : 0 } ?? 0
            case MMIORegister.interruptStatus: return r.interruptStatus
            case MMIORegister.status: return UInt32(r.device.status.rawValue)
            case MMIORegister.shmLengthLow, MMIORegister.shmLengthHigh, MMIORegister.shmBaseLow, MMIORegister.shmBaseHigh:
                return sharedMemoryRegister(offset)
            case MMIORegister.configGeneration: return r.configGeneration
            default: return 0
            }
        }
        RegisterBytes.store(UInt64(value), into: buffer)
    }

    // MARK: - Register writes

    public func write(offset: UInt64, bytes: UnsafeRawBufferPointer) {
        guard offset < Self.windowSize else {
            return core.logOnce("range", "write at 0x\(String(offset, radix: 16)) past the register window; ignored")
        }
        if offset >= MMIORegister.config {
            return device.writeConfig(offset: Int(offset - MMIORegister.config), bytes: bytes)
        }
        guard bytes.count == 4, offset & 3 == 0 else {
            return core.logOnce("width", "\(bytes.count)-byte write at 0x\(String(offset, radix: 16)) (registers are aligned 32-bit); ignored")
        }
        let value = UInt32(truncatingIfNeeded: RegisterBytes.load(bytes))
        switch offset {
        case MMIORegister.queueNotify: return core.notify(queue: UInt64(value))
        case MMIORegister.shmSelect: return shmSelect.withLock { $0 = value }
        case MMIORegister.status: return core.writeStatus(UInt8(truncatingIfNeeded: value), interrupt: self)
        default: break
        }
        core.withRegisters { r in
            switch offset {
            case MMIORegister.deviceFeaturesSelect: r.deviceFeaturesSelect = value
            case MMIORegister.driverFeatures: core.writeDriverFeatures(value, in: &r)
            case MMIORegister.driverFeaturesSelect: r.driverFeaturesSelect = value
            case MMIORegister.queueSelect: r.queueSelect = value
            case MMIORegister.queueNum: if let q = r.selectedWritable { r.queues[q].size = UInt16(truncatingIfNeeded: value) }
            case MMIORegister.queueReady: if let q = r.selectedWritable { r.queues[q].ready = value == 1 }
            case MMIORegister.interruptACK: r.interruptStatus &= ~value
            default:
                if let (area, half) = MMIORegister.queueAddress(offset), let q = r.selectedWritable {
                    r.queues[q].setAddress(area, half, to: value)
                }
            }
        }
    }

    /// Sets DEVICE_NEEDS_RESET and tells the driver (configuration change).
    public func needsReset() { core.needsReset(interrupt: self) }

    // MARK: - VirtioInterrupt

    public func signalQueue(_ index: Int) throws {
        core.raise(TransportCore.usedBuffer)
        try line.trigger()
    }

    public func signalConfigChange() throws {
        core.raise(TransportCore.configChange)
        try line.trigger()
    }
}
