import Synchronization
import VfsvmMemory
import VfsvmSys
import VfsvmVhostUser
import VfsvmVirtio
import VfsvmVirtioFS

/// The virtio-fs device as a vhost-user backend: the server hands over
/// rings one at a time; each becomes a `Virtqueue` run by the device.
final class VhostUserFSDevice: VhostUserDevice {
    let fs: VirtioFSDevice
    private let interrupt = CallInterrupt()
    private let running = Mutex<[Int: RunningRing]>([:])

    private struct RunningRing {
        var kick: EventFD
        var features: VirtioFeatures
    }

    init(fs: VirtioFSDevice) { self.fs = fs }

    /// What the device offers. QEMU passes through to the guest only the
    /// bits its vhost-user-fs model knows (VERSION_1, INDIRECT_DESC,
    /// EVENT_IDX, RING_PACKED, ...).
    var deviceFeatures: UInt64 { fs.offeredFeatures.rawValue }
    var queueCount: Int { 1 + fs.requestQueues }
    var maxQueueSize: UInt16 { fs.queueSize }

    func readConfig(offset: Int, count: Int) -> [UInt8] {
        var out = [UInt8](repeating: 0, count: max(0, count))
        fs.readConfig(offset: offset, into: &out)
        return out
    }

    func startQueue(_ vring: VhostUserVring, features: UInt64, memory: GuestMemory, kick: EventFD, call: EventFD?) throws {
        let negotiated = VirtioFeatures(rawValue: features)
        var q = Virtqueue(maxSize: fs.queueSize)
        q.size = vring.size
        q.descriptorTable = vring.descriptorTable
        q.driverArea = vring.driverArea
        q.deviceArea = vring.deviceArea
        q.ready = true
        q.availState = UInt16(truncatingIfNeeded: vring.base)
        if negotiated.contains(.ringPacked) { q.usedState = UInt16(truncatingIfNeeded: vring.base >> 16) }
        try q.activate(memory: memory, features: negotiated)
        // Split: the base carries only the avail index; the used index is
        // whatever the device last published in the used ring.
        try q.adoptUsedIndexFromRing(memory)
        interrupt.setCall(call, for: vring.index)
        try start(vring.index, q, memory: memory, kick: kick, features: negotiated)
    }

    private func start(_ index: Int, _ q: Virtqueue, memory: GuestMemory, kick: EventFD, features: VirtioFeatures) throws {
        let queue = ActivatedQueue(index: index, queue: q, kick: kick)
        if fs.state == .inactive {
            try fs.activate(ActivationContext(memory: memory, features: features, queues: [queue], interrupt: interrupt) { index, error in
                // No configuration channel to the guest (the backend request
                // channel is not negotiated): the ring stays stopped until
                // the frontend restarts or resets it.
                logLine("vfsvm: vhost-user queue \(index) stopped: \(error)")
            })
        } else {
            fs.replaceMemory(memory)
            try fs.startQueue(queue)
        }
        running.withLock { $0[index] = RunningRing(kick: kick, features: features) }
    }

    func stopQueue(_ index: Int) -> UInt32 {
        running.withLock { _ = $0.removeValue(forKey: index) }
        guard let q = fs.stopQueue(index) else { return 0 }
        return q.layout == .packed ? UInt32(q.availState) | UInt32(q.usedState) << 16 : UInt32(q.availState)
    }

    func callChanged(_ index: Int, call: EventFD?) {
        interrupt.setCall(call, for: index)
    }

    /// New memory table while rings run: each ring restarts on the new
    /// memory with its position kept (ring addresses are guest-physical).
    func memoryChanged(_ memory: GuestMemory) {
        fs.replaceMemory(memory)
    }

    func reset() {
        running.withLock { $0 = [:] }
        fs.reset()
        interrupt.clear()
    }
}

/// Used-buffer notifications through the frontend's call eventfds, which
/// QEMU may swap at any time (SET_VRING_CALL while the guest masks vectors).
final class CallInterrupt: VirtioInterrupt {
    private let calls = Mutex<[Int: EventFD]>([:])

    func setCall(_ call: EventFD?, for index: Int) {
        calls.withLock { $0[index] = call }
    }

    func clear() { calls.withLock { $0 = [:] } }

    func signalQueue(_ index: Int) throws {
        try calls.withLock { $0[index] }?.signal()
    }

    /// vhost-user-fs has no config-change channel to the guest here (the
    /// backend request channel is not negotiated).
    func signalConfigChange() throws {}
}
