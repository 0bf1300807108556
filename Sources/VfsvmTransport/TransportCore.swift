import CVfsvmLinux
import Synchronization
import VfsvmMemory
import VfsvmSys
import VfsvmVirtio

/// A transport as its core sees it: the device's `VirtioInterrupt`, and a
/// class (the core keeps it weakly from queue threads).
protocol CoreInterrupt: VirtioInterrupt, AnyObject {}

/// The half of a virtio transport that does not depend on how its
/// registers are laid out, shared by virtio-mmio (virtio 1.2, 4.2.2) and
/// virtio-pci (4.1.4): the device status machine and feature negotiation
/// (`VirtioDeviceState`), the feature and queue selectors, the queue
/// registers, the interrupt status bits, the configuration generation, and
/// starting, failing and resetting the device through the activation
/// contract. Bad driver input is logged once per kind, never a crash.
final class TransportCore: Sendable {
    /// Bit 0 of the interrupt status: a used buffer (VIRTIO_MMIO_INT_VRING,
    /// VIRTIO_PCI_ISR_QUEUE).
    static let usedBuffer = UInt32(VIRTIO_MMIO_INT_VRING)
    /// Bit 1: a configuration change (VIRTIO_MMIO_INT_CONFIG, VIRTIO_PCI_ISR_CONFIG).
    static let configChange = UInt32(VIRTIO_MMIO_INT_CONFIG)

    struct Registers {
        var device: VirtioDeviceState
        var deviceFeaturesSelect: UInt32 = 0
        var driverFeaturesSelect: UInt32 = 0
        var queueSelect: UInt32 = 0
        var queues: [Virtqueue]
        var interruptStatus: UInt32 = 0
        var configGeneration: UInt32 = 0

        /// The queue the selector names, nil when it names none.
        var selected: Int? { queues.indices.contains(Int(queueSelect)) ? Int(queueSelect) : nil }

        /// The selected queue while its registers are the driver's: before
        /// DRIVER_OK (4.2.2.3; 4.1.4.3.2: queue_enable etc. are set up before
        /// the device is live). Later writes are ignored.
        var selectedWritable: Int? { device.status.contains(.driverOK) ? nil : selected }

        /// The 32 device feature bits `deviceFeaturesSelect` picks.
        var deviceFeatureWord: UInt32 { device.offeredFeatures.word(deviceFeaturesSelect) }
    }

    let name: String
    let device: any VirtioDevice
    let memory: GuestMemory
    /// One eventfd per queue: the queue's kick (an ioeventfd for the VMM).
    let kicks: [EventFD]
    private let registers: Mutex<Registers>
    /// Held across a whole status write, the state machine and the device
    /// start or stop it causes: two vCPUs writing the status register
    /// (DRIVER_OK on one, 0 on the other) take effect in one order, so a
    /// late start cannot leave a device running behind a reset.
    private let lifecycle = Mutex(())
    private let reported = Mutex<Set<String>>([])

    init(name: String, device: any VirtioDevice, memory: GuestMemory) throws(SystemError) {
        self.name = name
        self.device = device
        self.memory = memory
        var kicks: [EventFD] = []
        for _ in device.queueMaxSizes { kicks.append(try EventFD(nonBlocking: true)) }
        self.kicks = kicks
        registers = Mutex(Registers(device: VirtioDeviceState(offeredFeatures: device.offeredFeatures),
                                    queues: device.queueMaxSizes.map { Virtqueue(maxSize: $0) }))
    }

    func withRegisters<R>(_ body: (inout Registers) -> R) -> R {
        registers.withLock { body(&$0) }
    }

    var status: DeviceStatus { registers.withLock { $0.device.status } }

    /// Logs `line` the first time something of `kind` happens on this
    /// transport: a hostile driver cannot flood the log.
    func logOnce(_ kind: String, _ line: @autoclosure () -> String) {
        if reported.withLock({ $0.insert(kind).inserted }) { logLine("vfsvm: \(name): \(line())") }
    }

    /// A driver queue notification that reached the transport: signals the
    /// queue's kick eventfd (the ioeventfd path signals the same one).
    func notify(queue: UInt64) {
        guard queue < UInt64(kicks.count) else {
            return logOnce("notify", "notification for queue \(queue), which does not exist; ignored")
        }
        do { try kicks[Int(queue)].signal() } catch { logOnce("kick", "queue \(queue): \(error)") }
    }

    /// The driver wrote the selected 32-bit word of its features.
    func writeDriverFeatures(_ value: UInt32, in r: inout Registers) {
        do { try r.device.writeDriverFeatures(word: r.driverFeaturesSelect, value: value) } catch {
            logOnce("features", "\(error); ignored")
        }
    }

    /// The driver wrote the status register: runs the state machine, then
    /// starts, stops or resets the device (outside the register lock, under
    /// `lifecycle`).
    func writeStatus(_ value: UInt8, interrupt: some CoreInterrupt) {
        lifecycle.withLock { _ in
            let change: StatusChange? = registers.withLock { r in
                do { return try r.device.writeStatus(value) } catch {
                    logOnce("status", "\(error); ignored")
                    return nil
                }
            }
            switch change {
            case .activate?: activate(interrupt: interrupt)
            case .reset?, .failed?: stopDevice()
            case .none?, nil: break
            }
        }
    }

    /// Sets DEVICE_NEEDS_RESET and, when newly set, sends the configuration
    /// change notification (2.1.2).
    func needsReset(interrupt: some CoreInterrupt) {
        let newly = registers.withLock { $0.device.markNeedsReset() }
        if newly {
            do { try interrupt.signalConfigChange() } catch { logOnce("interrupt", "configuration interrupt: \(error)") }
        }
    }

    /// Sets `bits` in the interrupt status (and moves the configuration
    /// generation for a configuration change).
    func raise(_ bits: UInt32) {
        registers.withLock { r in
            r.interruptStatus |= bits
            if bits & Self.configChange != 0 { r.configGeneration &+= 1 }
        }
    }

    /// DRIVER_OK: every ready queue is checked against guest memory and
    /// handed to the device with its kick eventfd. A queue the driver laid
    /// out wrongly, or a device that refuses to start, sets
    /// DEVICE_NEEDS_RESET (2.1.2) instead of failing anything else; so does
    /// a ring the driver breaks later (through `queueFailed`).
    private func activate(interrupt: some CoreInterrupt) {
        let setup: Result<([ActivatedQueue], VirtioFeatures), VirtqueueError> = registers.withLock { r in
            let features = r.device.negotiatedFeatures
            var active: [ActivatedQueue] = []
            for i in r.queues.indices where r.queues[i].ready {
                do throws(VirtqueueError) {
                    try r.queues[i].activate(memory: memory, features: features)
                } catch {
                    return .failure(error)
                }
                active.append(ActivatedQueue(index: i, queue: r.queues[i], kick: kicks[i]))
            }
            return .success((active, features))
        }
        do {
            let (queues, features) = try setup.get()
            try device.activate(ActivationContext(memory: memory, features: features, queues: queues, interrupt: interrupt) {
                [weak self, weak interrupt] index, error in
                guard let self, let interrupt else { return }
                logOnce("queue-fatal", "queue \(index): \(error); the device needs a reset (later ones are not logged)")
                needsReset(interrupt: interrupt)
            })
        } catch {
            logOnce("start", "cannot start the device: \(error) (later failures are not logged)")
            needsReset(interrupt: interrupt)
        }
    }

    /// Status 0 (the state machine has already cleared the status) or
    /// FAILED (which stays set until the driver resets): the device stops
    /// and the queue registers return to their reset values.
    private func stopDevice() {
        device.reset()
        registers.withLock { r in
            for i in r.queues.indices { r.queues[i].reset() }
            r.interruptStatus = 0
            r.queueSelect = 0
            r.deviceFeaturesSelect = 0
            r.driverFeaturesSelect = 0
        }
    }
}
