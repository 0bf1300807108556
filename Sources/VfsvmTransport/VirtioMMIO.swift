import Synchronization
import VfsvmMemory
import VfsvmSys
import VfsvmVirtio

/// An interrupt the transport raises toward the guest: a KVM irqfd on a
/// GSI for virtio-mmio, a recording sink in tests.
public protocol InterruptLine: Sendable {
    func trigger() throws
}

/// virtio-mmio, version 2 (virtio 1.2, section 4.2.2): the register file a
/// VMM maps at a guest-physical window, dispatching the vCPU's MMIO exits
/// to `read` and `write`.
///
/// Queue notifications: the VMM registers `kicks[i]` as a KVM ioeventfd on
/// `base + notifyOffset` with data match `i`, so a kick never leaves the
/// kernel; a QueueNotify write that does reach `write` signals the same
/// eventfd. Interrupts: one line, with InterruptStatus saying why (bit 0:
/// used buffer, bit 1: configuration change).
///
/// Register accesses other than the configuration space must be 32 bits
/// wide and aligned (4.2.2.2); others read as zero and are ignored on
/// write. Configuration space reads past its end read zero.
public final class VirtioMMIOTransport: VirtioInterrupt {
    public static let windowSize: UInt64 = 0x200
    public static let notifyOffset: UInt64 = 0x050
    public static let magic: UInt32 = 0x7472_6976  // "virt"
    public static let vendorID: UInt32 = 0x5346_5656  // "VVFS"

    public let device: any VirtioDevice
    public let memory: GuestMemory
    public let kicks: [EventFD]
    private let line: any InterruptLine
    private let state: Mutex<Registers>

    private struct Registers {
        var device: VirtioDeviceState
        var deviceFeaturesSel: UInt32 = 0
        var driverFeaturesSel: UInt32 = 0
        var queueSel: UInt32 = 0
        var queues: [Virtqueue]
        var interruptStatus: UInt32 = 0
        var configGeneration: UInt32 = 0
    }

    public init(device: any VirtioDevice, memory: GuestMemory, line: any InterruptLine) throws(SystemError) {
        self.device = device
        self.memory = memory
        self.line = line
        var kicks: [EventFD] = []
        for _ in device.queueMaxSizes { kicks.append(try EventFD(nonBlocking: true)) }
        self.kicks = kicks
        state = Mutex(Registers(
            device: VirtioDeviceState(offeredFeatures: device.offeredFeatures),
            queues: device.queueMaxSizes.map { Virtqueue(maxSize: $0) }))
    }

    /// The device status as the driver reads it.
    public var status: DeviceStatus { state.withLock { $0.device.status } }

    // MARK: - Register reads

    public func read(offset: UInt64, count: Int) -> [UInt8] {
        if offset >= 0x100 {
            var out = [UInt8](repeating: 0, count: max(0, count))
            device.readConfig(offset: Int(offset - 0x100), into: &out)
            return out
        }
        guard count == 4, offset & 3 == 0 else { return [UInt8](repeating: 0, count: max(0, count)) }
        let value: UInt32 = state.withLock { r in
            switch offset {
            case 0x000: return Self.magic
            case 0x004: return 2
            case 0x008: return device.deviceType
            case 0x00c: return Self.vendorID
            case 0x010: return r.device.offeredFeatures.word(r.deviceFeaturesSel)
            case 0x034: return UInt32(r.queues.indices.contains(Int(r.queueSel)) ? r.queues[Int(r.queueSel)].maxSize : 0)
            case 0x044: return r.queues.indices.contains(Int(r.queueSel)) && r.queues[Int(r.queueSel)].ready ? 1 : 0
            case 0x060: return r.interruptStatus
            case 0x070: return UInt32(r.device.status.rawValue)
            case 0x0b0, 0x0b4: return 0xffff_ffff  // SHMLen: no shared memory region
            case 0x0fc: return r.configGeneration
            default: return 0
            }
        }
        return withUnsafeBytes(of: value.littleEndian, Array.init)
    }

    // MARK: - Register writes

    public func write(offset: UInt64, bytes: [UInt8]) {
        if offset >= 0x100 {
            device.writeConfig(offset: Int(offset - 0x100), bytes: bytes)
            return
        }
        guard bytes.count == 4, offset & 3 == 0 else { return }
        let value = bytes.withUnsafeBytes { UInt32(littleEndian: $0.loadUnaligned(as: UInt32.self)) }
        if offset == Self.notifyOffset {
            if kicks.indices.contains(Int(value)) { try? kicks[Int(value)].signal() }
            return
        }
        let change: StatusChange? = state.withLock { r in
            let q = Int(r.queueSel)
            // Queue registers are the driver's only before DRIVER_OK (4.2.2.3).
            let queueWritable = r.queues.indices.contains(q) && !r.device.status.contains(.driverOK)
            switch offset {
            case 0x014: r.deviceFeaturesSel = value
            case 0x020:
                do { try r.device.writeDriverFeatures(word: r.driverFeaturesSel, value: value) } catch {
                    logLine("vfsvm: virtio-mmio: \(error)")
                }
            case 0x024: r.driverFeaturesSel = value
            case 0x030: r.queueSel = value
            case 0x038 where queueWritable: r.queues[q].size = UInt16(truncatingIfNeeded: value)
            case 0x044 where queueWritable: r.queues[q].ready = value == 1
            case 0x064: r.interruptStatus &= ~value
            case 0x070:
                do { return try r.device.writeStatus(UInt8(truncatingIfNeeded: value)) } catch {
                    logLine("vfsvm: virtio-mmio: \(error)")
                }
            case 0x080 where queueWritable: r.queues[q].descriptorTable = Self.low(r.queues[q].descriptorTable, value)
            case 0x084 where queueWritable: r.queues[q].descriptorTable = Self.high(r.queues[q].descriptorTable, value)
            case 0x090 where queueWritable: r.queues[q].driverArea = Self.low(r.queues[q].driverArea, value)
            case 0x094 where queueWritable: r.queues[q].driverArea = Self.high(r.queues[q].driverArea, value)
            case 0x0a0 where queueWritable: r.queues[q].deviceArea = Self.low(r.queues[q].deviceArea, value)
            case 0x0a4 where queueWritable: r.queues[q].deviceArea = Self.high(r.queues[q].deviceArea, value)
            default: break
            }
            return nil
        }
        switch change {
        case .activate?: activate()
        case .reset?, .failed?: stopDevice()
        case .none?, nil: break
        }
    }

    private static func low(_ a: GuestAddress, _ v: UInt32) -> GuestAddress {
        GuestAddress(a.rawValue & 0xffff_ffff_0000_0000 | UInt64(v))
    }

    private static func high(_ a: GuestAddress, _ v: UInt32) -> GuestAddress {
        GuestAddress(a.rawValue & 0xffff_ffff | UInt64(v) << 32)
    }

    // MARK: - Activation and reset

    /// DRIVER_OK: every ready queue is checked against guest memory and
    /// handed to the device with its kick eventfd. A queue the driver laid
    /// out wrongly, or a device that refuses to start, sets
    /// DEVICE_NEEDS_RESET with a configuration interrupt (2.1.2) instead of
    /// failing anything else.
    private func activate() {
        let setup: Result<([ActivatedQueue], VirtioFeatures), VirtqueueError> = state.withLock { r in
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
            // A ring the driver broke stops its queue; the device asks for a
            // reset the way 2.1.2 says (NEEDS_RESET + configuration interrupt).
            try device.activate(ActivationContext(memory: memory, features: features, queues: queues, interrupt: self) {
                [weak self] index, error in
                logLine("vfsvm: virtio-mmio: queue \(index): \(error); the device needs a reset")
                self?.needsReset()
            })
        } catch {
            logLine("vfsvm: virtio-mmio: cannot start the device: \(error)")
            needsReset()
        }
    }

    /// Sets DEVICE_NEEDS_RESET and tells the driver (configuration change).
    public func needsReset() {
        let newly = state.withLock { $0.device.markNeedsReset() }
        if newly { try? signalConfigChange() }
    }

    /// Status 0 (the state machine has already cleared the status) or
    /// FAILED (which stays set until the driver resets): the device stops
    /// and the queue registers return to their reset values.
    private func stopDevice() {
        device.reset()
        state.withLock { r in
            for i in r.queues.indices { r.queues[i].reset() }
            r.interruptStatus = 0
            r.queueSel = 0
            r.deviceFeaturesSel = 0
            r.driverFeaturesSel = 0
        }
    }

    // MARK: - VirtioInterrupt

    public func signalQueue(_ index: Int) throws {
        state.withLock { $0.interruptStatus |= 1 }
        try line.trigger()
    }

    public func signalConfigChange() throws {
        state.withLock { r in
            r.interruptStatus |= 2
            r.configGeneration &+= 1
        }
        try line.trigger()
    }
}
