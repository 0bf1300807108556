import Synchronization
import VfsvmMemory
import VfsvmSys
import VfsvmVirtio

/// Serves any `VirtioDevice` over vhost-user: the front-end hands over
/// rings one at a time, and each becomes an activated `Virtqueue` given to
/// the device through the activation contract.
///
/// - The first ring started activates the device (`activate` with that one
///   queue); later rings are `startQueue`s. Features renegotiated while no
///   ring runs (a guest reboot) reset the device and activate it afresh.
/// - GET_VRING_BASE / SET_VRING_ENABLE(0) stop one ring (`stopQueue`) and
///   answer its position; a new kick fd restarts it (`startQueue`).
/// - SET_MEM_TABLE while rings run moves them to the new memory
///   (`replaceMemory`); rings keep their positions.
/// - RESET_OWNER / RESET_DEVICE / disconnect reset the device.
///
/// A ring the driver broke stops that ring. vhost-user has no configuration
/// channel to the guest here (the back-end request channel is not
/// negotiated), so the back-end logs it and signals the ring's
/// SET_VRING_ERR eventfd when the front-end gave one (QEMU logs "vhost vring
/// error"); the ring stays stopped until the front-end restarts or resets it.
public final class VhostUserVirtioBackend: VhostUserDevice {
    public let device: any VirtioDevice
    private let interrupt = CallInterrupt()
    private let log: @Sendable (String) -> Void
    private let errorFDs = Mutex<[Int: EventFD]>([:])
    /// What the device was activated with and runs on now.
    private let current = Mutex<(features: VirtioFeatures, memory: GuestMemory)?>(nil)

    public init(device: any VirtioDevice,
                log: @escaping @Sendable (String) -> Void = VhostUserBackendServer.logToStandardError) {
        self.device = device
        self.log = log
    }

    /// What the device offers. QEMU passes through to the guest only the
    /// bits its vhost-user device model knows (for vhost-user-fs-pci:
    /// VERSION_1, INDIRECT_DESC, EVENT_IDX, RING_PACKED, ...).
    public var deviceFeatures: VirtioFeatures { device.offeredFeatures }
    public var queueCount: Int { device.queueMaxSizes.count }
    public var maxQueueSize: UInt16 { device.queueMaxSizes.max() ?? 1 }

    public func readConfig(offset: Int, count: Int) -> [UInt8] {
        device.readConfig(offset: offset, count: count)
    }

    public func startQueue(_ vring: VhostUserVring, features: VirtioFeatures, memory: GuestMemory,
                           kick: EventFD, call: EventFD?, error: EventFD?) throws {
        var q = Virtqueue(maxSize: device.queueMaxSizes[vring.index])
        q.size = vring.size
        q.descriptorTable = vring.descriptorTable
        q.driverArea = vring.driverArea
        q.deviceArea = vring.deviceArea
        q.ready = true
        (q.availState, q.usedState) = Self.decodeBase(vring.base, packed: features.contains(.ringPacked))
        try q.activate(memory: memory, features: features)
        // Split: the base carries only the avail index; the used index is
        // whatever the device last published in the used ring.
        try q.adoptUsedIndexFromRing(memory)
        interrupt.setCall(call, for: vring.index)
        errorFDs.withLock { $0[vring.index] = error }
        let queue = ActivatedQueue(index: vring.index, queue: q, kick: kick)

        let running = current.withLock { $0 }
        if let running, device.state == .active, running.features == features {
            if running.memory !== memory { moveTo(memory) }
            try device.startQueue(queue)
            return
        }
        if running != nil || device.state == .active {
            log("vhost-user: features changed to \(features); the device starts afresh")
            device.reset()
        }
        try device.activate(ActivationContext(memory: memory, features: features, queues: [queue], interrupt: interrupt) {
            [weak self] index, error in self?.queueFailed(index, error)
        })
        current.withLock { $0 = (features, memory) }
    }

    public func stopQueue(_ index: Int) -> UInt32 {
        guard let q = device.stopQueue(index) else { return 0 }
        return Self.encodeBase(q)
    }

    public func callChanged(_ index: Int, call: EventFD?) {
        interrupt.setCall(call, for: index)
    }

    public func memoryChanged(_ memory: GuestMemory) {
        moveTo(memory)
    }

    public func reset() {
        device.reset()
        current.withLock { $0 = nil }
        errorFDs.withLock { $0 = [:] }
        interrupt.clear()
    }

    private func moveTo(_ memory: GuestMemory) {
        device.replaceMemory(memory)
        current.withLock { $0?.memory = memory }
    }

    private func queueFailed(_ index: Int, _ error: VirtqueueError) {
        log("vhost-user: queue \(index) stopped: \(error); the ring stays stopped until the front-end restarts or resets it")
        _ = try? errorFDs.withLock { $0[index] }?.signal()
    }

    // MARK: - GET/SET_VRING_BASE encoding

    /// Split: the next avail index (bits 0-15). Packed, as QEMU and Linux's
    /// vhost encode it: bits 0-14 next avail slot, bit 15 avail wrap
    /// counter, bits 16-30 next used slot, bit 31 used wrap counter
    /// (`Virtqueue.availState` / `usedState` hold the 16-bit halves).
    public static func encodeBase(_ q: Virtqueue) -> UInt32 {
        q.layout == .packed ? UInt32(q.availState) | UInt32(q.usedState) << 16 : UInt32(q.availState)
    }

    /// The `availState` / `usedState` halves of a SET_VRING_BASE value. For
    /// a split ring the used half is 0 and replaced from the used ring.
    public static func decodeBase(_ base: UInt32, packed: Bool) -> (avail: UInt16, used: UInt16) {
        (UInt16(truncatingIfNeeded: base), packed ? UInt16(truncatingIfNeeded: base >> 16) : 0)
    }
}

/// Used-buffer notifications through the front-end's call eventfds, which
/// QEMU may swap at any time (SET_VRING_CALL while the guest masks vectors).
final class CallInterrupt: VirtioInterrupt {
    /// Indexed by queue: every pass that completes chains looks its queue's
    /// fd up, and a dictionary hashed the index each time (~130
    /// instructions). The write happens outside the lock, which all the
    /// queue threads share.
    private let calls = Mutex<[EventFD?]>([])

    func setCall(_ call: EventFD?, for index: Int) {
        guard index >= 0 else { return }
        calls.withLock { c in
            if index >= c.count { c += repeatElement(nil, count: index + 1 - c.count) }
            c[index] = call
        }
    }

    func clear() { calls.withLock { $0.removeAll() } }

    func signalQueue(_ index: Int) throws {
        try calls.withLock { c in c.indices.contains(index) ? c[index] : nil }?.signal()
    }

    /// No configuration change channel to the guest (see
    /// `VhostUserVirtioBackend`).
    func signalConfigChange() throws {}
}
