import VfsvmMemory
import VfsvmSys

/// How a device tells the driver something happened. The transport
/// implements it: an irqfd (KVM, MSI-X vector or GSI) or a vhost-user call
/// eventfd. Devices call `signalQueue` only when `Virtqueue.needsInterrupt`
/// said so.
public protocol VirtioInterrupt: Sendable {
    /// A used buffer notification for queue `index`.
    func signalQueue(_ index: Int) throws
    /// A configuration change notification (also sent after the device
    /// sets DEVICE_NEEDS_RESET, 2.1.2).
    func signalConfigChange() throws
}

/// A queue handed to a device at activation: the validated, activated
/// `Virtqueue`, its index, and the eventfd the driver's notifications
/// (kicks) arrive on, if the transport has one (ioeventfd, vhost-user kick).
public struct ActivatedQueue: Sendable {
    public var index: Int
    public var queue: Virtqueue
    public var kick: EventFD?

    public init(index: Int, queue: Virtqueue, kick: EventFD? = nil) {
        self.index = index
        self.queue = queue
        self.kick = kick
    }
}

/// A virtio device model, independent of the transport that carries it
/// (virtio-pci, virtio-mmio, vhost-user). The transport owns the
/// `VirtioDeviceState` and the queue registers; it calls `activate` when the
/// driver sets DRIVER_OK (with every ready queue already activated) and
/// `reset` when the driver writes status 0. If `activate` throws, the
/// transport sets DEVICE_NEEDS_RESET instead of crashing.
public protocol VirtioDevice: AnyObject, Sendable {
    /// VIRTIO_ID_* (linux/virtio_ids.h), e.g. 26 for virtio-fs.
    var deviceType: UInt32 { get }
    /// Features offered to the driver, transport bits included (VERSION_1 at least).
    var offeredFeatures: VirtioFeatures { get }
    /// One entry per queue: its maximum size.
    var queueMaxSizes: [UInt16] { get }
    /// Reads device configuration space from `offset`; bytes past the end
    /// of the configuration read as zero. `into.count` says how many.
    func readConfig(offset: Int, into: inout [UInt8])
    /// Writes device configuration space (ignored where read-only).
    func writeConfig(offset: Int, bytes: [UInt8])
    /// Starts the device with the negotiated features and its queues.
    func activate(memory: GuestMemory, features: VirtioFeatures, queues: [ActivatedQueue], interrupt: any VirtioInterrupt) throws
    /// Stops the device and drops its queues; it can be activated again.
    func reset()
}

extension VirtioDevice {
    /// Copies `config` bytes from `offset` into `into`, zero past the end:
    /// the usual `readConfig` body for a device with a fixed config struct.
    public func readConfigBytes(_ config: [UInt8], offset: Int, into: inout [UInt8]) {
        for i in into.indices {
            let (source, overflow) = offset.addingReportingOverflow(i)
            into[i] = !overflow && source >= 0 && source < config.count ? config[source] : 0
        }
    }
}
