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

/// A queue handed to a device: the validated, activated `Virtqueue`, its
/// index, and the eventfd the driver's notifications (kicks) arrive on
/// (a KVM ioeventfd, or the vhost-user frontend's kick fd).
public struct ActivatedQueue: Sendable {
    public var index: Int
    public var queue: Virtqueue
    public var kick: EventFD

    public init(index: Int, queue: Virtqueue, kick: EventFD) {
        self.index = index
        self.queue = queue
        self.kick = kick
    }
}

/// Told (from the queue's own thread) that queue `queue` hit an error
/// after which the spec says the device stops using it: a broken ring
/// (`VirtqueueError.isFatal`). A virtio transport sets DEVICE_NEEDS_RESET
/// and raises the configuration interrupt (virtio 1.2, 2.1.2); vhost-user,
/// which has no configuration channel to the guest here, logs it.
public typealias QueueFailureHandler = @Sendable (_ queue: Int, _ error: VirtqueueError) -> Void

/// Everything a transport hands a device when it starts it, in one value
/// (as cloud-hypervisor's `VirtioDevice::activate`): the guest memory, the
/// negotiated features, the queues the driver made ready with their kick
/// eventfds, the interrupt, and the way back for a fatal queue error.
public struct ActivationContext: Sendable {
    public var memory: GuestMemory
    public var features: VirtioFeatures
    public var queues: [ActivatedQueue]
    public var interrupt: any VirtioInterrupt
    public var queueFailed: QueueFailureHandler

    public init(memory: GuestMemory, features: VirtioFeatures, queues: [ActivatedQueue], interrupt: any VirtioInterrupt,
                queueFailed: @escaping QueueFailureHandler) {
        self.memory = memory
        self.features = features
        self.queues = queues
        self.interrupt = interrupt
        self.queueFailed = queueFailed
    }
}

/// Whether a device runs (Firecracker's `DeviceState`): inactive until a
/// transport activates it, active until it is reset.
public enum DeviceState: Hashable, Sendable {
    case inactive
    case active
}

/// Why a device refused to start or to change a queue.
public enum DeviceActivationError: Error, Hashable, Sendable, CustomStringConvertible {
    /// `activate` on a device that is active (reset it first).
    case alreadyActive
    /// A queue operation on a device that was not activated.
    case notActive
    /// A queue index the device does not have.
    case noSuchQueue(Int)
    /// The device could not start a queue's worker.
    case system(SystemError)
    /// The device will not run with what the driver negotiated (the
    /// sentence says why).
    case refused(String)

    public var description: String {
        switch self {
        case .alreadyActive: "the device is already active"
        case .notActive: "the device is not active"
        case let .noSuchQueue(i): "the device has no queue \(i)"
        case let .system(e): "\(e)"
        case let .refused(why): why
        }
    }
}

/// A virtio device model, independent of the transport that carries it
/// (virtio-pci, virtio-mmio, vhost-user). The one way in:
///
/// - `activate(context)`: inactive → active, with the queues the driver made
///   ready. virtio-pci/mmio call it when the driver sets DRIVER_OK; the
///   vhost-user backend when the frontend starts the first ring. If it
///   throws, a virtio transport sets DEVICE_NEEDS_RESET instead of crashing.
/// - `stopQueue` / `startQueue`: one queue of an active device stops (its
///   final state is returned, for vhost-user GET_VRING_BASE) or starts
///   (vhost-user SET_VRING_KICK, a ring started after the others). The rest
///   of the device keeps running.
/// - `replaceMemory`: new guest memory for an active device (vhost-user
///   SET_MEM_TABLE while rings run): running queues restart on it where they
///   stopped (ring addresses are guest-physical and do not change).
/// - `reset()`: any state → inactive, every queue stopped and dropped.
///
/// The transport owns the `VirtioDeviceState` (status, features) and the
/// queue registers. Calls come from one control thread at a time.
public protocol VirtioDevice: AnyObject, Sendable {
    /// VIRTIO_ID_* (linux/virtio_ids.h), e.g. 26 for virtio-fs.
    var deviceType: UInt32 { get }
    /// Features offered to the driver, transport bits included (VERSION_1 at least).
    var offeredFeatures: VirtioFeatures { get }
    /// One entry per queue: its maximum size.
    var queueMaxSizes: [UInt16] { get }
    /// Reads device configuration space from `offset` into the caller's
    /// buffer (a vCPU exit's data: no allocation); bytes past the end of
    /// the configuration read as zero. `into.count` says how many.
    func readConfig(offset: Int, into: UnsafeMutableRawBufferPointer)
    /// Writes device configuration space (ignored where read-only).
    func writeConfig(offset: Int, bytes: UnsafeRawBufferPointer)

    /// Inactive or active.
    var state: DeviceState { get }
    /// Starts the device with `context` (see the type's documentation).
    func activate(_ context: ActivationContext) throws(DeviceActivationError)
    /// Stops queue `index` of an active device and returns its final state,
    /// or nil when it was not running.
    func stopQueue(_ index: Int) -> Virtqueue?
    /// Starts (or restarts) one queue of an active device.
    func startQueue(_ queue: ActivatedQueue) throws(DeviceActivationError)
    /// Running queues move to `memory`; queues started later use it too.
    func replaceMemory(_ memory: GuestMemory)
    /// Stops every queue; the device is inactive and can be activated again.
    func reset()
}

extension VirtioDevice {
    /// Copies `config` bytes from `offset` into `into`, zero past the end:
    /// the usual `readConfig` body for a device with a fixed config struct.
    public func readConfigBytes(_ config: [UInt8], offset: Int, into: UnsafeMutableRawBufferPointer) {
        RegisterBytes.copy(config, from: offset, into: into)
    }

    /// `count` bytes of configuration space from `offset`, as a new array
    /// (for callers off the MMIO path: vhost-user GET_CONFIG, tests).
    public func readConfig(offset: Int, count: Int) -> [UInt8] {
        var out = [UInt8](repeating: 0, count: max(0, count))
        out.withUnsafeMutableBytes { readConfig(offset: offset, into: $0) }
        return out
    }
}
